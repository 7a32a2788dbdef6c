package core

import "slices"

// schedule runs the dispatch loop: while a D slot is free and some flow can
// be served, ask the policy which flow and serve it.
func (s *Scheduler) schedule() {
	s.unthrottle()
	s.utilGap = false
	if len(s.coldAhead) > 0 {
		s.startColdAhead()
	}
	if len(s.boundReady) > 0 {
		s.serveBound()
	}
	for s.queued > 0 && s.freeSlot() {
		f, batch := s.pol.pick(s)
		if f == nil {
			break
		}
		s.serve(f, batch)
		s.unthrottle()
	}
	if len(s.prewarm) > 0 && s.queued == 0 {
		s.startPrewarms() // background work: only while nothing is queued
	}
	for _, g := range s.gpus {
		s.fitMemory(g)
		if s.cfg.Improvements.EvictAhead {
			s.evictAhead(g)
		}
	}
}

// startPrewarms starts prewarm containers in registration order while some
// GPU has prewarm budget and pool room. A flow whose footprint fits no
// such GPU now is passed over and keeps its place (a smaller one behind it
// may fit). A flow gets at most Register.Prewarm prewarm starts, fewer if
// it already has that many containers however they were started, and then
// leaves the list: containers stopped later are not prewarmed again.
func (s *Scheduler) startPrewarms() {
	g, room := s.prewarmRoom()
	if g == nil || room < 0 {
		return
	}
	n := 0
	for _, f := range s.prewarm {
		for g != nil && f.prewarmLeft > 0 && len(f.ctrs) < f.prewarm && min(f.mem, s.cfg.GPUMemBytes) <= room {
			c := s.startContainer(f, g, true, roomNotActive)
			c.prewarm = true
			g.prewarming++
			f.prewarmLeft--
			g, room = s.prewarmRoom()
		}
		if f.prewarmLeft > 0 && len(f.ctrs) < f.prewarm {
			s.prewarm[n] = f
			n++
		} else {
			f.prewarm, f.prewarmLeft = 0, 0
		}
	}
	clear(s.prewarm[n:])
	s.prewarm = s.prewarm[:n]
}

// prewarmDone releases c's prewarm start budget once c is up or failed.
func (s *Scheduler) prewarmDone(c *container) {
	if c.prewarm {
		c.prewarm = false
		c.g.prewarming--
	}
}

// prewarmRoom returns the GPU where a prewarm start could have the most
// memory, and that memory: among GPUs with prewarm budget (fewer than D
// prewarm starts in flight) and pool room (without stopping any
// container), memory that is free or held by idle containers of flows
// that are not Active (the GPU's whole memory without memory management;
// a footprint larger than the GPU needs an empty one). nil if no GPU has
// budget and pool room.
func (s *Scheduler) prewarmRoom() (*gpu, int64) {
	var best *gpu
	var room int64
	for _, g := range s.gpus {
		if g.prewarming >= s.cfg.D || len(g.ctrs) >= s.cfg.ContainersPerGPU {
			continue
		}
		free := s.cfg.GPUMemBytes
		if !s.cfg.NoMemoryManagement {
			free = s.roomFor(g, roomNotActive)
		}
		if best == nil || free > room {
			best, room = g, free
		}
	}
	return best, room
}

// slotFree reports whether g can take one more invocation.
func (s *Scheduler) slotFree(g *gpu) bool {
	if g.used >= g.lim {
		return false
	}
	if s.cfg.UtilCap > 0 && g.utilSeen && g.utilEst+g.utilProv > s.cfg.UtilCap {
		s.utilGap = true
		return false
	}
	return true
}

func (s *Scheduler) freeSlot() bool {
	for _, g := range s.gpus {
		if s.slotFree(g) {
			return true
		}
	}
	return false
}

// noTokenColdStart reports whether cold starts run without a D slot (always,
// unless HoldColdSlot reproduces the reference's defect 9).
func (s *Scheduler) noTokenColdStart() bool { return !s.cfg.HoldColdSlot }

