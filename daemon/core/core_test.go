package core

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func mustNew(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustStep(t *testing.T, s *Scheduler, at float64, ev Event) Ready {
	t.Helper()
	if err := s.Step(TimeOf(at), ev); err != nil {
		t.Fatalf("step %v at %gs: %v", ev.Kind, at, err)
	}
	rd := s.Ready()
	rd.Actions = slices.Clone(rd.Actions) // Ready's slices alias the scheduler's buffers
	rd.Changes = slices.Clone(rd.Changes)
	return rd
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"batch cap", Config{Policy: PolicyBatch, BatchCap: 10}, true},
		{"unknown policy", Config{Policy: "lottery"}, false},
		{"negative D", Config{D: -1}, false},
		{"zero memory", Config{GPUMemBytes: -5}, false},
		{"util cap above 1", Config{UtilCap: 1.5}, false},
		{"NaN TTL", Config{TTL: math.NaN()}, false},
		{"negative keep-alive", Config{KeepAlive: -time.Second}, false},
		{"keep-alive forever", Config{KeepAlive: math.MaxInt64}, false},
		{"keep-alive 10 years", Config{KeepAlive: 10 * 365 * 24 * time.Hour}, true},
		{"improvements on mqfq", Config{Policy: PolicyMQFQ, Improvements: Improvements{ShareSlots: true}}, false},
		{"improvements on sluice", Config{Policy: PolicySluice, Improvements: Improvements{ShareSlots: true}, ImprovementsSet: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: err = %v, want ok = %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in  string
		p   Policy
		n   int
		bad bool
	}{
		{"fcfs", PolicyFCFS, 0, false},
		{"batch:10", PolicyBatch, 10, false},
		{"batch:0", "", 0, true},
		{"mqfq:3", "", 0, true},
		{"mqfq-sticky", PolicyMQFQSticky, 0, false},
		{"", "", 0, true},
	} {
		p, n, err := ParsePolicy(tc.in)
		if (err != nil) != tc.bad || p != tc.p || n != tc.n {
			t.Errorf("ParsePolicy(%q) = %q, %d, %v", tc.in, p, n, err)
		}
	}
	for _, tc := range []struct {
		in        string
		p         Policy
		n         int
		hold, bad bool
	}{
		{"mqfq-sticky", PolicyMQFQSticky, 0, false, false},
		{"mqfq-sticky:hold-cold", PolicyMQFQSticky, 0, true, false},
		{"batch:10:hold-cold", PolicyBatch, 10, true, false},
		{"fcfs:hold-cold:hold-cold", "", 0, false, true},
		{"hold-cold", "", 0, false, true},
	} {
		c, err := ApplyPolicy(tc.in, Config{})
		if (err != nil) != tc.bad || (err == nil && (c.Policy != tc.p || c.BatchCap != tc.n || c.HoldColdSlot != tc.hold)) {
			t.Errorf("ApplyPolicy(%q) = %q, %d, hold %v, %v", tc.in, c.Policy, c.BatchCap, c.HoldColdSlot, err)
		}
	}
}

// TestTags checks start and finish tags: S = max(V, F_flow), F = S + tau/w,
// an idle flow cannot bank credit, and weights scale the charge.
func TestTags(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, T: 10 * time.Second})
	mustStep(t, s, 0, Register(0, "a", 1, 1e9))
	mustStep(t, s, 0, Register(1, "b", 2, 1e9))
	// No history: tau = T/10 = 1s.
	mustStep(t, s, 0, Arrived(1, 0)) // a: S=0 F=1 (popped: cold start holds the slot)
	mustStep(t, s, 0, Arrived(2, 0)) // a: S=1 F=2
	mustStep(t, s, 0, Arrived(3, 1)) // b (weight 2): S=V F=V+0.5
	st := s.Status()
	a, b := st.Flows[0], st.Flows[1]
	if a.S != 1 || a.F != 2 {
		t.Errorf("flow a tags S=%g F=%g, want 1, 2", a.S, a.F)
	}
	if b.S != st.VirtualTime || b.F != b.S+0.5 {
		t.Errorf("flow b tags S=%g F=%g with V=%g, want S=V, F=V+0.5", b.S, b.F, st.VirtualTime)
	}
	if st.VirtualTime != 1 {
		t.Errorf("V = %g, want 1 (min start tag of backlogged flows)", st.VirtualTime)
	}
}

// TestVirtualTimeMonotonic: V never decreases, also when every queue empties.
func TestVirtualTimeMonotonic(t *testing.T) {
	d := newDriver(t, Config{Policy: PolicyMQFQSticky, D: 2}, 3)
	last := 0.0
	d.check = func(d *driver) {
		if d.s.v < last {
			t.Fatalf("V went back from %g to %g", last, d.s.v)
		}
		last = d.s.v
	}
	for f := 0; f < 4; f++ {
		d.step(Register(FnID(f), "f", 0, 1e9))
	}
	for i := 1; i <= 200; i++ {
		d.now += Time(50 * time.Millisecond)
		d.step(Arrived(InvID(i), FnID(i%4)))
		d.answerOne(func(Action) time.Duration { return 300 * time.Millisecond })
	}
	if last == 0 {
		t.Fatal("V never advanced")
	}
}

// TestTTL checks the anticipation period: TTL >= 0 is seconds; TTL < 0 is
// |TTL| x mean inter-arrival time; mqfq (not sticky) has none.
func TestTTL(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Policy
		ttl    float64
		want   float64
	}{
		{"fixed", PolicyMQFQSticky, 2, 2},
		{"iat multiple", PolicyMQFQSticky, -1.5, 1.5 * 4},
		{"zero", PolicyMQFQSticky, 0, 0},
		{"mqfq has none", PolicyMQFQ, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config{Policy: tc.policy, TTL: tc.ttl, TTLSet: true})
			mustStep(t, s, 0, Register(0, "a", 0, 0))
			for i, at := range []float64{0, 4, 8} {
				mustStep(t, s, at, Arrived(InvID(i+1), 0))
			}
			if got := s.ttl(s.flows[0]); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("ttl = %g, want %g", got, tc.want)
			}
		})
	}
}

// TestStateTransitions walks one flow through inactive -> active ->
// (queue empties, in flight) active -> (TTL) inactive, with memory following.
func TestStateTransitions(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 2, TTL: 3, TTLSet: true})
	mustStep(t, s, 0, Register(0, "a", 0, 2e9))
	rd := mustStep(t, s, 0, Arrived(1, 0))
	if len(rd.Changes) != 1 || rd.Changes[0].To != Active {
		t.Fatalf("arrival: changes %v, want inactive -> active", rd.Changes)
	}
	mustStep(t, s, 1, ContainerReady(1))
	rd = mustStep(t, s, 2, Completed(1, time.Second, 0))
	if len(rd.Changes) != 0 || s.flows[0].state != Active {
		t.Fatalf("completion within TTL: state %v, changes %v", s.flows[0].state, rd.Changes)
	}
	// lastServiced is when the invocation left the queue: 0s (a cold start
	// holding the slot pops at once), so the TTL ends at 3s.
	if rd.WakeAt != TimeOf(3) {
		t.Fatalf("WakeAt %v, want 3s (lastServiced 0s + TTL 3s)", rd.WakeAt)
	}
	s.Tick(TimeOf(2.9))
	if rd := s.Ready(); len(rd.Changes) != 0 {
		t.Fatalf("before TTL: changes %v", rd.Changes)
	}
	s.Tick(TimeOf(3))
	rd = s.Ready()
	if len(rd.Changes) != 1 || rd.Changes[0].To != Inactive {
		t.Fatalf("at TTL: changes %v, want active -> inactive", rd.Changes)
	}
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActEvict {
		t.Fatalf("at TTL: actions %v, want one evict", rd.Actions)
	}
}

