package core

// policy decides which flow is served next. All policies share the flows
// (queues and tags are kept for every policy), the warm pool and memory
// management; they differ in the choice, in batching, and in whether memory
// follows flow state.
type policy interface {
	// pick returns a servable flow to dispatch from and how many of its
	// requests to run back to back on one container, or nil.
	pick(s *Scheduler) (*flow, int)
	// popped is told each time a request leaves f's queue.
	popped(s *Scheduler, f *flow)
	// memPerRun: memory moves on before and off after each run (the
	// paper's baselines), instead of following flow state.
	memPerRun() bool
	// throttles: flows more than T ahead of V wait.
	throttles() bool
	// sticky: flows stay Active for a TTL after their queue empties.
	sticky() bool
}

func newPolicy(cfg Config) policy {
	switch cfg.Policy {
	case PolicyFCFS:
		return &fcfs{}
	case PolicyBatch:
		return &batchPolicy{cap: cfg.BatchCap}
	case PolicySJF:
		return &sjf{}
	case PolicyMQFQ:
		return &mqfq{}
	}
	return &mqfqSticky{}
}

// oldestServable returns the servable backlogged flow whose head arrived
// first. O(backlogged flows).
func oldestServable(s *Scheduler) *flow {
	var best *flow
	for _, it := range s.heaps[hBacklog].items {
		f := it.f
		if (best == nil || f.q.front().seq < best.q.front().seq) && s.servable(f) && s.ready(f) {
			best = f
		}
	}
	return best
}

// fcfs serves requests in arrival order; a run of consecutive arrivals of
// one function goes to one container back to back.
type fcfs struct{}

func (fcfs) pick(s *Scheduler) (*flow, int) {
	f := oldestServable(s)
	if f == nil {
		return nil, 0
	}
	// Requests of f older than every other flow's head are consecutive.
	limit := ^uint64(0)
	for _, it := range s.heaps[hBacklog].items {
		o := it.f
		if o != f {
			limit = min(limit, o.q.front().seq)
		}
	}
	n := 0
	for n < f.q.len() && f.q.at(n).seq < limit {
		n++
	}
	return f, n
}
func (fcfs) popped(*Scheduler, *flow) {}
func (fcfs) memPerRun() bool          { return true }
func (fcfs) throttles() bool          { return false }
func (fcfs) sticky() bool             { return false }

// batchPolicy dispatches the whole queue (up to cap) of the function
// holding the oldest request.
type batchPolicy struct{ cap int }

func (b *batchPolicy) pick(s *Scheduler) (*flow, int) {
	f := oldestServable(s)
	if f == nil {
		return nil, 0
	}
	n := f.q.len()
	if b.cap > 0 {
		n = min(n, b.cap)
	}
	return f, n
}
func (*batchPolicy) popped(*Scheduler, *flow) {}
func (*batchPolicy) memPerRun() bool          { return true }
func (*batchPolicy) throttles() bool          { return false }
func (*batchPolicy) sticky() bool             { return false }

// sjf is Paella-style: a function whose deficit reaches sjfDeficit is served
// first; otherwise the shortest estimated execution time. Each dispatch
// costs the chosen function 1-1/n and gives every other 1/n (kept as a
// shared gain, so a dispatch is O(1)).
type sjf struct{}

const sjfDeficit = 25

func (sjf) pick(s *Scheduler) (*flow, int) {
	var starved, short *flow
	for _, it := range s.heaps[hBacklog].items {
		f := it.f
		if f.deficit+s.sjfGain >= sjfDeficit && (starved == nil || f.deficit > starved.deficit ||
			(f.deficit == starved.deficit && f.q.front().seq < starved.q.front().seq)) && s.servable(f) && s.ready(f) {
			starved = f
		}
	}
	if starved != nil {
		return starved, 1
	}
	for _, it := range s.heaps[hBacklog].items {
		f := it.f
		if (short == nil || f.tau < short.tau || (f.tau == short.tau && f.q.front().seq < short.q.front().seq)) && s.servable(f) && s.ready(f) {
			short = f
		}
	}
	return short, 1
}
func (sjf) popped(s *Scheduler, f *flow) {
	s.sjfGain += 1 / float64(s.nFlows)
	f.deficit--
}
func (sjf) memPerRun() bool { return true }
func (sjf) throttles() bool { return false }
func (sjf) sticky() bool    { return false }

// mqfq serves the Active flow with the lowest start tag.
type mqfq struct{}

func (mqfq) pick(s *Scheduler) (*flow, int) {
	s.walk.reset(&s.heaps[hActive])
	for f := s.walk.next(); f != nil; f = s.walk.next() {
		if s.servable(f) && s.ready(f) {
			return f, 1
		}
	}
	return nil, 0
}
func (mqfq) popped(*Scheduler, *flow) {}
func (mqfq) memPerRun() bool          { return false }
func (mqfq) throttles() bool          { return true }
func (mqfq) sticky() bool             { return false }

