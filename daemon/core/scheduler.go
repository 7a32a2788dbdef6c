package core

import (
	"fmt"
	"math"
	"time"
)

// Scheduler is the state machine. It is not safe for concurrent use; one
// goroutine owns it.
type Scheduler struct {
	cfg Config
	pol policy

	flows  []*flow // by FnID; nil = not registered
	nFlows int
	gpus   []*gpu
	ctrs   map[CtrID]*container
	live   map[InvID]*container // queued (nil) or running/bound invocations
	nextC  CtrID

	now    Time
	v      float64 // virtual time
	seq    uint64
	queued int

	heaps   [nHeaps]flowHeap
	tauSum  float64 // sum of tau over backlogged flows (ScaleT)
	tau2Sum float64 // sum of tau squared over backlogged flows
	coldAvg float64 // EWMA of observed cold starts, seconds (0 = none yet)
	timers  timerHeap

	out     []Action
	changes []FlowChange
	walk    walker
	cands   []*flow
	victims []*container
	// boundReady: containers up after a cold start without a slot, whose
	// bound request waits for one (oldest first).
	boundReady []*container
	// coldAhead: flows that turned Active with queued work and no
	// container (ColdAhead, see Improvements.NoColdAhead), waiting for a
	// start budget.
	coldAhead []*flow
	// prewarm: registered flows with containers still to prewarm, in
	// registration order. Prewarming is background work: it starts only
	// while no request is queued, at most D prewarm starts in flight per
	// GPU (a budget of their own, so queued work's starts never wait for
	// that budget; a prewarm start does hold its pool place and memory
	// until it is up), only into free pool room, and only into memory that
	// is free or held by idle containers of flows that are not Active. A
	// request for a flow whose prewarm start is under way is bound to that
	// container rather than cold-starting another. Starting
	// every registered function at once would put all their footprints on
	// the device together (a container initializes on the GPU),
	// oversubscribing it for the first seconds of a run; prewarming while
	// work queues takes the memory that work is waiting for (measured in
	// docs/EVALUATION.md, "Prewarm").
	prewarm []*flow

	sjfGain float64
	utilGap bool // a utilization cap blocked a free slot
}

// New validates cfg (after filling defaults) and returns an empty scheduler.
func New(cfg Config) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, _, _ := ParsePolicy(string(cfg.Policy))
	cfg.Policy = p
	s := &Scheduler{
		cfg:  cfg,
		ctrs: make(map[CtrID]*container),
		live: make(map[InvID]*container),
	}
	s.pol = newPolicy(cfg)
	for i := range s.heaps {
		s.heaps[i].slot = i
	}
	for i := 0; i < cfg.GPUs; i++ {
		s.gpus = append(s.gpus, &gpu{idx: i, lim: cfg.D, slow: make([]float64, cfg.DMax+1), slowN: make([]int, cfg.DMax+1)})
	}
	return s, nil
}

// Config returns the configuration in use, defaults filled.
func (s *Scheduler) Config() Config { return s.cfg }

// Step feeds one event that happened at now. now must not go backwards.
// Events naming unknown functions, invocations or containers are rejected
// with an error and change nothing.
func (s *Scheduler) Step(now Time, ev Event) error {
	if now < s.now {
		return fmt.Errorf("step %v at %v: time went backwards (last %v)", ev.Kind, now, s.now)
	}
	prev := s.now
	s.now = now
	var err error
	switch ev.Kind {
	case EvRegister:
		err = s.register(ev)
	case EvArrived:
		err = s.arrive(ev.Inv, ev.Fn)
	case EvContainerReady:
		err = s.containerReady(ev.Ctr)
	case EvContainerFailed:
		err = s.containerFailed(ev.Ctr, ev.Reason)
	case EvCompleted:
		err = s.completed(ev.Inv, ev.GPUTime, ev.Bytes)
	case EvMemoryMoved:
		err = s.memoryMoved(ev.Ctr, ev.Resident)
	case EvMonitorTick:
		err = s.monitor(ev.GPU, ev.Util, ev.Activity)
	default:
		err = fmt.Errorf("step: unknown event kind %d", ev.Kind)
	}
	if err != nil {
		s.now = prev // a rejected event changes nothing, the clock included
		return err
	}
	s.fireTimers()
	s.schedule()
	return nil
}

