package observer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/cgroups"
)

// Source is what the observer reads: a *bpf.Probe, or a fake in tests.
type Source interface {
	Counters() (map[uint64]bpf.Counters, error)
	Drops() (bpf.Drops, error)
	// ReadEvent blocks for the next rare event and fails once Close was called.
	ReadEvent() (bpf.Event, error)
	Forget(cgroupID uint64) error
	Close() error
}

// Resolver maps cgroup ids to containers; *cgroups.Resolver implements it.
type Resolver interface {
	Lookup(id uint64) (cgroups.Info, bool)
	// LookupPID resolves id through a live process in it.
	LookupPID(id uint64, pid uint32) (cgroups.Info, bool)
	Exists(id uint64) bool
	Forget(id uint64)
}

// Config configures an [Observer]. Zero fields take the stated defaults.
type Config struct {
	// Interval between two reads of the BPF maps. Default is 1s.
	Interval time.Duration
	// PruneAfter is how long a cgroup that no longer exists keeps its
	// series (so the last values get scraped). Default is 1m.
	PruneAfter time.Duration
	// Function names the function a container runs; "" if unknown.
	// Default: every container's function is "".
	Function func(containerID string) string
	// Registerer receives the observer's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SampleBuffer is the capacity of the [Observer.Samples] channel.
	// Default is 16 batches.
	SampleBuffer int
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.PruneAfter <= 0 {
		c.PruneAfter = time.Minute
	}
	if c.Function == nil {
		c.Function = func(string) string { return "" }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SampleBuffer <= 0 {
		c.SampleBuffer = 16
	}
}

// Observer aggregates what a [Source] records. Create it with [Open] (real
// probes) or [New] (any source), then call [Observer.Run].
type Observer struct {
	cfg Config
	src Source
	res Resolver

	samples chan []Sample

	pollMu    sync.Mutex // held by Poll and Close: no read of a closed source
	closed    bool       // under pollMu
	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	snap      Snapshot
	prev      map[uint64]bpf.Counters
	prevAt    time.Time
	goneSince map[uint64]time.Time
	events    [5]uint64 // by bpf.EventKind
	badEvents uint64
	dropped   uint64 // sample batches nobody took
	polls     uint64
	pollErrs  uint64
	drops     bpf.Drops
	lastPoll  time.Duration
}

// Open loads and attaches the probes (see [bpf.Open]) and returns an
// observer reading them. Where eBPF cannot run it logs one line and returns
// an error wrapping [bpf.ErrNotSupported]; the daemon then runs without it.
func Open(cfg Config, opts *bpf.Options) (*Observer, error) {
	cfg.defaults()
	root, err := cgroups.Root()
	if err != nil {
		err = fmt.Errorf("%w: %w", bpf.ErrNotSupported, err)
		cfg.Logger.Warn("ebpf observability disabled", "reason", err)
		return nil, err
	}
	p, err := bpf.Open(opts)
	if err != nil {
		if errors.Is(err, bpf.ErrNotSupported) {
			cfg.Logger.Warn("ebpf observability disabled", "reason", err)
		}
		return nil, fmt.Errorf("open ebpf probes: %w", err)
	}
	cfg.Logger.Info("ebpf observability attached", "library", p.Library(), "functions", len(p.Attached()))
	o, err := New(cfg, p, cgroups.NewResolver(root, time.Second))
	if err != nil {
		p.Close()
		return nil, err
	}
	return o, nil
}

// New returns an observer of src, resolving cgroups with res. It fails only
// if the metrics cannot be registered.
func New(cfg Config, src Source, res Resolver) (*Observer, error) {
	cfg.defaults()
	o := &Observer{
		cfg:       cfg,
		src:       src,
		res:       res,
		samples:   make(chan []Sample, cfg.SampleBuffer),
		prev:      map[uint64]bpf.Counters{},
		goneSince: map[uint64]time.Time{},
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(collector{o}); err != nil {
			return nil, fmt.Errorf("register ebpf metrics: %w", err)
		}
	}
	return o, nil
}

// Samples delivers, after each poll, one batch with a [Sample] per
// container (its cgroups merged), or per cgroup outside containers, that
// was active during the interval, ordered by cgroup id. Batches are
// dropped, never queued without bound, when the reader falls behind.
func (o *Observer) Samples() <-chan []Sample { return o.samples }

// Run polls every Interval and reads rare events until ctx is done, then
// closes the source (see [Observer.Close]). It returns nil after a
// cancellation.
func (o *Observer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(o.readEvents)
	defer func() {
		if err := o.Close(); err != nil {
			o.cfg.Logger.Warn("close ebpf probes", "err", err)
		}
		wg.Wait()
	}()
	o.Poll()
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			o.Poll()
		}
	}
}

