//go:build linux

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/cgo/shimctl"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/internal/emugpu"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// buildWarmFn compiles testdata/warmfn.c (a test function that keeps its
// GPU memory between invocations) with the host's gcc, linked against the
// fake driver's soname.
func buildWarmFn(t *testing.T, fake string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testenv.Skip(t, "skipping: no gcc to build testdata/warmfn.c")
	}
	root := testenv.RepoRoot(t)
	out := filepath.Join(shortDir(t), "warmfn")
	cmd := exec.Command(gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
		"-I", filepath.Join(root, "shim", "include"), "-o", out, filepath.Join("testdata", "warmfn.c"),
		"-L", filepath.Dir(fake), "-l:libcuda.so.1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build warmfn: %v\n%s", err, b)
	}
	return out
}

// warmResult is warmfn's answer.
type warmResult struct {
	OK      bool  `json:"ok"`
	Touches int64 `json:"touches"`
}

func invokeWarm(ctx context.Context, p *pool.Pool, id runtime.ID, wantTouches int64) error {
	out, err := p.Invoke(ctx, id, nil)
	if err != nil {
		return fmt.Errorf("invoke %s: %w", id, err)
	}
	var r warmResult
	if err := json.Unmarshal(out, &r); err != nil || !r.OK || r.Touches != wantTouches {
		return fmt.Errorf("invoke %s: %s (%v), want ok after %d touches", id, out, err, wantTouches)
	}
	return nil
}

// TestDaemonMovesMemoryBetweenWarmFunctions is the memory half of Sluice's
// design end to end: two warm functions whose memory does not fit on the
// (emulated, 64 MiB) GPU together, each keeping 40 MiB between invocations.
// Left alone they thrash: each invocation demand-faults what the other's
// pushed out. When the daemon, before dispatching to one, evicts the other
// and prefetches the one (what the scheduler does when flows turn Active
// and Inactive), every invocation runs with its memory resident: no demand
// faults, the evicted function's memory untouched on the host, results
// right.
func TestDaemonMovesMemoryBetweenWarmFunctions(t *testing.T) {
	art := needArtifacts(t)
	bin := buildWarmFn(t, art.fake)
	gpu := art.gpuConfig(t)
	devFile := gpu.DeviceFile()
	rt, err := process.New(process.Config{Instance: label, StateDir: shortDir(t), GPU: gpu, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	srt := newShimRuntime(t, rt)
	p := pool.New(srt, pool.Config{Logger: testLogger(t), StopGrace: -1})
	t.Cleanup(func() { p.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()

	const mb = 40
	const size = uint64(mb) << 20
	spec := func(name string) pool.Spec {
		return pool.Spec{Spec: runtime.Spec{Function: name, Generation: 1, Command: []string{bin}, GPU: true,
			Env: map[string]string{"WARMFN_MB": fmt.Sprint(mb), "FAKECUDA_CAPACITY": "64M", "FAKECUDA_QUEUE_DEPTH": "0"}},
			ReadyTimeout: 20 * time.Second, InvokeTimeout: 30 * time.Second}
	}
	type fn struct {
		name    string
		id      runtime.ID
		sess    *shimctl.Session
		touches int64
	}
	var fns [2]*fn
	for i, name := range []string{"warm-a", "warm-b"} {
		id, err := p.Start(ctx, spec(name))
		if err != nil {
			t.Fatal(err)
		}
		fns[i] = &fn{name: name, id: id, sess: srt.session(t, id, 10*time.Second), touches: 1}
	}
	slot := func(f *fn) emugpu.Proc {
		t.Helper()
		s, err := emuProcOf(devFile, f.sess.ClaimedPID)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	invoke := func(f *fn) {
		t.Helper()
		f.touches++
		if err := invokeWarm(ctx, p, f.id, f.touches); err != nil {
			t.Fatal(err)
		}
	}

	// Warm and idle, each holds its memory (managed: the shim converted
	// the cuMemAlloc_v2), and they do not fit together.
	d, err := emugpu.Read(devFile)
	if err != nil {
		t.Fatal(err)
	}
	if d.Capacity != 64<<20 {
		t.Fatalf("emulated GPU capacity %d, want 64 MiB", d.Capacity)
	}
	for _, f := range fns {
		if u, ok := f.sess.Usage(); !ok || u.Live[shimctl.KindManaged] != size {
			t.Errorf("%s idle: usage %+v, want %d live managed bytes", f.name, u, size)
		}
		if s := slot(f); s.ManagedBytes != size || s.DeviceBytes != 0 {
			t.Errorf("%s on the emulated GPU: %+v, want %d managed bytes", f.name, s, size)
		}
	}
	if a := slot(fns[0]); a.ResidentBytes >= size {
		t.Errorf("warm-a still fully resident (%d) after warm-b's start: the device is not oversubscribed", a.ResidentBytes)
	}

	// Left alone: each invocation faults back what the other pushed out.
	for _, f := range fns {
		before := slot(f)
		invoke(f)
		if after := slot(f); after.FaultBytes == before.FaultBytes {
			t.Errorf("%s without the daemon: no demand faults (%+v): the test does not oversubscribe", f.name, after)
		}
	}

	// With the daemon's moves: evict the other, prefetch the one, invoke.
	for round, i := range []int{0, 1, 0, 1} {
		f, other := fns[i], fns[1-i]
		r, err := other.sess.EvictToHost(ctx)
		if err != nil || r.Err() != nil || r.Bytes != size {
			t.Fatalf("round %d: evict %s: %+v %v, want %d bytes", round, other.name, r, err, size)
		}
		r, err = f.sess.PrefetchToDevice(ctx)
		if err != nil || r.Err() != nil || r.Bytes != size {
			t.Fatalf("round %d: prefetch %s: %+v %v, want %d bytes", round, f.name, r, err, size)
		}
		before, otherBefore := slot(f), slot(other)
		if before.ResidentBytes != size || otherBefore.ResidentBytes != 0 {
			t.Errorf("round %d: after the moves %s has %d resident, %s %d; want %d and 0",
				round, f.name, before.ResidentBytes, other.name, otherBefore.ResidentBytes, size)
		}
		invoke(f)
		after, otherAfter := slot(f), slot(other)
		if after.FaultBytes != before.FaultBytes || after.ResidentBytes != size || otherAfter.ResidentBytes != 0 {
			t.Errorf("round %d: %s's invocation faulted %d bytes (resident %d, %s's %d); want 0 faults, all resident, the other's untouched",
				round, f.name, after.FaultBytes-before.FaultBytes, after.ResidentBytes, other.name, otherAfter.ResidentBytes)
		}
	}
	for _, f := range fns {
		if u, _ := f.sess.Usage(); u.Evictions != 2 || u.Prefetches != 2 || u.Live[shimctl.KindManaged] != size {
			t.Errorf("%s usage page: %+v, want 2 evictions, 2 prefetches, its memory still live", f.name, u)
		}
	}
}
