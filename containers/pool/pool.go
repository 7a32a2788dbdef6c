package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/spec"
)

// Errors returned by the pool.
var (
	// ErrCrashed: the instance died during the invocation; it is replaced.
	ErrCrashed = errors.New("instance crashed")
	// ErrTimeout: the invocation outlived its timeout; the instance was
	// killed and is replaced.
	ErrTimeout = errors.New("invocation timed out")
	// ErrNotReady: the instance did not become ready in time.
	ErrNotReady = errors.New("instance not ready")
	// ErrUnknown: no such instance (never started, stopped or dead).
	ErrUnknown = errors.New("unknown instance")
	// ErrStopped: the instance was stopped (evicted, expired or closed)
	// while the invocation ran.
	ErrStopped = errors.New("instance stopped")
	// ErrClosed: the pool is closed.
	ErrClosed = errors.New("pool closed")
)

// Spec is one function as the pool runs it.
type Spec struct {
	runtime.Spec
	// ReadyTimeout bounds create-to-ready. Default spec.DefaultReady.
	ReadyTimeout time.Duration
	// InvokeTimeout bounds one invocation. Default spec.DefaultInvoke.
	InvokeTimeout time.Duration
	// KeepAlive is how long an idle instance stays warm. Default
	// spec.DefaultKeepAlive.
	KeepAlive time.Duration
	// OpenWhisk is sent as /init for OpenWhisk-protocol instances.
	OpenWhisk protocol.OpenWhiskInit
}

// FromFunction returns the pool spec for a function spec and an instance
// spec built for the chosen backend (runtime.FromFunction for Docker).
func FromFunction(f *spec.Function, rs runtime.Spec) Spec {
	s := Spec{Spec: rs, ReadyTimeout: time.Duration(f.Timeouts.Ready),
		InvokeTimeout: time.Duration(f.Timeouts.Invoke), KeepAlive: time.Duration(f.KeepAlive)}
	if f.OpenWhisk != nil {
		s.OpenWhisk = protocol.OpenWhiskInit{Name: f.Name, Main: f.OpenWhisk.Main, Binary: f.OpenWhisk.Binary}
	}
	return s
}

func (s *Spec) defaults() {
	if s.ReadyTimeout <= 0 {
		s.ReadyTimeout = spec.DefaultReady
	}
	if s.InvokeTimeout <= 0 {
		s.InvokeTimeout = spec.DefaultInvoke
	}
	if s.KeepAlive <= 0 {
		s.KeepAlive = spec.DefaultKeepAlive
	}
	if s.OpenWhisk.Name == "" {
		s.OpenWhisk.Name = s.Function
	}
	if s.OpenWhisk.Main == "" {
		s.OpenWhisk.Main = "main"
	}
}

// Config configures a Pool.
type Config struct {
	// ReadyPoll is the readiness polling interval. Default 2ms.
	ReadyPoll time.Duration
	// NoReplace disables starting a replacement for an instance that crashed
	// or timed out. Default false (replace).
	NoReplace bool
	// OnEvent receives every event, from the pool's goroutines, in order per
	// instance. It must not block for long or call back into the pool
	// synchronously. Default: none.
	OnEvent func(Event)
	// StopGrace is how long Stop, Sweep and Close give an instance after
	// SIGTERM before SIGKILL. Default 2s; negative: kill at once.
	StopGrace time.Duration
	// RuntimeTimeout bounds each runtime call the pool makes on its own
	// schedule (the sweep's stop and remove, beyond StopGrace), so a hung
	// engine cannot stall the sweeper for good. Default 30s.
	RuntimeTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default: discard.
	Logger *slog.Logger
}

// EventKind says what happened to an instance.
type EventKind string

// Event kinds.
const (
	EventReady       EventKind = "ready"        // started and ready (ColdStart set)
	EventStartFailed EventKind = "start-failed" // create, start or readiness failed (Err set)
	EventCrashed     EventKind = "crashed"      // exited on its own (Exit set; Busy if mid-invocation)
	EventTimedOut    EventKind = "timed-out"    // killed because an invocation outlived its timeout
	EventExpired     EventKind = "expired"      // stopped by the keep-alive sweep
	EventStopped     EventKind = "stopped"      // stopped on request (eviction) or at Close
	EventReplaced    EventKind = "replaced"     // Replacement started for a crashed or timed-out Instance
)

