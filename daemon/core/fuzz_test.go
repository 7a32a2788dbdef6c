package core

import (
	"math"
	"testing"
	"time"
)

// FuzzStep feeds the core event sequences decoded from fuzz input: answers
// to the actions it asked for (container ready or failed, completion with
// any GPU time and footprint, memory moved) mixed with arbitrary events
// (unknown or repeated IDs, odd weights and footprints, monitor ticks,
// time jumps). The core must never panic: bad input gets an error and
// changes nothing, and every sequence it accepts keeps its slot and
// memory accounting in range. go test -fuzz FuzzStep ./daemon/core runs it
// longer.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{5, 0, 0, 0, 1, 1, 1, 1, 8, 8, 8, 8, 9, 9, 9, 9, 2, 2, 2, 2})
	f.Add([]byte{3, 1, 9, 1, 9, 1, 9, 8, 0, 8, 1, 8, 2, 8, 3, 4, 200, 7, 100})
	weights := []float64{0, 1, 0.5, 3, 1e-320, math.NaN(), math.Inf(1), -1, 1e9, 1e-3}
	sizes := []int64{0, 1e9, 3e9, 16e9, 40e9, -1}
	configs := []Config{
		{Policy: PolicyMQFQSticky, D: 2},
		{Policy: PolicySluice, D: 2},
		{Policy: PolicySluice, D: 1, ContainersPerGPU: 1, GPUMemBytes: 4e9},
		{Policy: PolicySluice, D: 3, GPUs: 2, UtilCap: 0.8},
		{Policy: PolicyMQFQ, D: 2, HoldColdSlot: true},
		{Policy: PolicyFCFS, D: 2, KeepAlive: time.Second},
		{Policy: PolicyBatch, D: 1, BatchCap: 2},
		{Policy: PolicySJF, D: 2, TTL: 0, TTLSet: true},
		{Policy: PolicySluice, D: 2, GPUMemBytes: 8e9, ImprovementsSet: true, Improvements: withEvictAhead()},
		{Policy: PolicySluice, D: 1, GPUMemBytes: 6e9, ImprovementsSet: true, Improvements: withPartialEvict(true)},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s, err := New(configs[int(data[0])%len(configs)])
		if err != nil {
			t.Fatal(err)
		}
		var starts, moving []CtrID
		var running []InvID
		now := Time(0)
		nextInv := InvID(1)
		at := func(i int) byte {
			if i < len(data) {
				return data[i]
			}
			return 0
		}
		for i := 1; i < len(data); i += 3 {
			op, a, b := at(i), at(i+1), at(i+2)
			now += Time(b) * Time(10*time.Millisecond)
			var ev Event
			tick := false
			switch op % 12 {
			case 0, 1:
				ev = Event{Kind: EvRegister, Fn: FnID(a % 6), Name: "f", Weight: weights[int(b)%len(weights)], Bytes: sizes[int(a/8)%len(sizes)], Prewarm: int(b % 3)}
			case 2, 3, 4:
				ev = Arrived(nextInv, FnID(a%7))
				nextInv++
			case 5:
				if len(starts) == 0 {
					continue
				}
				k := int(a) % len(starts)
				ev = ContainerReady(starts[k])
				if b%5 == 0 {
					ev = ContainerFailed(starts[k], "fuzz")
				}
				starts = append(starts[:k], starts[k+1:]...)
			case 6, 7:
				if len(running) == 0 {
					continue
				}
				k := int(a) % len(running)
				ev = Completed(running[k], time.Duration(b)*time.Millisecond*7, sizes[int(a)%len(sizes)]*int64(b%2))
				running = append(running[:k], running[k+1:]...)
			case 8:
				if len(moving) == 0 {
					continue
				}
				k := int(a) % len(moving)
				ev = MemoryMoved(moving[k], b%2 == 0)
				moving = append(moving[:k], moving[k+1:]...)
			case 9:
				ev = MonitorTick(int(a%3), float64(b)/200, []CtrActivity{{Ctr: CtrID(a % 5), Busy: float64(b) / 255}})
			case 10:
				// Arbitrary IDs, possibly unknown or repeated.
				switch b % 4 {
				case 0:
					ev = ContainerReady(CtrID(a))
				case 1:
					ev = Completed(InvID(a), time.Duration(b)*time.Second, 0)
				case 2:
					ev = MemoryMoved(CtrID(a), true)
				default:
					ev = Arrived(InvID(a%4), FnID(a%3))
				}
			default:
				tick = true
			}
			if tick {
				s.Tick(now)
			} else {
				before := s.Now()
				if err := s.Step(now, ev); err != nil && s.Now() != before {
					t.Fatalf("rejected %v moved the clock from %v to %v", ev.Kind, before, s.Now())
				}
			}
			rd := s.Ready()
			for _, act := range rd.Actions {
				switch act.Kind {
				case ActStartContainer:
					starts = append(starts, act.Ctr)
				case ActDispatch:
					running = append(running, act.Inv)
				case ActPrefetch, ActEvict:
					moving = append(moving, act.Ctr)
				}
			}
			for _, g := range s.gpus {
				if g.used < 0 || g.used > g.lim+len(g.ctrs) || g.resident < 0 || g.starting < 0 {
					t.Fatalf("gpu %d: used %d (limit %d), resident %d, starting %d", g.idx, g.used, g.lim, g.resident, g.starting)
				}
				prewarming := 0
				for _, c := range g.ctrs {
					if c.prewarm {
						prewarming++
						if c.state != ctrStarting {
							t.Fatalf("container %d: a prewarm start that is not starting", c.id)
						}
					}
				}
				if prewarming != g.prewarming || g.prewarming > s.cfg.D {
					t.Fatalf("gpu %d: %d prewarm starts counted, %d in flight (D = %d)", g.idx, g.prewarming, prewarming, s.cfg.D)
				}
			}
			if s.queued < 0 || math.IsNaN(s.v) || math.IsInf(s.v, 0) {
				t.Fatalf("queued %d, virtual time %v", s.queued, s.v)
			}
		}
		_ = s.Status()
	})
}
