package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid config")

// Policy names a queueing policy.
type Policy string

// The policies.
const (
	// PolicyFCFS: one FIFO over all functions; consecutive arrivals of the
	// same function run back to back in one container.
	PolicyFCFS Policy = "fcfs"
	// PolicyBatch: dispatch the whole queue of the function holding the
	// oldest request (Config.BatchCap limits it; "batch:N" sets it).
	PolicyBatch Policy = "batch"
	// PolicySJF: Paella-style shortest job first with deficit counters.
	PolicySJF Policy = "sjf"
	// PolicyMQFQ: multi-queue fair queueing, lowest start tag, no stickiness.
	PolicyMQFQ Policy = "mqfq"
	// PolicyMQFQSticky: the paper's MQFQ-Sticky.
	PolicyMQFQSticky Policy = "mqfq-sticky"
	// PolicySluice: MQFQ-Sticky plus Sluice's improvements (see Improvements).
	PolicySluice Policy = "sluice"
)

// Policies returns every policy in the order reports show them.
func Policies() []Policy {
	return []Policy{PolicyFCFS, PolicyBatch, PolicySJF, PolicyMQFQ, PolicyMQFQSticky, PolicySluice}
}

// Improvements are Sluice's departures from MQFQ-Sticky (reference section
// 6). PolicySluice turns all on; each can be switched off for ablation
// (docs/EVALUATION.md).
type Improvements struct {
	// MemoryAware: choose eviction victims by flow state (Inactive, then
	// Throttled, then Active) and, within a state, by the farthest
	// forecast next use (last arrival + mean inter-arrival time; Belady's
	// rule), then least recently used; on activation, make room from
	// non-Active flows so the activated flow's memory moves early.
	MemoryAware bool
	// CostAwareTTL: keep an idle flow Active (memory resident) for at least
	// CostTTLFactor x its measured swap-in time, even when 1.5 x its
	// inter-arrival time is shorter.
	CostAwareTTL bool
	// ScaleT: throttle threshold T = TScale x the work-weighted mean GPU
	// time of backlogged flows (sum tau^2 / sum tau), never below
	// Config.T/10, so one setting carries across GPUs and workloads.
	ScaleT bool
	// WaitForBusy: do not cold-start another container for a flow whose
	// containers are all busy when its queue would drain on them sooner
	// than a cold start (queue x tau < observed cold-start time); serve
	// other flows meanwhile.
	WaitForBusy bool
	// PrefetchAhead: do not hold a D slot while a container's memory moves
	// to the GPU: prefetch the chosen flow's idle container without a slot
	// (making room only from flows with no queued work), serve other flows
	// meanwhile, and dispatch it once resident. One such prefetch per GPU
	// at a time; beyond that, or if it cannot be made to fit, the dispatch
	// prefetches with the slot held as before.
	PrefetchAhead bool
	// EvictAhead: after each dispatch pass, make room ahead of time for the
	// idle, non-resident container whose flow is forecast to need it
	// soonest (Scheduler.expectedUse: now if it has queued work), by
	// evicting idle containers of flows with no queued work that are
	// forecast to be needed later, in makeRoom's order, if that makes it
	// fit. Its dispatch
	// then waits for its swap-in only, not for an eviction followed by the
	// swap-in. Only a flow with queued work or a forecast still ahead
	// counts, and only the container its next run would use. Off by default:
	// it lowers mean latency on every workload measured (except a heavily
	// overloaded replay, where it changes nothing), but lowers Jain's index
	// on the default workload (docs/EVALUATION.md, "Fairness beside the
	// isolated bound").
	EvictAhead bool
	// AdaptiveD: choose each GPU's concurrency limit from measured
	// slowdown instead of fixing it at D (reference section 6: "measured
	// slowdown vs isolated execution, AIMD on D"). Each completion's GPU
	// time over its function's shortest measured GPU time is a slowdown
	// sample for the concurrency it was dispatched at; the limit starts at
	// D and hill-climbs on measured throughput k / slowdown(k) between D
	// and Config.DMax: up one while the next level is unmeasured or
	// promises 5% more throughput, down one when the level below gave
	// more. It never goes below D: the signal sees what sharing the GPU's
	// compute costs, not what concurrency buys besides (memory moves and
	// paging overlapped with kernels), so it may only add concurrency
	// where sharing pays. On a curve measured on an H100, where two
	// GPU-bound processes each run 2.17x slower, dropping to 1 cost 23%.
	// An invocation that started while its GPU was oversubscribed gives no
	// sample: its GPU time includes demand paging, not only sharing.
	AdaptiveD bool
	// Retag: when a flow's GPU-time estimate changes by 2x or more from the
	// one its queued requests were tagged with (in particular on its first
	// measurement, which replaces the T/10 prior), re-tag the queue with
	// the new estimate, so requests are charged their measured cost.
	Retag bool
	// NoColdAhead switches off ColdAhead, which PolicySluice always has
	// otherwise. ColdAhead: a flow that turns Active with queued work and
	// no container starts one at once (reference section 6: "start
	// containers speculatively when a flow turns Active with no idle
	// container") instead of waiting until a D slot frees and the policy
	// picks it. Its head request is bound to the new container (the flow
	// is charged, as for any cold start without a slot), so the cold start
	// overlaps the wait for a slot, and the bound request takes the first
	// slot that frees once the container is up. Within the per-GPU budget
	// of D concurrent cold starts and only where the footprint fits after
	// evicting idle containers; in a full pool it may stop only an
	// Inactive flow's idle container. A flow that cannot start yet stays
	// listed until it can; one whose start failed is listed again at
	// once. (A negative switch, unlike the others, so that an Improvements
	// value written before it existed keeps it on. The CLI's
	// "sluice:+name" lists keep only what they name, so they have it only
	// if they name coldahead; see docs/EVALUATION.md.)
	NoColdAhead bool
	// WarmFirst: when no GPU's warm pool has room, MQFQ-Sticky's
	// candidates (all within T of V) that can run now in an idle container
	// go before those whose cold start would stop another flow's
	// container; within each group the paper's order holds. With pool room
	// every candidate counts as cheap and the order is the paper's.
	WarmFirst bool
	// ResponseRatio: among MQFQ-Sticky's candidates (all within T of V, so
	// the fairness bound stands), after fewest in flight, serve the flow
	// whose head request has the highest response ratio (waited + tau) /
	// tau instead of the one with the longest queue. The paper's order
	// favours bursty flows: a sparse flow's single request waits behind a
	// burst of short ones for up to T of their service, a slowdown of
	// hundreds for a function of a few milliseconds. Highest response
	// ratio next evens out slowdowns, the quantity Jain's index is taken
	// over.
	ResponseRatio bool
	// ColdT: when backlogged flows outnumber the warm pool's slots (every
	// GPU's ContainersPerGPU), raise T to at least 30 x the expected cost
	// of a switch (a moving average, 0.9/0.1, of observed container starts,
	// prewarm included, x (n-p)/n for n backlogged flows and p slots), so a flow holding a warm container runs longer
	// before fairness makes the GPU switch to one that needs a cold start.
	// With pool room it changes nothing.
	ColdT bool
	// ShareSlots: a flow that already holds a D slot may not take a GPU's
	// last free slot for another invocation in an idle container; the slot
	// stays for another flow's work (this flow's next invocation runs when
	// one of its own completes, or when two slots are free). Without it one
	// flow with long invocations can hold every slot for seconds while
	// short invocations of other flows queue behind it (seen on seed 4: 40
	// invocations waited 5.6 s behind three 7 s ones). A request bound to a
	// container that just finished its cold start is not held back. Not
	// work-conserving by design; the property test exempts exactly this.
	ShareSlots bool
	// FirstStarts: ColdAhead's starts (a flow's first container, started
	// when it turns Active with work and no container) may run while up to
	// 2D starts are under way on the GPU instead of D; memory (the
	// footprint must fit after evicting idle containers) and the pool
	// still limit them, and further containers of a flow that has one keep
	// the budget of D. A flow with no container cannot run at all until
	// its start is done, and the budget of D, inherited from the
	// reference's slots, made sparse flows' first invocations wait seconds
	// for a start to begin when many flows turned Active at once (the
	// largest part of the gap in Jain's index to mqfq-sticky,
	// docs/EVALUATION.md). The simulator does not charge concurrent starts
	// anything but memory.
	FirstStarts bool
	// PartialEvict: make room by moving only the bytes needed off the
	// last victim instead of its whole footprint (unified memory moves
	// any range), and bring a partly evicted container back by moving
	// only what it lacks. With footprints of a few GB and a swap-in that
	// needs a fraction of one, whole-container eviction moves every byte
	// twice that the GPU had room for.
	PartialEvict bool
	// KeepLong: among eviction victims of the same class (MemoryAware's flow
	// state; without MemoryAware all are one class), containers of long
	// flows go last: flows whose measured GPU time is at least
	// keepLongFactor times their measured swap-in time.
	// Belady's order (farthest forecast next use first) maximizes hits, so
	// the rarely invoked flows always miss; when those are the long
	// functions, every swap-in lands on top of the longest latencies,
	// which the interfunction variance measures, while the frequent short
	// flows whose memory goes instead stay far below them. Only while the
	// backlog is short (fewer than keepLongBacklog requests queued per D
	// slot): under a backlog the swap-ins it adds for short flows hold
	// slots and cost throughput. It costs mean latency (5% on the default
	// workload) for fairness: without it sluice's interfunction variance on
	// the Ilúvatar trace at 50-60% load is 6% above mqfq-sticky's
	// (docs/EVALUATION.md, "Keeping long functions resident").
	KeepLong bool
}