// TestMultiGPUStickiness: a flow goes back to the GPU holding its warm
// container, and the slot it uses is on that GPU.
func TestMultiGPUStickiness(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, GPUs: 3, D: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Register(1, "b", 0, 0))
	rd := mustStep(t, s, 0, Arrived(1, 1))
	gpuB := rd.Actions[0].GPU
	mustStep(t, s, 1, ContainerReady(rd.Actions[0].Ctr))
	mustStep(t, s, 2, Completed(1, time.Second, 0))
	for i := 2; i < 6; i++ {
		rd = mustStep(t, s, float64(i), Arrived(InvID(i), 1))
		var disp *Action
		for j := range rd.Actions {
			if rd.Actions[j].Kind == ActDispatch {
				disp = &rd.Actions[j]
			}
		}
		if disp == nil || disp.GPU != gpuB {
			t.Fatalf("arrival %d: actions %v, want a dispatch on gpu %d", i, rd.Actions, gpuB)
		}
		if used := s.gpus[gpuB].used; used != 1 {
			t.Fatalf("gpu %d slots used %d, want 1", gpuB, used)
		}
		mustStep(t, s, float64(i)+0.5, Completed(InvID(i), time.Second, 0))
	}
}

// TestWarmPoolLimit: with one container per GPU, a second function's cold
// start stops the idle container of the first (LRU).
func TestWarmPoolLimit(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, ContainersPerGPU: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Register(1, "b", 0, 0))
	mustStep(t, s, 0, Arrived(1, 0))
	mustStep(t, s, 1, ContainerReady(1))
	mustStep(t, s, 2, Completed(1, time.Second, 0))
	rd := mustStep(t, s, 3, Arrived(2, 1))
	var kinds []ActionKind
	for _, a := range rd.Actions {
		kinds = append(kinds, a.Kind)
	}
	if len(kinds) < 2 || kinds[0] != ActStopContainer || kinds[len(kinds)-1] != ActStartContainer {
		t.Fatalf("actions %v: want stop-container of c1 before start-container", rd.Actions)
	}
}

// TestKeepAlive: an idle container is stopped after the keep-alive.
func TestKeepAlive(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, KeepAlive: time.Minute})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Arrived(1, 0))
	mustStep(t, s, 1, ContainerReady(1))
	rd := mustStep(t, s, 2, Completed(1, time.Second, 0))
	for rd.WakeAt != Never && rd.WakeAt <= TimeOf(62) {
		s.Tick(rd.WakeAt)
		rd = s.Ready()
		for _, a := range rd.Actions {
			if a.Kind == ActStopContainer {
				if s.Now() != TimeOf(62) {
					t.Fatalf("stopped at %v, want 62s", s.Now())
				}
				return
			}
		}
	}
	t.Fatal("container never stopped")
}

// TestContainerFailedRequeues: a failed cold start puts the invocation back
// at the head of its queue; three failures in a row fail it.
func TestContainerFailedRequeues(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	rd := mustStep(t, s, 0, Arrived(1, 0))
	for i := 0; i < 3; i++ {
		if len(rd.Actions) == 0 || rd.Actions[len(rd.Actions)-1].Kind != ActStartContainer {
			t.Fatalf("try %d: actions %v, want a start", i, rd.Actions)
		}
		rd = mustStep(t, s, float64(i+1), ContainerFailed(rd.Actions[len(rd.Actions)-1].Ctr, "no image"))
	}
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActFail || rd.Actions[0].Inv != 1 {
		t.Fatalf("after 3 failures: actions %v, want fail inv=1", rd.Actions)
	}
}

// TestMemoryMakeRoom: dispatching to a container whose memory is off the GPU
// evicts idle containers (LRU) until it fits, before the prefetch.
func TestMemoryMakeRoom(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, GPUMemBytes: 10e9, TTL: 100, TTLSet: true})
	for f := 0; f < 4; f++ {
		mustStep(t, s, 0, Register(FnID(f), "f", 0, 4e9))
	}
	now := 0.0
	run := func(inv InvID, fn FnID, ctr CtrID, cold bool) Ready {
		now++
		rd := mustStep(t, s, now, Arrived(inv, fn))
		if cold {
			now++
			mustStep(t, s, now, ContainerReady(ctr))
		}
		now++
		mustStep(t, s, now, Completed(inv, time.Second, 0))
		return rd
	}
	run(1, 0, 1, true) // c1 resident (4 GB)
	run(2, 1, 2, true) // c2 resident (8 GB)
	rd := run(3, 2, 3, true)
	if len(rd.Actions) < 2 || rd.Actions[0].Kind != ActEvict || rd.Actions[0].Ctr != 1 {
		t.Fatalf("third function: actions %v, want evict c1 (LRU) before start", rd.Actions)
	}
	if s.gpus[0].resident > 10e9 {
		t.Fatalf("resident %d over capacity", s.gpus[0].resident)
	}
}

// TestUtilizationCap: with a cap, a free slot is not used while the
// utilization estimate (EWMA of monitor samples) is above it, and WakeAt
// asks for a re-check one monitor period later. Cold starts hold their slot
// here (HoldColdSlot) so that each dispatch adds its provisional share at
// once; without it a start takes its slot (and share) when it is up.
func TestUtilizationCap(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 3, UtilCap: 0.8, HoldColdSlot: true})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Register(1, "b", 0, 0))
	mustStep(t, s, 0, Arrived(1, 0))
	mustStep(t, s, 0.5, MonitorTick(0, 0.95, nil))
	rd := mustStep(t, s, 1, Arrived(2, 1))
	if len(rd.Actions) != 0 {
		t.Fatalf("above the cap: actions %v, want none", rd.Actions)
	}
	if rd.WakeAt != TimeOf(1.5) {
		t.Fatalf("WakeAt %v, want 1.5s (one monitor period)", rd.WakeAt)
	}
	rd = mustStep(t, s, 1.5, MonitorTick(0, 0.3, nil)) // estimate 0.6*0.3 + 0.4*0.95 = 0.56
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActStartContainer || rd.Actions[0].Fn != 1 {
		t.Fatalf("below the cap: actions %v, want b's cold start", rd.Actions)
	}
	// The dispatch added a provisional 1/D: 0.56 + 0.33 is over the cap,
	// though a slot is free.
	rd = mustStep(t, s, 1.6, Arrived(3, 0))
	if len(rd.Actions) != 0 {
		t.Fatalf("provisional share over the cap: actions %v, want none", rd.Actions)
	}
	if err := s.Step(TimeOf(2), MonitorTick(0, 1.5, nil)); err == nil {
		t.Fatal("utilization 1.5 accepted")
	}
	if err := s.Step(TimeOf(2), MonitorTick(3, 0.5, nil)); err == nil {
		t.Fatal("unknown GPU accepted")
	}
	if err := s.Step(TimeOf(2), MonitorTick(0, 0.5, []CtrActivity{{Ctr: 1, Busy: 2}})); err == nil {
		t.Fatal("busy fraction 2 accepted")
	}
}

