package pool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/containers/runtime/runtimetest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// binaries holds the test function, built once for the package's tests.
var binaries testenv.Binaries

func TestMain(m *testing.M) {
	code := m.Run()
	binaries.Remove()
	os.Exit(code)
}

func testFunction(t testing.TB) string {
	return binaries.Get(t, "testfn", func(dir string) string { return runtimetest.BuildTestFunction(t, dir) })
}

// recorder collects events and lets tests wait for one.
type recorder struct {
	mu     sync.Mutex
	events []pool.Event
	ch     chan pool.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan pool.Event, 100)} }

func (r *recorder) record(e pool.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.ch <- e
}

func (r *recorder) waitFor(t *testing.T, kind pool.EventKind, id runtime.ID) pool.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-r.ch:
			if e.Kind == kind && (id == "" || e.Instance == id) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %q", kind, id)
		}
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

type env struct {
	rt    *process.Runtime
	pool  *pool.Pool
	rec   *recorder
	clock *clock
	spec  func(fn string) pool.Spec
}

func newEnv(t *testing.T, cfg pool.Config) *env {
	bin := testFunction(t)
	dir := testenv.ShortDir(t, "slq")
	rt, err := process.New(process.Config{Instance: "pooltest", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{rt: rt, rec: newRecorder(), clock: &clock{now: time.Unix(1_000_000, 0)}}
	cfg.OnEvent = e.rec.record
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	e.pool = pool.New(rt, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.pool.Close(ctx); err != nil {
			t.Errorf("close pool: %v", err)
		}
		if left, _ := rt.List(ctx); len(left) != 0 {
			t.Errorf("instances left after Close: %+v", left)
		}
	})
	e.spec = func(fn string) pool.Spec {
		return pool.Spec{Spec: runtime.Spec{Function: fn, Command: []string{bin}},
			ReadyTimeout: 10 * time.Second, InvokeTimeout: 5 * time.Second, KeepAlive: time.Minute}
	}
	return e
}

func (e *env) start(t *testing.T, s pool.Spec) runtime.ID {
	t.Helper()
	id, err := e.pool.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start %s: %v", s.Function, err)
	}
	return id
}

func invoke(t *testing.T, p *pool.Pool, id runtime.ID, body string) string {
	t.Helper()
	out, err := p.Invoke(context.Background(), id, []byte(body))
	if err != nil {
		t.Fatalf("invoke %s: %v", id, err)
	}
	return string(out)
}

func TestStartInvokeReuse(t *testing.T) {
	e := newEnv(t, pool.Config{})
	id := e.start(t, e.spec("echo"))
	ev := e.rec.waitFor(t, pool.EventReady, id)
	if ev.Function != "echo" {
		t.Errorf("ready event: %+v", ev)
	}
	got, ok := e.pool.Acquire("echo")
	if !ok || got != id {
		t.Fatalf("acquire: got %q %v, want %q", got, ok, id)
	}
	if _, ok := e.pool.Acquire("echo"); ok {
		t.Errorf("acquire while the only instance is busy succeeded")
	}
	if _, ok := e.pool.Acquire("other"); ok {
		t.Errorf("acquire of a function with no instances succeeded")
	}
	if out := invoke(t, e.pool, id, `{"a":1}`); out != `{"a":1}` {
		t.Errorf("invoke: got %s", out)
	}
	infos := e.pool.Instances()
	if len(infos) != 1 || infos[0].State != pool.StateIdle || infos[0].Invoked != 1 {
		t.Errorf("instances after one invocation: %+v", infos)
	}
	if again, ok := e.pool.Acquire("echo"); !ok || again != id {
		t.Errorf("warm instance not reused: %q %v", again, ok)
	}
	e.pool.Release(id)
	// A function error leaves the instance warm.
	_, err := e.pool.Invoke(context.Background(), id, []byte(`{"op":"fail"}`))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Status != 422 {
		t.Errorf("function error: got %v, want *protocol.Error 422", err)
	}
	if len(e.pool.Instances()) != 1 {
		t.Errorf("function error dropped the instance")
	}
}