// Event reports one thing that happened to an instance.
type Event struct {
	Kind     EventKind
	Instance runtime.ID
	Function string
	At       time.Time
	// ColdStart is create-to-ready (EventReady).
	ColdStart time.Duration
	// Exit is how the process ended (EventCrashed).
	Exit *runtime.Exit
	// Busy says an invocation was running (EventCrashed).
	Busy bool
	// Replacement is the new instance (EventReplaced).
	Replacement runtime.ID
	// Err is the failure (EventStartFailed, EventReplaced when the
	// replacement failed).
	Err error
}

// State of an instance.
type State string

// Instance states.
const (
	StateIdle State = "idle"
	StateBusy State = "busy"
)

// Info is a snapshot of one instance.
type Info struct {
	ID       runtime.ID
	Function string
	State    State
	LastUsed time.Time
	Started  time.Time
	Invoked  int
}

type instance struct {
	id       runtime.ID
	spec     Spec
	client   *protocol.Client
	started  time.Time
	lastUsed time.Time
	// reserved is set by Acquire until the next Invoke or Release;
	// inflight counts running invocations. Busy = either.
	reserved bool
	inflight int
	invoked  int
	// exited is closed when the process ended; exit holds how.
	exited chan struct{}
	exit   runtime.Exit
	// gone is set once the pool dropped the instance (stopped, crashed,
	// killed), so exactly one path reports and replaces it.
	gone bool
	// stopped is set when gone on purpose (Stop, Sweep, Close).
	stopped bool
}

// busy reports whether the instance is reserved or running an invocation
// (the pool's lock held).
func (in *instance) busy() bool { return in.reserved || in.inflight > 0 }

// Pool runs instances on one runtime.
type Pool struct {
	rt  runtime.Runtime
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	instances map[runtime.ID]*instance
	closed    bool
	wg        sync.WaitGroup
}

// New returns a pool on rt.
func New(rt runtime.Runtime, cfg Config) *Pool {
	if cfg.ReadyPoll <= 0 {
		cfg.ReadyPoll = 2 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 2 * time.Second
	}
	if cfg.RuntimeTimeout <= 0 {
		cfg.RuntimeTimeout = 30 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Pool{rt: rt, cfg: cfg, log: lg.With("component", "pool"), instances: map[runtime.ID]*instance{}}
}

func (p *Pool) emit(e Event) {
	if e.At.IsZero() {
		e.At = p.cfg.Now()
	}
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(e)
	}
}

// Start creates and starts an instance of s and waits, at most
// s.ReadyTimeout, until it is ready; the instance is then idle. On failure
// the instance is removed and the error wraps ErrNotReady (readiness) or the
// runtime's error.
func (p *Pool) Start(ctx context.Context, s Spec) (runtime.ID, error) {
	s.defaults()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	t0 := p.cfg.Now()
	id, err := p.start(ctx, s)
	if err != nil {
		p.emit(Event{Kind: EventStartFailed, Function: s.Function, Instance: id, Err: err})
		return "", err
	}
	p.emit(Event{Kind: EventReady, Instance: id, Function: s.Function, ColdStart: p.cfg.Now().Sub(t0)})
	return id, nil
}

func (p *Pool) start(ctx context.Context, s Spec) (runtime.ID, error) {
	rctx, cancel := context.WithTimeout(ctx, s.ReadyTimeout)
	defer cancel()
	id, err := p.rt.Create(rctx, s.Spec)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", s.Function, err)
	}
	fail := func(err error) (runtime.ID, error) {
		rmctx, rmcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rmcancel()
		if rerr := p.rt.Remove(rmctx, id); rerr != nil {
			p.log.Warn("remove failed instance", "id", id, "err", rerr)
		}
		return id, err
	}
	exitc, err := p.rt.Start(rctx, id)
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", s.Function, err))
	}
	ep, err := p.rt.Endpoint(rctx, id)
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", s.Function, err))
	}
	in := &instance{id: id, spec: s, client: protocol.NewClient(ep), exited: make(chan struct{})}
	go func() {
		ex, ok := <-exitc
		if !ok {
			ex = runtime.Exit{Err: errors.New("exit channel closed without a status")}
		}
		in.exit = ex
		close(in.exited)
	}()
	if err := p.waitReady(rctx, in); err != nil {
		in.client.Close()
		return fail(fmt.Errorf("start %s: %w: %w", s.Function, ErrNotReady, err))
	}
	if err := in.client.Init(rctx, s.OpenWhisk); err != nil {
		in.client.Close()
		return fail(fmt.Errorf("start %s: %w", s.Function, err))
	}
	now := p.cfg.Now()
	in.started, in.lastUsed = now, now
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		in.client.Close()
		return fail(ErrClosed)
	}
	p.instances[id] = in
	p.wg.Add(1)
	p.mu.Unlock()
	go p.watch(in)
	return id, nil
}