// servable reports whether f's head could be dispatched now in the
// reference's terms: an idle container on a GPU with a free slot, or a free
// slot and pool room for a cold start. It changes nothing.
func (s *Scheduler) servable(f *flow) bool {
	return s.idleWithSlot(f) || s.gpuForCold(f) != nil
}

// idleWithSlot reports whether f has an idle container on a GPU with a free
// slot: it can run now without a cold start.
func (s *Scheduler) idleWithSlot(f *flow) bool {
	for _, c := range f.ctrs {
		if c.state == ctrIdle && s.slotFree(c.g) {
			return true
		}
	}
	return false
}

// poolsFull reports whether no GPU's warm pool can take a container without
// stopping one.
func (s *Scheduler) poolsFull() bool {
	for _, g := range s.gpus {
		if len(g.ctrs) < s.cfg.ContainersPerGPU {
			return false
		}
	}
	return true
}

// ready is asked about a servable flow the policy wants to dispatch. By
// default it says yes. With WaitForBusy, a flow that would need a cold start
// while its running invocation will free a warm container sooner says no
// (the policy moves on to its next choice). With PrefetchAhead, a flow whose
// idle container's memory is off the GPU gets a prefetch without a slot and
// says no until the memory has landed.
func (s *Scheduler) ready(f *flow) bool {
	imp := s.cfg.Improvements
	ahead := imp.PrefetchAhead && !s.cfg.NoMemoryManagement
	var idle *container
	for _, c := range f.ctrs {
		if c.state == ctrIdle && s.slotFree(c.g) {
			if !ahead || c.landed {
				return true
			}
			if idle == nil || (c.resident && !idle.resident) {
				idle = c
			}
		}
	}
	if idle != nil {
		if idle.resident {
			return false // its prefetch is on the way
		}
		if idle.g.ahead > 0 {
			return true // one ahead-prefetch per GPU at a time: use the slot
		}
		s.makeRoom(idle.g, idle.missing(), idle, roomNotQueued)
		if idle.g.resident+idle.missing() > s.cfg.GPUMemBytes {
			return true // cannot be brought in ahead: prefetch with the slot held
		}
		s.prefetch(idle, true)
		idle.ahead = true
		idle.g.ahead++
		return false
	}
	if s.noTokenColdStart() && f.unboundStart() != nil {
		return true // its head waits for the prewarm start under way
	}
	if s.noTokenColdStart() && s.gpuForBoundStart(f, false) == nil {
		return false // no GPU can take another cold start now
	}
	if imp.WaitForBusy && f.inFlight > 0 {
		cold := f.coldSec
		if cold == 0 {
			cold = 2 * f.tau
		}
		if float64(f.q.len())*f.tau < cold {
			return false // its running invocation frees a warm container sooner
		}
	}
	return true
}

// coldAheadOn reports whether ColdAhead applies: PolicySluice unless
// Improvements.NoColdAhead, with cold starts that hold no slot.
func (s *Scheduler) coldAheadOn() bool {
	return s.cfg.Policy == PolicySluice && !s.cfg.Improvements.NoColdAhead && s.noTokenColdStart()
}

// wantColdAhead lists f for an early cold start (ColdAhead, see
// Improvements.NoColdAhead) if it is Active with queued work and has no
// container at all.
func (s *Scheduler) wantColdAhead(f *flow) {
	if !s.coldAheadOn() || f.coldAheadQ || f.q.len() == 0 || len(f.ctrs) > 0 {
		return
	}
	f.coldAheadQ = true
	s.coldAhead = append(s.coldAhead, f)
}

// startColdAhead starts a container for each listed flow that still needs
// one, binding its head request to it (as serve does for a cold start
// without a slot), in the order the flows were listed. A flow that no GPU
// can take a cold start for now stays listed.
func (s *Scheduler) startColdAhead() {
	n := 0
	// By index: a start never lists another flow today, but one listed
	// during the pass would be kept (and tried) rather than dropped.
	for i := 0; i < len(s.coldAhead); i++ {
		f := s.coldAhead[i]
		if f.state != Active || f.q.len() == 0 || len(f.ctrs) > 0 {
			f.coldAheadQ = false
			continue
		}
		g := s.gpuForBoundStart(f, true)
		if g == nil {
			s.coldAhead[n] = f
			n++
			continue
		}
		f.coldAheadQ = false
		r := s.pop(f)
		c := s.startContainer(f, g, true, roomAny)
		c.bound, c.boundReq, c.batchLeft = true, r, 0
		s.live[r.inv] = c
	}
	clear(s.coldAhead[n:])
	s.coldAhead = s.coldAhead[:n]
}

