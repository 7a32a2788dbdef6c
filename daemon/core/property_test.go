package core

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// randomTrace drives cfg with nFn functions (random weights, GPU times,
// footprints and, for one in four, one or two prewarmed containers) and
// nInv arrivals, answering actions in random order and advancing time
// randomly, then drains. It returns the driver.
func randomTrace(t *testing.T, cfg Config, seed uint64, nFn, nInv int, check func(*driver)) *driver {
	t.Helper()
	return randomTraceWith(t, cfg, seed, nFn, nInv, nil, check)
}

// randomTraceWith is randomTrace with setup applied to the driver first.
func randomTraceWith(t *testing.T, cfg Config, seed uint64, nFn, nInv int, setup, check func(*driver)) *driver {
	t.Helper()
	d := newDriver(t, cfg, seed)
	if setup != nil {
		setup(d)
	}
	gpu := make([]time.Duration, nFn)
	for f := 0; f < nFn; f++ {
		gpu[f] = time.Duration(1+d.rng.IntN(3000)) * time.Millisecond
		w := 1.0
		if d.rng.IntN(4) == 0 {
			w = float64(1 + d.rng.IntN(3))
		}
		prewarm := 0
		if d.rng.IntN(4) == 0 {
			prewarm = 1 + d.rng.IntN(2)
		}
		d.step(Event{Kind: EvRegister, Fn: FnID(f), Name: fmt.Sprintf("f%d", f), Weight: w, Bytes: int64(1+d.rng.IntN(6)) * 1e9, Prewarm: prewarm})
	}
	d.check = check
	gt := func(a Action) time.Duration { return gpu[a.Fn] }
	for inv := 0; inv < nInv; inv++ {
		d.now += Time(d.rng.IntN(400)) * Time(time.Millisecond)
		fn := FnID(d.rng.IntN(nFn))
		if d.rng.IntN(3) == 0 { // bursts favour a few functions
			fn = FnID(d.rng.IntN(min(3, nFn)))
		}
		d.step(Arrived(InvID(inv+1), fn))
		for k := d.rng.IntN(3); k > 0; k-- {
			d.answerOne(gt)
		}
		if d.rng.IntN(5) == 0 {
			d.s.Tick(d.now)
			d.collect()
		}
	}
	for steps := 0; ; steps++ {
		if steps > 100*nInv+1000 {
			t.Fatalf("seed %d: did not drain", seed)
		}
		d.now += Time(time.Millisecond) * Time(1+d.rng.IntN(50))
		if !d.answerOne(gt) {
			if w := d.s.Ready().WakeAt; w != Never && d.s.queued > 0 {
				d.now = max(d.now, w)
			}
			d.s.Tick(d.now)
			d.collect()
			if d.s.queued == 0 && len(d.running) == 0 && len(d.pendingStart) == 0 && len(d.moving) == 0 {
				break
			}
		}
	}
	return d
}

// propertyRunName names one property run: its configuration and seed.
func propertyRunName(cfg Config, seed uint64) string {
	return fmt.Sprintf("%s-d%d-gpus%d-hold%t/seed%d", cfg.Policy, cfg.D, cfg.GPUs, cfg.HoldColdSlot, seed)
}

// propertySeeds is how many random traces each property test runs per
// configuration: 15, or SLUICE_PROPERTY_SEEDS for a longer soak.
func propertySeeds() uint64 {
	if n, err := strconv.ParseUint(os.Getenv("SLUICE_PROPERTY_SEEDS"), 10, 32); err == nil && n > 0 {
		return n
	}
	return 15
}