// SluiceImprovements returns the improvements PolicySluice turns on by
// default.
func SluiceImprovements() Improvements {
	return Improvements{KeepLong: true, FirstStarts: true, ResponseRatio: true, ColdT: true, ShareSlots: true, WarmFirst: true, MemoryAware: true, CostAwareTTL: true, ScaleT: true, WaitForBusy: true, Retag: true, AdaptiveD: true}
}

// Config configures a Scheduler. Zero fields take the default named in their
// comment; Validate rejects impossible values instead of clamping them.
type Config struct {
	// Policy selects the queueing policy. Default mqfq-sticky.
	Policy Policy
	// GPUs is the number of GPUs. Default 1.
	GPUs int
	// D is the device concurrency: invocations running at once per GPU.
	// Default 2.
	D int
	// DMax bounds Improvements.AdaptiveD's concurrency limit. Default D+1:
	// one level above the operator's D (higher limits run more footprints
	// at once, and the slowdown signal does not see the memory traffic
	// that causes; docs/EVALUATION.md).
	DMax int
	// GPUMemBytes is each GPU's memory capacity. Default 16 GiB.
	GPUMemBytes int64
	// T is the throttle threshold: a flow whose start tag is more than T
	// ahead of virtual time waits. Default 5s. Negative: no throttling.
	T time.Duration
	// TTL is the anticipation grace period after a flow's queue empties.
	// TTL >= 0: that many seconds; TTL < 0: |TTL| x the flow's mean
	// inter-arrival time. Default -1.5 (mqfq-sticky, sluice); fcfs, batch,
	// sjf and mqfq have no anticipation and ignore it.
	TTL float64
	// TTLSet marks TTL as given even when it is 0.
	TTLSet bool
	// SelectCount is the candidate set size. Default 20.
	SelectCount int
	// UtilCap gates dispatch on estimated GPU utilization (0-1). Default 0:
	// off.
	UtilCap float64
	// BatchCap caps PolicyBatch's batches. Default 0: whole queue.
	BatchCap int
	// ContainersPerGPU is the warm pool's limit per GPU. Default 32.
	ContainersPerGPU int
	// KeepAlive stops a container idle this long. Default 10m.
	KeepAlive time.Duration
	// DefaultMemBytes is the footprint of a function that did not say.
	// Default 3 GB (the paper's assumption).
	DefaultMemBytes int64
	// NoMemoryManagement disables Prefetch and Evict actions (pure demand
	// paging). Default false.
	NoMemoryManagement bool
	// HoldColdSlot reproduces the reference implementation's defect 9
	// (mqfq-sticky.md section 5): a cold start holds its D slot for the
	// whole start. Default false, for every policy: the chosen request
	// leaves its queue (its flow is charged as usual) and is bound to the
	// new container, which takes a slot only when it is up; meanwhile the
	// slot serves other flows. At most D such starts run per GPU, and only
	// where the new container fits in memory after evicting idle ones.
	// Policy names take it as a ":hold-cold" suffix (ParsePolicy).
	HoldColdSlot bool
	// Improvements are Sluice's changes; New fills them for PolicySluice
	// unless ImprovementsSet.
	Improvements Improvements
	// ImprovementsSet means Improvements were chosen by the caller.
	ImprovementsSet bool
	// TScale is the multiple used by Improvements.ScaleT. Default 3 (the
	// paper's T = 5 s is 3.7 x the catalog's mean warm time, 1.36 s; chosen
	// before measuring, not tuned).
	TScale float64
	// CostTTLFactor is used by Improvements.CostAwareTTL. Default 4.
	CostTTLFactor float64
	// MonitorPeriod is how often utilization re-checks wake the scheduler
	// when a utilization cap blocks dispatch. Default 500ms.
	MonitorPeriod time.Duration
}

