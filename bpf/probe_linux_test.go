//go:build linux && (amd64 || arm64)

package bpf_test

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/internal/bpftest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

func open(t *testing.T, lib string, launches bool) *bpf.Probe {
	t.Helper()
	return openOpts(t, &bpf.Options{Library: lib, Launches: launches})
}

func openOpts(t *testing.T, opts *bpf.Options) *bpf.Probe {
	t.Helper()
	testenv.RequireRoot(t)
	p, err := bpf.Open(opts)
	if errors.Is(err, bpf.ErrNotSupported) {
		testenv.Skip(t, "skipping: "+err.Error())
	}
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func counters(t *testing.T, p *bpf.Probe, cg uint64) bpf.Counters {
	t.Helper()
	all, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return all[cg]
}

// TestExactCounts runs one scripted process in its own cgroup and checks
// every counter of that cgroup.
func TestExactCounts(t *testing.T) {
	lib, caller := bpftest.Build(t)
	for _, perFunction := range []bool{false, true} {
		t.Run(map[bool]string{false: "multi", true: "per-function"}[perFunction], func(t *testing.T) {
			p := openOpts(t, &bpf.Options{Library: lib, Launches: true, PerFunctionUprobes: perFunction})
			testExactCounts(t, p, lib, caller)
		})
	}
}

func testExactCounts(t *testing.T, p *bpf.Probe, lib, caller string) {
	cg := bpftest.NewCgroup(t)
	cg.Run(t, caller, lib,
		"launch=7", "ptsz=3", "ex=2", "graph=5",
		"alloc=1000", "alloc=4096", "managed=65536", "free", // frees the managed one
		"badalloc",
		"htod=100", "htod=28", "dtoh=200", "dtod=300", "memcpy=400", "htodasync=50",
		"prefetch=8192", "prefetch=8",
		"ctxsync", "streamsync=2000", "eventsync=0", "eventsync=0",
	)
	c := counters(t, p, cg.ID)

	want := bpf.Counters{
		Launches:          [bpf.LaunchKinds]uint64{7, 3, 2, 5},
		Syncs:             [bpf.SyncKinds]uint64{1, 1, 2},
		Allocs:            [bpf.AllocKinds]uint64{2, 1, 0},
		AllocBytes:        [bpf.AllocKinds]uint64{5096, 65536, 0},
		Frees:             1,
		FreedBytes:        65536,
		ExitReleased:      2,
		ExitReleasedBytes: 5096,
		Memcpys:           [bpf.MemcpyKinds]uint64{3, 1, 1, 1},
		MemcpyBytes:       [bpf.MemcpyKinds]uint64{178, 200, 300, 400},
		Prefetches:        2,
		PrefetchBytes:     8200,
		FailedCalls:       1,
	}
	if c.SyncNs[bpf.SyncStream] < uint64(2*time.Millisecond) {
		t.Errorf("stream sync wait %d ns, want >= 2 ms (the double sleeps 2 ms)", c.SyncNs[bpf.SyncStream])
	}
	var hist uint64
	for _, n := range c.SyncHist {
		hist += n
	}
	if hist != 4 {
		t.Errorf("sync histogram holds %d waits, want 4", hist)
	}
	for k, ns := range c.MemcpyNs {
		if ns == 0 {
			t.Errorf("synchronous %s copies took 0 ns", bpf.MemcpyNames()[k])
		}
	}
	got := c
	got.SyncNs, got.SyncHist = [bpf.SyncKinds]uint64{}, [bpf.SyncHistBuckets]uint64{}
	got.MemcpyNs = [bpf.MemcpyKinds]uint64{}
	if got != want {
		t.Errorf("counters of cgroup %d:\n got %+v\nwant %+v", cg.ID, got, want)
	}
	if live := c.LiveBytes(); live != 0 {
		t.Errorf("live bytes after exit = %d, want 0", live)
	}
}

// TestEventsExecAndExit checks the ring buffer's rare events and that exec
// and exit release what the process still held.
func TestEventsExecAndExit(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, false)
	cg := bpftest.NewCgroup(t)

	events := make(chan bpf.Event, 16)
	go func() {
		for {
			e, err := p.ReadEvent()
			if err != nil {
				close(events)
				return
			}
			if e.CgroupID == cg.ID {
				events <- e
			}
		}
	}()
	pp := cg.StartPaused(t, caller, lib, "alloc=100", "alloc=1", "exec", "alloc=200", "badalloc", "wait")
	pid := uint32(pp.PID())
	pp.Continue(t)

	want := []struct {
		kind         bpf.EventKind
		bytes, count uint64
		comm         string
	}{
		{bpf.EventFirstAlloc, 100, 1, "caller"},
		{bpf.EventExec, 101, 2, "exe"}, // re-exec'd through /proc/self/exe
		{bpf.EventFirstAlloc, 200, 1, "exe"},
		{bpf.EventAllocFailed, 0, 0, "exe"},
		{bpf.EventExit, 200, 1, "exe"},
	}
	for i, w := range want {
		select {
		case e := <-events:
			if e.Kind != w.kind || e.Bytes != w.bytes || e.Count != w.count || e.PID != pid || e.Comm != w.comm {
				t.Errorf("event %d = %+v, want kind %v bytes %d count %d pid %d comm %s", i, e, w.kind, w.bytes, w.count, pid, w.comm)
			}
			if w.kind == bpf.EventAllocFailed && e.Result != 1 {
				t.Errorf("failed allocation result = %d, want 1 (CUDA_ERROR_INVALID_VALUE)", e.Result)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%v) did not arrive", i, w.kind)
		}
	}
	c := counters(t, p, cg.ID)
	if c.ExitReleased != 3 || c.ExitReleasedBytes != 301 || c.LiveBytes() != 0 || c.FailedCalls != 1 {
		t.Errorf("after exec and exit: released %d allocations, %d bytes, live %d, failed %d; want 3, 301, 0, 1",
			c.ExitReleased, c.ExitReleasedBytes, c.LiveBytes(), c.FailedCalls)
	}
}