// Close detaches the probes: ~0.3 s with uprobe_multi links, ~0.1 s per
// probed function with per-function uprobes (the kernel waits for a grace
// period per detach). Safe to call more than once; Run calls it on return.
func (o *Observer) Close() error {
	// Wait for a running Poll: it must not read (or delete from) maps whose
	// descriptors are being closed, and may be reused by then.
	o.pollMu.Lock()
	defer o.pollMu.Unlock()
	o.closeOnce.Do(func() {
		o.closed = true
		o.closeErr = o.src.Close()
	})
	return o.closeErr
}

// SetLaunches turns kernel-launch probing on or off at run time (see
// [bpf.Options.Launches] for its cost). It fails if the source cannot.
func (o *Observer) SetLaunches(on bool) error {
	s, ok := o.src.(interface{ SetLaunches(bool) error })
	if !ok {
		return errors.New("set launch probing: source cannot")
	}
	return s.SetLaunches(on)
}

func (o *Observer) readEvents() {
	for {
		e, err := o.src.ReadEvent()
		if err != nil {
			if errors.Is(err, bpf.ErrBadRecord) {
				o.mu.Lock()
				o.badEvents++
				o.mu.Unlock()
				continue
			}
			return // closed
		}
		o.handleEvent(e)
	}
}

func (o *Observer) handleEvent(e bpf.Event) {
	o.mu.Lock()
	if int(e.Kind) < len(o.events) {
		o.events[e.Kind]++
	}
	o.mu.Unlock()
	switch e.Kind {
	case bpf.EventFirstAlloc:
		// Resolve now, through the process, while it (and so its cgroup)
		// surely exists: a short-lived container's cgroup may be gone by
		// the next poll.
		info, _ := o.res.LookupPID(e.CgroupID, e.PID)
		o.cfg.Logger.Debug("gpu process", "pid", e.PID, "comm", e.Comm, "cgroup", info.Path, "container", info.Container)
	case bpf.EventAllocFailed:
		info, _ := o.res.Lookup(e.CgroupID)
		o.cfg.Logger.Debug("gpu allocation failed", "pid", e.PID, "comm", e.Comm, "container", info.Container,
			"bytes", e.Bytes, "cuda_result", e.Result)
	case bpf.EventExit, bpf.EventExec:
		if e.Bytes > 0 {
			o.cfg.Logger.Debug("gpu process ended holding memory", "pid", e.PID, "comm", e.Comm,
				"event", e.Kind.String(), "bytes", e.Bytes, "allocations", e.Count)
		}
	}
}