// TestWeights: a flow of weight 2 is charged half per request.
func TestWeights(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, T: 10 * time.Second})
	mustStep(t, s, 0, Register(0, "heavy", 2, 0))
	mustStep(t, s, 0, Register(1, "light", 1, 0))
	mustStep(t, s, 0, Arrived(1, 1)) // occupies the slot
	for i := 0; i < 3; i++ {
		mustStep(t, s, 0, Arrived(InvID(10+i), 0))
		mustStep(t, s, 0, Arrived(InvID(20+i), 1))
	}
	st := s.Status()
	// tau prior 1s: three queued requests span 3 x 1/2 for heavy, 3 x 1 for
	// light (its first request already left the queue).
	if h, l := st.Flows[0], st.Flows[1]; h.F-h.S != 1.5 || l.F-l.S != 3 {
		t.Fatalf("tag spans heavy %g light %g, want 1.5 and 3", h.F-h.S, l.F-l.S)
	}
}

// TestColdStartSlot: by default a cold start holds no D slot, so with D = 1
// a second function's warm container runs while the first function's
// container starts; with HoldColdSlot (the reference's defect 9) the slot
// stays taken until the start completes.
func TestColdStartSlot(t *testing.T) {
	for _, hold := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, HoldColdSlot: hold})
		mustStep(t, s, 0, Register(0, "a", 0, 0))
		mustStep(t, s, 0, Register(1, "b", 0, 0))
		// Warm b's container first.
		rd := mustStep(t, s, 0, Arrived(1, 1))
		if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActStartContainer {
			t.Fatalf("hold=%v: actions %v, want b's cold start", hold, rd.Actions)
		}
		cb := rd.Actions[0].Ctr
		mustStep(t, s, 2, ContainerReady(cb))
		mustStep(t, s, 2.1, Completed(1, 100*time.Millisecond, 0))
		// a needs a cold start; b arrives while it runs.
		mustStep(t, s, 3, Arrived(2, 0))
		rd = mustStep(t, s, 3.1, Arrived(3, 1))
		dispatched := false
		for _, a := range rd.Actions {
			dispatched = dispatched || (a.Kind == ActDispatch && a.Inv == 3 && a.Ctr == cb)
		}
		if dispatched == hold {
			t.Fatalf("hold=%v: b dispatched during a's cold start = %v; actions %v", hold, dispatched, rd.Actions)
		}
		if st := s.Status(); hold && st.GPUs[0].SlotsUsed != 1 {
			t.Fatalf("hold=%v: %d slots used during the cold start, want 1", hold, st.GPUs[0].SlotsUsed)
		}
	}
}

// TestWarmFirst: with a full warm pool, Sluice's WarmFirst serves a flow
// whose idle container can run now before a flow whose cold start would
// stop another flow's container; without it (the paper's order) the flow
// with the lower start tag goes first and displaces the warm container.
func TestWarmFirst(t *testing.T) {
	for _, warm := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1, ContainersPerGPU: 1,
			Improvements: Improvements{WarmFirst: warm, NoColdAhead: true}, ImprovementsSet: true})
		mustStep(t, s, 0, Register(0, "a", 0, 0))
		mustStep(t, s, 0, Register(1, "b", 0, 0))
		rd := mustStep(t, s, 0, Arrived(1, 1))
		cb := rd.Actions[0].Ctr
		mustStep(t, s, 2, ContainerReady(cb))
		// b's container runs invocation 1; a (no container, no pool room)
		// and b's next invocation queue behind it.
		mustStep(t, s, 2.05, Arrived(2, 0))
		mustStep(t, s, 2.06, Arrived(3, 1))
		rd = mustStep(t, s, 2.1, Completed(1, 100*time.Millisecond, 0))
		var warmRun, coldStart bool
		for _, a := range rd.Actions {
			warmRun = warmRun || (a.Kind == ActDispatch && a.Inv == 3 && a.Ctr == cb)
			coldStart = coldStart || (a.Kind == ActStartContainer && a.Fn == 0)
		}
		if warmRun != warm || coldStart == warm {
			t.Fatalf("warmFirst=%v: b's warm run %v, a's cold start %v; actions %v", warm, warmRun, coldStart, rd.Actions)
		}
	}
}

// TestColdAheadSparesActiveContainers: in a full pool, ColdAhead's
// speculative start may stop an Inactive flow's idle container but not
// that of a flow still Active in its TTL.
func TestColdAheadSparesActiveContainers(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicySluice, D: 1, ContainersPerGPU: 2, TTL: 10, TTLSet: true, ImprovementsSet: true})
	for i, name := range []string{"a", "b", "c"} {
		mustStep(t, s, 0, Register(FnID(i), name, 0, 0))
	}
	cb := mustStep(t, s, 0, Arrived(1, 1)).Actions[0].Ctr
	mustStep(t, s, 2, ContainerReady(cb))
	mustStep(t, s, 2.1, Completed(1, 100*time.Millisecond, 0)) // b idle, Active until 12.1
	cc := mustStep(t, s, 3, Arrived(2, 2)).Actions[0].Ctr
	mustStep(t, s, 5, ContainerReady(cc)) // c runs and holds the only slot
	touches := func(acts []Action) (started, stopped bool) {
		for _, a := range acts {
			started = started || (a.Kind == ActStartContainer && a.Fn == 0)
			stopped = stopped || (a.Kind == ActStopContainer && a.Ctr == cb)
		}
		return
	}
	rd := mustStep(t, s, 6, Arrived(3, 0))
	if started, stopped := touches(rd.Actions); started || stopped {
		t.Fatalf("a's speculative start took Active b's container: %v", rd.Actions)
	}
	s.Tick(TimeOf(13)) // b's TTL has run out: b is Inactive
	rd = s.Ready()
	if started, stopped := touches(rd.Actions); !started || !stopped {
		t.Fatalf("after b turned Inactive: a started %v, b's container stopped %v; actions %v", started, stopped, rd.Actions)
	}
}

// TestShareSlots: with ShareSlots a flow that holds a slot does not take the
// GPU's last free slot for its next queued invocation, although it has an
// idle container; another flow's invocation does, and the first flow's next
// invocation runs once a slot of its own frees. Without it the first flow
// takes both slots. A request that went through a cold start is not held
// back (invocations 1 and 2).
func TestShareSlots(t *testing.T) {
	for _, share := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 2,
			Improvements: Improvements{ShareSlots: share, NoColdAhead: true}, ImprovementsSet: true})
		mustStep(t, s, 0, Register(0, "a", 0, 0))
		mustStep(t, s, 0, Register(1, "b", 0, 0))
		var ca []CtrID
		for inv := InvID(1); inv <= 2; inv++ {
			_, c := starts(mustStep(t, s, 0, Arrived(inv, 0)))
			ca = append(ca, c...)
		}
		if len(ca) != 2 {
			t.Fatalf("share=%v: a started %d containers, want 2", share, len(ca))
		}
		dispatched := func(acts []Action, inv InvID) bool {
			for _, a := range acts {
				if a.Kind == ActDispatch && a.Inv == inv {
					return true
				}
			}
			return false
		}
		if !dispatched(mustStep(t, s, 2, ContainerReady(ca[0])).Actions, 1) ||
			!dispatched(mustStep(t, s, 2, ContainerReady(ca[1])).Actions, 2) {
			t.Fatalf("share=%v: invocations 1 and 2 not both dispatched after their cold starts", share)
		}
		mustStep(t, s, 3, Completed(1, time.Second, 0))
		mustStep(t, s, 3, Completed(2, time.Second, 0)) // a: two idle containers
		if !dispatched(mustStep(t, s, 4, Arrived(3, 0)).Actions, 3) {
			t.Fatalf("share=%v: invocation 3 not dispatched to an idle container", share)
		}
		second := dispatched(mustStep(t, s, 4, Arrived(4, 0)).Actions, 4)
		if second == share {
			t.Fatalf("share=%v: a's invocation 4 took the last slot: %v", share, second)
		}
		if !share {
			continue
		}
		cb := mustStep(t, s, 4.5, Arrived(5, 1)).Actions[0].Ctr
		if !dispatched(mustStep(t, s, 6, ContainerReady(cb)).Actions, 5) {
			t.Fatalf("b's invocation did not get the free slot")
		}
		if !dispatched(mustStep(t, s, 6.5, Completed(3, time.Second, 0)).Actions, 4) {
			t.Fatalf("a's invocation 4 not dispatched after its invocation 3 completed")
		}
	}
}