var propertyConfigs = []Config{
	{Policy: PolicyMQFQ, D: 2},
	{Policy: PolicyMQFQSticky, D: 2},
	{Policy: PolicyMQFQSticky, D: 2, HoldColdSlot: true},
	{Policy: PolicyMQFQSticky, D: 1, GPUs: 2},
	{Policy: PolicyMQFQSticky, D: 3, ContainersPerGPU: 4, GPUMemBytes: 8e9},
	{Policy: PolicySluice, D: 2},
	{Policy: PolicySluice, D: 2, GPUs: 2, ContainersPerGPU: 6},
	{Policy: PolicySluice, D: 2, ContainersPerGPU: 1},
	{Policy: PolicySluice, D: 1, DMax: 3},
	{Policy: PolicySluice, D: 2, ImprovementsSet: true, Improvements: Improvements{PrefetchAhead: true, Retag: true, MemoryAware: true}},
	{Policy: PolicySluice, D: 1, ContainersPerGPU: 3, GPUMemBytes: 8e9, ImprovementsSet: true, Improvements: Improvements{WaitForBusy: true}},
	{Policy: PolicySluice, D: 2, ImprovementsSet: true, Improvements: Improvements{NoColdAhead: true, Retag: true}},
	{Policy: PolicySluice, D: 2, GPUMemBytes: 8e9, ImprovementsSet: true, Improvements: withEvictAhead()},
	{Policy: PolicySluice, D: 2, GPUMemBytes: 8e9, ImprovementsSet: true, Improvements: withPartialEvict(false)},
	{Policy: PolicySluice, D: 1, GPUMemBytes: 6e9, ImprovementsSet: true, Improvements: withPartialEvict(true)},
	{Policy: PolicyFCFS, D: 2},
	{Policy: PolicyFCFS, D: 2, HoldColdSlot: true},
	{Policy: PolicyBatch, D: 2, BatchCap: 3},
	{Policy: PolicySJF, D: 2},
}

func withEvictAhead() Improvements {
	imp := SluiceImprovements()
	imp.EvictAhead = true
	return imp
}

// withPartialEvict: Sluice's defaults with PartialEvict, and with
// EvictAhead and PrefetchAhead if ahead.
func withPartialEvict(ahead bool) Improvements {
	imp := SluiceImprovements()
	imp.PartialEvict = true
	imp.EvictAhead, imp.PrefetchAhead = ahead, ahead
	return imp
}

// TestPropertyNoStarvation: every invocation of a random trace is
// dispatched exactly once and completes, under every policy.
func TestPropertyNoStarvation(t *testing.T) {
	for _, cfg := range propertyConfigs {
		for seed := uint64(1); seed <= propertySeeds(); seed++ {
			t.Run(propertyRunName(cfg, seed), func(t *testing.T) {
				d := randomTrace(t, cfg, seed, 1+int(seed%12), 300, nil)
				for inv := InvID(1); inv <= 300; inv++ {
					if !d.dispatched[inv] && !d.failed[inv] {
						t.Fatalf("invocation %d never dispatched", inv)
					}
				}
				if len(d.s.live) != 0 {
					t.Fatalf("%d invocations still live after draining", len(d.s.live))
				}
			})
		}
	}
}

// TestPropertyWorkConservation: after every input, no GPU slot is free
// while an Active flow has queued work it could run. For the reference
// policies that means no Active backlogged flow is servable; Sluice may
// leave a flow waiting only for its own container start, a start budget, or
// its busy container (WaitForBusy).
func TestPropertyWorkConservation(t *testing.T) {
	for _, cfg := range propertyConfigs {
		if cfg.Policy != PolicyMQFQ && cfg.Policy != PolicyMQFQSticky && cfg.Policy != PolicySluice {
			continue
		}
		for seed := uint64(1); seed <= propertySeeds(); seed++ {
			check := func(d *driver) {
				s := d.s
				if !s.freeSlot() {
					return
				}
				for _, it := range s.heaps[hActive].items {
					f := it.f
					if !s.servable(f) {
						continue
					}
					if s.blockedBySluice(f) {
						continue
					}
					d.t.Fatalf("at %v: a slot is free but Active flow %d (queue %d, in flight %d) is servable\n%s",
						d.now, f.id, f.q.len(), f.inFlight, tail(d.log))
				}
			}
			t.Run(propertyRunName(cfg, seed), func(t *testing.T) {
				randomTrace(t, cfg, seed, 2+int(seed%10), 300, check)
			})
		}
	}
}