// ParsePolicy parses a policy name; "batch:N" sets the batch cap.
func ParsePolicy(s string) (Policy, int, error) {
	name, arg, hasArg := strings.Cut(s, ":")
	p := Policy(name)
	known := false
	for _, q := range Policies() {
		if p == q {
			known = true
		}
	}
	if !known {
		return "", 0, fmt.Errorf("unknown policy %q (want one of fcfs, batch, batch:N, sjf, mqfq, mqfq-sticky, sluice)", s)
	}
	if !hasArg {
		return p, 0, nil
	}
	if p != PolicyBatch {
		return "", 0, fmt.Errorf("policy %q takes no argument", s)
	}
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("policy %q: batch cap must be a positive integer", s)
	}
	return p, n, nil
}

// HoldColdSuffix, appended to a policy name ("mqfq-sticky:hold-cold"),
// sets Config.HoldColdSlot: the reference implementation's behaviour of
// holding a D slot during cold starts.
const HoldColdSuffix = ":hold-cold"

// ApplyPolicy parses a policy name with its optional "batch:N" argument and
// HoldColdSuffix into c's Policy, BatchCap and HoldColdSlot.
func ApplyPolicy(s string, c Config) (Config, error) {
	name, hold := strings.CutSuffix(s, HoldColdSuffix)
	p, n, err := ParsePolicy(name)
	if err != nil {
		return c, err
	}
	c.Policy, c.BatchCap, c.HoldColdSlot = p, n, hold
	return c, nil
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyMQFQSticky
	}
	if c.GPUs == 0 {
		c.GPUs = 1
	}
	if c.D == 0 {
		c.D = 2
	}
	if c.DMax == 0 {
		c.DMax = c.D + 1
	}
	if c.GPUMemBytes == 0 {
		c.GPUMemBytes = 16 << 30
	}
	if c.T == 0 {
		c.T = 5 * time.Second
	}
	if c.TTL == 0 && !c.TTLSet {
		c.TTL = -1.5
	}
	if c.SelectCount == 0 {
		c.SelectCount = 20
	}
	if c.ContainersPerGPU == 0 {
		c.ContainersPerGPU = 32
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 10 * time.Minute
	}
	if c.DefaultMemBytes == 0 {
		c.DefaultMemBytes = 3e9
	}
	if c.TScale == 0 {
		c.TScale = 3
	}
	if c.CostTTLFactor == 0 {
		c.CostTTLFactor = 4
	}
	if c.MonitorPeriod == 0 {
		c.MonitorPeriod = 500 * time.Millisecond
	}
	if c.Policy == PolicySluice && !c.ImprovementsSet {
		c.Improvements = SluiceImprovements()
	}
	return c
}