// waitReady polls readiness, giving up early if the process exits.
func (p *Pool) waitReady(ctx context.Context, in *instance) error {
	t := time.NewTicker(p.cfg.ReadyPoll)
	defer t.Stop()
	for {
		err := in.client.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-in.exited:
			return fmt.Errorf("process %s before it was ready", in.exit)
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// watch reports an instance that exits on its own (crash detection).
func (p *Pool) watch(in *instance) {
	defer p.wg.Done()
	<-in.exited
	p.mu.Lock()
	if in.gone {
		p.mu.Unlock()
		return
	}
	in.gone = true
	busy := in.busy()
	delete(p.instances, in.id)
	p.mu.Unlock()
	ex := in.exit
	p.log.Info("instance exited", "id", in.id, "function", in.spec.Function, "exit", ex.String(), "busy", busy)
	p.emit(Event{Kind: EventCrashed, Instance: in.id, Function: in.spec.Function, Exit: &ex, Busy: busy})
	p.dispose(in, true)
}

// dispose removes the instance from the runtime and, if asked and enabled,
// starts a replacement.
func (p *Pool) dispose(in *instance, replace bool) {
	in.client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.rt.Remove(ctx, in.id); err != nil {
		p.log.Warn("remove instance", "id", in.id, "err", err)
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if !replace || p.cfg.NoReplace || closed {
		return
	}
	nid, err := p.Start(context.Background(), in.spec)
	p.emit(Event{Kind: EventReplaced, Instance: in.id, Function: in.spec.Function, Replacement: nid, Err: err})
}

// goDispose disposes of in (and replaces it) on a goroutine Close waits for;
// once the pool is closed it only removes it, synchronously.
func (p *Pool) goDispose(in *instance) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.dispose(in, false)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.dispose(in, true)
	}()
}

// Acquire returns an idle instance of function (the most recently used,
// which is the warmest) and marks it busy; the caller must Invoke it (which
// releases it) or Release it.
func (p *Pool) Acquire(function string) (runtime.ID, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *instance
	for _, in := range p.instances {
		if in.spec.Function != function || in.busy() || in.gone {
			continue
		}
		if best == nil || in.lastUsed.After(best.lastUsed) {
			best = in
		}
	}
	if best == nil {
		return "", false
	}
	best.reserved = true
	return best.id, true
}

// Release marks an acquired instance idle without invoking it.
func (p *Pool) Release(id runtime.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in, ok := p.instances[id]; ok {
		in.reserved = false
	}
}

// Invoke runs one invocation on instance id (idle, or acquired by the
// caller; how many invocations an instance runs at once is the caller's
// decision). It is bounded by the spec's InvokeTimeout: past it the
// instance is killed and replaced and the error wraps ErrTimeout. If the
// instance dies mid-invocation the error wraps ErrCrashed and names the exit
// status; the instance is replaced. A function error is a *protocol.Error and
// leaves the instance warm.
func (p *Pool) Invoke(ctx context.Context, id runtime.ID, body []byte) ([]byte, error) {
	p.mu.Lock()
	in, ok := p.instances[id]
	if !ok || in.gone {
		p.mu.Unlock()
		return nil, fmt.Errorf("invoke %s: %w", id, ErrUnknown)
	}
	in.reserved = false
	in.inflight++
	p.mu.Unlock()

	ictx, cancel := context.WithTimeout(ctx, in.spec.InvokeTimeout)
	out, err := in.client.Invoke(ictx, body)
	ictxErr := ictx.Err()
	cancel()
	if err == nil || isFunctionError(err) {
		p.mu.Lock()
		in.inflight--
		in.invoked++
		in.lastUsed = p.cfg.Now()
		p.mu.Unlock()
		return out, err
	}
	// Transport failure: did the process die?
	select {
	case <-in.exited:
		p.mu.Lock()
		stopped := in.stopped
		p.mu.Unlock()
		if stopped {
			return nil, fmt.Errorf("invoke %s on %s: %w", in.spec.Function, id, ErrStopped)
		}
		return nil, fmt.Errorf("invoke %s on %s: %w: %s", in.spec.Function, id, ErrCrashed, in.exit)
	case <-time.After(crashGrace):
	}
	if ictxErr != nil {
		kind, werr := EventStopped, ctx.Err()
		if ctx.Err() == nil {
			kind, werr = EventTimedOut, ErrTimeout
		}
		// The function is still running the abandoned request: kill it.
		if p.drop(in) {
			p.emit(Event{Kind: kind, Instance: id, Function: in.spec.Function})
			p.goDispose(in)
		}
		if werr == ErrTimeout {
			return nil, fmt.Errorf("invoke %s on %s: %w after %v", in.spec.Function, id, ErrTimeout, in.spec.InvokeTimeout)
		}
		return nil, fmt.Errorf("invoke %s on %s: %w", in.spec.Function, id, werr)
	}
	// The process lives but the protocol broke: it cannot be trusted.
	if p.drop(in) {
		p.emit(Event{Kind: EventCrashed, Instance: id, Function: in.spec.Function, Busy: true})
		p.goDispose(in)
	}
	return nil, fmt.Errorf("invoke %s on %s: %w: %w", in.spec.Function, id, ErrCrashed, err)
}

// crashGrace is how long Invoke waits, after a transport error, for the exit
// report that tells a crash from a broken connection. It exceeds the time a
// backend may take to report a SIGKILLed exit (the Docker backend asks the
// engine about an OOM kill for up to 1.5 s); Invoke returns as soon as the
// report arrives.
const crashGrace = 2 * time.Second

func isFunctionError(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe)
}