// serveBound runs requests bound to containers that finished a cold start
// without a slot, oldest first, as slots free up.
func (s *Scheduler) serveBound() {
	n := 0
	for _, c := range s.boundReady {
		if s.slotFree(c.g) {
			c.g.used++
			c.g.utilProv += 1 / float64(s.cfg.D)
			c.token = true
			c.bound = false
			s.run(c, c.boundReq)
			continue
		}
		s.boundReady[n] = c
		n++
	}
	clear(s.boundReady[n:])
	s.boundReady = s.boundReady[:n]
}

// serve dispatches f's head (and, for batching policies, binds up to
// batch-1 more of its requests to the same container).
func (s *Scheduler) serve(f *flow, batch int) {
	var c *container
	var g *gpu
	share := s.cfg.Improvements.ShareSlots && f.holdsSlot()
	for _, gg := range s.gpus {
		if !s.slotFree(gg) || (share && lastSlot(gg)) {
			continue
		}
		if cc := f.idleContainer(gg); cc != nil && (c == nil || (cc.resident && !c.resident)) {
			c, g = cc, gg
		}
	}
	if c == nil {
		if s.noTokenColdStart() {
			// Cold start without a slot: the request is popped (its flow is
			// charged, as if it ran) and bound to the new container, which
			// takes a slot once it is up. A prewarm start under way is that
			// container if there is one.
			if c = f.unboundStart(); c == nil {
				g = s.gpuForBoundStart(f, false)
			}
			r := s.pop(f)
			if c == nil {
				c = s.startContainer(f, g, false, roomAny)
			}
			c.bound, c.boundReq, c.batchLeft = true, r, batch-1
			s.live[r.inv] = c
			return
		}
		g = s.gpuForCold(f)
		if g == nil {
			panic("core: serve called for a flow that cannot be served")
		}
	}
	if c != nil {
		c.state = ctrBusy // claimed: a state change at pop must not evict it
	}
	r := s.pop(f)
	g.used++
	g.utilProv += 1 / float64(s.cfg.D) // until the next sample corrects it
	if c == nil {
		c = s.startContainer(f, g, false, roomAny)
		c.bound, c.boundReq, c.token, c.batchLeft = true, r, true, batch-1
		s.live[r.inv] = c
		return
	}
	c.token, c.batchLeft = true, batch-1
	s.run(c, r)
}

// onGPU counts c's invocation as running on its GPU from now: when it is
// dispatched, or, if its memory is still moving in, when it has landed
// (memoryMoved). AdaptiveD's concurrency is the mean of this count over an
// invocation's time on the GPU, so a slot spent waiting for memory is not
// taken for sharing: GPU time is measured from the kernel start as well.
func (s *Scheduler) onGPU(c *container) {
	c.g.addRunning(s.now, 1)
	c.runArea, c.runAt, c.onGPU = c.g.area, s.now, true
	c.paged = c.g.resident > s.cfg.GPUMemBytes
}

// run starts request r on container c, which holds a D slot.
func (s *Scheduler) run(c *container, r request) {
	c.state = ctrBusy
	c.cur = r.inv
	c.lastUsed = s.now
	s.live[r.inv] = c
	s.prefetch(c, true)
	if c.moving == 0 {
		s.onGPU(c)
	}
	s.emit(Action{Kind: ActDispatch, Inv: r.inv, Ctr: c.id, Fn: c.f.id, GPU: c.g.idx, Cold: c.fresh})
	c.fresh = false
}

// gpuForCold picks the GPU for a cold start that holds a D slot: a free
// slot and room in the pool; most free memory first.
func (s *Scheduler) gpuForCold(f *flow) *gpu {
	var best *gpu
	for _, g := range s.gpus {
		if !s.slotFree(g) || !s.poolRoom(g, false) {
			continue
		}
		if best == nil || g.resident < best.resident {
			best = g
		}
	}
	return best
}