// Tick tells the scheduler that time now has come: expired TTLs and
// keep-alives take effect and dispatch runs.
func (s *Scheduler) Tick(now Time) {
	if now > s.now {
		s.now = now
	}
	s.fireTimers()
	s.schedule()
}

// Ready takes the pending actions and changes. See the package doc.
func (s *Scheduler) Ready() Ready {
	rd := Ready{Actions: s.out, Changes: s.changes, WakeAt: s.wakeAt()}
	s.out = s.out[:0]
	s.changes = s.changes[:0]
	return rd
}

func (s *Scheduler) wakeAt() Time {
	for len(s.timers) > 0 && s.stale(s.timers[0]) {
		s.timers.pop()
	}
	w := Never
	if len(s.timers) > 0 {
		w = s.timers[0].at
	}
	if s.utilGap {
		w = min(w, s.now.Add(s.cfg.MonitorPeriod))
	}
	return w
}

// Now returns the time of the latest input.
func (s *Scheduler) Now() Time { return s.now }

// VirtualTime returns V in virtual seconds.
func (s *Scheduler) VirtualTime() float64 { return s.v }

// ---- inputs ----

func (s *Scheduler) register(ev Event) error {
	if ev.Fn < 0 || ev.Fn > 1<<24 {
		return fmt.Errorf("register function %d: id out of range", ev.Fn)
	}
	if int(ev.Fn) < len(s.flows) && s.flows[ev.Fn] != nil {
		return fmt.Errorf("register function %d: already registered", ev.Fn)
	}
	if ev.Weight != 0 && !(ev.Weight >= minWeight && ev.Weight <= maxWeight) {
		return fmt.Errorf("register function %d: weight %g not in %g..%g (0: the default 1)", ev.Fn, ev.Weight, minWeight, maxWeight)
	}
	if ev.Bytes < 0 || ev.Prewarm < 0 {
		return fmt.Errorf("register function %d: negative memory or prewarm", ev.Fn)
	}
	for int(ev.Fn) >= len(s.flows) {
		s.flows = append(s.flows, nil)
	}
	// deficit: PolicySJF's counter starts even with the gain every flow
	// has collected so far, so a late registration gets no credit for
	// dispatches that happened before it existed.
	f := &flow{id: ev.Fn, name: ev.Name, weight: ev.Weight, mem: ev.Bytes, deficit: -s.sjfGain}
	if f.weight == 0 {
		f.weight = 1
	}
	if f.mem == 0 {
		f.mem = s.cfg.DefaultMemBytes
	}
	f.tau = s.cfg.T.Seconds() / 10
	if f.tau <= 0 {
		f.tau = 0.5
	}
	for i := range f.hidx {
		f.hidx[i] = -1
	}
	s.flows[ev.Fn] = f
	s.nFlows++
	if ev.Prewarm > 0 {
		f.prewarm, f.prewarmLeft = ev.Prewarm, ev.Prewarm
		s.prewarm = append(s.prewarm, f)
	}
	return nil
}

func (s *Scheduler) flow(fn FnID) *flow {
	if fn < 0 || int(fn) >= len(s.flows) {
		return nil
	}
	return s.flows[fn]
}

