package report

import (
	"math"
	"slices"

	"github.com/sluice-gpu/sluice/daemon/core"
	"github.com/sluice-gpu/sluice/daemon/sim"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// Summary is summary.json.
type Summary struct {
	Workload WorkloadInfo `json:"workload"`
	GPUModel ModelInfo    `json:"gpu_model"`
	Results  []Metrics    `json:"results"`
	// IsolatedBound is the workload's zero-wait schedule (Bound).
	IsolatedBound Bound `json:"isolated_bound"`
}

// Bound is the isolated bound of a workload: the latencies if every
// invocation ran alone on its GPU the moment it arrived, with its memory in
// place, and only each function's first invocation paid a cold start (none
// with prewarm). Its mean latency is a lower bound for every policy (each
// invocation's latency is at least its term); its variance and Jain's index
// are the fairness of that schedule, not bounds: they say which way a
// policy's fairness moves as it approaches the bound.
type Bound struct {
	MeanLatency           float64 `json:"mean_latency_s"`
	InterfunctionVariance float64 `json:"interfunction_variance"`
	JainFairness          float64 `json:"jain_fairness"`
}

// WorkloadInfo describes the workload.
type WorkloadInfo struct {
	Source       string         `json:"source"`
	Functions    int            `json:"functions"`
	Invocations  int            `json:"invocations"`
	DurationS    float64        `json:"duration_s"`
	Seed         uint64         `json:"seed"`
	TargetUtil   float64        `json:"target_util"`
	OfferedUtil  float64        `json:"offered_util"`
	RatePerS     float64        `json:"rate_per_s"`
	IATScale     float64        `json:"iat_scale"`
	Arrivals     string         `json:"arrivals,omitempty"`
	FunctionList []FunctionInfo `json:"function_list"`
}

// FunctionInfo is one workload function.
type FunctionInfo struct {
	Name        string  `json:"name"`
	Catalog     string  `json:"catalog"`
	WarmS       float64 `json:"warm_s"`
	ColdS       float64 `json:"cold_s"`
	MemBytes    int64   `json:"mem_bytes"`
	TraceWarmS  float64 `json:"trace_warm_s"`
	Invocations int     `json:"invocations"`
}

// ModelInfo is the GPU model and the shared scheduler settings.
type ModelInfo struct {
	GPUs             int     `json:"gpus"`
	D                int     `json:"d"`
	MemBytes         int64   `json:"mem_bytes"`
	Slowdown2        float64 `json:"slowdown_2"`
	Slowdown6        float64 `json:"slowdown_6"`
	LinkBytesPerS    float64 `json:"link_bytes_per_s"`
	FaultBytesPerS   float64 `json:"fault_bytes_per_s"`
	MonitorPeriodS   float64 `json:"monitor_period_s"`
	T                float64 `json:"t_s"`
	TTL              float64 `json:"ttl"`
	ContainersPerGPU int     `json:"containers_per_gpu"`
	KeepAliveS       float64 `json:"keep_alive_s"`
	MemoryManagement bool    `json:"memory_management"`
	Prewarm          int     `json:"prewarm,omitempty"`
}

// Metrics is one policy's results.
type Metrics struct {
	Policy                string  `json:"policy"`
	Invocations           int     `json:"invocations"`
	Completed             int     `json:"completed"`
	MeanLatency           float64 `json:"mean_latency_s"`
	P50Latency            float64 `json:"p50_latency_s"`
	P99Latency            float64 `json:"p99_latency_s"`
	MeanQueue             float64 `json:"mean_queue_s"`
	ColdStarts            int     `json:"cold_starts"`
	ColdStartPct          float64 `json:"cold_start_pct"`
	GPUUtilization        float64 `json:"gpu_utilization"`
	InterfunctionVariance float64 `json:"interfunction_variance"`
	JainFairness          float64 `json:"jain_fairness"`
	// JainVsIsolated is Jain's index over each function's mean latency
	// divided by its mean latency in the isolated bound (IsolatedLatencies,
	// over the same completed invocations): how evenly functions are served
	// relative to the best each could get, a function's unavoidable first
	// cold start included in its best.
	JainVsIsolated    float64 `json:"jain_vs_isolated"`
	ContainersStarted int     `json:"containers_started"`
	Prefetches        int     `json:"prefetches"`
	Evictions         int     `json:"evictions"`
	// MovedGB: GB moved between host and GPU by prefetches and
	// evictions; FaultGB: GB demand-paged in.
	MovedGB     float64       `json:"moved_gb"`
	FaultGB     float64       `json:"fault_gb"`
	MakespanS   float64       `json:"makespan_s"`
	PerFunction []FunctionMet `json:"per_function"`
}

// FunctionMet is one function's results under a policy.
type FunctionMet struct {
	Function     string  `json:"function"`
	Invocations  int     `json:"invocations"`
	MeanLatency  float64 `json:"mean_latency_s"`
	P99Latency   float64 `json:"p99_latency_s"`
	MeanSlowdown float64 `json:"mean_slowdown"`
	// IsolatedMean is the function's mean latency in the isolated bound
	// over the same invocations.
	IsolatedMean float64 `json:"isolated_mean_s"`
}

// Workload describes w.
func Workload(w *workload.Workload) WorkloadInfo {
	info := WorkloadInfo{Source: w.Source, Functions: len(w.Functions), Invocations: len(w.Invocations),
		DurationS: w.Duration.Seconds(), Seed: w.Seed, TargetUtil: w.TargetUtil, OfferedUtil: round(w.OfferedUtil(), 4),
		RatePerS: round(w.Rate(), 4), IATScale: w.IATScale, Arrivals: w.Arrivals}
	n := make([]int, len(w.Functions))
	for _, inv := range w.Invocations {
		n[inv.Fn]++
	}
	for i, f := range w.Functions {
		info.FunctionList = append(info.FunctionList, FunctionInfo{Name: f.Name, Catalog: f.Catalog, WarmS: f.WarmSec,
			ColdS: f.ColdSec, MemBytes: f.MemBytes, TraceWarmS: f.TraceWarmSec, Invocations: n[i]})
	}
	return info
}

// Model describes the GPU model and scheduler settings shared by all
// policies, and the containers prewarmed per function.
func Model(m sim.GPUModel, c core.Config, prewarm int) ModelInfo {
	return ModelInfo{GPUs: c.GPUs, D: c.D, MemBytes: m.MemBytes, Slowdown2: m.Slowdown2, Slowdown6: m.Slowdown6,
		LinkBytesPerS: m.LinkBytesPerSec, FaultBytesPerS: round(m.FaultBytesPerSec, 0), MonitorPeriodS: m.MonitorPeriod.Seconds(),
		T: c.T.Seconds(), TTL: c.TTL, ContainersPerGPU: c.ContainersPerGPU, KeepAliveS: c.KeepAlive.Seconds(),
		MemoryManagement: !c.NoMemoryManagement, Prewarm: prewarm}
}

// Compute derives a policy's metrics. Latency is end-to-end (arrival to
// end); queue time is arrival to dispatch; slowdown divides latency by the
// function's isolated warm execution time.
func Compute(w *workload.Workload, r *sim.Result, name string) Metrics {
	m := Metrics{Policy: name, Invocations: len(r.Records), ContainersStarted: r.ContainersStarted,
		Prefetches: r.Prefetches, Evictions: r.Evictions, MovedGB: round((r.PrefetchBytes+r.EvictBytes)/1e9, 3),
		FaultGB: round(r.FaultBytes/1e9, 3), MakespanS: round(r.Makespan.Seconds(), 3)}
	var lat []float64
	perLat := make([][]float64, len(w.Functions))
	perSlow := make([]float64, len(w.Functions))
	perIso := make([]float64, len(w.Functions))
	fns := make([]int, len(r.Records))
	for i, rec := range r.Records {
		fns[i] = rec.Fn
	}
	iso := isolated(w.Functions, fns, r.Prewarm)
	queue := 0.0
	for i, rec := range r.Records {
		if !rec.Done() {
			continue
		}
		l := rec.End.Sub(rec.Arrival).Seconds()
		lat = append(lat, l)
		queue += rec.Dispatch.Sub(rec.Arrival).Seconds()
		perLat[rec.Fn] = append(perLat[rec.Fn], l)
		perSlow[rec.Fn] += l / w.Functions[rec.Fn].WarmSec
		perIso[rec.Fn] += iso[i]
		if rec.Cold {
			m.ColdStarts++
		}
	}
	m.Completed = len(lat)
	if m.Completed > 0 {
		m.MeanLatency = round(mean(lat), 4)
		m.MeanQueue = round(queue/float64(m.Completed), 4)
		m.ColdStartPct = round(100*float64(m.ColdStarts)/float64(m.Completed), 3)
		slices.Sort(lat)
		m.P50Latency = round(quantile(lat, 0.5), 4)
		m.P99Latency = round(quantile(lat, 0.99), 4)
	}
	busy := 0.0
	for _, b := range r.BusySec {
		busy += b
	}
	if r.Makespan > 0 {
		m.GPUUtilization = round(busy/(r.Makespan.Seconds()*float64(len(r.BusySec))), 4)
	}
	var means, slows, vsIso []float64
	for i, ls := range perLat {
		if len(ls) == 0 {
			continue
		}
		mu := mean(ls)
		slices.Sort(ls)
		sd := perSlow[i] / float64(len(ls))
		isoMean := perIso[i] / float64(len(ls))
		means = append(means, mu)
		slows = append(slows, sd)
		vsIso = append(vsIso, mu/isoMean)
		m.PerFunction = append(m.PerFunction, FunctionMet{Function: w.Functions[i].Name, Invocations: len(ls),
			MeanLatency: round(mu, 4), P99Latency: round(quantile(ls, 0.99), 4), MeanSlowdown: round(sd, 4),
			IsolatedMean: round(isoMean, 4)})
	}
	m.InterfunctionVariance = round(variance(means), 4)
	m.JainFairness = round(jain(slows), 4)
	m.JainVsIsolated = round(jain(vsIso), 4)
	return m
}

// IsolatedBound computes w's Bound over all its invocations (a run that
// does not drain reports its completed ones only); prewarm > 0 drops the
// cold starts. It does not depend on arrival times.
func IsolatedBound(w *workload.Workload, prewarm int) Bound {
	terms := IsolatedLatencies(w, prewarm)
	sum := make([]float64, len(w.Functions))
	n := make([]int, len(w.Functions))
	for i, inv := range w.Invocations {
		sum[inv.Fn] += terms[i]
		n[inv.Fn]++
	}
	var b Bound
	var means, slows []float64
	for i, f := range w.Functions {
		if n[i] == 0 {
			continue
		}
		mu := sum[i] / float64(n[i])
		means = append(means, mu)
		slows = append(slows, mu/f.WarmSec)
	}
	if len(terms) > 0 {
		b.MeanLatency = round(mean(terms), 4)
	}
	b.InterfunctionVariance = round(variance(means), 4)
	b.JainFairness = round(jain(slows), 4)
	return b
}

// IsolatedLatencies returns, by invocation index, each invocation's latency
// in the isolated bound: its function's warm time, plus its cold start for
// the function's first invocation unless prewarm > 0. In the simulator no
// invocation finishes sooner: a function has no container before its first
// arrival (without prewarm), a start takes its cold-start time, and sharing
// the GPU or paging memory only slows execution down.
func IsolatedLatencies(w *workload.Workload, prewarm int) []float64 {
	fns := make([]int, len(w.Invocations))
	for i, inv := range w.Invocations {
		fns[i] = inv.Fn
	}
	return isolated(w.Functions, fns, prewarm)
}

// isolated returns the isolated-bound latency of invocations of fns (by
// invocation index, in arrival order).
func isolated(functions []workload.Function, fns []int, prewarm int) []float64 {
	out := make([]float64, len(fns))
	seen := make([]bool, len(functions))
	for i, fn := range fns {
		f := functions[fn]
		out[i] = f.WarmSec
		if !seen[fn] && prewarm == 0 {
			out[i] += f.ColdSec
		}
		seen[fn] = true
	}
	return out
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// variance is the population variance.
func variance(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	mu := mean(xs)
	s := 0.0
	for _, x := range xs {
		s += (x - mu) * (x - mu)
	}
	return s / float64(len(xs))
}

// jain is Jain's fairness index (sum x)^2 / (n sum x^2).
func jain(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s, s2 := 0.0, 0.0
	for _, x := range xs {
		s += x
		s2 += x * x
	}
	if s2 == 0 {
		return 1
	}
	return s * s / (float64(len(xs)) * s2)
}

// quantile of sorted xs, nearest rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