// TestColdT: with more backlogged flows than warm-pool slots, ColdT raises
// T to 30 expected switch costs (observed cold start 2 s x (2-1)/2 = 1 s);
// with pool room, or without ColdT, T stays as configured.
func TestColdT(t *testing.T) {
	for _, tc := range []struct {
		coldT bool
		pool  int
		want  float64
	}{{false, 1, 5}, {true, 1, 30}, {true, 2, 5}} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1, ContainersPerGPU: tc.pool, T: 5 * time.Second,
			Improvements: Improvements{ColdT: tc.coldT, NoColdAhead: true}, ImprovementsSet: true})
		mustStep(t, s, 0, Register(0, "a", 0, 0))
		mustStep(t, s, 0, Register(1, "b", 0, 0))
		ca := mustStep(t, s, 0, Arrived(1, 0)).Actions[0].Ctr
		mustStep(t, s, 2, ContainerReady(ca)) // a 2 s cold start; invocation 1 runs
		mustStep(t, s, 2.1, Arrived(2, 1))
		mustStep(t, s, 2.2, Arrived(3, 0)) // a and b backlogged
		if got := s.Status().Throttle; math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("ColdT %v, pool %d: T = %g, want %g", tc.coldT, tc.pool, got, tc.want)
		}
	}
}

// TestResponseRatio: when a slot frees, MQFQ-Sticky serves the longest
// queue (a's burst of three 1 s requests); with ResponseRatio the sparse
// flow b, whose 10 ms request has waited 1 s (ratio 101 against a's 1.5),
// goes first.
func TestResponseRatio(t *testing.T) {
	for _, ratio := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1, T: 100 * time.Second,
			Improvements: Improvements{ResponseRatio: ratio, NoColdAhead: true}, ImprovementsSet: true})
		mustStep(t, s, 0, Register(0, "a", 0, 0))
		mustStep(t, s, 0, Register(1, "b", 0, 0))
		ca := mustStep(t, s, 0, Arrived(1, 0)).Actions[0].Ctr
		mustStep(t, s, 1, ContainerReady(ca))
		mustStep(t, s, 2, Completed(1, time.Second, 0))
		cb := mustStep(t, s, 2, Arrived(2, 1)).Actions[0].Ctr
		mustStep(t, s, 3, ContainerReady(cb))
		mustStep(t, s, 3.01, Completed(2, 10*time.Millisecond, 0))
		mustStep(t, s, 4, Arrived(3, 0)) // a runs; the slot is taken
		mustStep(t, s, 4.5, Arrived(4, 1))
		for inv := InvID(5); inv <= 7; inv++ {
			mustStep(t, s, 5, Arrived(inv, 0))
		}
		var first InvID
		for _, a := range mustStep(t, s, 5.5, Completed(3, time.Second, 0)).Actions {
			if a.Kind == ActDispatch && first == 0 {
				first = a.Inv
			}
		}
		want := InvID(5)
		if ratio {
			want = 4
		}
		if first != want {
			t.Fatalf("ratio=%v: first dispatch %d, want %d", ratio, first, want)
		}
	}
}

// TestConcurrencyCountsTimeOnGPU: an invocation dispatched to a container
// whose memory is still moving in counts towards its GPU's concurrency only
// once the memory has landed (AdaptiveD must not take a slot spent waiting
// for memory for sharing), and stops counting when it completes.
func TestConcurrencyCountsTimeOnGPU(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicySluice, D: 2, TTL: 1, TTLSet: true,
		Improvements: Improvements{AdaptiveD: true, MemoryAware: true, NoColdAhead: true}, ImprovementsSet: true})
	g := s.gpus[0]
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	c := mustStep(t, s, 0, Arrived(1, 0)).Actions[0].Ctr
	mustStep(t, s, 2, ContainerReady(c))
	if g.running != 1 {
		t.Fatalf("a resident container's run: running %d, want 1", g.running)
	}
	mustStep(t, s, 3, Completed(1, time.Second, 0)) // a turns idle: its memory is evicted
	mustStep(t, s, 3.3, MemoryMoved(c, false))
	var prefetch bool
	for _, a := range mustStep(t, s, 10, Arrived(2, 0)).Actions {
		prefetch = prefetch || a.Kind == ActPrefetch
	}
	if !prefetch || g.running != 0 {
		t.Fatalf("dispatch with memory moving in: prefetch %v, running %d, want a prefetch and 0", prefetch, g.running)
	}
	mustStep(t, s, 10.25, MemoryMoved(c, true))
	if g.running != 1 {
		t.Fatalf("after the memory landed: running %d, want 1", g.running)
	}
	mustStep(t, s, 11.25, Completed(2, time.Second, 0))
	if g.running != 0 {
		t.Fatalf("after completion: running %d, want 0", g.running)
	}
}

// TestShareSlotsPerGPU: with two GPUs the rule is judged where the flow has
// an idle container: a holds a slot on one GPU and has idle containers on
// both; its next invocation goes to the GPU with two free slots, not to the
// last free slot of the GPU it already uses.
func TestShareSlotsPerGPU(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicySluice, D: 2, GPUs: 2,
		Improvements: Improvements{ShareSlots: true, NoColdAhead: true}, ImprovementsSet: true})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	var ctrs []CtrID
	for inv := InvID(1); inv <= 3; inv++ {
		_, c := starts(mustStep(t, s, 0, Arrived(inv, 0)))
		ctrs = append(ctrs, c...)
	}
	for _, c := range ctrs {
		mustStep(t, s, 2, ContainerReady(c))
	}
	for inv := InvID(1); inv <= 3; inv++ {
		mustStep(t, s, 3, Completed(inv, time.Second, 0))
	}
	gpuOf := func(acts []Action, inv InvID) int {
		for _, a := range acts {
			if a.Kind == ActDispatch && a.Inv == inv {
				return a.GPU
			}
		}
		return -1
	}
	g4 := gpuOf(mustStep(t, s, 4, Arrived(4, 0)).Actions, 4)
	g5 := gpuOf(mustStep(t, s, 4, Arrived(5, 0)).Actions, 5)
	if g4 < 0 || g5 < 0 || g4 == g5 {
		t.Fatalf("invocations 4 and 5 on GPUs %d and %d, want two different GPUs", g4, g5)
	}
}

