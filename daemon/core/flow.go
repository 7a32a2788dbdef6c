package core

// request is one queued invocation with its MQFQ tags.
type request struct {
	inv     InvID
	seq     uint64 // global arrival order
	arrival Time
	s, f    float64
	v       float64 // V at arrival
}

// ring is a FIFO of requests that reuses its buffer.
type ring struct {
	buf  []request
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) grow() {
	nb := make([]request, max(8, 2*len(r.buf)))
	for i := 0; i < r.n; i++ {
		nb[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = nb, 0
}

func (r *ring) push(q request) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = q
	r.n++
}

func (r *ring) pushFront(q request) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = q
	r.n++
}

func (r *ring) at(i int) *request { return &r.buf[(r.head+i)%len(r.buf)] }

// front returns the oldest request; the ring must not be empty.
func (r *ring) front() *request { return &r.buf[r.head] }

func (r *ring) pop() request {
	q := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return q
}

// flow is one function's queue and MQFQ state.
type flow struct {
	id     FnID
	name   string
	weight float64
	mem    int64 // footprint estimate, bytes

	q     ring
	S, F  float64 // start and finish tags, virtual seconds
	state FlowState

	inFlight     int
	lastServiced Time
	tau          float64 // EWMA of GPU time, seconds
	tauKnown     bool
	minGPU       float64 // shortest GPU time measured running alone: isolated time (AdaptiveD)
	tagTau       float64 // the tau the queued requests were tagged with

	nArr              int
	firstArr, lastArr Time

	hidx     [nHeaps]int
	ttlArmed bool
	ttlAt    Time

	ctrs        []*container
	starting    int     // containers starting
	coldSec     float64 // observed cold-start seconds (EWMA), 0 = unknown
	swapSec     float64 // observed swap-in seconds (EWMA), 0 = unknown
	failStreak  int
	coldAheadQ  bool    // listed in Scheduler.coldAhead
	prewarm     int     // Register.Prewarm while listed in Scheduler.prewarm, else 0
	prewarmLeft int     // prewarm starts it may still get
	warmNow     bool    // scratch for mqfqSticky.pick (WarmFirst, pools full): idleWithSlot
	rr          float64 // scratch for mqfqSticky.pick (ResponseRatio): responseRatio
	deficit     float64 // PolicySJF
}

// meanIAT returns the flow's mean inter-arrival time in seconds (0 if fewer
// than two arrivals).
func (f *flow) meanIAT() float64 {
	if f.nArr < 2 {
		return 0
	}
	return (f.lastArr - f.firstArr).Seconds() / float64(f.nArr-1)
}

// unboundStart returns a container of f that is starting with no request
// bound to it (a prewarm start), or nil.
func (f *flow) unboundStart() *container {
	for _, c := range f.ctrs {
		if c.state == ctrStarting && !c.bound {
			return c
		}
	}
	return nil
}

// idleContainer returns f's best idle container on g (nil: any GPU):
// resident ones first, then the most recently used.
func (f *flow) idleContainer(g *gpu) *container {
	var best *container
	for _, c := range f.ctrs {
		if c.state != ctrIdle || (g != nil && c.g != g) {
			continue
		}
		if best == nil || (c.resident && !best.resident) ||
			(c.resident == best.resident && c.lastUsed > best.lastUsed) {
			best = c
		}
	}
	return best
}

type ctrState uint8

const (
	ctrStarting ctrState = iota
	ctrIdle
	ctrBusy
)

// container is one warm-pool container. resident is the target of its
// memory (on the GPU or not); moves are asynchronous and counted as done
// when requested.
type container struct {
	id       CtrID
	f        *flow
	g        *gpu
	state    ctrState
	resident bool
	bytes    int64
	// kept: bytes still on the device while not resident (a partial
	// eviction, Improvements.PartialEvict); 0 otherwise.
	kept     int64
	lastUsed Time
	kaArmed  bool
	fresh    bool // has not run anything yet
	prewarm  bool // a prewarm start, still starting (counted in gpu.prewarming)

	startedAt  Time
	prefetchAt Time
	moving     int
	landed     bool // resident and no move pending
	ahead      bool // an ahead-prefetch (PrefetchAhead) is pending

	// The invocation running, or bound to a starting container (a cold
	// start that holds its D slot), and how many more of its flow's requests
	// run back to back on it before the slot is released.
	cur       InvID
	bound     bool
	boundReq  request
	batchLeft int
	token     bool
	// runArea and runAt: the GPU's running-invocation area and the time
	// when the current invocation started on the GPU (dispatch, or its
	// memory landing; Improvements.AdaptiveD attributes its slowdown to the
	// mean concurrency over that time).
	runArea float64
	runAt   Time
	onGPU   bool // its invocation counts in the GPU's running area
	// paged: its invocation started while the GPU was oversubscribed, so
	// part of its memory was demand-paged and its GPU time is no
	// concurrency sample (Improvements.AdaptiveD).
	paged bool
}

// devBytes returns the bytes of c's memory on its device (target state).
func (c *container) devBytes() int64 {
	if c.resident {
		return c.bytes
	}
	return c.kept
}

// missing returns the bytes a prefetch of c must move to its device.
func (c *container) missing() int64 { return c.bytes - c.devBytes() }

// gpu is one device: its D slots and memory.
type gpu struct {
	idx      int
	used     int // D slots in use
	starting int // containers starting
	// prewarming: how many of them are prewarm starts, which have a
	// budget of their own (prewarmRoom) and do not count against queued
	// work's (gpuForBoundStart).
	prewarming int
	ahead      int   // ahead-prefetches pending
	resident   int64 // bytes on the device (target state)
	ctrs       []*container
	utilEst    float64 // EWMA of utilization samples
	utilProv   float64 // provisional shares of dispatches since the last sample
	utilSeen   bool
	// Improvements.AdaptiveD: the current concurrency limit (Config.D
	// otherwise) and, per level k of mean concurrency, the EWMA of the
	// measured slowdown of invocations that ran at k and how many samples
	// it has.
	lim   int
	slow  []float64
	slowN []int
	// running invocations, and the integral of running over time up to
	// areaAt (invocation-seconds).
	running int
	area    float64
	areaAt  Time
}

// addRunning brings g's running area up to now and adds d to running.
func (g *gpu) addRunning(now Time, d int) {
	g.area += float64(g.running) * now.Sub(g.areaAt).Seconds()
	g.areaAt = now
	g.running += d
}

// holdsSlot reports whether one of f's containers holds a D slot (runs, or
// is bound to a request and has taken its slot).
func (f *flow) holdsSlot() bool {
	for _, c := range f.ctrs {
		if c.token {
			return true
		}
	}
	return false
}