func (s *Scheduler) arrive(inv InvID, fn FnID) error {
	f := s.flow(fn)
	if f == nil {
		return fmt.Errorf("arrive invocation %d: unknown function %d", inv, fn)
	}
	if _, dup := s.live[inv]; dup {
		return fmt.Errorf("arrive invocation %d: already queued or running", inv)
	}
	s.live[inv] = nil
	if f.nArr == 0 {
		f.firstArr = s.now
	}
	f.nArr++
	f.lastArr = s.now
	s.seq++
	sr := math.Max(s.v, f.F)
	fr := sr + f.tau/f.weight
	f.F = math.Max(f.F, fr)
	wasEmpty := f.q.len() == 0
	if wasEmpty {
		f.tagTau = f.tau
	}
	f.q.push(request{inv: inv, seq: s.seq, arrival: s.now, s: sr, f: fr, v: s.v})
	s.queued++
	if wasEmpty {
		f.S = math.Max(f.S, sr)
		s.heaps[hBacklog].push(f)
		s.tauSum += f.tau
		s.tau2Sum += f.tau * f.tau
		s.advanceV()
		s.refresh(f)
		if f.state == Active {
			s.wantColdAhead(f) // already Active (TTL): setState did not see it
		}
	}
	return nil
}

func (s *Scheduler) completed(inv InvID, gpuTime time.Duration, bytes int64) error {
	c, ok := s.live[inv]
	if !ok || c == nil || c.state != ctrBusy || c.bound || c.cur != inv {
		// (bound: the request waits for its container's start or for a
		// slot; its container's cur is not set yet.)
		return fmt.Errorf("complete invocation %d: not running", inv)
	}
	if gpuTime < 0 || bytes < 0 {
		return fmt.Errorf("complete invocation %d: negative gpu time or memory", inv)
	}
	delete(s.live, inv)
	f, g := c.f, c.g
	f.inFlight--
	f.failStreak = 0
	sample := gpuTime.Seconds()
	if c.onGPU {
		// AdaptiveD's sample: the mean concurrency over its time on the GPU.
		// (An invocation that completes before its memory landed gives none.)
		g.addRunning(s.now, 0)
		conc := float64(g.running)
		if dt := s.now.Sub(c.runAt).Seconds(); dt > 0 {
			conc = (g.area - c.runArea) / dt
		}
		g.addRunning(s.now, -1)
		c.onGPU = false
		if s.cfg.Improvements.AdaptiveD && !c.paged {
			s.adaptD(g, f, conc, sample)
		}
	}
	old := f.tau
	if f.tauKnown {
		f.tau = 0.9*f.tau + 0.1*sample
	} else {
		f.tau, f.tauKnown = sample, true
	}
	if f.hidx[hBacklog] >= 0 {
		s.tauSum += f.tau - old
		s.tau2Sum += f.tau*f.tau - old*old
		if s.cfg.Improvements.Retag && (f.tau >= 2*f.tagTau || 2*f.tau <= f.tagTau) {
			s.retag(f)
		}
	}
	if bytes > 0 && bytes != c.bytes {
		if c.resident {
			g.resident += bytes - c.bytes
		} else if c.kept >= bytes {
			// what was kept of a partial eviction is now all of it
			g.resident -= c.kept - bytes
			c.kept, c.resident = 0, true
			c.landed = c.moving == 0
		}
		c.bytes, f.mem = bytes, bytes
	}
	c.lastUsed = s.now
	if c.batchLeft > 0 && f.q.len() > 0 {
		c.batchLeft--
		r := s.pop(f)
		s.run(c, r)
		return nil
	}
	c.state = ctrIdle
	c.batchLeft = 0
	if c.token {
		c.token = false
		g.used--
	}
	s.armKeepAlive(c)
	if s.pol.memPerRun() || f.state != Active {
		s.evict(c)
	}
	if f.q.len() == 0 && f.inFlight == 0 {
		s.armTTL(f)
	}
	return nil
}

