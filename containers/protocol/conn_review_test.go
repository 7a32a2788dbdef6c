package protocol

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// reviewListen listens on a fresh, short Unix socket path.
func reviewListen(t *testing.T) (net.Listener, string) {
	t.Helper()
	d, err := os.MkdirTemp("", "slr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	sock := filepath.Join(d, "fn.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, sock
}

// A hostile function must not make the daemon buffer an endless response
// header (or status line): the client stops reading after maxHeaderBytes.
func TestClientBoundsResponseHeader(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		unit   string
	}{
		{"endless headers", "HTTP/1.1 200 OK\r\n", "X-Junk: " + strings.Repeat("a", 1000) + "\r\n"},
		{"endless status line", "HTTP/1.1 200 ", strings.Repeat("a", 1024)},
	}
	const budget = 64 << 20 // what the server would send if the client let it
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, sock := reviewListen(t)
			var sent atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for { // the request header
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				w := bufio.NewWriterSize(c, 64<<10)
				w.WriteString(tc.prefix)
				for sent.Load() < budget {
					n, err := w.WriteString(tc.unit)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
				w.Flush()
			}()
			c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: sock})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := c.Invoke(ctx, []byte(`{}`))
			if err == nil {
				t.Fatal("Invoke succeeded on an endless header")
			}
			if !errors.Is(err, errResponseTooLarge) {
				t.Errorf("Invoke error %v, want errResponseTooLarge", err)
			}
			<-done
			if n := sent.Load(); n >= budget/4 {
				t.Fatalf("client read %d header bytes before giving up (limit %d)", n, maxHeaderBytes)
			}
		})
	}
}

// The limit is per response: a kept-alive connection serves many normal
// responses (and one with a header near the limit) after each other.
func TestClientHeaderLimitPerResponse(t *testing.T) {
	l, sock := reviewListen(t)
	big := strings.Repeat("b", maxHeaderBytes/2)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
			}
			// GET /ready has no body.
			hdr := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
			if i%2 == 1 {
				hdr += "X-Big: " + big + "\r\n"
			}
			if _, err := c.Write([]byte(hdr + "\r\n")); err != nil {
				return
			}
		}
	}()
	c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: sock})
	defer c.Close()
	for i := range 8 {
		if err := c.Ready(context.Background()); err != nil {
			t.Fatalf("Ready #%d: %v", i, err)
		}
	}
}
