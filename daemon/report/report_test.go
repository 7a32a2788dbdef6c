package report

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/daemon/core"
	"github.com/sluice-gpu/sluice/daemon/sim"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

func TestStats(t *testing.T) {
	if v := variance([]float64{1, 3}); v != 1 {
		t.Errorf("variance = %g, want 1", v)
	}
	if j := jain([]float64{2, 2, 2}); j != 1 {
		t.Errorf("jain equal = %g, want 1", j)
	}
	if j := jain([]float64{1, 0, 0, 0}); math.Abs(j-0.25) > 1e-12 {
		t.Errorf("jain one-hot = %g, want 1/n", j)
	}
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if q := quantile(xs, 0.5); q != 5 {
		t.Errorf("p50 = %g", q)
	}
	if q := quantile(xs, 0.99); q != 10 {
		t.Errorf("p99 = %g", q)
	}
}

func sec(s float64) core.Time { return core.TimeOf(s) }

func TestCompute(t *testing.T) {
	w := &workload.Workload{Duration: time.Minute, Functions: []workload.Function{{Name: "a", WarmSec: 1, ColdSec: 1}, {Name: "b", WarmSec: 2}}}
	r := &sim.Result{BusySec: []float64{5}, Makespan: sec(10), Records: []sim.Record{
		{Inv: 0, Fn: 0, Arrival: sec(0), Dispatch: sec(1), Start: sec(1), End: sec(2), Cold: true}, // 2 s
		{Inv: 1, Fn: 0, Arrival: sec(1), Dispatch: sec(2), Start: sec(2), End: sec(5)},             // 4 s
		{Inv: 2, Fn: 1, Arrival: sec(2), Dispatch: sec(5), Start: sec(5), End: sec(8)},             // 6 s
		{Inv: 3, Fn: 1, Arrival: sec(3), Dispatch: sec(9), Start: 0, End: 0, Failed: true},         // not done
	}}
	m := Compute(w, r, "x")
	if m.Completed != 3 || m.Invocations != 4 || m.ColdStarts != 1 {
		t.Fatalf("counts %+v", m)
	}
	if m.MeanLatency != 4 || m.MeanQueue != (1+1+3)/3.0 && math.Abs(m.MeanQueue-1.6667) > 1e-3 {
		t.Errorf("mean latency %g queue %g", m.MeanLatency, m.MeanQueue)
	}
	// Per-function means: a 3, b 6 -> variance 2.25. Slowdowns: a 3, b 3 -> Jain 1.
	if m.InterfunctionVariance != 2.25 || m.JainFairness != 1 {
		t.Errorf("variance %g jain %g", m.InterfunctionVariance, m.JainFairness)
	}
	// Isolated bound: a 2 s then 1 s (mean 1.5), b 2 s. Latency over it:
	// a 2, b 3 -> Jain 25/26.
	if m.PerFunction[0].IsolatedMean != 1.5 || m.PerFunction[1].IsolatedMean != 2 || m.JainVsIsolated != round(25.0/26, 4) {
		t.Errorf("isolated means %g, %g, jain vs isolated %g", m.PerFunction[0].IsolatedMean, m.PerFunction[1].IsolatedMean, m.JainVsIsolated)
	}
	if m.GPUUtilization != 0.5 {
		t.Errorf("utilization %g", m.GPUUtilization)
	}
	var buf bytes.Buffer
	if err := WriteInvocations(&buf, w, "x", r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || lines[0] != "x,0,a,0.000000,1.000000,1.000000,2.000000,true,1.000000,2.000000" || !strings.HasSuffix(lines[3], ",false,6.000000,") {
		t.Errorf("invocations.csv:\n%s", buf.String())
	}
}

// TestComputeIsolatedFirstNotDone: the cold start in a function's isolated
// latency belongs to its first invocation even when that one did not
// complete, so a later completed one is charged its warm time only.
func TestComputeIsolatedFirstNotDone(t *testing.T) {
	w := &workload.Workload{Duration: time.Minute, Functions: []workload.Function{{Name: "c", WarmSec: 1, ColdSec: 5}}}
	r := &sim.Result{BusySec: []float64{1}, Makespan: sec(10), Records: []sim.Record{
		{Inv: 0, Fn: 0, Arrival: sec(0), Dispatch: sec(5), Failed: true},
		{Inv: 1, Fn: 0, Arrival: sec(1), Dispatch: sec(6), Start: sec(6), End: sec(8)},
	}}
	if got := Compute(w, r, "x").PerFunction[0].IsolatedMean; got != 1 {
		t.Errorf("isolated mean %g, want 1 (warm only)", got)
	}
}

func TestIsolatedBound(t *testing.T) {
	w := &workload.Workload{
		Functions:   []workload.Function{{Name: "a", WarmSec: 1, ColdSec: 3}, {Name: "b", WarmSec: 2, ColdSec: 2}, {Name: "idle", WarmSec: 1, ColdSec: 1}},
		Invocations: []workload.Invocation{{Fn: 0}, {Fn: 1}, {Fn: 0}},
	}
	tests := []struct {
		name    string
		prewarm int
		want    Bound
	}{
		// a: 4 s then 1 s (mean 2.5, slowdown 2.5); b: 4 s (slowdown 2).
		{"cold", 0, Bound{MeanLatency: 3, InterfunctionVariance: 0.5625, JainFairness: round(4.5*4.5/(2*(2.5*2.5+2*2)), 4)}},
		// No cold starts: a 1 s, 1 s; b 2 s.
		{"prewarm", 1, Bound{MeanLatency: round(4/3.0, 4), InterfunctionVariance: 0.25, JainFairness: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsolatedBound(w, tt.prewarm); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := IsolatedBound(&workload.Workload{}, 0); got != (Bound{}) {
		t.Errorf("empty workload: %+v", got)
	}
}

// TestIsolatedBoundIsABound: no invocation under any policy finishes
// sooner than its isolated-bound latency, with and without prewarm, on one
// or two GPUs and without memory management.
func TestIsolatedBoundIsABound(t *testing.T) {
	w, err := workload.Default(workload.Options{Duration: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if b := IsolatedBound(w, 0); b.MeanLatency <= 0 {
		t.Fatalf("bound %+v", b)
	}
	for _, tc := range []struct {
		name    string
		cfg     core.Config
		prewarm int
	}{
		{"", core.Config{}, 0},
		{" prewarm", core.Config{}, 1},
		{" 2 gpus", core.Config{GPUs: 2}, 0},
		{" no memory management", core.Config{NoMemoryManagement: true}, 0},
	} {
		terms := IsolatedLatencies(w, tc.prewarm)
		for _, p := range core.Policies() {
			tc.cfg.Policy = p
			r, err := sim.Run(context.Background(), w, sim.Options{Model: sim.DefaultGPUModel(), Core: tc.cfg, Prewarm: tc.prewarm})
			if err != nil {
				t.Fatal(err)
			}
			for i, rec := range r.Records {
				if l := rec.End.Sub(rec.Arrival).Seconds(); !rec.Done() || l < terms[i]-1e-9 {
					t.Fatalf("%s%s: invocation %d: latency %g s, isolated bound %g s", p, tc.name, i, l, terms[i])
				}
			}
		}
	}
}