// TestMemoryRefitsAfterStarts: containers that start together (cold starts
// that each hold a slot, as the reference's do) or whose footprint grows
// can oversubscribe the GPU (each initializes on the device). Once one is
// idle its memory goes to the host even though its flow stays Active,
// instead of every later run paying for demand paging.
func TestMemoryRefitsAfterStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		flows int
		grow  int64 // footprint the first completion reports (0: unchanged)
	}{
		{"cold starts together, mqfq-sticky:hold-cold", Config{Policy: PolicyMQFQSticky, HoldColdSlot: true, D: 3}, 3, 0},
		{"footprint grew, mqfq-sticky", Config{Policy: PolicyMQFQSticky, D: 2}, 2, 7e9},
		{"footprint grew, sluice", Config{Policy: PolicySluice, D: 2}, 2, 7e9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.GPUMemBytes, tc.cfg.TTL, tc.cfg.TTLSet = 10e9, 100, true
			s := mustNew(t, tc.cfg)
			g := s.gpus[0]
			var ctrs []CtrID
			for f := 0; f < tc.flows; f++ {
				mustStep(t, s, 0, Register(FnID(f), "f", 0, 4e9))
			}
			for f := 0; f < tc.flows; f++ {
				_, c := starts(mustStep(t, s, 1, Arrived(InvID(f+1), FnID(f))))
				ctrs = append(ctrs, c...)
			}
			if len(ctrs) != tc.flows {
				t.Fatalf("started %v, want %d containers", ctrs, tc.flows)
			}
			for _, c := range ctrs {
				mustStep(t, s, 2, ContainerReady(c))
			}
			mustStep(t, s, 3, Completed(1, time.Second, tc.grow))
			if g.resident > 10e9 {
				t.Fatalf("an idle container while oversubscribed: resident %d, want at most 10 GB", g.resident)
			}
		})
	}
}

// TestBadEventsChangeNothing: events the core rejects leave it as it was,
// its clock included, and a later valid event is taken.
func TestBadEventsChangeNothing(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	for _, tc := range []struct {
		name string
		ev   Event
	}{
		{"completion of an unknown invocation", Completed(99, time.Second, 0)},
		{"arrival for an unknown function", Arrived(1, 7)},
		{"weight too small", Register(1, "b", 1e-320, 0)},
		{"weight not a number", Register(1, "b", math.NaN(), 0)},
		{"weight too large", Register(1, "b", 1e9, 0)},
		{"negative memory", Register(1, "b", 1, -1)},
	} {
		if err := s.Step(TimeOf(100), tc.ev); err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		if s.Now() != 0 {
			t.Fatalf("%s: rejected, but the clock moved to %v", tc.name, s.Now())
		}
	}
	mustStep(t, s, 2, Register(1, "b", 0.5, 0))
	mustStep(t, s, 2, Arrived(1, 1))
}

// TestCompletedBeforeRun: a request bound to a container that is up but
// waits for a slot has not run; a completion for it is rejected (the
// simulator numbers invocations from 0, the container's unset current
// invocation).
func TestCompletedBeforeRun(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicyMQFQSticky, D: 1, TTL: 100, TTLSet: true})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Register(1, "b", 0, 0))
	ca := mustStep(t, s, 0, Arrived(5, 0)).Actions[0].Ctr
	mustStep(t, s, 1, ContainerReady(ca)) // a runs, holding the only slot
	mustStep(t, s, 1, Arrived(0, 1))      // b waits: no free slot
	var cb CtrID
	for _, a := range mustStep(t, s, 2, Completed(5, time.Second, 0)).Actions {
		if a.Kind == ActStartContainer {
			cb = a.Ctr // b's cold start, without a slot
		}
	}
	if cb == 0 {
		t.Fatal("no cold start for b")
	}
	mustStep(t, s, 2, Arrived(6, 0))      // a runs again in its idle container
	mustStep(t, s, 3, ContainerReady(cb)) // b's container is up and waits for the slot
	if err := s.Step(TimeOf(3), Completed(0, time.Second, 0)); err == nil {
		t.Fatal("completion of invocation 0, which has not run, was accepted")
	}
	rd := mustStep(t, s, 4, Completed(6, time.Second, 0))
	var ran bool
	for _, a := range rd.Actions {
		ran = ran || (a.Kind == ActDispatch && a.Inv == 0)
	}
	if !ran {
		t.Fatalf("after a's completion: actions %v, want invocation 0 dispatched", rd.Actions)
	}
	mustStep(t, s, 5, Completed(0, time.Second, 0))
}

// TestSJFLateRegistration: a function registered after others have been
// served starts with no deficit credit: it does not jump the queue as
// "starved" ahead of shorter work.
func TestSJFLateRegistration(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicySJF, D: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	now := 0.0
	var ctr CtrID
	for inv := InvID(1); inv <= 60; inv++ {
		now++
		for _, a := range mustStep(t, s, now, Arrived(inv, 0)).Actions {
			if a.Kind == ActStartContainer {
				ctr = a.Ctr
				mustStep(t, s, now, ContainerReady(ctr))
			}
		}
		mustStep(t, s, now+0.5, Completed(inv, 100*time.Millisecond, 0))
	}
	mustStep(t, s, now+1, Register(1, "b", 0, 0))
	if f := s.flow(1); f.deficit+s.sjfGain != 0 {
		t.Fatalf("late flow's deficit %g, want 0", f.deficit+s.sjfGain)
	}
}

// TestColdAheadRetriesFailedStart: with ColdAhead, a flow whose first
// container fails to start gets another start at once, although every slot
// is busy, instead of waiting for a slot to free.
func TestColdAheadRetriesFailedStart(t *testing.T) {
	s := mustNew(t, Config{Policy: PolicySluice, D: 1})
	mustStep(t, s, 0, Register(0, "a", 0, 0))
	mustStep(t, s, 0, Register(1, "b", 0, 0))
	ca := mustStep(t, s, 0, Arrived(1, 0)).Actions[0].Ctr
	mustStep(t, s, 1, ContainerReady(ca)) // a runs in the only slot
	rd := mustStep(t, s, 1, Arrived(2, 1))
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActStartContainer {
		t.Fatalf("b's arrival: actions %v, want an early start", rd.Actions)
	}
	cb := rd.Actions[0].Ctr
	rd = mustStep(t, s, 2, ContainerFailed(cb, "test"))
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActStartContainer || rd.Actions[0].Fn != 1 {
		t.Fatalf("after b's start failed: actions %v, want another start for b", rd.Actions)
	}
}

// TestFirstStarts: with FirstStarts, flows that turn Active with no
// container may start while up to 2D starts are under way; without it,
// ColdAhead's starts share the budget of D per GPU.
func TestFirstStarts(t *testing.T) {
	for _, first := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1,
			Improvements: Improvements{FirstStarts: first}, ImprovementsSet: true})
		n := 0
		for f := 0; f < 4; f++ {
			mustStep(t, s, 0, Register(FnID(f), "f", 0, 3e9))
			_, c := starts(mustStep(t, s, 0, Arrived(InvID(f+1), FnID(f))))
			n += len(c)
		}
		if want := map[bool]int{false: 1, true: 2}[first]; n != want {
			t.Fatalf("FirstStarts %v: %d starts for four flows with no container, want %d", first, n, want)
		}
	}
}