// Validate reports the first impossible value, naming the field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if _, _, err := ParsePolicy(string(c.Policy)); err != nil {
		return bad("Policy", "%v", err)
	}
	switch {
	case c.GPUs < 1 || c.GPUs > 1024:
		return bad("GPUs", "%d not in 1..1024", c.GPUs)
	case c.D < 1 || c.D > 1024:
		return bad("D", "%d not in 1..1024", c.D)
	case c.DMax < c.D || c.DMax > 1024:
		return bad("DMax", "%d not in D..1024", c.DMax)
	case c.GPUMemBytes <= 0:
		return bad("GPUMemBytes", "%d must be positive", c.GPUMemBytes)
	case c.SelectCount < 1:
		return bad("SelectCount", "%d must be at least 1", c.SelectCount)
	case c.UtilCap < 0 || c.UtilCap > 1:
		return bad("UtilCap", "%g not in 0..1", c.UtilCap)
	case c.BatchCap < 0:
		return bad("BatchCap", "%d must not be negative", c.BatchCap)
	case c.ContainersPerGPU < 1:
		return bad("ContainersPerGPU", "%d must be at least 1", c.ContainersPerGPU)
	case c.KeepAlive < 0 || c.KeepAlive > maxKeepAlive:
		return bad("KeepAlive", "%v not in 0..%v", c.KeepAlive, maxKeepAlive)
	case c.DefaultMemBytes <= 0:
		return bad("DefaultMemBytes", "%d must be positive", c.DefaultMemBytes)
	case c.TScale <= 0:
		return bad("TScale", "%g must be positive", c.TScale)
	case c.CostTTLFactor < 0:
		return bad("CostTTLFactor", "%g must not be negative", c.CostTTLFactor)
	case c.MonitorPeriod <= 0:
		return bad("MonitorPeriod", "%v must be positive", c.MonitorPeriod)
	case c.TTL != c.TTL || c.TTL > 1e6 || c.TTL < -1e3:
		return bad("TTL", "%g out of range", c.TTL)
	case c.Policy != PolicySluice && c.Improvements != (Improvements{}):
		return bad("Improvements", "apply to policy sluice only, not %s", c.Policy)
	}
	return nil
}

// maxKeepAlive bounds Config.KeepAlive (about 100 years), so that a
// container's deadline never overflows Time.
const maxKeepAlive = 100 * 365 * 24 * time.Hour

// Per-function weights are bounded so that a request's charge tau/weight
// stays finite and large against the rounding of virtual time.
const (
	minWeight = 1e-3
	maxWeight = 1e3
)
