package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/internal/testenv"
)

func handler(_ context.Context, req json.RawMessage) (any, error) {
	var m map[string]any
	if err := json.Unmarshal(req, &m); err != nil {
		return nil, Errorf(http.StatusBadRequest, "want an object")
	}
	switch m["op"] {
	case "fail":
		return nil, Errorf(http.StatusTeapot, "short and stout")
	case "plain-error":
		return nil, errors.New("boom")
	case "panic":
		panic("oh no")
	case "unencodable":
		return func() {}, nil
	}
	return m, nil
}

func TestHandler(t *testing.T) {
	h := NewHandler(handler)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"ready", "GET", "/ready", "", 200, `{"ready":true}`},
		{"invoke", "POST", "/invoke", `{"a":1}`, 200, `{"a":1}`},
		{"not json", "POST", "/invoke", `{oops`, 400, `{"error":"request body is not valid JSON"}`},
		{"function error", "POST", "/invoke", `{"op":"fail"}`, 418, `{"error":"short and stout"}`},
		{"plain error", "POST", "/invoke", `{"op":"plain-error"}`, 500, `{"error":"boom"}`},
		{"panic", "POST", "/invoke", `{"op":"panic"}`, 500, `{"error":"function panicked: oh no"}`},
		{"unencodable", "POST", "/invoke", `{"op":"unencodable"}`, 500, `encode result`},
		{"empty body is null", "POST", "/invoke", ``, 200, `null`},
		{"wrong method", "GET", "/invoke", ``, 405, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("got %d %s, want %d containing %s", rec.Code, rec.Body, tc.status, tc.want)
			}
		})
	}
}

func serveUnix(t *testing.T, h Handler) *Client {
	sock := filepath.Join(testenv.ShortDir(t, "slt"), "fn.sock")
	c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: sock})
	t.Cleanup(c.Close)
	if err := c.Ready(context.Background()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("ready before serving: %v, want ErrNotReady", err)
	}
	t.Setenv(SocketEnv, sock)
	l, err := Listen("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c
}

func TestClientServerUnix(t *testing.T) {
	c := serveUnix(t, handler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	out, err := c.Invoke(ctx, []byte(`{"x":[1,2]}`))
	if err != nil || string(out) != `{"x":[1,2]}` {
		t.Errorf("invoke: %s %v", out, err)
	}
	_, err = c.Invoke(ctx, []byte(`{"op":"fail"}`))
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 418 || pe.Message != "short and stout" {
		t.Errorf("function error: %v", err)
	}
}

func TestWaitReadyGivesUp(t *testing.T) {
	c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: "/nonexistent/fn.sock"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx, 5*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want deadline exceeded", err)
	}
}

// TestOpenWhiskClient checks the OpenWhisk wire format against a fake action.
func TestOpenWhiskClient(t *testing.T) {
	var inited bool
	mux := http.NewServeMux()
	mux.HandleFunc("POST /init", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Value OpenWhiskInit `json:"value"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Value.Main != "handler" || req.Value.Name != "ow" {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"bad init"}`)
			return
		}
		inited = true
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Value map[string]any `json:"value"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if !inited {
			w.WriteHeader(502)
			io.WriteString(w, `{"error":"not initialized"}`)
			return
		}
		if req.Value["fail"] == true {
			w.WriteHeader(502)
			io.WriteString(w, `{"error":{"code":7}}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"got": req.Value})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewClient(Endpoint{Kind: KindOpenWhisk, Network: "tcp", Address: strings.TrimPrefix(srv.URL, "http://")})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if _, err := c.Invoke(ctx, []byte(`{}`)); err == nil {
		t.Errorf("run before init succeeded")
	}
	if err := c.Init(ctx, OpenWhiskInit{Name: "ow", Main: "handler"}); err != nil {
		t.Fatalf("init: %v", err)
	}
	out, err := c.Invoke(ctx, []byte(`{"k":"v"}`))
	if err != nil || !strings.Contains(string(out), `"got":{"k":"v"}`) {
		t.Errorf("run: %s %v", out, err)
	}
	_, err = c.Invoke(ctx, []byte(`{"fail":true}`))
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 502 || pe.Message != `{"code":7}` {
		t.Errorf("action error: %v", err)
	}
	if _, err := c.Invoke(ctx, []byte(`{bad`)); !errors.As(err, &pe) || pe.Status != 400 {
		t.Errorf("invalid JSON: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortDir(t, "slt"), "fn.sock")
	l1, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l1.(*net.UnixListener).SetUnlinkOnClose(false)
	l1.Close()
	l2, err := Listen(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l2.Close()
}

func BenchmarkRoundTrip(b *testing.B) {
	sock := filepath.Join(testenv.ShortDir(b, "slb"), "fn.sock")
	l, err := Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeListener(ctx, l, func(_ context.Context, req json.RawMessage) (any, error) { return req, nil })
	c := NewClient(Endpoint{Kind: KindSluice, Network: "unix", Address: sock})
	defer c.Close()
	body := []byte(`{"name":"sluice","n":42}`)
	for b.Loop() {
		if _, err := c.Invoke(ctx, body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestExecHandler(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		argv   []string
		body   string
		want   string
		status int
	}{
		{"json stdout", []string{"sh", "-c", "cat"}, `{"a":1}`, `{"a":1}`, 0},
		{"plain stdout", []string{"sh", "-c", "echo hi"}, `{}`, `{"stdout":"hi\n"}`, 0},
		{"args appended", []string{"sh", "-c", `printf '%s' "$1"`, "zero"}, `{"args":["hello"]}`, `{"stdout":"hello"}`, 0},
		{"bad args", []string{"true"}, `{"args":"x"}`, `field \"args\"`, 400},
		{"failure", []string{"sh", "-c", "echo bad >&2; exit 3"}, `null`, "exit status 3: bad", 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			NewHandler(ExecHandler(tc.argv)).ServeHTTP(rec, httptest.NewRequest("POST", "/invoke", strings.NewReader(tc.body)).WithContext(ctx))
			want := 200
			if tc.status != 0 {
				want = tc.status
			}
			if rec.Code != want || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("got %d %s, want %d containing %s", rec.Code, rec.Body, want, tc.want)
			}
		})
	}
}