// gpuForBoundStart picks the GPU for a cold start without a slot: at most
// D such starts in flight per GPU (the budget the slots gave the reference;
// prewarm starts do not count), room in the pool, and room in memory once
// idle containers are evicted (never oversubscribe for a container that is
// not running).
// A speculative start (ColdAhead) may stop only an Inactive flow's idle
// container: it must not cost a flow that may run soon its warm container
// for a start that no policy decision asked for yet.
func (s *Scheduler) gpuForBoundStart(f *flow, speculative bool) *gpu {
	var best *gpu
	budget := s.cfg.D
	if speculative && s.cfg.Improvements.FirstStarts {
		budget = 2 * s.cfg.D // a flow's first container: twice the budget
	}
	for _, g := range s.gpus {
		if g.starting-g.prewarming >= budget || !s.poolRoom(g, speculative) {
			continue
		}
		if !s.cfg.NoMemoryManagement {
			// A footprint larger than the whole GPU never fits: start it
			// anyway (demand paging) rather than never.
			if s.roomFor(g, roomAny) < f.mem && f.mem <= s.cfg.GPUMemBytes {
				continue
			}
		}
		if best == nil || g.used+g.starting < best.used+best.starting ||
			(g.used+g.starting == best.used+best.starting && g.resident < best.resident) {
			best = g
		}
	}
	return best
}

// poolRoom reports whether g can take another container, counting idle
// containers that could be stopped for it (with speculative, only those of
// Inactive flows).
func (s *Scheduler) poolRoom(g *gpu, speculative bool) bool {
	if len(g.ctrs) < s.cfg.ContainersPerGPU {
		return true
	}
	for _, c := range g.ctrs {
		if c.state == ctrIdle && (!speculative || c.f.state == Inactive) {
			return true
		}
	}
	return false
}

// startContainer starts a container of f on g, stopping the least recently
// used idle container (with speculative, of an Inactive flow) if the pool
// is full, and making room in memory by evicting the idle containers room
// allows (a makeRoom victim filter).
func (s *Scheduler) startContainer(f *flow, g *gpu, speculative bool, room victimFilter) *container {
	if len(g.ctrs) >= s.cfg.ContainersPerGPU {
		var lru *container
		for _, c := range g.ctrs {
			if c.state == ctrIdle && (!speculative || c.f.state == Inactive) && (lru == nil || c.lastUsed < lru.lastUsed) {
				lru = c
			}
		}
		if lru != nil {
			s.removeContainer(lru, true)
		}
	}
	s.nextC++
	c := &container{id: s.nextC, f: f, g: g, state: ctrStarting, bytes: f.mem, fresh: true, startedAt: s.now, lastUsed: s.now}
	s.ctrs[c.id] = c
	f.ctrs = append(f.ctrs, c)
	g.ctrs = append(g.ctrs, c)
	f.starting++
	g.starting++
	// A new container initializes CUDA and allocates on the device.
	if !s.cfg.NoMemoryManagement {
		s.makeRoom(g, c.bytes, nil, room)
	}
	c.resident = true
	g.resident += c.bytes
	s.emit(Action{Kind: ActStartContainer, Ctr: c.id, Fn: f.id, GPU: g.idx})
	return c
}

// removeContainer forgets c (which must not be running anything) and, if
// stop, emits StopContainer.
func (s *Scheduler) removeContainer(c *container, stop bool) {
	if c.ahead {
		c.ahead = false
		c.g.ahead--
	}
	c.g.resident -= c.devBytes()
	c.resident, c.kept = false, 0
	delete(s.ctrs, c.id)
	c.f.ctrs = slices.DeleteFunc(c.f.ctrs, func(x *container) bool { return x == c })
	c.g.ctrs = slices.DeleteFunc(c.g.ctrs, func(x *container) bool { return x == c })
	if stop {
		s.emit(Action{Kind: ActStopContainer, Ctr: c.id, Fn: c.f.id, GPU: c.g.idx})
	}
}