// blockedBySluice reports whether an improvement legitimately holds f back
// (mirrors ready without its side effects).
func (s *Scheduler) blockedBySluice(f *flow) bool {
	imp := s.cfg.Improvements
	if imp.ShareSlots && f.holdsSlot() && s.idleWithSlot(f) {
		// it may not take a GPU's last free slot (of a limit of 2 or more)
		// where it has an idle container
		last := true
		for _, c := range f.ctrs {
			if c.state == ctrIdle && s.slotFree(c.g) && (c.g.lim < 2 || c.g.lim-c.g.used >= 2) {
				last = false
			}
		}
		if last {
			return true
		}
	}
	idle, movingIn := false, false
	for _, c := range f.ctrs {
		if c.state == ctrIdle && s.slotFree(c.g) {
			if c.landed || !imp.PrefetchAhead {
				return false
			}
			idle = true
			movingIn = movingIn || c.resident // its ahead-prefetch is on the way
		}
	}
	if idle {
		return movingIn
	}
	if s.noTokenColdStart() && s.gpuForBoundStart(f, false) == nil {
		return true
	}
	if imp.WaitForBusy && f.inFlight > 0 {
		cold := f.coldSec
		if cold == 0 {
			cold = 2 * f.tau
		}
		return float64(f.q.len())*f.tau < cold
	}
	return false
}

func tail(log []string) string {
	out := ""
	for _, l := range log[max(0, len(log)-8):] {
		out += l + "\n"
	}
	return out
}

// TestPropertyFairnessBound: a backlogged flow's start tag never falls
// behind V, and once it has been dispatched in its current backlog period
// it is never more than T plus one request's charge (tau/w) ahead of V.
// Hence for two flows continuously backlogged over an interval, the service
// they received (the growth of S x w) differs by at most
// 2T + tau_i/w_i + tau_j/w_j in weighted terms: MQFQ's bound.
func TestPropertyFairnessBound(t *testing.T) {
	for _, cfg := range propertyConfigs {
		if cfg.Policy != PolicyMQFQ && cfg.Policy != PolicyMQFQSticky && cfg.Policy != PolicySluice {
			continue
		}
		if cfg.Policy == PolicySluice && !cfg.ImprovementsSet {
			cfg.ImprovementsSet = true
			cfg.Improvements = SluiceImprovements()
			cfg.Improvements.PrefetchAhead = true
		}
		// ScaleT and ColdT make T vary; the bound is for a fixed T.
		cfg.Improvements.ScaleT, cfg.Improvements.ColdT = false, false
		for seed := uint64(1); seed <= propertySeeds(); seed++ {
			// lastServiced of each flow when its current backlog began.
			since := map[FnID]Time{}
			// The largest charge of a request queued in the current backlog
			// period: a dispatched request's charge (tagged with the tau of
			// its arrival) counts after it has left the queue.
			charged := map[FnID]float64{}
			check := func(d *driver) {
				s := d.s
				T := s.throttle()
				for _, f := range s.flows {
					if f == nil {
						continue
					}
					if f.q.len() == 0 {
						delete(since, f.id)
						delete(charged, f.id)
						continue
					}
					start, ok := since[f.id]
					if !ok {
						since[f.id] = f.lastServiced
						start = f.lastServiced
					}
					if f.S < s.v-1e-9 {
						d.t.Fatalf("at %v: flow %d start tag %.6f behind V %.6f", d.now, f.id, f.S, s.v)
					}
					charge := f.tau / f.weight
					for i := 0; i < f.q.len(); i++ {
						charge = math.Max(charge, f.q.at(i).f-f.q.at(i).s)
					}
					charge = math.Max(charge, charged[f.id])
					charged[f.id] = charge
					if f.lastServiced != start && f.S-s.v > T+charge+1e-9 {
						d.t.Fatalf("at %v: flow %d (%v, q=%d, in flight %d, tau %.3f, last served %v, backlog since %v), served while backlogged, is %.6f ahead of V; bound T+tau/w = %.6f",
							d.now, f.id, f.state, f.q.len(), f.inFlight, f.tau, f.lastServiced, start, f.S-s.v, T+charge)
					}
				}
			}
			t.Run(propertyRunName(cfg, seed), func(t *testing.T) {
				randomTrace(t, cfg, seed, 2+int(seed%10), 300, check)
			})
		}
	}
}