func (s *Scheduler) containerReady(id CtrID) error {
	c := s.ctrs[id]
	if c == nil || c.state != ctrStarting {
		return fmt.Errorf("container %d ready: not starting", id)
	}
	f := c.f
	f.starting--
	c.g.starting--
	s.prewarmDone(c)
	f.failStreak = 0
	d := s.now.Sub(c.startedAt).Seconds()
	if f.coldSec == 0 {
		f.coldSec = d
	} else {
		f.coldSec = 0.7*f.coldSec + 0.3*d
	}
	if s.coldAvg == 0 {
		s.coldAvg = d
	} else {
		s.coldAvg = 0.9*s.coldAvg + 0.1*d
	}
	c.lastUsed = s.now
	c.landed = c.resident && c.moving == 0
	if c.bound {
		if !c.token {
			c.state = ctrBusy // claimed by its bound request
			s.boundReady = append(s.boundReady, c)
			return nil
		}
		c.bound = false
		s.run(c, c.boundReq)
		return nil
	}
	c.state = ctrIdle
	c.fresh = false // started ahead (prewarm): nobody waited for it
	s.armKeepAlive(c)
	if !s.pol.memPerRun() && f.state != Active && f.q.len() == 0 {
		s.evict(c)
	}
	return nil
}

func (s *Scheduler) containerFailed(id CtrID, reason string) error {
	c := s.ctrs[id]
	if c == nil || c.state != ctrStarting {
		return fmt.Errorf("container %d failed: not starting", id)
	}
	f := c.f
	f.starting--
	c.g.starting--
	s.prewarmDone(c)
	f.failStreak++
	c.state = ctrIdle // so removeContainer accepts it
	bound, r := c.bound, c.boundReq
	if bound {
		c.bound = false
		f.inFlight--
		if c.token {
			c.token = false
			c.g.used--
		}
	}
	// Forget the container before its request goes back to the queue: a
	// state change there must not see it (as the flow's container, or as
	// an idle one whose memory could move).
	s.removeContainer(c, false)
	if bound {
		if f.failStreak >= 3 {
			delete(s.live, r.inv)
			s.emit(Action{Kind: ActFail, Inv: r.inv, Fn: f.id, Reason: "container failed to start 3 times: " + reason})
		} else {
			s.requeue(f, r)
			s.wantColdAhead(f) // ColdAhead: try again at once, slot or not
		}
	}
	if f.q.len() == 0 && f.inFlight == 0 {
		s.armTTL(f)
	}
	return nil
}

func (s *Scheduler) memoryMoved(id CtrID, resident bool) error {
	c := s.ctrs[id]
	if c == nil {
		if id > 0 && id <= s.nextC {
			return nil // the container was stopped while its memory moved
		}
		return fmt.Errorf("memory moved for container %d: unknown container", id)
	}
	if c.moving == 0 {
		return fmt.Errorf("memory moved for container %d: no move pending", id)
	}
	c.moving--
	c.landed = c.resident && c.moving == 0
	if c.moving == 0 && c.state == ctrBusy && !c.bound && !c.onGPU {
		s.onGPU(c)
	}
	if c.ahead && resident {
		c.ahead = false
		c.g.ahead--
	}
	if resident && c.resident {
		d := s.now.Sub(c.prefetchAt).Seconds()
		if c.f.swapSec == 0 {
			c.f.swapSec = d
		} else {
			c.f.swapSec = 0.7*c.f.swapSec + 0.3*d
		}
	}
	return nil
}

func (s *Scheduler) monitor(gi int, util float64, act []CtrActivity) error {
	if gi < 0 || gi >= len(s.gpus) {
		return fmt.Errorf("monitor tick: unknown gpu %d", gi)
	}
	if util < 0 || util > 1 || util != util {
		return fmt.Errorf("monitor tick gpu %d: utilization %g not in 0..1", gi, util)
	}
	for _, a := range act {
		if a.Busy < 0 || a.Busy > 1 || a.Busy != a.Busy {
			return fmt.Errorf("monitor tick gpu %d: container %d busy fraction %g not in 0..1", gi, a.Ctr, a.Busy)
		}
	}
	g := s.gpus[gi]
	g.utilProv = 0
	if !g.utilSeen {
		g.utilEst, g.utilSeen = util, true
	} else {
		g.utilEst = 0.6*util + 0.4*g.utilEst
	}
	return nil
}

// ---- flows: tags, virtual time, states ----

// coldTWindow is how many expected switch costs Improvements.ColdT lets a
// flow run ahead of V (10, 30 and 100 measured: docs/EVALUATION.md).
const coldTWindow = 30