// Poll reads the counters once, updates the snapshot and metrics, and
// offers the interval's samples. Run calls it every Interval.
func (o *Observer) Poll() {
	o.pollMu.Lock() // one poll at a time: each diffs against the previous
	defer o.pollMu.Unlock()
	if o.closed {
		return
	}
	start := o.cfg.Now()
	all, err := o.src.Counters()
	drops, derr := o.src.Drops()
	if err != nil || derr != nil {
		o.mu.Lock()
		o.polls++
		o.pollErrs++
		o.mu.Unlock()
		o.cfg.Logger.Warn("read ebpf counters", "err", errors.Join(err, derr))
		return
	}
	// Resolve outside o.mu: Config.Function is the daemon's code and may
	// take the daemon's locks, which may be held around a Snapshot call.
	names := make(map[uint64]resolved, len(all))
	for id := range all {
		info, _ := o.res.Lookup(id)
		names[id] = resolved{info: info, function: o.function(info.Container), exists: o.res.Exists(id)}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.polls++
	o.drops = drops
	now := o.cfg.Now()
	dt := now.Sub(o.prevAt)
	if o.prevAt.IsZero() || dt <= 0 {
		dt = 0
	}

	o.prune(all, names, now)
	snap := Snapshot{At: now, Interval: dt}
	var samples []Sample
	for id, c := range all {
		n := names[id]
		cg := Cgroup{
			ID:        id,
			Path:      n.info.Path,
			Container: n.info.Container,
			Function:  n.function,
			Totals:    c,
		}
		p, seen := o.prev[id]
		if !seen {
			p = bpf.Counters{} // first poll that sees this cgroup: all of it is new
		}
		cg.Rates = rates(&c, &p, dt)
		snap.Cgroups = append(snap.Cgroups, cg)
	}
	sort.Slice(snap.Cgroups, func(i, j int) bool { return snap.Cgroups[i].ID < snap.Cgroups[j].ID })
	if dt > 0 {
		samples = activeSamples(snap.Cgroups, now, dt)
	}
	snap.aggregate()
	o.snap = snap
	o.prev = all
	o.prevAt = now
	o.lastPoll = o.cfg.Now().Sub(start)
	if len(samples) > 0 {
		select {
		case o.samples <- samples:
		default:
			o.dropped++
		}
	}
}

// activeSamples merges the cgroups of each container (nested cgroups count
// for their container) and returns a sample per container, or per cgroup
// outside containers, that was active. cgs is sorted by ID.
func activeSamples(cgs []Cgroup, now time.Time, dt time.Duration) []Sample {
	var merged []Cgroup
	byCtr := map[string]int{}
	for _, cg := range cgs {
		if cg.Container == "" {
			merged = append(merged, cg)
			continue
		}
		i, ok := byCtr[cg.Container]
		if !ok {
			byCtr[cg.Container] = len(merged)
			merged = append(merged, cg) // the container's lowest cgroup id names it
			continue
		}
		merged[i].Totals.Add(&cg.Totals)
		merged[i].Rates.add(&cg.Rates)
	}
	var out []Sample
	for i := range merged {
		if merged[i].Rates.active() {
			out = append(out, merged[i].sample(now, dt))
		}
	}
	return out
}

func (o *Observer) function(container string) string {
	if container == "" {
		return ""
	}
	return o.cfg.Function(container)
}

type resolved struct {
	info     cgroups.Info
	function string
	exists   bool
}

// prune forgets cgroups gone for PruneAfter. Called with o.mu held.
func (o *Observer) prune(all map[uint64]bpf.Counters, names map[uint64]resolved, now time.Time) {
	for id := range all {
		if names[id].exists {
			delete(o.goneSince, id)
			continue
		}
		since, ok := o.goneSince[id]
		if !ok {
			o.goneSince[id] = now
			continue
		}
		if now.Sub(since) >= o.cfg.PruneAfter {
			if err := o.src.Forget(id); err != nil {
				o.cfg.Logger.Warn("forget cgroup", "cgroup", id, "err", err)
				continue
			}
			o.res.Forget(id)
			delete(all, id)
			delete(o.goneSince, id)
		}
	}
	for id := range o.goneSince {
		if _, ok := all[id]; !ok {
			delete(o.goneSince, id)
		}
	}
}

// Snapshot returns a copy of the last poll's view.
func (o *Observer) Snapshot() Snapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.snap.clone()
}

// Stats are the observer's own counters.
type Stats struct {
	Polls, PollErrors uint64
	Events            map[bpf.EventKind]uint64
	BadEvents         uint64 // ring-buffer records that did not decode
	DroppedSamples    uint64 // sample batches nobody read in time
	Drops             bpf.Drops
	LastPoll          time.Duration // how long the last poll took
}

// Stats returns the observer's own counters.
func (o *Observer) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := Stats{Polls: o.polls, PollErrors: o.pollErrs, BadEvents: o.badEvents, DroppedSamples: o.dropped,
		Drops: o.drops, LastPoll: o.lastPoll, Events: map[bpf.EventKind]uint64{}}
	for k := bpf.EventFirstAlloc; k <= bpf.EventAllocFailed; k++ {
		s.Events[k] = o.events[k]
	}
	return s
}