// TestPropertyMemoryFits: after every input, a GPU's resident memory is
// the sum of what each of its containers has on it, and a GPU whose
// resident memory exceeds its capacity has no idle container left whose
// memory could go to the host (idle, with bytes on the GPU, not moving):
// oversubscription lasts only while everything resident is running,
// starting or moving.
func TestPropertyMemoryFits(t *testing.T) {
	for _, cfg := range propertyConfigs {
		for seed := uint64(1); seed <= propertySeeds(); seed++ {
			check := func(d *driver) {
				s := d.s
				for _, g := range s.gpus {
					var sum int64
					for _, c := range g.ctrs {
						if on := c.devBytes(); on < 0 || on > c.bytes || (!c.resident && on == c.bytes && on > 0) {
							d.t.Fatalf("at %v: container %d has %d of its %d bytes on the GPU (resident %v)\n%s", d.now, c.id, on, c.bytes, c.resident, tail(d.log))
						}
						sum += c.devBytes()
					}
					if sum != g.resident {
						d.t.Fatalf("at %v: gpu %d counts %d resident bytes, its containers hold %d\n%s", d.now, g.idx, g.resident, sum, tail(d.log))
					}
					if g.resident <= s.cfg.GPUMemBytes {
						continue
					}
					for _, c := range g.ctrs {
						if c.state == ctrIdle && c.devBytes() > 0 && c.moving == 0 {
							d.t.Fatalf("at %v: gpu %d holds %d of %d bytes, and container %d (flow %d) is idle and resident\n%s",
								d.now, g.idx, g.resident, s.cfg.GPUMemBytes, c.id, c.f.id, tail(d.log))
						}
					}
				}
			}
			t.Run(propertyRunName(cfg, seed), func(t *testing.T) {
				randomTrace(t, cfg, seed, 2+int(seed%10), 300, check)
			})
		}
	}
}

// TestPropertyContainerFailures: with about one container start in four
// failing, every invocation is still dispatched or failed (after three
// failed starts in a row), no action names a container that failed, and
// memory still fits after every input.
func TestPropertyContainerFailures(t *testing.T) {
	for _, cfg := range propertyConfigs {
		for seed := uint64(1); seed <= propertySeeds(); seed++ {
			t.Run(propertyRunName(cfg, seed), func(t *testing.T) {
				d := randomTraceWith(t, cfg, seed, 2+int(seed%10), 200, func(d *driver) { d.failOneIn = 4 }, nil)
				for inv := InvID(1); inv <= 200; inv++ {
					if !d.dispatched[inv] && !d.failed[inv] {
						t.Fatalf("invocation %d neither dispatched nor failed", inv)
					}
				}
			})
		}
	}
}

// TestPropertyTinyGPU: footprints larger than the GPU must not starve
// anyone (they run demand-paged), under every policy.
func TestPropertyTinyGPU(t *testing.T) {
	for _, p := range Policies() {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", p, seed), func(t *testing.T) {
				d := randomTrace(t, Config{Policy: p, D: 2, GPUMemBytes: 5e8}, seed, 4, 100, nil)
				for inv := InvID(1); inv <= 100; inv++ {
					if !d.dispatched[inv] && !d.failed[inv] {
						t.Fatalf("invocation %d never dispatched", inv)
					}
				}
			})
		}
	}
}
