package runtimetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// Fixture adapts a backend to the suite.
type Fixture struct {
	// New returns a backend labelled with daemon instance label; the suite
	// calls it several times with the same label to simulate a restart. The
	// fixture closes it at the end of the test.
	New func(t *testing.T, instance string) runtime.Runtime
	// Spec returns a spec that runs testfn as function fn.
	Spec func(fn string) runtime.Spec
	// Sandboxed says the backend isolates instances (read-only root
	// filesystem, writable /tmp, no network, non-root user for specs with a
	// User): the sandbox test runs only then.
	Sandboxed bool
}

// ReadyTimeout bounds each instance's readiness in the suite.
const ReadyTimeout = 30 * time.Second

// BuildTestFunction compiles testfn (statically, no cgo) into dir and returns
// the binary's path.
func BuildTestFunction(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "testfn")
	src := filepath.Join(testenv.RepoRoot(t), "containers", "runtime", "runtimetest", "testfn")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testfn: %v\n%s", err, b)
	}
	return out
}

// Instance is a started instance under test.
type Instance struct {
	ID     runtime.ID
	Exit   <-chan runtime.Exit
	Client *protocol.Client
}

// StartInstance creates, starts and waits for spec, removing it at cleanup.
func StartInstance(t *testing.T, rt runtime.Runtime, spec runtime.Spec) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	id, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create %s: %v", spec.Function, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := rt.Remove(ctx, id); err != nil {
			t.Errorf("cleanup: remove %s: %v", id, err)
		}
	})
	exit, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	ep, err := rt.Endpoint(ctx, id)
	if err != nil {
		t.Fatalf("endpoint %s: %v", id, err)
	}
	c := protocol.NewClient(ep)
	t.Cleanup(c.Close)
	if err := c.WaitReady(ctx, 2*time.Millisecond); err != nil {
		t.Fatalf("instance %s: %v", id, err)
	}
	return &Instance{ID: id, Exit: exit, Client: c}
}

// Call invokes in with req (marshalled to JSON) and decodes the result into a map.
func Call(t *testing.T, in *Instance, req any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := in.Client.Invoke(ctx, body)
	if err != nil {
		t.Fatalf("invoke %s with %s: %v", in.ID, body, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("decode result %s: %v", out, err)
	}
	return m
}

// Run runs the conformance suite.
func Run(t *testing.T, f Fixture) {
	label := "t" + runtime.RandomSuffix(6)
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, f, label+"l") })
	t.Run("Environment", func(t *testing.T) { testEnvironment(t, f, label+"e") })
	t.Run("Crash", func(t *testing.T) { testCrash(t, f, label+"c") })
	t.Run("Stop", func(t *testing.T) { testStop(t, f, label+"t") })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, f, label+"p") })
	t.Run("RestartRecovery", func(t *testing.T) { testRecovery(t, f, label+"r") })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, f, label+"n") })
	if f.Sandboxed {
		t.Run("Sandbox", func(t *testing.T) { testSandbox(t, f, label+"s") })
	}
}

func listed(t *testing.T, rt runtime.Runtime, id runtime.ID) (runtime.Info, bool) {
	t.Helper()
	infos, err := rt.List(context.Background())
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, in := range infos {
		if in.ID == id {
			return in, true
		}
	}
	return runtime.Info{}, false
}

