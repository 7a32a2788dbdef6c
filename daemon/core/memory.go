package core

import (
	"slices"
	"time"
)

// Memory management: where each container's memory lives (GPU or host),
// the moves that change it, and the choice of what to move.

// evict moves an idle container's memory to the host.
func (s *Scheduler) evict(c *container) { s.evictBytes(c, 0) }

// evictBytes moves n bytes of an idle container's memory to the host (all
// of it if n is 0 or at least what is on the device, or without
// Improvements.PartialEvict).
func (s *Scheduler) evictBytes(c *container, n int64) {
	on := c.devBytes()
	if s.cfg.NoMemoryManagement || on == 0 || c.state == ctrBusy || c.state == ctrStarting {
		return
	}
	if n <= 0 || n > on || !s.cfg.Improvements.PartialEvict {
		n = on
	}
	c.resident = false
	c.landed = false
	c.kept = on - n
	c.g.resident -= n
	c.moving++
	s.emit(Action{Kind: ActEvict, Ctr: c.id, Fn: c.f.id, GPU: c.g.idx, Bytes: n})
}

// prefetch moves c's memory to its GPU. For a dispatch (force) it first
// makes room by evicting idle containers; otherwise it prefetches only if c
// fits (with MemoryAware, after evicting idle containers of flows that are
// not Active).
func (s *Scheduler) prefetch(c *container, force bool) {
	if s.cfg.NoMemoryManagement || c.resident {
		return
	}
	g := s.gpus[c.g.idx]
	need := c.missing()
	if !force {
		if g.resident+need > s.cfg.GPUMemBytes {
			if !s.cfg.Improvements.MemoryAware {
				return
			}
			s.makeRoom(g, need, c, roomNotActive)
			if g.resident+need > s.cfg.GPUMemBytes {
				return
			}
		}
	} else {
		s.makeRoom(g, need, c, roomAny)
	}
	c.resident = true
	c.landed = false
	c.kept = 0
	g.resident += need
	c.moving++
	c.prefetchAt = s.now
	s.emit(Action{Kind: ActPrefetch, Ctr: c.id, Fn: c.f.id, GPU: g.idx, Bytes: need})
}

// activateMemory prefetches the idle containers of a flow that turned Active.
func (s *Scheduler) activateMemory(f *flow) {
	for _, c := range f.ctrs {
		if c.state == ctrIdle {
			s.prefetch(c, false)
		}
	}
}

// victimClass orders eviction candidates: with MemoryAware, containers of
// Inactive flows go first, then Throttled, then Active; otherwise all alike.
func (s *Scheduler) victimClass(c *container) int {
	if !s.cfg.Improvements.MemoryAware {
		return 0
	}
	switch c.f.state {
	case Inactive:
		return 0
	case Throttled:
		return 1
	}
	return 2
}

// victimFilter selects makeRoom's and roomFor's candidates: idle containers
// whose memory has landed, and of those, by kind:
type victimFilter struct {
	kind  uint8
	after Time // roomLater: forecast to be needed after this time
}

const (
	anyVictim       = iota // any of them
	notActiveVictim        // of a flow that is not Active
	notQueuedVictim        // of a flow with no queued work
	laterVictim            // of a flow with no queued work forecast to need it after victimFilter.after
)

var (
	roomAny       = victimFilter{kind: anyVictim}
	roomNotActive = victimFilter{kind: notActiveVictim}
	roomNotQueued = victimFilter{kind: notQueuedVictim}
)

// roomLater: victims of flows with no queued work that are forecast to be
// needed after t.
func roomLater(t Time) victimFilter { return victimFilter{kind: laterVictim, after: t} }

// nextUse forecasts when f next needs its memory: now if it has queued
// work, else its last arrival plus its mean inter-arrival time (never for a
// flow seen once).
func (s *Scheduler) nextUse(f *flow) Time {
	if f.q.len() > 0 {
		return s.now
	}
	iat := f.meanIAT()
	if iat == 0 {
		return Never
	}
	return max(s.now, f.lastArr.Add(time.Duration(iat*1e9)))
}

// fitMemory evicts idle containers of g while its resident memory exceeds
// the GPU's, those of flows without queued work first. Containers that
// started together (prewarm, a burst of cold starts) or whose footprint grew
// can leave g oversubscribed, and nothing else would move their memory off
// while their flows stay Active: every run would pay for demand paging.
// It runs after dispatch, so a container about to run is not moved twice.
func (s *Scheduler) fitMemory(g *gpu) {
	if s.cfg.NoMemoryManagement || g.resident <= s.cfg.GPUMemBytes {
		return
	}
	s.makeRoom(g, 0, nil, roomNotQueued)
	s.makeRoom(g, 0, nil, roomAny)
}

// victim reports whether makeRoom may evict c under filter v.
func (s *Scheduler) victim(c *container, v victimFilter) bool {
	if c.state != ctrIdle || c.devBytes() == 0 || c.moving != 0 {
		return false
	}
	switch v.kind {
	case notActiveVictim:
		return c.f.state != Active
	case notQueuedVictim:
		return c.f.q.len() == 0
	case laterVictim:
		return c.f.q.len() == 0 && s.nextUse(c.f) > v.after
	}
	return true
}

