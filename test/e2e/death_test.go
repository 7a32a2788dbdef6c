//go:build linux

package e2e_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/sluice-gpu/sluice/cgo/shimctl"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/dockertest"
	"github.com/sluice-gpu/sluice/internal/emugpu"
)

// TestContainerDeath kills a gpu-matmul container (SIGKILL from the engine,
// as the OOM killer or an operator would) in the middle of an invocation,
// next to a bystander instance of the same function on the same emulated
// GPU, and checks every layer's reaction: the invocation fails with
// ErrCrashed, the pool reports the crash (busy, status 137) and starts a
// replacement, whose shim registers anew; the dead process's shim session
// ends; the emulated GPU reaps the dead process; the bystander's session,
// memory accounting and invocations are untouched.
func TestContainerDeath(t *testing.T) {
	rt, s, devFile := dockerSetup(t, "e2e-death")
	cli := dockertest.Client(t)
	testDeath(t, rt, s, devFile, func(ctx context.Context, id runtime.ID, _ *shimctl.Session) error {
		_, err := cli.ContainerKill(ctx, string(id), client.ContainerKillOptions{Signal: "KILL"})
		return err
	})
}

// TestProcessDeath: the same through the process backend, the function
// process killed with SIGKILL.
func TestProcessDeath(t *testing.T) {
	rt, s, devFile, _ := processSetup(t, "e2e-death-proc")
	testDeath(t, rt, s, devFile, func(_ context.Context, _ runtime.ID, sess *shimctl.Session) error {
		return unix.Kill(int(sess.Peer.PID), unix.SIGKILL)
	})
}

// killFunc kills an instance whose shim session is sess.
type killFunc func(ctx context.Context, id runtime.ID, sess *shimctl.Session) error

func testDeath(t *testing.T, rt runtime.Runtime, s pool.Spec, devFile string, kill killFunc) {
	s = withEnv(s, slowKernels)
	srt := newShimRuntime(t, rt)
	events := make(chan pool.Event, 64)
	p := pool.New(srt, pool.Config{Logger: testLogger(t), StopGrace: -1, OnEvent: func(e pool.Event) { events <- e }})
	t.Cleanup(func() { p.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()

	victim, err := p.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	vs := srt.session(t, victim, 10*time.Second)
	bystander, err := p.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	bs := srt.session(t, bystander, 10*time.Second)
	quick := matmulArgs{MB: 1, Iters: 1, N: 16}
	if _, err := invokeMatmul(ctx, p, bystander, quick); err != nil {
		t.Fatal(err)
	}

	// A long invocation (40 kernels of ~105 ms modelled time); kill the
	// container once it holds its memory.
	long := matmulArgs{MB: 4, Iters: 40, N: 64}
	invoked := make(chan error, 1)
	go func() {
		_, err := invokeMatmul(ctx, p, victim, long)
		invoked <- err
	}()
	if !eventually(15*time.Second, func() bool {
		u, _ := vs.Usage()
		return u.Live[shimctl.KindManaged] == long.bytes()
	}) {
		t.Fatalf("the victim never held its memory")
	}
	killed := time.Now()
	if err := kill(ctx, victim, vs); err != nil {
		t.Fatalf("kill victim: %v", err)
	}

	// The invocation fails as a crash.
	select {
	case err := <-invoked:
		if !errors.Is(err, pool.ErrCrashed) {
			t.Errorf("invocation on the killed container: %v, want ErrCrashed", err)
		}
	case <-ctx.Done():
		t.Fatal("the invocation on the killed container never returned")
	}
	// The shim session ends (death detection) and is forgotten.
	select {
	case <-vs.Done():
		t.Logf("session ended %v after the kill: %v", time.Since(killed).Round(time.Millisecond), vs.Err())
		if vs.Err() == nil {
			t.Errorf("ended session has no reason")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the killed process's shim session is still live")
	}
	if r, err := vs.EvictToHost(ctx); !errors.Is(err, shimctl.ErrSessionClosed) {
		t.Errorf("command to the dead session: %+v %v, want ErrSessionClosed", r, err)
	}
	// The pool reports the crash and replaces the instance.
	var crashed, replaced *pool.Event
	for crashed == nil || replaced == nil {
		select {
		case e := <-events:
			switch {
			case e.Kind == pool.EventCrashed && e.Instance == victim:
				crashed = &e
			case e.Kind == pool.EventReplaced && e.Instance == victim:
				replaced = &e
			case e.Instance == bystander && e.Kind != pool.EventReady:
				t.Errorf("event about the bystander: %+v", e)
			}
		case <-ctx.Done():
			t.Fatalf("pool events: crashed %+v, replaced %+v", crashed, replaced)
		}
	}
	if !crashed.Busy || crashed.Exit == nil || crashed.Exit.Code != 137 {
		t.Errorf("crash event %+v (exit %v), want busy, status 137", crashed, crashed.Exit)
	}
	if replaced.Err != nil || replaced.Replacement == "" {
		t.Fatalf("replacement: %+v", replaced)
	}
	rs := srt.session(t, replaced.Replacement, 10*time.Second)
	if rs.Peer.PID == vs.Peer.PID || rs.FunctionID != s.Function {
		t.Errorf("replacement session %+v, victim's %+v", rs.Peer, vs.Peer)
	}
	infos, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == victim {
			t.Errorf("the killed instance %s was not removed: %+v", shortID(victim), in)
		}
	}
	if len(infos) != 2 {
		t.Errorf("instances after the death: %+v, want the bystander and the replacement", infos)
	}

	// The emulated GPU reaped the dead process (at the replacement's
	// attach): two live processes, nothing of the victim's left.
	var d emugpu.Device
	if !eventually(5*time.Second, func() bool {
		d, err = emugpu.Read(devFile)
		return err == nil && len(d.Procs) == 2 && d.Reaped >= 1 && d.UsedResident == 0
	}) {
		t.Errorf("emulated GPU after the death: %d live processes %+v, %d reaped, %d bytes resident; want 2, >= 1, 0",
			len(d.Procs), d.Procs, d.Reaped, d.UsedResident)
	}

	// The bystander is untouched.
	select {
	case <-bs.Done():
		t.Fatalf("the bystander's session ended: %v", bs.Err())
	default:
	}
	if srt.server(t, bystander).srv.Session(bs.Peer.PID) != bs {
		t.Errorf("the bystander's session is no longer listed")
	}
	for _, id := range []runtime.ID{bystander, replaced.Replacement} {
		if _, err := invokeMatmul(ctx, p, id, quick); err != nil {
			t.Errorf("after the death: %v", err)
		}
	}
	if u, ok := bs.Usage(); !ok || u.Allocs[shimctl.KindManaged] != 8 || u.Frees != 8 || u.LiveBytes() != 0 {
		t.Errorf("bystander's usage page: %+v ok=%v, want its own 2 invocations only", u, ok)
	}
}