// TestAdaptiveDSkipsPagedRuns: an invocation that started while its GPU
// was oversubscribed (here a footprint larger than the GPU) gives AdaptiveD
// no slowdown sample: its GPU time includes demand paging, not sharing.
func TestAdaptiveDSkipsPagedRuns(t *testing.T) {
	for _, tc := range []struct {
		mem  int64
		want int
	}{{1e9, 1}, {3e9, 0}} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1, GPUMemBytes: 2e9,
			Improvements: Improvements{AdaptiveD: true, NoColdAhead: true}, ImprovementsSet: true})
		mustStep(t, s, 0, Register(0, "a", 0, tc.mem))
		c := mustStep(t, s, 0, Arrived(1, 0)).Actions[0].Ctr
		mustStep(t, s, 1, ContainerReady(c))
		mustStep(t, s, 2, Completed(1, time.Second, 0))
		if n := s.gpus[0].slowN[1]; n != tc.want {
			t.Fatalf("footprint %d on a 2 GB GPU: %d samples, want %d", tc.mem, n, tc.want)
		}
	}
}

// TestPrewarm: prewarm starts run in the background: at most D at a time
// per GPU, never into memory that only evicting an Active flow's idle
// container would free, never while work is queued, and with a start
// budget of their own, so queued work's starts do not wait for that
// budget (prewarmEdges: failures, keep-alive, footprints, requests).
func TestPrewarm(t *testing.T) {
	for _, p := range []Policy{PolicyFCFS, PolicyMQFQSticky, PolicySluice} {
		for _, tc := range []struct {
			name    string
			mem     int64
			atFirst int
		}{{"start budget", 14e9, 2}, {"memory", 6e9, 1}} {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) { prewarmBackground(t, p, tc.mem, tc.atFirst) })
		}
		t.Run(string(p)+"/not while work is queued", func(t *testing.T) {
			s := mustNew(t, Config{Policy: p, D: 1, GPUMemBytes: 100e9})
			mustStep(t, s, 0, Register(0, "x", 0, 1e9))
			_, xc := starts(mustStep(t, s, 0, Arrived(1, 0)))
			mustStep(t, s, 0, Arrived(2, 0))
			ev := Register(1, "y", 0, 1e9)
			ev.Prewarm = 1
			if fns, _ := starts(mustStep(t, s, 0.1, ev)); len(fns) != 0 {
				t.Fatalf("prewarm started %v while a request was queued", fns)
			}
			if len(xc) != 1 {
				t.Fatalf("x's first arrival started %v, want one container", xc)
			}
			if fns, _ := starts(mustStep(t, s, 1, ContainerReady(xc[0]))); len(fns) != 0 {
				t.Fatalf("prewarm started %v while a request was queued", fns)
			}
			fns, _ := starts(mustStep(t, s, 2, Completed(1, time.Second, 0)))
			if !slices.Equal(fns, []FnID{1}) {
				t.Fatalf("the queue empty: started %v, want y's prewarm [1]", fns)
			}
		})
		t.Run(string(p)+"/edge cases", func(t *testing.T) { prewarmEdges(t, p) })
		t.Run(string(p)+"/demand first", func(t *testing.T) {
			s := mustNew(t, Config{Policy: p, D: 1, GPUMemBytes: 100e9})
			for f := 0; f < 2; f++ {
				ev := Register(FnID(f), "f", 0, 1e9)
				ev.Prewarm = 1
				mustStep(t, s, 0, ev)
			}
			mustStep(t, s, 0, Register(2, "c", 0, 1e9))
			// One prewarm start (a's) is in flight and D = 1: c's start, for
			// queued work, does not wait for it; b's prewarm does.
			if fns, _ := starts(mustStep(t, s, 0.5, Arrived(1, 2))); !slices.Equal(fns, []FnID{2}) {
				t.Fatalf("an arrival while a prewarm start is in flight started functions %v, want [2]", fns)
			}
			if fns, _ := starts(mustStep(t, s, 1, ContainerReady(1))); !slices.Equal(fns, []FnID{1}) {
				t.Fatalf("the first prewarm start done: started functions %v, want [1]", fns)
			}
		})
	}
}

// starts lists the functions and containers rd starts.
func starts(rd Ready) (fns []FnID, ctrs []CtrID) {
	for _, a := range rd.Actions {
		if a.Kind == ActStartContainer {
			fns, ctrs = append(fns, a.Fn), append(ctrs, a.Ctr)
		}
	}
	return fns, ctrs
}

// prewarmBackground registers five 4 GB functions with one prewarmed
// container each on a GPU of mem bytes with D = 2, expects atFirst starts at
// once, then finishes starts one by one: never more than D in flight, never
// oversubscribed, all five started in the end.
func prewarmBackground(t *testing.T, p Policy, mem int64, atFirst int) {
	s := mustNew(t, Config{Policy: p, D: 2, GPUMemBytes: mem})
	g := s.gpus[0]
	var pending []CtrID
	for f := 0; f < 5; f++ {
		ev := Register(FnID(f), "f", 0, 4e9)
		ev.Prewarm = 1
		_, c := starts(mustStep(t, s, 0, ev))
		pending = append(pending, c...)
	}
	if len(pending) != atFirst {
		t.Fatalf("5 registrations with prewarm (D = 2, %d GB of 4 GB footprints) started %d containers at once, want %d",
			mem/1e9, len(pending), atFirst)
	}
	started := len(pending)
	for at := 1.0; len(pending) > 0; at++ {
		if g.starting > s.cfg.D {
			t.Fatalf("%d prewarm starts in flight, want at most %d", g.starting, s.cfg.D)
		}
		if g.resident > s.cfg.GPUMemBytes {
			t.Fatalf("prewarm oversubscribed the GPU: %d bytes resident", g.resident)
		}
		c := pending[0]
		pending = pending[1:]
		_, more := starts(mustStep(t, s, at, ContainerReady(c)))
		pending = append(pending, more...)
		started += len(more)
	}
	if started != 5 {
		t.Fatalf("prewarm started %d containers for 5 functions", started)
	}
}

