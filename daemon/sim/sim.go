package sim

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/sluice-gpu/sluice/daemon/core"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// Record is one invocation's history. Times are virtual, from the start.
type Record struct {
	Inv      core.InvID
	Fn       int
	Arrival  core.Time
	Dispatch core.Time // when the core dispatched it (0 if never)
	Start    core.Time // when its kernels started (after any prefetch)
	End      core.Time // when it finished (0 if it did not)
	Cold     bool      // it waited for its container's cold start
	Failed   bool
	GPU      int
}

// Done reports whether the invocation completed.
func (r Record) Done() bool { return r.End > 0 }

// Result is one simulated run.
type Result struct {
	Policy  string
	Config  core.Config
	Prewarm int      // Options.Prewarm
	Records []Record // by invocation index
	// BusySec is, per GPU, the time at least one invocation ran.
	BusySec []float64
	// Makespan is the time the last invocation finished (or the run stopped).
	Makespan core.Time
	// Events counts the inputs given to the core (Step and Tick calls).
	Events int
	// Incomplete counts invocations that did not finish before MaxTime.
	Incomplete int
	// StartsCold counts containers started.
	ContainersStarted int
	// Prefetches and Evictions count memory moves and PrefetchBytes and
	// EvictBytes what they moved; FaultBytes is memory demand-paged in.
	Prefetches, Evictions     int
	PrefetchBytes, EvictBytes float64
	FaultBytes                float64
}

// Options configure one run.
type Options struct {
	Model GPUModel
	Core  core.Config
	// MaxTime stops a run that has not drained. Default 100 x the
	// workload's duration.
	MaxTime time.Duration
	// Prewarm is Register.Prewarm for every function (registered in the
	// workload's order at time 0): the core starts that many containers
	// of each in the background, while no request is queued and as its
	// prewarm budget, pool room and memory allow.
	Prewarm int
	// Observe, if set, is called after every input with the scheduler (for
	// tests and debugging; it must not step it).
	Observe func(now core.Time, s *core.Scheduler)
}

type evKind uint8

const (
	kReady evKind = iota + 1
	kMemDone
	kExec
	kGPUDone
	kMonitor
	kWake
)

type simEvent struct {
	at   core.Time
	seq  uint64
	kind evKind
	a    uint64
	b    uint64
	flag bool
}

// eventHeap is written out for simEvent rather than shared with the core's
// heaps; see timerHeap in daemon/core for the measurement.
type eventHeap []simEvent

func evLess(x, y simEvent) bool {
	if x.at != y.at {
		return x.at < y.at
	}
	return x.seq < y.seq
}

