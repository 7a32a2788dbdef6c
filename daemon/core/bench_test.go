package core

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEnqueueDispatch measures one arrival (enqueue) plus one
// completion that frees a slot and triggers a dispatch decision, with n
// backlogged flows, each with a warm container. One op = both Steps and
// their Ready. Target: <= 1us at 1,000 flows, <= 3us at 10,000, 0 allocs.
func BenchmarkEnqueueDispatch(b *testing.B) {
	for _, policy := range []Policy{PolicyMQFQSticky, PolicySluice} {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/flows=%d", policy, n), func(b *testing.B) {
				benchEnqueueDispatch(b, policy, n)
			})
		}
	}
}

func benchEnqueueDispatch(b *testing.B, policy Policy, n int) {
	// No memory management: no Prefetch/Evict to answer, so one op is
	// exactly two Steps and measures the scheduling decision alone.
	s, err := New(Config{Policy: policy, D: 2, ContainersPerGPU: n + 8, KeepAlive: 1000 * time.Hour, NoMemoryManagement: true})
	if err != nil {
		b.Fatal(err)
	}
	now := Time(0)
	step := func(ev Event) Ready {
		if err := s.Step(now, ev); err != nil {
			b.Fatal(err)
		}
		return s.Ready()
	}
	// One prewarmed container per flow. Prewarm starts run D at a time,
	// so each container that comes up lets the next ones start.
	var starts []CtrID
	collectStarts := func(rd Ready) {
		for _, a := range rd.Actions {
			if a.Kind == ActStartContainer {
				starts = append(starts, a.Ctr)
			}
		}
	}
	for f := 0; f < n; f++ {
		ev := Register(FnID(f), "f", 0, 1e6)
		ev.Prewarm = 1
		collectStarts(step(ev))
	}
	for i := 0; i < len(starts); i++ {
		collectStarts(step(ContainerReady(starts[i])))
	}
	if len(starts) != n {
		b.Fatalf("prewarm started %d containers for %d flows", len(starts), n)
	}
	running := make([]InvID, 0, 16)
	bench, i := false, 0
	collect := func(rd Ready) {
		for _, a := range rd.Actions {
			if a.Kind == ActDispatch {
				running = append(running, a.Inv)
			}
			if a.Kind == ActStartContainer && bench {
				b.Fatalf("unexpected cold start at op %d: %v (flow in flight %d)", i, a, s.flows[a.Fn].inFlight)
			}
		}
	}
	inv := InvID(0)
	for k := 0; k < 3; k++ {
		for f := 0; f < n; f++ {
			inv++
			collect(step(Arrived(inv, FnID(f))))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fns := make([]FnID, 1<<16)
	for i := range fns {
		fns[i] = FnID(rng.IntN(n))
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	bench = true
	for i = 0; i < b.N; i++ {
		now += Time(time.Millisecond)
		inv++
		collect(step(Arrived(inv, fns[i&(len(fns)-1)])))
		done := running[0]
		running = running[:copy(running, running[1:])]
		collect(step(Completed(done, 100*time.Millisecond, 0)))
	}
	b.StopTimer()
	// CPU time per op: robust on a shared, loaded machine where wall time
	// per op includes waiting for a core.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if len(running) != 2 {
		st := s.Status()
		nAct, nThr := 0, 0
		for _, f := range st.Flows {
			if f.Queued > 0 && f.State == Active {
				nAct++
			}
			if f.Queued > 0 && f.State == Throttled {
				nThr++
			}
		}
		b.Fatalf("%d running, want D=2; V=%g T=%g queued=%d active=%d (heap %d) throttled=%d (heap %d) gpu=%+v", len(running), st.VirtualTime, st.Throttle, st.Queued, nAct, s.heaps[hActive].len(), nThr, s.heaps[hThrottled].len(), st.GPUs)
	}
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