// TestLiveBytesWhileRunning reads a paused process's live allocations.
func TestLiveBytesWhileRunning(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, false)
	cg := bpftest.NewCgroup(t)
	pp := cg.StartPaused(t, caller, lib, "alloc=1000", "managed=3000", "alloc=5000", "free", "wait")
	c := counters(t, p, cg.ID)
	if c.LiveBytes() != 4000 || c.TotalAllocBytes() != 9000 || c.FreedBytes != 5000 {
		t.Errorf("live %d, allocated %d, freed %d; want 4000, 9000, 5000", c.LiveBytes(), c.TotalAllocBytes(), c.FreedBytes)
	}
	pp.Continue(t)
	if c := counters(t, p, cg.ID); c.LiveBytes() != 0 {
		t.Errorf("live bytes after exit = %d, want 0", c.LiveBytes())
	}
}

// TestConcurrentProcesses runs several processes at once, each in its own
// cgroup, plus two sharing one, and checks every cgroup's exact counts.
func TestConcurrentProcesses(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, true)
	const n = 4
	cgs := make([]bpftest.Cgroup, n)
	for i := range cgs {
		cgs[i] = bpftest.NewCgroup(t)
	}
	shared := bpftest.NewCgroup(t)
	errs := make(chan error, n+2)
	run := func(cg bpftest.Cgroup, launches int) {
		cmd, done := cg.Command(t, caller, lib, "launch="+itoa(launches), "alloc=4096", "htod=4096", "streamsync=0")
		defer done()
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = errors.New(err.Error() + ": " + string(out))
		}
		errs <- err
	}
	for i, cg := range cgs {
		go run(cg, 10000*(i+1))
	}
	go run(shared, 3000)
	go run(shared, 4000)
	for range n + 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	check := func(cg bpftest.Cgroup, procs, launches uint64) {
		c := all[cg.ID]
		if c.Launches[bpf.LaunchKernel] != launches || c.Allocs[bpf.AllocDevice] != procs ||
			c.AllocBytes[bpf.AllocDevice] != 4096*procs || c.MemcpyBytes[bpf.MemcpyHtoD] != 4096*procs ||
			c.Syncs[bpf.SyncStream] != procs || c.LiveBytes() != 0 {
			t.Errorf("cgroup %s: launches %d allocs %d (%d B) htod %d B syncs %d live %d; want %d launches, %d of everything else",
				cg.Path, c.Launches[0], c.Allocs[0], c.AllocBytes[0], c.MemcpyBytes[0], c.Syncs[1], c.LiveBytes(), launches, procs)
		}
	}
	for i, cg := range cgs {
		check(cg, 1, uint64(10000*(i+1)))
	}
	check(shared, 2, 7000)
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDetachReattach checks that Close detaches (calls after it are not
// seen by a later probe) and that a second Open attaches afresh.
func TestDetachReattach(t *testing.T) {
	lib, caller := bpftest.Build(t)
	cg := bpftest.NewCgroup(t)

	p1 := open(t, lib, true)
	cg.Run(t, caller, lib, "launch=5", "alloc=10")
	if c := counters(t, p1, cg.ID); c.Launches[0] != 5 || c.AllocBytes[0] != 10 {
		t.Fatalf("first attach: %d launches, %d bytes; want 5, 10", c.Launches[0], c.AllocBytes[0])
	}
	if err := p1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := p1.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	cg.Run(t, caller, lib, "launch=100", "alloc=1000") // unobserved

	p2 := open(t, lib, true)
	cg.Run(t, caller, lib, "launch=7", "alloc=20")
	if c := counters(t, p2, cg.ID); c.Launches[0] != 7 || c.AllocBytes[0] != 20 {
		t.Errorf("reattach: %d launches, %d bytes; want 7, 20", c.Launches[0], c.AllocBytes[0])
	}
}

// TestLaunchProbingOff checks the default: launches are not probed, the rest is.
func TestLaunchProbingOff(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, false)
	if slices.Contains(p.Attached(), "cuLaunchKernel") {
		t.Errorf("cuLaunchKernel probed with Launches off: %v", p.Attached())
	}
	cg := bpftest.NewCgroup(t)
	cg.Run(t, caller, lib, "launch=5", "ctxsync")
	if c := counters(t, p, cg.ID); c.TotalLaunches() != 0 || c.Syncs[bpf.SyncCtx] != 1 {
		t.Errorf("launches %d, ctx syncs %d; want 0, 1", c.TotalLaunches(), c.Syncs[bpf.SyncCtx])
	}
}

