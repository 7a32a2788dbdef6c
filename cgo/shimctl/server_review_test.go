package shimctl

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reviewRegister builds a valid REGISTER packet for function fn.
func reviewRegister(fn string) []byte {
	b := make([]byte, registerSize)
	putHeader(b, msgRegister)
	le.PutUint32(b[hdrSize:], uint32(os.Getpid()))
	copy(b[hdrSize+16:], fn)
	return b
}

// reviewServer runs a Server until the test ends (or the returned cancel).
func reviewServer(t *testing.T, cfg Config) (*Server, context.CancelFunc, chan error) {
	t.Helper()
	d, err := os.MkdirTemp("", "slsh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	cfg.Path = filepath.Join(d, "shim.sock")
	srv, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return srv, cancel, done
}

func reviewDial(t *testing.T, path, fn string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(reviewRegister(fn)); err != nil {
		t.Fatal(err)
	}
	return c
}

// A shim that stops reading fills its socket; Do must still end with its
// context instead of blocking in the write for good.
func TestDoDoesNotBlockOnAShimThatStopsReading(t *testing.T) {
	sessions := make(chan *Session, 1)
	srv, _, _ := reviewServer(t, Config{OnSession: func(s *Session) { sessions <- s }})
	shim := reviewDial(t, srv.Addr(), "stuck") // does not read (for now)
	var ss *Session
	select {
	case ss = <-sessions:
	case <-time.After(10 * time.Second):
		t.Fatal("no session")
	}
	blocked := make(chan error, 1)
	go func() {
		// Each command waits 1 ms for its (never coming) result; once the
		// socket is full, the next send must give up after 1 ms too.
		for i := 0; i < 100000; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, err := ss.Do(ctx, OpReportUsage, 0)
			cancel()
			switch {
			case err == nil:
			case strings.HasPrefix(err.Error(), "send ") && errors.Is(err, context.DeadlineExceeded):
				blocked <- nil // the send itself gave up: the socket was full
				return
			case errors.Is(err, context.DeadlineExceeded):
				continue // waiting for the result timed out
			default:
				blocked <- err
				return
			}
		}
		blocked <- errors.New("socket never filled")
	}()
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Do blocked past its context on a full shim socket")
	}
	// Once the shim reads again, sends work: the abandoned send left no
	// deadline behind.
	buf := make([]byte, maxMsg)
	for {
		shim.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := shim.Read(buf); err != nil {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ss.writeCtx(ctx, encodeCommand(1, OpReportUsage, 0)); err != nil {
		t.Fatalf("send after the shim drained its socket: %v", err)
	}
}

// A session that completes its registration while Serve shuts down must not
// keep Serve waiting for it.
func TestServeReturnsWhenARegistrationRacesShutdown(t *testing.T) {
	release := make(chan struct{})
	inBudget := make(chan struct{}, 1)
	srv, cancel, done := reviewServer(t, Config{Budget: func(string) uint64 {
		inBudget <- struct{}{}
		<-release
		return 0
	}})
	reviewDial(t, srv.Addr(), "late") // stays open and silent
	select {
	case <-inBudget:
	case <-time.After(10 * time.Second):
		t.Fatal("registration did not reach Budget")
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // let Serve close what it knows
	close(release)
	select {
	case err := <-done:
		done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept waiting for a session registered during shutdown")
	}
}

// A shim process that is gone by the time the daemon watches it, while a
// child still holds its socket, must end its session (not linger until the
// child goes).
func TestSessionEndsWhenShimExitedBeforeWatch(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	exited := make(chan struct{})
	ended := make(chan error, 1)
	srv, _, _ := reviewServer(t, Config{
		Budget: func(string) uint64 {
			<-exited // register only once the connecting process is reaped
			return 0
		},
		OnClose: func(_ *Session, err error) { ended <- err },
	})
	pkt := reviewRegister("orphaned")
	script := `
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(bytes.fromhex(sys.argv[2]))
if os.fork() == 0:
    os.setsid()
    s.settimeout(20)
    try:
        while s.recv(4096):
            pass
    except Exception:
        pass
    os._exit(0)
os._exit(0)
`
	errf, err := os.CreateTemp("", "slsh-py")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd := exec.Command(py, "-c", script, srv.Addr(), hexString(pkt))
	cmd.Stderr = errf // a file, not a pipe: Run does not wait for the child
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(errf.Name())
		t.Fatalf("python client: %v: %s", err, out)
	}
	close(exited)
	select {
	case err := <-ended:
		if !errors.Is(err, errProcessExited) {
			t.Fatalf("session ended with %v, want errProcessExited", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session of an exited shim is still open")
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// The shim socket lives in a directory the function can write: Listen's
// chmod must reach the socket it bound, never a file a link (swapped in
// after the bind) points to.
func TestListenChmodDoesNotFollowSwappedLink(t *testing.T) {
	d, err := os.MkdirTemp("", "slsc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	target := filepath.Join(d, "precious")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d, "shim.sock")
	stop := make(chan struct{})
	raced := make(chan struct{})
	go func() {
		defer close(raced)
		tmp := filepath.Join(d, "link")
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Replace whatever is at path by a link to target, atomically.
			os.Remove(tmp)
			if os.Symlink(target, tmp) == nil {
				os.Rename(tmp, path)
			}
		}
	}()
	for i := 0; i < 3000; i++ {
		os.Remove(path)
		if srv, err := Listen(Config{Path: path}); err == nil {
			srv.ln.Close()
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
			close(stop)
			<-raced
			t.Fatalf("after %d listens: target mode %v (%v): chmod followed a link", i+1, fi.Mode(), err)
		}
	}
	close(stop)
	<-raced
	// Without a racer, the socket gets its mode.
	os.Remove(path)
	srv, err := Listen(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, %v; want a 0666 socket", fi.Mode(), err)
	}
}

// Anyone who can reach the socket can connect: the connections served at
// once are bounded, so a hostile container cannot make the daemon hold
// goroutines, buffers and pidfds without limit.
func TestConnectionsBounded(t *testing.T) {
	const max = 4
	srv, _, _ := reviewServer(t, Config{MaxConnections: max})
	buf := make([]byte, maxMsg)
	// dial connects and registers; it reports whether a WELCOME came back
	// (a refused connection is closed instead).
	dial := func() (*net.UnixConn, bool) {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: srv.Addr(), Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(reviewRegister("many")) // fails if already refused
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		return c, err == nil && n == welcomeSize
	}
	var served []*net.UnixConn
	for i := 0; i < 3*max; i++ {
		if c, ok := dial(); ok {
			served = append(served, c)
		}
	}
	if len(served) != max {
		t.Fatalf("%d connections served, want %d", len(served), max)
	}
	if n := len(srv.Sessions()); n != max {
		t.Fatalf("%d sessions, want %d", n, max)
	}
	// Closing one makes room for another.
	served[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := dial(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