// prewarmEdges: a failed prewarm start frees its budget and is not retried;
// a flow gets at most its prewarm count of prewarm starts, however often
// keep-alive stops them; a footprint that does not fit does not hold back a
// smaller one behind it; a request for a flow whose prewarm start is under
// way waits for that container instead of starting another.
func prewarmEdges(t *testing.T, p Policy) {
	prewarmed := func(fn FnID, name string, bytes int64, n int) Event {
		ev := Register(fn, name, 0, bytes)
		ev.Prewarm = n
		return ev
	}
	t.Run("failed start", func(t *testing.T) {
		s := mustNew(t, Config{Policy: p, D: 1, GPUMemBytes: 100e9})
		mustStep(t, s, 0, prewarmed(0, "a", 1e9, 1))
		mustStep(t, s, 0, prewarmed(1, "b", 1e9, 1))
		if fns, _ := starts(mustStep(t, s, 1, ContainerFailed(1, "test"))); !slices.Equal(fns, []FnID{1}) {
			t.Fatalf("a's prewarm start failed: started %v, want b's [1] and no retry of a", fns)
		}
		if s.gpus[0].prewarming != 1 {
			t.Fatalf("%d prewarm starts counted, want 1 (b's)", s.gpus[0].prewarming)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		s := mustNew(t, Config{Policy: p, D: 2, ContainersPerGPU: 2, KeepAlive: time.Second, GPUMemBytes: 100e9})
		_, pending := starts(mustStep(t, s, 0, prewarmed(0, "a", 1e9, 3)))
		total := len(pending)
		for at := 1.0; at < 20; at++ {
			for _, c := range pending {
				_, more := starts(mustStep(t, s, at, ContainerReady(c)))
				total += len(more)
			}
			pending = pending[:0]
			s.Tick(TimeOf(at + 0.5))
			_, more := starts(s.Ready())
			pending, total = append(pending, more...), total+len(more)
		}
		if total != 3 {
			t.Fatalf("%d prewarm starts for Prewarm 3 over 20 keep-alive periods, want 3", total)
		}
	})
	t.Run("big then small", func(t *testing.T) {
		s := mustNew(t, Config{Policy: p, D: 2, GPUMemBytes: 10e9, TTL: 1000, TTLSet: true})
		mustStep(t, s, 0, Register(0, "x", 0, 6e9))
		_, xc := starts(mustStep(t, s, 0, Arrived(1, 0)))
		mustStep(t, s, 1, ContainerReady(xc[0]))
		mustStep(t, s, 2, Completed(1, time.Second, 0)) // x stays Active, its 6 GB resident
		mustStep(t, s, 2, prewarmed(1, "big", 8e9, 1))
		if fns, _ := starts(mustStep(t, s, 2, prewarmed(2, "small", 1e9, 1))); !slices.Equal(fns, []FnID{2}) {
			t.Fatalf("4 GB free: started %v, want small's prewarm [2] (big's 8 GB does not fit)", fns)
		}
	})
	t.Run("request waits for the prewarm start", func(t *testing.T) {
		s := mustNew(t, Config{Policy: p, D: 2, GPUMemBytes: 100e9})
		_, pc := starts(mustStep(t, s, 0, prewarmed(0, "a", 1e9, 1)))
		if fns, _ := starts(mustStep(t, s, 0.5, Arrived(1, 0))); len(fns) != 0 {
			t.Fatalf("a request for a flow whose prewarm start is under way started %v", fns)
		}
		var ran bool
		for _, a := range mustStep(t, s, 1, ContainerReady(pc[0])).Actions {
			ran = ran || (a.Kind == ActDispatch && a.Inv == 1 && a.Ctr == pc[0] && a.Cold)
		}
		if !ran {
			t.Fatal("the request did not run (cold) in the prewarmed container once it was up")
		}
	})
}

// TestEvictAhead: a queued request for a flow whose idle container was
// evicted waits for a slot; with EvictAhead the scheduler makes room for
// it at once, evicting the idle container of a flow with no queued work
// whose forecast next use is farthest (and only as much as needed), so
// the later dispatch waits for the swap-in alone.
func TestEvictAhead(t *testing.T) {
	const a, b, c, x = 0, 1, 2, 3
	for _, on := range []bool{false, true} {
		s := mustNew(t, Config{Policy: PolicySluice, D: 1, GPUMemBytes: 12e9, TTL: 100, TTLSet: true,
			ImprovementsSet: true, Improvements: Improvements{MemoryAware: true, EvictAhead: on}})
		for f := FnID(0); f < 4; f++ {
			mustStep(t, s, 0, Register(f, "f", 0, 4e9))
		}
		runOnce(t, s, 1, 1, c, 1)    // c1: c's container
		runOnce(t, s, 2, 2, a, 2)    // c2: a's, seen once (no forecast)
		runOnce(t, s, 10.5, 3, c, 0) // c: mean inter-arrival 9.5 s, next use forecast at 20 s
		runOnce(t, s, 11.5, 4, b, 3) // c3: b's; the GPU is full (3 x 4 GB)
		runOnce(t, s, 13.5, 5, b, 0) // b: forecast at 15.5 s
		rd := mustStep(t, s, 14.2, Arrived(6, x))
		if ev := evictions(rd); !slices.Equal(ev, []CtrID{2}) {
			t.Fatalf("x's cold start evicted %v, want a's container (farthest forecast)", ev)
		}
		mustStep(t, s, 14.3, MemoryMoved(2, false))
		mustStep(t, s, 14.7, ContainerReady(4)) // x runs and holds the only slot
		rd = mustStep(t, s, 14.8, Arrived(7, a))
		want := []CtrID(nil)
		if on {
			want = []CtrID{1} // c's (20 s) before b's (15.5 s), and one is enough
		}
		if ev := evictions(rd); !slices.Equal(ev, want) {
			t.Fatalf("EvictAhead %v: a's queued request evicted %v, want %v", on, ev, want)
		}
		if on {
			mustStep(t, s, 14.9, MemoryMoved(1, false))
		}
		// x completes: a runs. Without EvictAhead its swap-in must first
		// evict (x's container, idle now and never forecast); with it the
		// room is there.
		rd = mustStep(t, s, 15, Completed(6, time.Second, 0))
		var before []CtrID
		for _, act := range rd.Actions {
			if act.Kind == ActPrefetch && act.Ctr == 2 {
				break
			}
			if act.Kind == ActEvict {
				before = append(before, act.Ctr)
			}
		}
		want = []CtrID{4}
		if on {
			want = nil
		}
		if !slices.Equal(before, want) {
			t.Fatalf("EvictAhead %v: a's swap-in came after evicting %v, want %v (actions %v)", on, before, want, rd.Actions)
		}
		// Room is made only from flows forecast after the container it is
		// for: b's idle container (forecast 15.5 s) is a victim for one
		// needed at 15.4 s, not for one needed at 15.6 s.
		for _, tc := range []struct {
			at   float64
			want bool
		}{{15.4, true}, {15.6, false}} {
			if got := s.victim(s.ctrs[3], roomLater(TimeOf(tc.at))); got != tc.want {
				t.Errorf("b's container a victim for a forecast of %gs: %v, want %v", tc.at, got, tc.want)
			}
		}
	}
}

// TestEvictAheadTarget: of two evicted idle containers, EvictAhead targets
// the one whose flow is forecast sooner; a flow whose forecast has passed
// is not waited for.
func TestEvictAheadTarget(t *testing.T) {
	const a, b, x, y = 0, 1, 2, 3
	s := mustNew(t, Config{Policy: PolicySluice, D: 1, GPUMemBytes: 8e9, TTL: 100, TTLSet: true,
		ImprovementsSet: true, Improvements: Improvements{MemoryAware: true}})
	for f := FnID(0); f < 4; f++ {
		mustStep(t, s, 0, Register(f, "f", 0, 4e9))
	}
	runOnce(t, s, 0, 1, a, 1)               // c1
	runOnce(t, s, 1, 2, b, 2)               // c2
	runOnce(t, s, 10, 3, a, 0)              // a: forecast 20 s
	runOnce(t, s, 16, 4, b, 0)              // b: forecast 31 s
	mustStep(t, s, 17, Arrived(5, x))       // evicts b's container (farthest)
	mustStep(t, s, 17.5, ContainerReady(3)) // x runs on c3
	mustStep(t, s, 17.6, Arrived(6, y))     // y's start evicts a's container
	g := s.gpus[0]
	for _, c := range []CtrID{1, 2} {
		if s.ctrs[c].resident {
			t.Fatalf("setup: container %d still resident", c)
		}
		mustStep(t, s, 17.7, MemoryMoved(c, false))
	}
	if c, at := s.aheadTarget(g); c == nil || c.id != 1 || at != TimeOf(20) {
		t.Fatalf("target %v at %v, want a's container 1 at 20s", ctrID(c), at)
	}
	s.Tick(TimeOf(25)) // a is overdue, b still ahead
	if c, at := s.aheadTarget(g); c == nil || c.id != 2 || at != TimeOf(31) {
		t.Fatalf("at 25s: target %v at %v, want b's container 2 at 31s", ctrID(c), at)
	}
	s.Tick(TimeOf(32))
	if c, _ := s.aheadTarget(g); c != nil {
		t.Fatalf("at 32s: target %v, want none (both overdue)", c.id)
	}
}

func ctrID(c *container) CtrID {
	if c == nil {
		return 0
	}
	return c.id
}

// TestEvictAheadOneContainerPerFlow: a flow whose idle containers on two
// GPUs were both evicted gets room made for one of them only (its next
// run uses one), and none while it has a resident idle container.
func TestEvictAheadOneContainerPerFlow(t *testing.T) {
	const f, x, y = 0, 1, 2
	s := mustNew(t, Config{Policy: PolicySluice, GPUs: 2, D: 1, GPUMemBytes: 4e9, TTL: 100, TTLSet: true,
		ImprovementsSet: true, Improvements: Improvements{MemoryAware: true}})
	for fn := FnID(0); fn < 3; fn++ {
		mustStep(t, s, 0, Register(fn, "f", 0, 4e9))
	}
	mustStep(t, s, 0, Arrived(1, f))
	mustStep(t, s, 0, Arrived(2, f)) // a second container, on the other GPU
	mustStep(t, s, 0.5, ContainerReady(1))
	mustStep(t, s, 0.5, ContainerReady(2))
	mustStep(t, s, 0.6, Completed(1, 100*time.Millisecond, 0))
	mustStep(t, s, 0.6, Completed(2, 100*time.Millisecond, 0))
	if s.ctrs[1].g == s.ctrs[2].g {
		t.Fatal("setup: f's containers share a GPU")
	}
	mustStep(t, s, 5, Arrived(3, f)) // f: forecast at 7.5 s
	mustStep(t, s, 5.1, Completed(3, 100*time.Millisecond, 0))
	targets := func() (n int) {
		for _, g := range s.gpus {
			if c, _ := s.aheadTarget(g); c != nil && c.f.id == f {
				n++
			}
		}
		return n
	}
	if n := targets(); n != 0 {
		t.Fatalf("f has resident idle containers, yet %d GPUs target it", n)
	}
	mustStep(t, s, 6, Arrived(4, x)) // x and y take the GPUs: f's containers go to the host
	mustStep(t, s, 6, Arrived(5, y))
	for c := CtrID(1); c <= 2; c++ {
		if s.ctrs[c].resident {
			t.Fatalf("setup: f's container %d still resident", c)
		}
		mustStep(t, s, 6.1, MemoryMoved(c, false))
	}
	if n := targets(); n != 1 {
		t.Fatalf("%d GPUs target f's containers, want 1", n)
	}
}

// TestEvictAheadOnlyWhereItFits: when evicting every container forecast
// later would still leave too little room (a running container holds the
// rest), EvictAhead evicts nothing.
func TestEvictAheadOnlyWhereItFits(t *testing.T) {
	const tt, v, z = 0, 1, 2
	s := mustNew(t, Config{Policy: PolicySluice, D: 1, GPUMemBytes: 10e9, TTL: 100, TTLSet: true,
		ImprovementsSet: true, Improvements: Improvements{MemoryAware: true, EvictAhead: true}})
	mustStep(t, s, 0, Register(tt, "t", 0, 4e9))
	mustStep(t, s, 0, Register(v, "v", 0, 2e9))
	mustStep(t, s, 0, Register(z, "z", 0, 7e9))
	runOnce(t, s, 0, 1, tt, 1)              // c1: t, 4 GB
	runOnce(t, s, 1, 2, v, 2)               // c2: v, 2 GB
	runOnce(t, s, 11, 3, v, 0)              // v: forecast at 21 s
	rd := mustStep(t, s, 12, Arrived(4, z)) // z (7 GB) evicts t's container
	if ev := evictions(rd); !slices.Equal(ev, []CtrID{1}) {
		t.Fatalf("z's start evicted %v, want t's container", ev)
	}
	mustStep(t, s, 12.1, MemoryMoved(1, false))
	mustStep(t, s, 12.5, ContainerReady(3)) // z runs: 9 of 10 GB in use
	// t's request waits for the slot; evicting v (2 GB) would leave 3 GB,
	// less than t's 4 GB.
	if rd = mustStep(t, s, 13, Arrived(5, tt)); len(evictions(rd)) != 0 {
		t.Fatalf("evicted %v for a container that cannot fit", evictions(rd))
	}
}

// runOnce steps invocation inv of fn through arrival at `at`, the
// container's start (when ctr is the container it starts; 0 when it runs
// warm) 0.5 s later, and completion 0.6 s after arrival.
func runOnce(t *testing.T, s *Scheduler, at float64, inv InvID, fn FnID, ctr CtrID) {
	t.Helper()
	mustStep(t, s, at, Arrived(inv, fn))
	if ctr != 0 {
		mustStep(t, s, at+0.5, ContainerReady(ctr))
	}
	mustStep(t, s, at+0.6, Completed(inv, 100*time.Millisecond, 0))
}

func evictions(rd Ready) []CtrID {
	var out []CtrID
	for _, a := range rd.Actions {
		if a.Kind == ActEvict {
			out = append(out, a.Ctr)
		}
	}
	return out
}

// TestKeepLong: with KeepLong, a long flow's idle container (GPU time at
// least keepLongFactor x its swap-in time) is evicted after a short flow's
// of the same state, although Belady's order would take it first; under a
// backlog of keepLongBacklog requests per slot the order is Belady's again,
// and a flow with no measured GPU time is not long.
func TestKeepLong(t *testing.T) {
	const long, short = 0, 1
	for _, tc := range []struct {
		name     string
		keepLong bool
		queued   int  // requests queued, as if waiting for the slot
		unknown  bool // the long flow has no measured GPU time
		want     CtrID
	}{
		{"belady", false, 0, false, 1},
		{"keep long", true, 0, false, 2},
		{"keep long, backlog just short of the guard", true, keepLongBacklog - 1, false, 2},
		{"keep long under a backlog", true, keepLongBacklog, false, 1},
		{"no measured GPU time", true, 0, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config{Policy: PolicySluice, D: 1, GPUMemBytes: 8e9, TTL: 100, TTLSet: true,
				ImprovementsSet: true, Improvements: Improvements{MemoryAware: true, KeepLong: tc.keepLong}})
			for f := FnID(0); f < 3; f++ {
				mustStep(t, s, 0, Register(f, "f", 0, 4e9))
			}
			mustStep(t, s, 0, Arrived(1, long))
			mustStep(t, s, 0.5, ContainerReady(1))
			mustStep(t, s, 5.5, Completed(1, 5*time.Second, 0)) // c1: long, seen once (forecast: never)
			runOnce(t, s, 6, 2, short, 2)                       // c2: short
			runOnce(t, s, 7, 3, short, 0)                       // short: forecast at 8 s
			// Swap-in times as if measured: 0.5 s each, so long's 5 s GPU
			// time is 10x its swap-in and short's 0.1 s is not.
			s.flows[long].swapSec, s.flows[short].swapSec = 0.5, 0.5
			if tc.unknown {
				s.flows[long].tauKnown = false
			}
			if s.flows[long].state != Active || s.flows[short].state != Active {
				t.Fatal("setup: both flows should be Active (same victim class)")
			}
			s.queued = tc.queued
			s.makeRoom(s.gpus[0], 4e9, nil, roomAny)
			s.queued = 0
			if ev := evictions(s.Ready()); !slices.Equal(ev, []CtrID{tc.want}) {
				t.Fatalf("evicted %v, want [%d]", ev, tc.want)
			}
		})
	}
}