func TestKeepAliveSweep(t *testing.T) {
	e := newEnv(t, pool.Config{})
	old := e.start(t, e.spec("ka"))
	e.clock.Add(40 * time.Second)
	fresh := e.start(t, e.spec("ka"))
	ctx := context.Background()
	if ids, err := e.pool.Sweep(ctx, e.clock.Add(10*time.Second)); err != nil || len(ids) != 0 {
		t.Fatalf("sweep before expiry: %v %v", ids, err)
	}
	ids, err := e.pool.Sweep(ctx, e.clock.Add(15*time.Second)) // old idle 65s, fresh 25s
	if err != nil || len(ids) != 1 || ids[0] != old {
		t.Fatalf("sweep: got %v %v, want [%s]", ids, err, old)
	}
	e.rec.waitFor(t, pool.EventExpired, old)
	if infos := e.pool.Instances(); len(infos) != 1 || infos[0].ID != fresh {
		t.Errorf("after sweep: %+v, want only %s", infos, fresh)
	}
	if _, err := e.pool.Invoke(ctx, old, nil); !errors.Is(err, pool.ErrUnknown) {
		t.Errorf("invoke expired instance: got %v, want ErrUnknown", err)
	}
	// Using an instance restarts its keep-alive; busy instances never expire.
	invoke(t, e.pool, fresh, `{}`)
	e.pool.Acquire("ka")
	if ids, _ := e.pool.Sweep(ctx, e.clock.Add(2*time.Minute)); len(ids) != 0 {
		t.Errorf("busy instance expired: %v", ids)
	}
	e.pool.Release(fresh)
	if ids, _ := e.pool.Sweep(ctx, e.clock.Add(0)); len(ids) != 1 {
		t.Errorf("idle instance past keep-alive not expired: %v", ids)
	}
}