// evictAhead implements Improvements.EvictAhead on g: it makes room for the
// idle, non-resident container that will be needed soonest (expectedUse),
// if evicting containers forecast to be needed later can make it.
func (s *Scheduler) evictAhead(g *gpu) {
	if s.cfg.NoMemoryManagement {
		return
	}
	want, at := s.aheadTarget(g)
	if want == nil || g.resident+want.missing() <= s.cfg.GPUMemBytes || s.roomFor(g, roomLater(at)) < want.missing() {
		return
	}
	s.makeRoom(g, want.missing(), want, roomLater(at))
}

// aheadTarget returns g's idle, non-resident container expected to run
// soonest, and when (nil if none is expected).
func (s *Scheduler) aheadTarget(g *gpu) (*container, Time) {
	var want *container
	var at Time
	for _, c := range g.ctrs {
		if c.state != ctrIdle || c.resident || c.moving != 0 {
			continue
		}
		if t, ok := s.expectedUse(c); ok && (want == nil || t < at) {
			want, at = c, t
		}
	}
	return want, at
}

// expectedUse returns when idle container c is expected to run next: now
// if its flow has queued work, else its flow's forecast next arrival. Not
// ok if that is unknown or already past (a flow that stopped arriving is
// not waited for), or if c is not the idle container the flow's next run
// would use (a resident one, or another one on any GPU): room is made for
// one container per flow.
func (s *Scheduler) expectedUse(c *container) (Time, bool) {
	f := c.f
	if f.idleContainer(nil) != c {
		return 0, false
	}
	if f.q.len() > 0 {
		return s.now, true
	}
	iat := f.meanIAT()
	if iat == 0 {
		return 0, false
	}
	t := f.lastArr.Add(time.Duration(iat * 1e9))
	return t, t > s.now
}

// roomFor returns the memory g would have free once makeRoom evicted every
// victim v selects.
func (s *Scheduler) roomFor(g *gpu, v victimFilter) int64 {
	free := s.cfg.GPUMemBytes - g.resident
	for _, c := range g.ctrs {
		if s.victim(c, v) {
			free += c.devBytes()
		}
	}
	return free
}

// keepLongFactor: Improvements.KeepLong counts a flow as long when its
// measured GPU time is at least this many times its measured swap-in time.
const keepLongFactor = 4

// keepLongBacklog: Improvements.KeepLong applies while fewer than this many
// requests per configured D slot are queued (AdaptiveD may run up to DMax
// per GPU; the guard counts Config.D, so it stays fixed while the limit
// moves).
const keepLongBacklog = 10

// keepLong reports whether makeRoom keeps long flows' containers for last
// now (Improvements.KeepLong, and the backlog is short).
func (s *Scheduler) keepLong() bool {
	return s.cfg.Improvements.KeepLong && s.queued < keepLongBacklog*s.cfg.D*len(s.gpus)
}

// long reports whether f's measured GPU time is at least keepLongFactor
// times its measured swap-in time (Improvements.KeepLong). A flow with no
// completion yet (tau is the prior) or no swap-in yet is not long. With
// PartialEvict, swapSec averages partial swap-ins too, which are shorter:
// a flow whose containers are partly evicted counts as long sooner.
func (f *flow) long() bool {
	return f.tauKnown && f.swapSec > 0 && f.tau >= keepLongFactor*f.swapSec
}

// makeRoom evicts idle resident containers of g (except keep) until need
// more bytes fit, in victim-class order, long flows last within a class
// (Improvements.KeepLong), then farthest forecast next use (MemoryAware),
// then least recently used. Memory still moving is never a victim (that
// could ping-pong forever).
func (s *Scheduler) makeRoom(g *gpu, need int64, keep *container, filter victimFilter) {
	if g.resident+need <= s.cfg.GPUMemBytes {
		return
	}
	v := s.victims[:0]
	for _, c := range g.ctrs {
		if c != keep && s.victim(c, filter) {
			v = append(v, c)
		}
	}
	keepLong := s.keepLong()
	slices.SortFunc(v, func(a, b *container) int {
		if ca, cb := s.victimClass(a), s.victimClass(b); ca != cb {
			return ca - cb
		}
		if keepLong {
			if la, lb := a.f.long(), b.f.long(); la != lb {
				if lb {
					return -1
				}
				return 1
			}
		}
		if s.cfg.Improvements.MemoryAware {
			// Farthest expected next use first (Belady, with the flow's
			// mean inter-arrival time as the forecast).
			na, nb := s.nextUse(a.f), s.nextUse(b.f)
			if na != nb {
				if na > nb {
					return -1
				}
				return 1
			}
		}
		if a.lastUsed != b.lastUsed {
			if a.lastUsed < b.lastUsed {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	for _, c := range v {
		over := g.resident + need - s.cfg.GPUMemBytes
		if over <= 0 {
			break
		}
		s.evictBytes(c, over)
	}
	clear(v)
	s.victims = v[:0]
}
