package sim

import (
	"math"
	"testing"

	"github.com/sluice-gpu/sluice/daemon/core"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// newTestEngine is an engine with one GPU of mem bytes and no scheduler,
// for driving act, roomAt and the running set directly.
func newTestEngine(mem int64) (*engine, *simGPU) {
	m := DefaultGPUModel()
	m.MemBytes = mem
	g := &simGPU{ctrs: map[core.CtrID]*simCtr{}}
	e := &engine{m: m, gpus: []*simGPU{g}, ctrs: map[core.CtrID]*simCtr{}, res: &Result{}}
	e.slow = []float64{1, 1, m.Slowdown(2), m.Slowdown(3)}
	return e, g
}

// addCtr puts container id of the given footprint on g, with on bytes of
// it on the GPU.
func addCtr(e *engine, g *simGPU, id core.CtrID, bytes, on int64) *simCtr {
	c := &simCtr{id: id, gpu: g, on: on, bytes: bytes}
	e.ctrs[id], g.ctrs[id] = c, c
	g.resident += on
	return c
}

// TestPrefetchWaitsForOwnEviction: a container's memory cannot move back to
// the GPU while it is still on its way to the host (nor leave while it is
// still arriving): the second move starts when the first one ends.
func TestPrefetchWaitsForOwnEviction(t *testing.T) {
	e, g := newTestEngine(16e9)
	c := addCtr(e, g, 1, 3e9, 3e9)
	move := core.TimeOf(3e9 / e.m.LinkBytesPerSec)
	e.act(core.Action{Kind: core.ActEvict, Ctr: 1, Bytes: 3e9})
	e.act(core.Action{Kind: core.ActPrefetch, Ctr: 1, Bytes: 3e9})
	if c.memReady != 2*move {
		t.Fatalf("prefetch right after its eviction lands at %v, want %v (after the eviction's %v)", c.memReady, 2*move, move)
	}
	e.act(core.Action{Kind: core.ActEvict, Ctr: 1, Bytes: 3e9})
	if c.evicted != 3*move {
		t.Fatalf("eviction right after a prefetch ends at %v, want %v", c.evicted, 3*move)
	}
}

// TestRoomAtNeverFits: when memory does not fit even after every eviction
// in flight, roomAt does not wait for them (the overflow is demand-paged).
func TestRoomAtNeverFits(t *testing.T) {
	e, g := newTestEngine(10)
	g.resident = 9
	g.evicting = []pendingEvict{{end: 100, bytes: 1}, {end: 200, bytes: 1}}
	if got := e.roomAt(g, 3, 5); got != 5 {
		t.Fatalf("roomAt = %v, want 5 (3 more bytes never fit in 10 with 9 resident)", got)
	}
	if got := e.roomAt(g, 1, 5); got != 200 {
		t.Fatalf("roomAt = %v, want 200 (1 byte fits once both evictions end)", got)
	}
	g.resident = 7 // 7 + 2 evicting + 2 more fit once the first eviction ends
	if got := e.roomAt(g, 2, 5); got != 100 {
		t.Fatalf("roomAt = %v, want 100", got)
	}
}

// TestPagingSharesFaultBandwidth: two invocations demand-paging at once
// share the calibrated fault bandwidth (it is the GPU's, not each
// invocation's) and do not compute meanwhile; their kernels then share the
// GPU by the slowdown curve.
func TestPagingSharesFaultBandwidth(t *testing.T) {
	const bytes, warm = 1.5e9, 1.0
	e, g := newTestEngine(16e9)
	e.w = &workload.Workload{Functions: []workload.Function{{Name: "f", WarmSec: warm, MemBytes: bytes}}}
	e.res.Records = make([]Record, 2)
	for i := 0; i < 2; i++ {
		c := addCtr(e, g, core.CtrID(i+1), bytes, 0) // memory on the host
		e.startExec(core.InvID(i), c)
	}
	alone := bytes / e.m.FaultBytesPerSec // one page-in at the full bandwidth
	e.now = core.TimeOf(alone)
	e.advance(g)
	for _, r := range g.run {
		if math.Abs(r.fault-alone/2) > 1e-6 || r.remain != warm {
			t.Fatalf("after %.3f s: fault left %.3f s, work left %.3f s; want %.3f and %.1f (half the bandwidth each, no compute)", alone, r.fault, r.remain, alone/2, warm)
		}
	}
	e.now = core.TimeOf(2 * alone)
	e.finish(g) // the event reschedule set for the end of the page-ins
	e.now += core.TimeOf(0.5 * e.m.Slowdown(2))
	e.advance(g)
	for _, r := range g.run {
		if r.fault > 1e-6 || math.Abs(r.remain-0.5) > 1e-6 {
			t.Fatalf("after both paged in and 0.5 s of two-way sharing: fault left %.3f s, work left %.3f s; want 0 and 0.5", r.fault, r.remain)
		}
	}
}

// TestPartialMoves: a partial eviction (Improvements.PartialEvict) moves
// only the bytes the action names, takes the link time for those bytes, and
// the container's swap-in moves back only what it lacks; a run on a
// container that lacks bytes demand-pages exactly those.
func TestPartialMoves(t *testing.T) {
	e, g := newTestEngine(16e9)
	c := addCtr(e, g, 1, 3e9, 3e9)
	gb := core.TimeOf(1e9 / e.m.LinkBytesPerSec)
	e.act(core.Action{Kind: core.ActEvict, Ctr: 1, Bytes: 1e9})
	if c.evicted != gb || c.on != 2e9 || g.resident != 2e9 {
		t.Fatalf("evict 1 GB of 3: ends %v (want %v), on GPU %d and %d (want 2e9)", c.evicted, gb, c.on, g.resident)
	}
	e.act(core.Action{Kind: core.ActPrefetch, Ctr: 1, Bytes: 1e9})
	if c.memReady != 2*gb || c.on != 3e9 || g.resident != 3e9 {
		t.Fatalf("swap-in of the missing 1 GB: lands %v (want %v), on GPU %d and %d (want 3e9)", c.memReady, 2*gb, c.on, g.resident)
	}
	e.act(core.Action{Kind: core.ActEvict, Ctr: 1, Bytes: 2e9})
	e.now = c.evicted
	e.w = &workload.Workload{Functions: []workload.Function{{Name: "f", WarmSec: 1, MemBytes: 3e9}}}
	e.res.Records = make([]Record, 1)
	e.startExec(0, c)
	if e.res.FaultBytes != 2e9 || c.on != 3e9 {
		t.Fatalf("run lacking 2 GB demand-paged %g bytes (want 2e9), on GPU %d", e.res.FaultBytes, c.on)
	}
}
