package protocol

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/internal/testenv"
)

func sockPath(t *testing.T) string {
	return filepath.Join(testenv.ShortDir(t, "slc"), "fn.sock")
}

func unixClient(t *testing.T, sock string) *Client {
	c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: sock})
	t.Cleanup(c.Close)
	return c
}

// serveHTTP serves h with srv's settings on a fresh socket.
func serveHTTP(t *testing.T, srv *http.Server) string {
	sock := sockPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClientLargeChunkedResponse(t *testing.T) {
	big := strings.Repeat("x", 300<<10)
	sock := serveHTTP(t, &http.Server{Handler: NewHandler(func(context.Context, json.RawMessage) (any, error) { return big, nil })})
	out, err := unixClient(t, sock).Invoke(context.Background(), []byte(`{}`))
	var s string
	if err != nil || json.Unmarshal(out, &s) != nil || s != big {
		t.Fatalf("large response: %d bytes, %v", len(out), err)
	}
}

func TestClientContextCancel(t *testing.T) {
	sock := serveHTTP(t, &http.Server{Handler: NewHandler(func(ctx context.Context, _ json.RawMessage) (any, error) {
		select {
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
		}
		return nil, nil
	})})
	c := unixClient(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Invoke(ctx, []byte(`{}`))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("got %v after %v, want deadline exceeded promptly", err, time.Since(start))
	}
	// The client still works afterwards (on a new connection).
	ok := serveHTTP(t, &http.Server{Handler: NewHandler(handler)})
	c2 := unixClient(t, ok)
	if _, err := c2.Invoke(context.Background(), []byte(`{"a":1}`)); err != nil {
		t.Errorf("invoke after a cancelled one: %v", err)
	}
}

// TestClientServerClosedIdle: a kept-alive connection the server closed is
// detected when writing and the request goes out on a new one.
func TestClientServerClosedIdle(t *testing.T) {
	var conns atomic.Int32
	srv := &http.Server{Handler: NewHandler(handler), IdleTimeout: 30 * time.Millisecond,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	c := unixClient(t, serveHTTP(t, srv))
	for i := range 3 {
		if _, err := c.Invoke(context.Background(), []byte(`{"i":1}`)); err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (one per invocation after each idle close)", n)
	}
}

// TestClientConnectionClose talks to a server that answers one request per
// connection, as gpu-matmul does.
func TestClientConnectionClose(t *testing.T) {
	sock := sockPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				body := fmt.Sprintf(`{"path":%q}`, req.URL.Path)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			}()
		}
	}()
	c := unixClient(t, sock)
	if err := c.Ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}
	for i := range 3 {
		out, err := c.Invoke(context.Background(), []byte(`{}`))
		if err != nil || string(out) != `{"path":"/invoke"}` {
			t.Fatalf("invoke %d: %s %v", i, out, err)
		}
	}
}