func (h *eventHeap) push(e simEvent) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !evLess(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() simEvent {
	s := *h
	e := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && evLess(s[r], s[l]) {
			m = r
		}
		if !evLess(s[m], s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return e
}

type running struct {
	inv    core.InvID
	ctr    *simCtr
	remain float64 // isolated seconds of work left
	fault  float64 // seconds of demand paging left at the full fault bandwidth (done first)
	start  core.Time
}

type simGPU struct {
	idx       int
	run       []running
	last      core.Time
	gen       uint64
	busy      float64
	periodBsy float64
	h2dFree   core.Time
	d2hFree   core.Time
	evicting  []pendingEvict // FIFO on the device-to-host link
	resident  int64
	ctrs      map[core.CtrID]*simCtr
}

// pendingEvict is memory on its way to the host: it still occupies the GPU
// until end.
type pendingEvict struct {
	end   core.Time
	bytes int64
}

type simCtr struct {
	id       core.CtrID
	fn       int
	gpu      *simGPU
	on       int64     // bytes of its memory on the GPU
	memReady core.Time // its latest prefetch lands
	evicted  core.Time // its latest eviction ends
	bytes    int64
	lastUsed core.Time
	busy     bool
}

type engine struct {
	m       GPUModel
	w       *workload.Workload
	s       *core.Scheduler
	noMem   bool
	ev      eventHeap
	seq     uint64
	gpus    []*simGPU
	ctrs    map[core.CtrID]*simCtr
	slow    []float64
	res     *Result
	now     core.Time
	wake    core.Time
	pending int // invocations not yet finished or failed
	err     error
	observe func(core.Time, *core.Scheduler)
}

// Run simulates w under opts.
func Run(ctx context.Context, w *workload.Workload, opts Options) (*Result, error) {
	if err := opts.Model.Validate(); err != nil {
		return nil, err
	}
	if opts.Prewarm < 0 {
		return nil, fmt.Errorf("prewarm %d: must not be negative", opts.Prewarm)
	}
	cfg := opts.Core
	cfg.GPUMemBytes = opts.Model.MemBytes
	cfg.MonitorPeriod = opts.Model.MonitorPeriod
	s, err := core.New(cfg)
	if err != nil {
		return nil, err
	}
	cfg = s.Config()
	if opts.MaxTime == 0 {
		opts.MaxTime = 100 * max(w.Duration, time.Minute)
	}
	e := &engine{observe: opts.Observe, m: opts.Model, w: w, s: s, noMem: cfg.NoMemoryManagement, ctrs: map[core.CtrID]*simCtr{}, wake: core.Never,
		res: &Result{Policy: string(cfg.Policy), Config: cfg, Prewarm: opts.Prewarm, Records: make([]Record, len(w.Invocations)), BusySec: make([]float64, cfg.GPUs)}}
	e.slow = make([]float64, cfg.D+2)
	for k := range e.slow {
		e.slow[k] = opts.Model.Slowdown(k)
	}
	for i := 0; i < cfg.GPUs; i++ {
		e.gpus = append(e.gpus, &simGPU{idx: i, ctrs: map[core.CtrID]*simCtr{}})
	}
	for i, f := range w.Functions {
		if err := e.step(core.Event{Kind: core.EvRegister, Fn: core.FnID(i), Name: f.Name, Bytes: f.MemBytes, Prewarm: opts.Prewarm}); err != nil {
			return nil, err
		}
	}
	for i, inv := range w.Invocations {
		e.res.Records[i] = Record{Inv: core.InvID(i), Fn: inv.Fn, Arrival: core.Time(inv.At)}
	}
	e.pending = len(w.Invocations)
	for _, g := range e.gpus {
		e.push(simEvent{at: core.Time(opts.Model.MonitorPeriod), kind: kMonitor, a: uint64(g.idx)})
	}
	limit := core.Time(opts.MaxTime)
	next := 0
	for e.pending > 0 && e.err == nil {
		if e.res.Events&0xfff == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("stopped at %v of virtual time: %w", e.now, ctx.Err())
		}
		arrAt := core.Never
		if next < len(w.Invocations) {
			arrAt = core.Time(w.Invocations[next].At)
		}
		if len(e.ev) > 0 && e.ev[0].at <= arrAt {
			x := e.ev.pop()
			if x.at > limit {
				break
			}
			e.now = x.at
			e.handle(x)
			continue
		}
		if arrAt == core.Never || arrAt > limit {
			break
		}
		e.now = arrAt
		e.step(core.Arrived(core.InvID(next), core.FnID(w.Invocations[next].Fn)))
		next++
	}
	if e.err != nil {
		return nil, e.err
	}
	for i, g := range e.gpus {
		e.advance(g)
		e.res.BusySec[i] = g.busy
	}
	e.res.Incomplete = e.pending
	e.res.Makespan = e.now
	return e.res, nil
}

func (e *engine) push(x simEvent) {
	e.seq++
	x.seq = e.seq
	e.ev.push(x)
}

// step feeds the core and applies what it asks for.
func (e *engine) step(ev core.Event) error {
	e.res.Events++
	if err := e.s.Step(e.now, ev); err != nil {
		e.err = fmt.Errorf("core rejected %v at %v: %w", ev.Kind, e.now, err)
		return e.err
	}
	e.apply()
	if e.observe != nil {
		e.observe(e.now, e.s)
	}
	return nil
}

func (e *engine) apply() {
	rd := e.s.Ready()
	for _, a := range rd.Actions {
		e.act(a)
	}
	if rd.WakeAt != core.Never && (rd.WakeAt < e.wake || e.wake <= e.now) {
		e.wake = max(rd.WakeAt, e.now)
		e.push(simEvent{at: e.wake, kind: kWake})
	}
}

func (e *engine) handle(x simEvent) {
	switch x.kind {
	case kReady:
		e.step(core.ContainerReady(core.CtrID(x.a)))
	case kMemDone:
		e.step(core.MemoryMoved(core.CtrID(x.a), x.flag))
	case kExec:
		e.startExec(core.InvID(x.a), e.ctrs[core.CtrID(x.b)])
	case kGPUDone:
		g := e.gpus[x.a]
		if x.b == g.gen {
			e.finish(g)
		}
	case kMonitor:
		g := e.gpus[x.a]
		e.advance(g)
		util := math.Min(1, g.periodBsy/e.m.MonitorPeriod.Seconds())
		g.periodBsy = 0
		e.step(core.MonitorTick(g.idx, util, nil))
		e.push(simEvent{at: e.now + core.Time(e.m.MonitorPeriod), kind: kMonitor, a: x.a})
	case kWake:
		if e.now >= e.wake {
			e.wake = core.Never
		}
		e.res.Events++
		e.s.Tick(e.now)
		e.apply()
	}
}

func (e *engine) fn(c *simCtr) workload.Function { return e.w.Functions[c.fn] }

func (e *engine) act(a core.Action) {
	switch a.Kind {
	case core.ActStartContainer:
		g := e.gpus[a.GPU]
		f := e.w.Functions[a.Fn]
		c := &simCtr{id: a.Ctr, fn: int(a.Fn), gpu: g, on: f.MemBytes, bytes: f.MemBytes, lastUsed: e.now}
		e.ctrs[a.Ctr] = c
		g.ctrs[a.Ctr] = c
		g.resident += c.bytes
		e.res.ContainersStarted++
		e.push(simEvent{at: e.now + core.TimeOf(f.ColdSec), kind: kReady, a: uint64(a.Ctr)})
	case core.ActPrefetch:
		c := e.ctrs[a.Ctr]
		g := c.gpu
		// Not before its own eviction has left the GPU: the same pages
		// cannot be on both links at once.
		// The core moves what the container lacks on the GPU (all of it
		// unless it was partly evicted).
		mv := min(max(a.Bytes, 0), c.bytes)
		start := e.roomAt(g, mv, max(e.now, g.h2dFree, c.evicted))
		end := start + core.TimeOf(float64(mv)/e.m.LinkBytesPerSec)
		g.h2dFree = end
		c.memReady = end
		add := min(mv, c.bytes-c.on)
		c.on += add
		g.resident += add
		e.res.Prefetches++
		e.res.PrefetchBytes += float64(mv)
		e.push(simEvent{at: end, kind: kMemDone, a: uint64(a.Ctr), flag: true})
	case core.ActEvict:
		c := e.ctrs[a.Ctr]
		g := c.gpu
		// All of it, or only part (Improvements.PartialEvict).
		mv := min(max(a.Bytes, 0), c.bytes)
		start := max(e.now, g.d2hFree, c.memReady)
		end := start + core.TimeOf(float64(mv)/e.m.LinkBytesPerSec)
		g.d2hFree = end
		c.evicted = end
		g.evicting = append(g.evicting, pendingEvict{end: end, bytes: mv})
		sub := min(mv, c.on)
		c.on -= sub
		g.resident -= sub
		e.res.Evictions++
		e.res.EvictBytes += float64(mv)
		e.push(simEvent{at: end, kind: kMemDone, a: uint64(a.Ctr), flag: false})
	case core.ActDispatch:
		c := e.ctrs[a.Ctr]
		r := &e.res.Records[a.Inv]
		r.Dispatch, r.Cold, r.GPU = e.now, a.Cold, a.GPU
		c.busy = true
		c.lastUsed = e.now
		if c.memReady > e.now {
			e.push(simEvent{at: c.memReady, kind: kExec, a: uint64(a.Inv), b: uint64(a.Ctr)})
		} else {
			e.startExec(a.Inv, c)
		}
	case core.ActStopContainer:
		c := e.ctrs[a.Ctr]
		c.gpu.resident -= c.on
		delete(c.gpu.ctrs, a.Ctr)
		delete(e.ctrs, a.Ctr)
	case core.ActFail:
		e.res.Records[a.Inv].Failed = true
		e.pending--
	}
}

// roomAt returns the first time from t on when bytes more fit on g,
// counting memory still being evicted as occupied until its eviction ends.
// If they never fit, it returns t (the overflow is demand-paged).
func (e *engine) roomAt(g *simGPU, bytes int64, t core.Time) core.Time {
	live := g.evicting[:0]
	for _, p := range g.evicting {
		if p.end > e.now {
			live = append(live, p)
		}
	}
	g.evicting = live
	if g.resident+bytes > e.m.MemBytes {
		return t // no eviction in flight makes room: do not wait for them
	}
	occupied := g.resident
	for _, p := range live {
		if p.end > t {
			occupied += p.bytes
		}
	}
	for _, p := range live {
		if occupied+bytes <= e.m.MemBytes {
			break
		}
		if p.end > t {
			t = p.end
			occupied -= p.bytes
		}
	}
	return t
}

// startExec puts an invocation on its GPU. Memory that is not resident, or
// that does not fit, is demand-paged in at the fault bandwidth.
func (e *engine) startExec(inv core.InvID, c *simCtr) {
	g := c.gpu
	e.advance(g)
	work := e.fn(c).WarmSec
	fault := 0.0
	if c.on < c.bytes {
		fault = float64(c.bytes - c.on)
		g.resident += c.bytes - c.on
		c.on = c.bytes
	} else if over := g.resident - e.m.MemBytes; over > 0 {
		fault = float64(min(over, c.bytes))
	}
	if e.noMem {
		// Unified memory without management: the driver pages out the least
		// recently used idle containers to make room.
		for g.resident > e.m.MemBytes {
			var lru *simCtr
			for _, o := range g.ctrs {
				if o != c && o.on > 0 && !o.busy && (lru == nil || o.lastUsed < lru.lastUsed || (o.lastUsed == lru.lastUsed && o.id < lru.id)) {
					lru = o
				}
			}
			if lru == nil {
				break
			}
			g.resident -= lru.on
			lru.on = 0
		}
	}
	r := running{inv: inv, ctr: c, remain: work, start: e.now}
	if fault > 0 {
		r.fault = fault / e.m.FaultBytesPerSec
		e.res.FaultBytes += fault
	}
	e.res.Records[inv].Start = e.now
	g.run = append(g.run, r)
	e.reschedule(g)
}

// paging counts g's running invocations still demand-paging their memory
// in (they share the fault bandwidth and take no part in compute sharing).
func (g *simGPU) paging() int {
	n := 0
	for _, r := range g.run {
		if r.fault > 0 {
			n++
		}
	}
	return n
}

// advance applies processor sharing from g.last to now.
func (e *engine) advance(g *simGPU) {
	dt := e.now.Sub(g.last).Seconds()
	g.last = e.now
	if dt <= 0 || len(g.run) == 0 {
		return
	}
	g.busy += dt
	g.periodBsy += dt
	// Demand paging and kernels are separate phases: invocations still
	// paging in share the fault bandwidth (the calibrated rate is the
	// GPU's, not each one's) and do not compete for compute; the others
	// share the GPU by the slowdown curve.
	nf := g.paging()
	frate, crate := 0.0, 1/e.slowdown(len(g.run)-nf)
	if nf > 0 {
		frate = 1 / float64(nf)
	}
	for i := range g.run {
		if r := &g.run[i]; r.fault > 0 {
			r.fault -= dt * frate
		} else {
			r.remain -= dt * crate
		}
	}
}

func (e *engine) slowdown(k int) float64 {
	if k < len(e.slow) {
		return e.slow[k]
	}
	return e.m.Slowdown(k)
}

func (e *engine) reschedule(g *simGPU) {
	g.gen++
	if len(g.run) == 0 {
		return
	}
	// The next phase change: a page-in or a run finishing.
	nf := g.paging()
	dt := math.Inf(1)
	for _, r := range g.run {
		if r.fault > 0 {
			dt = math.Min(dt, r.fault*float64(nf))
		} else {
			dt = math.Min(dt, r.remain*e.slowdown(len(g.run)-nf))
		}
	}
	dt = math.Max(0, dt)
	at := e.now + core.Time(math.Ceil(dt*1e9))
	e.push(simEvent{at: at, kind: kGPUDone, a: uint64(g.idx), b: g.gen})
}

// finish completes every invocation on g whose work is done.
func (e *engine) finish(g *simGPU) {
	e.advance(g)
	var done []running
	keep := g.run[:0]
	for i := range g.run {
		if r := &g.run[i]; r.fault <= 1e-9 {
			r.fault = 0 // paged in: its kernels run from now
		}
	}
	for _, r := range g.run {
		if r.fault == 0 && r.remain <= 1e-9 {
			done = append(done, r)
		} else {
			keep = append(keep, r)
		}
	}
	g.run = keep
	e.reschedule(g)
	for _, r := range done {
		rec := &e.res.Records[r.inv]
		rec.End = e.now
		e.pending--
		r.ctr.busy = false
		r.ctr.lastUsed = e.now
		if e.step(core.Completed(r.inv, e.now.Sub(r.start), r.ctr.bytes)) != nil {
			return
		}
	}
}
