package protocol

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialInNetNS dials network/addr from inside the network namespace at nsPath.
// The dial runs on a goroutine with its own locked OS thread, which is moved
// into the namespace and never returned to the scheduler (the goroutine exits
// still locked, so Go discards the thread). The socket keeps the namespace
// it was created in.
func dialInNetNS(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	defer f.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread is in the wrong namespace.
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