// mqfqSticky is the paper's policy: among the (at most SelectCount) Active
// flows with the lowest start tags, prefer fewest in flight (when D > 1),
// then the longest queue; the first of them that can be served now runs.
// Flows stay Active for a TTL after emptying. PolicySluice draws the same
// candidates; of its Config.Improvements, WarmFirst and ResponseRatio
// change their order here and ShareSlots may pass one over, the rest act
// elsewhere (slots, memory, TTL, T).
type mqfqSticky struct{}

func (mqfqSticky) pick(s *Scheduler) (*flow, int) {
	// The candidates are the first SelectCount entries of the Active heap's
	// array: the flow with the lowest start tag (the root) and the flows
	// nearest the top, all within T of V. O(SelectCount), no comparisons;
	// the reference takes an arbitrary SelectCount of its Active flows.
	c := s.cands[:0]
	act := &s.heaps[hActive]
	for i := 0; i < act.len() && len(c) < s.cfg.SelectCount; i++ {
		c = append(c, act.at(i))
	}
	// Take candidates in stickyBefore order (a total order) until one can
	// be served: selecting the minimum each time visits them in the order
	// a sort would, and usually the first minimum is served, so a decision
	// costs one pass of at most SelectCount comparisons instead of a sort.
	byInFlight := s.cfg.D != 1
	// WarmFirst only reorders when every pool is full: otherwise no cold
	// start displaces anyone and the paper's order stands.
	warmFirst := s.cfg.Improvements.WarmFirst && s.poolsFull()
	if warmFirst {
		for _, f := range c {
			f.warmNow = s.idleWithSlot(f)
		}
	}
	share := s.cfg.Improvements.ShareSlots
	ratio := s.cfg.Improvements.ResponseRatio
	if ratio {
		for _, f := range c {
			f.rr = s.responseRatio(f)
		}
	}
	var best *flow
	for rest := c; len(rest) > 0; {
		bi := 0
		for i := 1; i < len(rest); i++ {
			if warmFirst && rest[i].warmNow != rest[bi].warmNow {
				if rest[i].warmNow {
					bi = i
				}
				continue
			}
			if ratio {
				if ratioBefore(rest[i], rest[bi], byInFlight) {
					bi = i
				}
				continue
			}
			if stickyBefore(rest[i], rest[bi], byInFlight) {
				bi = i
			}
		}
		if f := rest[bi]; s.servable(f) && !(share && s.shareBlocks(f)) && s.ready(f) {
			best = f
			break
		}
		last := len(rest) - 1
		rest[bi] = rest[last]
		rest = rest[:last]
	}
	clear(c)
	s.cands = c[:0]
	return best, 1
}

// shareBlocks reports whether ShareSlots keeps f off the free slots now: f
// already holds a slot, has an idle container on a GPU with a free slot (it
// would take a slot now; a cold start takes none until its container is
// up), and every such GPU has only that one slot left (of a limit of at
// least 2). When it says no, serve uses a GPU the rule allows.
func (s *Scheduler) shareBlocks(f *flow) bool {
	if !f.holdsSlot() {
		return false
	}
	idle := false
	for _, c := range f.ctrs {
		if c.state == ctrIdle && s.slotFree(c.g) {
			if !lastSlot(c.g) {
				return false
			}
			idle = true
		}
	}
	return idle
}

// lastSlot reports whether g, with a limit of at least 2, has one free slot
// left.
func lastSlot(g *gpu) bool { return g.lim >= 2 && g.lim-g.used == 1 }

// responseRatio is f's head request's response ratio if it ran now:
// (time waited + GPU time) / GPU time, with f's GPU-time estimate (its
// T/10 prior until measured).
func (s *Scheduler) responseRatio(f *flow) float64 {
	tau := max(f.tau, 1e-3)
	return ((s.now - f.q.front().arrival).Seconds() + tau) / tau
}

// ratioBefore orders candidates for Improvements.ResponseRatio: fewest in
// flight (if byInFlight), then the highest response ratio, then as
// stickyBefore.
func ratioBefore(a, b *flow, byInFlight bool) bool {
	if byInFlight && a.inFlight != b.inFlight {
		return a.inFlight < b.inFlight
	}
	if a.rr != b.rr {
		return a.rr > b.rr
	}
	return stickyBefore(a, b, false)
}

// stickyBefore orders candidates: fewest in flight (if byInFlight), longest
// queue, then lowest start tag and id (the order they were found in).
func stickyBefore(a, b *flow, byInFlight bool) bool {
	if byInFlight && a.inFlight != b.inFlight {
		return a.inFlight < b.inFlight
	}
	if a.q.len() != b.q.len() {
		return a.q.len() > b.q.len()
	}
	return tagLess(a, b)
}
func (mqfqSticky) popped(*Scheduler, *flow) {}
func (mqfqSticky) memPerRun() bool          { return false }
func (mqfqSticky) throttles() bool          { return true }
func (mqfqSticky) sticky() bool             { return true }
