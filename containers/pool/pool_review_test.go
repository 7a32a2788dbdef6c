package pool

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
)

// hungEngine is a runtime whose instances answer the protocol but whose
// Stop and Remove hang until their context ends, like a wedged engine.
type hungEngine struct {
	sock string
	mu   sync.Mutex
	exit map[runtime.ID]chan runtime.Exit
}

func (h *hungEngine) Name() string { return "hung" }
func (h *hungEngine) Create(context.Context, runtime.Spec) (runtime.ID, error) {
	return runtime.ID("h" + runtime.RandomSuffix(6)), nil
}
func (h *hungEngine) Start(_ context.Context, id runtime.ID) (<-chan runtime.Exit, error) {
	ch := make(chan runtime.Exit, 1)
	h.mu.Lock()
	h.exit[id] = ch
	h.mu.Unlock()
	return ch, nil
}
func (h *hungEngine) Endpoint(context.Context, runtime.ID) (protocol.Endpoint, error) {
	return protocol.Endpoint{Kind: protocol.KindSluice, Network: "unix", Address: h.sock}, nil
}
func (h *hungEngine) Dir(runtime.ID) (string, error) { return "", nil }
func (h *hungEngine) Stop(ctx context.Context, _ runtime.ID, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}
func (h *hungEngine) Remove(ctx context.Context, id runtime.ID) error {
	<-ctx.Done()
	return ctx.Err()
}
func (h *hungEngine) List(context.Context) ([]runtime.Info, error) { return nil, nil }
func (h *hungEngine) Close() error                                 { return nil }

// The keep-alive sweep runs with the daemon's long-lived context: a hung
// engine must not stall it (and with it every later expiry) for good.
func TestSweepBoundedOnHungEngine(t *testing.T) {
	d, err := os.MkdirTemp("", "slpl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	sock := filepath.Join(d, "fn.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: protocol.NewHandler(func(context.Context, json.RawMessage) (any, error) { return "ok", nil })}
	go srv.Serve(l)
	defer srv.Close()

	eng := &hungEngine{sock: sock, exit: map[runtime.ID]chan runtime.Exit{}}
	p := New(eng, Config{StopGrace: 10 * time.Millisecond, RuntimeTimeout: 100 * time.Millisecond, NoReplace: true})
	if _, err := p.Start(context.Background(), Spec{Spec: runtime.Spec{Function: "f"}, KeepAlive: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		ids []runtime.ID
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ids, err := p.Sweep(context.Background(), time.Now().Add(time.Hour))
		ch <- result{ids, err}
	}()
	select {
	case r := <-ch:
		if len(r.ids) != 1 {
			t.Fatalf("swept %v, want one instance", r.ids)
		}
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("Sweep error %v, want the runtime timeout", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sweep blocked on a hung engine")
	}
	// Let the exit goroutines end.
	eng.mu.Lock()
	for _, c := range eng.exit {
		close(c)
	}
	eng.mu.Unlock()
}