// throttle returns the current throttle threshold in virtual seconds.
func (s *Scheduler) throttle() float64 {
	if !s.pol.throttles() || s.cfg.T < 0 {
		return math.Inf(1)
	}
	t := s.cfg.T.Seconds()
	if s.cfg.Improvements.ScaleT {
		// The work-weighted mean tau (sum tau^2 / sum tau): the size of the
		// request a typical unit of backlogged work belongs to.
		if s.heaps[hBacklog].len() > 0 && s.tauSum > 0 {
			t = math.Max(t/10, s.cfg.TScale*s.tau2Sum/s.tauSum)
		}
	}
	if s.cfg.Improvements.ColdT {
		// More backlogged flows than warm-pool slots: a switch to another
		// flow costs a cold start with probability about (n-p)/n. Let a
		// flow run coldTWindow such switch costs ahead of V, so each cold
		// start is amortized over a run many times its length.
		if n, p := s.heaps[hBacklog].len(), s.cfg.ContainersPerGPU*len(s.gpus); n > p {
			t = math.Max(t, coldTWindow*s.coldAvg*float64(n-p)/float64(n))
		}
	}
	return t
}

// advanceV sets V to the minimum start tag over backlogged flows; it never
// goes backwards.
func (s *Scheduler) advanceV() {
	if top := s.heaps[hBacklog].top(); top != nil && top.S > s.v {
		s.v = top.S
	}
}

// pop removes f's head for dispatch and updates tags, V and f's state.
func (s *Scheduler) pop(f *flow) request {
	r := f.q.pop()
	s.queued--
	f.inFlight++
	f.lastServiced = s.now
	if f.q.len() > 0 {
		f.S = f.q.front().s
		s.heaps[hBacklog].fix(f)
		s.heaps[hActive].fix(f)
		s.heaps[hThrottled].fix(f)
	} else {
		f.S = f.F
		s.heaps[hBacklog].remove(f)
		s.tauSum -= f.tau
		s.tau2Sum -= f.tau * f.tau
		s.heaps[hActive].remove(f)
		s.heaps[hThrottled].remove(f)
	}
	s.advanceV()
	s.refresh(f)
	s.pol.popped(s, f)
	return r
}

// retag recomputes the tags of f's queued requests with its current tau:
// the head keeps its start tag, each next request starts where the previous
// one finishes. O(queue length), only when tau moved by 2x or more.
func (s *Scheduler) retag(f *flow) {
	f.tagTau = f.tau
	n := f.q.len()
	if n == 0 {
		return
	}
	prevF := f.q.front().s
	for i := 0; i < n; i++ {
		r := f.q.at(i)
		if i > 0 {
			r.s = math.Max(r.v, prevF) // as at arrival, with the new charge
		}
		r.f = r.s + f.tau/f.weight
		prevF = r.f
	}
	f.F = prevF
	s.refresh(f)
}

// requeue puts a request back at the head of its flow (its container
// failed), keeping its tags.
func (s *Scheduler) requeue(f *flow, r request) {
	wasEmpty := f.q.len() == 0
	f.q.pushFront(r)
	s.queued++
	s.live[r.inv] = nil
	f.S = r.s
	if wasEmpty {
		s.heaps[hBacklog].push(f)
		s.tauSum += f.tau
		s.tau2Sum += f.tau * f.tau
	} else {
		s.heaps[hBacklog].fix(f)
		s.heaps[hActive].fix(f)
		s.heaps[hThrottled].fix(f)
	}
	s.refresh(f)
}

// refresh recomputes f's state from its queue and tags (TTL expiry is
// handled by timers) and keeps the heaps in step.
func (s *Scheduler) refresh(f *flow) {
	to := f.state
	if f.q.len() > 0 || f.state != Inactive || f.inFlight > 0 {
		if f.S-s.v <= s.throttle() {
			to = Active
		} else {
			to = Throttled
		}
	}
	if f.q.len() == 0 && f.inFlight == 0 && s.ttl(f) <= 0 && f.state != Inactive {
		to = Inactive
	}
	s.setState(f, to)
	act, thr := &s.heaps[hActive], &s.heaps[hThrottled]
	switch {
	case f.q.len() == 0:
		act.remove(f)
		thr.remove(f)
	case to == Active:
		thr.remove(f)
		if !act.has(f) {
			act.push(f)
		}
	default:
		act.remove(f)
		if !thr.has(f) {
			thr.push(f)
		}
	}
}