func testLifecycle(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	spec := f.Spec("life")
	spec.Generation = 7
	in := StartInstance(t, rt, spec)
	got := Call(t, in, map[string]any{"op": "echo", "x": 42.0})
	if got["x"] != 42.0 {
		t.Errorf("echo: got %v, want x=42", got)
	}
	info, ok := listed(t, rt, in.ID)
	if !ok {
		t.Fatalf("list: started instance %s missing", in.ID)
	}
	if info.Function != "life" || info.Generation != 7 || info.Instance != label || !info.Running {
		t.Errorf("list: got %+v, want function life, generation 7, instance %s, running", info, label)
	}
	dir, err := rt.Dir(in.ID)
	if err != nil {
		t.Fatalf("dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, runtime.FnSocketName)); err != nil {
		t.Errorf("function socket not in the instance dir: %v", err)
	}
	ctx := context.Background()
	if err := rt.Remove(ctx, in.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	select {
	case <-in.Exit:
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit reported after remove")
	}
	if _, ok := listed(t, rt, in.ID); ok {
		t.Errorf("list: removed instance %s still listed", in.ID)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance dir %s left after remove (%v)", dir, err)
	}
	if err := rt.Remove(ctx, in.ID); err != nil {
		t.Errorf("second remove: %v, want nil", err)
	}
}

func testEnvironment(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	spec := f.Spec("envfn")
	spec.Env = map[string]string{"GREETING": "hello world"}
	in := StartInstance(t, rt, spec)
	for _, tc := range []struct{ name, want string }{
		{"GREETING", "hello world"},
		{runtime.EnvFunction, "envfn"},
	} {
		got := Call(t, in, map[string]any{"op": "env", "name": tc.name})
		if got["value"] != tc.want {
			t.Errorf("env %s: got %v, want %q", tc.name, got["value"], tc.want)
		}
	}
	// A function error keeps its status and message, and the instance lives on.
	_, err := in.Client.Invoke(context.Background(), []byte(`{"op":"fail"}`))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Status != 422 || pe.Message != "asked to fail" {
		t.Errorf("failing invocation: got %v, want status 422 \"asked to fail\"", err)
	}
	if got := Call(t, in, map[string]any{"op": "echo", "after": "fail"}); got["after"] != "fail" {
		t.Errorf("echo after a function error: got %v", got)
	}
}

func testCrash(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	crash := StartInstance(t, rt, f.Spec("crash"))
	other := StartInstance(t, rt, f.Spec("bystander"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := crash.Client.Invoke(ctx, []byte(`{"op":"exit","code":3}`)); err == nil {
		t.Fatalf("invocation that kills the process succeeded")
	}
	select {
	case ex := <-crash.Exit:
		if ex.Code != 3 {
			t.Errorf("exit: got %v, want status 3", ex)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("crash not reported on the exit channel")
	}
	if info, ok := listed(t, rt, crash.ID); ok && info.Running {
		t.Errorf("crashed instance still listed as running")
	}
	if got := Call(t, other, map[string]any{"still": "here"}); got["still"] != "here" {
		t.Errorf("bystander after crash: got %v", got)
	}
}

func testStop(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	polite := StartInstance(t, rt, f.Spec("polite"))
	stubborn := StartInstance(t, rt, f.Spec("stubborn"))
	Call(t, stubborn, map[string]any{"op": "ignore-term"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name  string
		in    *Instance
		grace time.Duration
		code  int
	}{
		{"exits on SIGTERM", polite, 10 * time.Second, 0},
		{"killed after grace", stubborn, 300 * time.Millisecond, 137},
	} {
		start := time.Now()
		if err := rt.Stop(ctx, tc.in.ID, tc.grace); err != nil {
			t.Fatalf("%s: stop: %v", tc.name, err)
		}
		select {
		case ex := <-tc.in.Exit:
			if ex.Code != tc.code {
				t.Errorf("%s: %v, want status %d", tc.name, ex, tc.code)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no exit after stop", tc.name)
		}
		if d := time.Since(start); d > tc.grace+5*time.Second {
			t.Errorf("%s: stop took %v", tc.name, d)
		}
		if info, ok := listed(t, rt, tc.in.ID); !ok || info.Running {
			t.Errorf("%s: after stop: listed %v running %v, want listed and not running", tc.name, ok, info.Running)
		}
		if err := rt.Stop(ctx, tc.in.ID, time.Second); err != nil {
			t.Errorf("%s: second stop: %v", tc.name, err)
		}
	}
	if err := rt.Stop(ctx, "nonexistent", time.Second); err != nil {
		t.Errorf("stop unknown: %v, want nil", err)
	}
}

func testConcurrent(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	const instances, calls = 3, 8
	ins := make([]*Instance, instances)
	var wg sync.WaitGroup
	errs := make(chan error, instances*calls)
	var mu sync.Mutex
	for i := range instances {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
			defer cancel()
			id, err := rt.Create(ctx, f.Spec(fmt.Sprintf("conc%d", i)))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ins[i] = &Instance{ID: id}
			mu.Unlock()
			if ins[i].Exit, err = rt.Start(ctx, id); err != nil {
				errs <- err
				return
			}
			ep, err := rt.Endpoint(ctx, id)
			if err != nil {
				errs <- err
				return
			}
			ins[i].Client = protocol.NewClient(ep)
			errs <- ins[i].Client.WaitReady(ctx, 2*time.Millisecond)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, in := range ins {
			if in != nil {
				_ = rt.Remove(context.Background(), in.ID)
			}
		}
	})
	for range instances {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
	for i, in := range ins {
		for j := range calls {
			wg.Go(func() {
				body := fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)
				out, err := in.Client.Invoke(context.Background(), []byte(body))
				if err != nil {
					errs <- err
					return
				}
				var m map[string]int
				if err := json.Unmarshal(out, &m); err != nil || m["i"] != i || m["j"] != j {
					errs <- fmt.Errorf("instance %d call %d: got %s", i, j, out)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func testRecovery(t *testing.T, f Fixture, label string) {
	old := f.New(t, label)
	stranger := f.New(t, label+"x")
	in := StartInstance(t, old, f.Spec("leftover"))
	keep := StartInstance(t, stranger, f.Spec("notours"))
	// A new daemon with the same label finds what the old one left...
	fresh := f.New(t, label)
	infos, err := fresh.List(context.Background())
	if err != nil {
		t.Fatalf("list after restart: %v", err)
	}
	if !slices.ContainsFunc(infos, func(i runtime.Info) bool { return i.ID == in.ID && i.Running }) {
		t.Fatalf("restarted runtime does not list the running leftover %s: %+v", in.ID, infos)
	}
	if slices.ContainsFunc(infos, func(i runtime.Info) bool { return i.ID == keep.ID }) {
		t.Fatalf("restarted runtime lists another daemon's instance %s", keep.ID)
	}
	// ...and removes it, touching nothing else.
	n, err := runtime.Recover(context.Background(), fresh)
	if err != nil || n != 1 {
		t.Fatalf("recover: removed %d, err %v; want 1, nil", n, err)
	}
	if infos, _ := fresh.List(context.Background()); len(infos) != 0 {
		t.Errorf("after recover: %+v still listed", infos)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for in.Client.Ready(ctx) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if in.Client.Ready(ctx) == nil {
		t.Errorf("leftover instance still answers after recover")
	}
	if got := Call(t, keep, map[string]any{"ok": true}); got["ok"] != true {
		t.Errorf("other daemon's instance after recover: got %v", got)
	}
}

func testNotFound(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	ctx := context.Background()
	if _, err := rt.Start(ctx, "nonexistent"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("start unknown: got %v, want ErrNotFound", err)
	}
	if _, err := rt.Endpoint(ctx, "nonexistent"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("endpoint unknown: got %v, want ErrNotFound", err)
	}
	if err := rt.Remove(ctx, "nonexistent"); err != nil {
		t.Errorf("remove unknown: got %v, want nil", err)
	}
	if _, err := rt.Create(ctx, runtime.Spec{}); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("create empty spec: got %v, want ErrInvalid", err)
	}
}

func testSandbox(t *testing.T, f Fixture, label string) {
	rt := f.New(t, label)
	spec := f.Spec("sandbox")
	spec.User = "65534:65534"
	in := StartInstance(t, rt, spec)
	id := Call(t, in, map[string]any{"op": "id"})
	if id["uid"] != 65534.0 {
		t.Errorf("uid: got %v, want 65534", id["uid"])
	}
	if w := Call(t, in, map[string]any{"op": "write", "path": "/sluice-probe"}); w["ok"] != false {
		t.Errorf("write to the root filesystem succeeded: %v", w)
	}
	if w := Call(t, in, map[string]any{"op": "write", "path": "/tmp/probe"}); w["ok"] != true {
		t.Errorf("write to /tmp failed: %v", w)
	}
	n := Call(t, in, map[string]any{"op": "net"})
	if ifs, _ := n["interfaces"].([]any); len(ifs) != 1 || ifs[0] != "lo" {
		t.Errorf("network interfaces: got %v, want only lo", n["interfaces"])
	}
}