// drop removes in from the pool; it reports whether this call did (so only
// one path reports and disposes of an instance).
func (p *Pool) drop(in *instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.gone {
		return false
	}
	in.gone = true
	delete(p.instances, in.id)
	return true
}

// Stop stops (SIGTERM, SIGKILL after StopGrace) and removes instance id
// (eviction). Stopping an unknown instance is not an error.
func (p *Pool) Stop(ctx context.Context, id runtime.ID) error {
	p.mu.Lock()
	in, ok := p.instances[id]
	if ok && !in.gone {
		in.stopped = true
	}
	p.mu.Unlock()
	if !ok || !p.drop(in) {
		return nil
	}
	in.client.Close()
	if err := p.retire(ctx, id); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	p.emit(Event{Kind: EventStopped, Instance: id, Function: in.spec.Function})
	return nil
}

// retire stops id gracefully (StopGrace) and removes it; each step is
// bounded by RuntimeTimeout (beyond StopGrace for the stop).
func (p *Pool) retire(ctx context.Context, id runtime.ID) error {
	if p.cfg.StopGrace > 0 {
		sctx, cancel := context.WithTimeout(ctx, p.cfg.StopGrace+p.cfg.RuntimeTimeout)
		err := p.rt.Stop(sctx, id, p.cfg.StopGrace)
		cancel()
		if err != nil {
			p.log.Warn("graceful stop", "id", id, "err", err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.RuntimeTimeout)
	defer cancel()
	return p.rt.Remove(rctx, id)
}

// Sweep stops every idle instance whose keep-alive ran out by now and
// returns their IDs (sorted).
func (p *Pool) Sweep(ctx context.Context, now time.Time) ([]runtime.ID, error) {
	p.mu.Lock()
	var expired []*instance
	for _, in := range p.instances {
		if !in.busy() && !in.gone && !now.Before(in.lastUsed.Add(in.spec.KeepAlive)) {
			in.gone, in.stopped = true, true
			delete(p.instances, in.id)
			expired = append(expired, in)
		}
	}
	p.mu.Unlock()
	sort.Slice(expired, func(i, j int) bool { return expired[i].id < expired[j].id })
	ids := make([]runtime.ID, 0, len(expired))
	var errs []error
	for _, in := range expired {
		in.client.Close()
		if err := p.retire(ctx, in.id); err != nil {
			errs = append(errs, fmt.Errorf("expire %s: %w", in.id, err))
		}
		ids = append(ids, in.id)
		p.emit(Event{Kind: EventExpired, Instance: in.id, Function: in.spec.Function, At: now})
	}
	return ids, errors.Join(errs...)
}

// RunSweeper calls Sweep every interval until ctx ends.
func (p *Pool) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := p.Sweep(ctx, p.cfg.Now()); err != nil {
				p.log.Warn("keep-alive sweep", "err", err)
			}
		}
	}
}

// Instances returns a snapshot of the live instances, sorted by ID.
func (p *Pool) Instances() []Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Info, 0, len(p.instances))
	for _, in := range p.instances {
		st := StateIdle
		if in.busy() {
			st = StateBusy
		}
		out = append(out, Info{ID: in.id, Function: in.spec.Function, State: st, LastUsed: in.lastUsed, Started: in.started, Invoked: in.invoked})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops every instance and waits for the pool's goroutines.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	ids := make([]runtime.ID, 0, len(p.instances))
	for id := range p.instances {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := p.Stop(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close pool: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}