func TestStopEvicts(t *testing.T) {
	e := newEnv(t, pool.Config{})
	id := e.start(t, e.spec("evict"))
	if err := e.pool.Stop(context.Background(), id); err != nil {
		t.Fatalf("stop: %v", err)
	}
	e.rec.waitFor(t, pool.EventStopped, id)
	if len(e.pool.Instances()) != 0 {
		t.Errorf("stopped instance still in the pool")
	}
	if left, _ := e.rt.List(context.Background()); len(left) != 0 {
		t.Errorf("stopped instance still in the runtime: %+v", left)
	}
	if err := e.pool.Stop(context.Background(), id); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestCrashMidInvocationReplaced(t *testing.T) {
	e := newEnv(t, pool.Config{})
	victim := e.start(t, e.spec("crashy"))
	bystander := e.start(t, e.spec("calm"))
	_, err := e.pool.Invoke(context.Background(), victim, []byte(`{"op":"exit","code":3}`))
	if !errors.Is(err, pool.ErrCrashed) || !strings.Contains(err.Error(), "status 3") {
		t.Fatalf("invoke that crashes: got %v, want ErrCrashed naming status 3", err)
	}
	ev := e.rec.waitFor(t, pool.EventCrashed, victim)
	if !ev.Busy || ev.Exit == nil || ev.Exit.Code != 3 {
		t.Errorf("crash event: %+v", ev)
	}
	rep := e.rec.waitFor(t, pool.EventReplaced, victim)
	if rep.Err != nil || rep.Replacement == "" {
		t.Fatalf("replacement: %+v", rep)
	}
	if out := invoke(t, e.pool, rep.Replacement, `{"b":2}`); out != `{"b":2}` {
		t.Errorf("replacement invoke: %s", out)
	}
	if out := invoke(t, e.pool, bystander, `{"c":3}`); out != `{"c":3}` {
		t.Errorf("bystander invoke: %s", out)
	}
	if _, err := e.pool.Invoke(context.Background(), victim, nil); !errors.Is(err, pool.ErrUnknown) {
		t.Errorf("invoke crashed instance: %v, want ErrUnknown", err)
	}
}

func TestCrashWhileIdleReplaced(t *testing.T) {
	e := newEnv(t, pool.Config{})
	id := e.start(t, e.spec("idlecrash"))
	dir, _ := e.rt.Dir(id)
	// Kill the process behind the pool's back.
	pidfile, err := os.ReadFile(dir + "/instance.json")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if i := strings.Index(string(pidfile), `"pid":`); i >= 0 {
		fmt.Sscanf(string(pidfile)[i+6:], "%d", &pid)
	}
	if pid == 0 {
		t.Fatalf("no pid in %s", pidfile)
	}
	proc, _ := os.FindProcess(pid)
	proc.Kill()
	ev := e.rec.waitFor(t, pool.EventCrashed, id)
	if ev.Busy || ev.Exit == nil || ev.Exit.Code != 137 {
		t.Errorf("idle crash event: %+v", ev)
	}
	if rep := e.rec.waitFor(t, pool.EventReplaced, id); rep.Err != nil {
		t.Errorf("replacement failed: %v", rep.Err)
	}
}

func TestInvokeTimeoutKillsAndReplaces(t *testing.T) {
	e := newEnv(t, pool.Config{})
	s := e.spec("slow")
	s.InvokeTimeout = 200 * time.Millisecond
	id := e.start(t, s)
	start := time.Now()
	_, err := e.pool.Invoke(context.Background(), id, []byte(`{"op":"sleep","ms":10000}`))
	if !errors.Is(err, pool.ErrTimeout) {
		t.Fatalf("slow invocation: got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
	e.rec.waitFor(t, pool.EventTimedOut, id)
	rep := e.rec.waitFor(t, pool.EventReplaced, id)
	if rep.Err != nil {
		t.Fatalf("replacement: %v", rep.Err)
	}
	if out := invoke(t, e.pool, rep.Replacement, `{"op":"sleep","ms":1}`); !strings.Contains(out, "slept_ms") {
		t.Errorf("replacement: %s", out)
	}
}

func TestNoReplace(t *testing.T) {
	e := newEnv(t, pool.Config{NoReplace: true})
	id := e.start(t, e.spec("norep"))
	_, _ = e.pool.Invoke(context.Background(), id, []byte(`{"op":"exit","code":1}`))
	e.rec.waitFor(t, pool.EventCrashed, id)
	time.Sleep(100 * time.Millisecond)
	if n := len(e.pool.Instances()); n != 0 {
		t.Errorf("NoReplace: %d instances, want 0", n)
	}
}

func TestReadinessBounded(t *testing.T) {
	e := newEnv(t, pool.Config{})
	for _, tc := range []struct {
		name    string
		command []string
		timeout time.Duration
		want    string
	}{
		{"never ready", []string{"sleep", "30"}, 300 * time.Millisecond, "deadline exceeded"},
		{"exits before ready", []string{"false"}, 10 * time.Second, "exited with status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec("unready")
			s.Command, s.ReadyTimeout = tc.command, tc.timeout
			start := time.Now()
			_, err := e.pool.Start(context.Background(), s)
			if !errors.Is(err, pool.ErrNotReady) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start: got %v, want ErrNotReady mentioning %q", err, tc.want)
			}
			if d := time.Since(start); d > tc.timeout+3*time.Second {
				t.Errorf("start gave up after %v", d)
			}
			e.rec.waitFor(t, pool.EventStartFailed, "")
			if left, _ := e.rt.List(context.Background()); len(left) != 0 {
				t.Errorf("failed start left instances: %+v", left)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, pool.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 4 {
		wg.Go(func() {
			id, err := e.pool.Start(context.Background(), e.spec(fmt.Sprintf("c%d", i%2)))
			if err != nil {
				errs <- err
				return
			}
			for j := range 10 {
				body := fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)
				out, err := e.pool.Invoke(context.Background(), id, []byte(body))
				if err != nil || string(out) != body {
					errs <- fmt.Errorf("invoke %s: %s %v", body, out, err)
				}
			}
		})
	}
	for range 20 {
		wg.Go(func() { e.pool.Instances(); _, _ = e.pool.Sweep(context.Background(), e.clock.Now()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(e.pool.Instances()); n != 4 {
		t.Errorf("%d instances, want 4", n)
	}
}

func TestStopDuringInvocation(t *testing.T) {
	e := newEnv(t, pool.Config{})
	id := e.start(t, e.spec("stopme"))
	errc := make(chan error, 1)
	go func() {
		_, err := e.pool.Invoke(context.Background(), id, []byte(`{"op":"sleep","ms":10000}`))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := e.pool.Stop(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, pool.ErrStopped) {
			t.Errorf("invocation on a stopped instance: got %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("invocation still running after stop")
	}
	time.Sleep(50 * time.Millisecond)
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for _, ev := range e.rec.events {
		if ev.Kind == pool.EventCrashed || ev.Kind == pool.EventReplaced {
			t.Errorf("stop reported as %s", ev.Kind)
		}
	}
}

// TestBusyUntilLastInvocationEnds: with two invocations in flight on one
// instance, the end of the first does not make it idle (and expirable).
func TestBusyUntilLastInvocationEnds(t *testing.T) {
	e := newEnv(t, pool.Config{})
	id := e.start(t, e.spec("overlap"))
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.Invoke(context.Background(), id, []byte(`{"op":"sleep","ms":600}`))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	invoke(t, e.pool, id, `{"quick":true}`)
	if infos := e.pool.Instances(); len(infos) != 1 || infos[0].State != pool.StateBusy {
		t.Errorf("with one invocation still running: %+v, want busy", infos)
	}
	if ids, _ := e.pool.Sweep(context.Background(), e.clock.Add(time.Hour)); len(ids) != 0 {
		t.Errorf("instance with an invocation in flight expired")
	}
	if err := <-done; err != nil {
		t.Fatalf("long invocation: %v", err)
	}
	if infos := e.pool.Instances(); len(infos) != 1 || infos[0].State != pool.StateIdle {
		t.Errorf("after both invocations: %+v, want idle", infos)
	}
}