// unthrottle activates throttled flows that V (or a larger T) caught up with.
func (s *Scheduler) unthrottle() {
	thr := &s.heaps[hThrottled]
	t := s.throttle()
	for thr.len() > 0 && thr.top().S-s.v <= t {
		s.refresh(thr.top())
	}
}

func (s *Scheduler) setState(f *flow, to FlowState) {
	from := f.state
	if from == to {
		return
	}
	f.state = to
	s.changes = append(s.changes, FlowChange{Fn: f.id, From: from, To: to})
	if s.pol.memPerRun() {
		return
	}
	if to == Active {
		s.wantColdAhead(f)
		s.activateMemory(f)
	} else {
		for _, c := range f.ctrs {
			if c.state == ctrIdle {
				s.evict(c)
			}
		}
	}
}

// ttl returns f's anticipation grace period in seconds.
func (s *Scheduler) ttl(f *flow) float64 {
	if !s.pol.sticky() {
		return 0
	}
	t := s.cfg.TTL
	if t < 0 {
		t = -t * f.meanIAT()
	}
	if s.cfg.Improvements.CostAwareTTL {
		t = math.Max(t, s.cfg.CostTTLFactor*f.swapSec)
	}
	return t
}

// armTTL makes sure a timer will look at f by lastServiced + TTL. At most
// one timer per flow is pending: an earlier one re-checks and re-arms, so a
// busy flow does not grow the timer heap.
func (s *Scheduler) armTTL(f *flow) {
	if f.state == Inactive {
		return
	}
	at := f.lastServiced.Add(time.Duration(s.ttl(f) * 1e9))
	if at <= s.now {
		s.setState(f, Inactive)
		return
	}
	if f.ttlArmed && f.ttlAt <= at {
		return
	}
	f.ttlArmed, f.ttlAt = true, at
	s.timers.push(timer{at: at, kind: tmTTL, id: uint64(f.id)})
}

// armKeepAlive makes sure a timer will look at c by lastUsed + KeepAlive
// (one pending timer per container, re-armed when it fires early).
func (s *Scheduler) armKeepAlive(c *container) {
	if c.kaArmed {
		return
	}
	c.kaArmed = true
	s.timers.push(timer{at: c.lastUsed.Add(s.cfg.KeepAlive), kind: tmKeepAlive, id: uint64(c.id)})
}

// stale reports whether t can be dropped without looking at its target.
func (s *Scheduler) stale(t timer) bool {
	switch t.kind {
	case tmTTL:
		f := s.flows[t.id]
		return !f.ttlArmed || f.ttlAt != t.at
	case tmKeepAlive:
		return s.ctrs[CtrID(t.id)] == nil
	}
	return true
}

func (s *Scheduler) fireTimers() {
	for len(s.timers) > 0 && s.timers[0].at <= s.now {
		t := s.timers.pop()
		if s.stale(t) {
			continue
		}
		switch t.kind {
		case tmTTL:
			f := s.flows[t.id]
			f.ttlArmed = false
			if f.state != Inactive && f.q.len() == 0 && f.inFlight == 0 {
				s.armTTL(f)
			}
		case tmKeepAlive:
			c := s.ctrs[CtrID(t.id)]
			c.kaArmed = false
			if c.state != ctrIdle {
				continue // its completion re-arms
			}
			if c.lastUsed.Add(s.cfg.KeepAlive) <= s.now {
				s.removeContainer(c, true)
			} else {
				s.armKeepAlive(c)
			}
		}
	}
}

func (s *Scheduler) emit(a Action) { s.out = append(s.out, a) }