// TestForget deletes a cgroup's counters.
func TestForget(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, true)
	cg := bpftest.NewCgroup(t)
	cg.Run(t, caller, lib, "launch=1")
	if err := p.Forget(cg.ID); err != nil {
		t.Fatal(err)
	}
	if all, _ := p.Counters(); func() bool { _, ok := all[cg.ID]; return ok }() {
		t.Errorf("cgroup %d still has counters after Forget", cg.ID)
	}
	if err := p.Forget(cg.ID); err != nil {
		t.Errorf("forget twice: %v", err)
	}
	if d, err := p.Drops(); err != nil || d != (bpf.Drops{}) {
		t.Errorf("drops = %+v, %v; want none", d, err)
	}
}

func TestNotSupported(t *testing.T) {
	_, err := bpf.Open(&bpf.Options{Library: "/nonexistent/libcuda.so.1"})
	if !errors.Is(err, bpf.ErrNotSupported) {
		t.Errorf("missing library: %v, want ErrNotSupported", err)
	}
	if os.Geteuid() != 0 {
		_, err := bpf.Open(&bpf.Options{Library: "/bin/true"})
		if !errors.Is(err, bpf.ErrNotSupported) || !strings.Contains(err.Error(), "root") {
			t.Errorf("not root: %v, want ErrNotSupported saying root is needed", err)
		}
	}
	testenv.RequireRoot(t)
	_, err = bpf.Open(&bpf.Options{Library: "/bin/true", Launches: true})
	if !errors.Is(err, bpf.ErrNotSupported) {
		t.Errorf("library without driver functions: %v, want ErrNotSupported", err)
	}
}

// TestThreadExitKeepsAllocations: a thread that allocates and exits does
// not release the process's memory; the process's exit does.
func TestThreadExitKeepsAllocations(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, false)
	cg := bpftest.NewCgroup(t)
	pp := cg.StartPaused(t, caller, lib, "thread=4096", "thread=100", "wait")
	if c := counters(t, p, cg.ID); c.LiveBytes() != 4196 || c.ExitReleased != 0 {
		t.Errorf("after two threads exited: live %d, released %d; want 4196, 0", c.LiveBytes(), c.ExitReleased)
	}
	pp.Continue(t)
	if c := counters(t, p, cg.ID); c.LiveBytes() != 0 || c.ExitReleasedBytes != 4196 || c.ExitReleased != 2 {
		t.Errorf("after process exit: live %d, released %d (%d B); want 0, 2 (4196 B)", c.LiveBytes(), c.ExitReleased, c.ExitReleasedBytes)
	}
}

// TestSetLaunches turns launch probing on and off while attached.
func TestSetLaunches(t *testing.T) {
	lib, caller := bpftest.Build(t)
	p := open(t, lib, false)
	cg := bpftest.NewCgroup(t)
	steps := []struct {
		on   bool
		want uint64 // launches counted after running launch=5
	}{{false, 0}, {true, 5}, {true, 10}, {false, 10}, {true, 15}}
	for i, st := range steps {
		if err := p.SetLaunches(st.on); err != nil {
			t.Fatalf("step %d: SetLaunches(%v): %v", i, st.on, err)
		}
		if got := slices.Contains(p.Attached(), "cuLaunchKernel"); got != st.on {
			t.Errorf("step %d: cuLaunchKernel attached = %v, want %v", i, got, st.on)
		}
		cg.Run(t, caller, lib, "launch=5", "ctxsync")
		c := counters(t, p, cg.ID)
		if c.Launches[bpf.LaunchKernel] != st.want || c.Syncs[bpf.SyncCtx] != uint64(i+1) {
			t.Errorf("step %d: launches %d, syncs %d; want %d, %d", i, c.Launches[0], c.Syncs[0], st.want, i+1)
		}
	}
	p.Close()
	if err := p.SetLaunches(true); err == nil {
		t.Errorf("SetLaunches after Close: no error")
	}
}
