package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/sluice-gpu/sluice/daemon/sim"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// WriteSummary writes summary.json.
func WriteSummary(w io.Writer, s Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// InvocationsHeader is the header of invocations.csv.
const InvocationsHeader = "policy,invocation,function,arrival_s,dispatch_s,start_s,end_s,cold,queue_s,e2e_s\n"

// WriteInvocations appends one row per invocation of r (times in seconds,
// microsecond precision; unfinished invocations have empty end and e2e).
func WriteInvocations(out io.Writer, wl *workload.Workload, name string, r *sim.Result) error {
	bw := bufio.NewWriter(out)
	var b []byte
	sec := func(b []byte, t int64) []byte { return strconv.AppendFloat(b, float64(t)/1e9, 'f', 6, 64) }
	for _, rec := range r.Records {
		b = b[:0]
		b = append(b, name...)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(rec.Inv), 10)
		b = append(b, ',')
		b = append(b, wl.Functions[rec.Fn].Name...)
		b = append(b, ',')
		b = sec(b, int64(rec.Arrival))
		b = append(b, ',')
		if rec.Dispatch > 0 || rec.Done() {
			b = sec(b, int64(rec.Dispatch))
		}
		b = append(b, ',')
		if rec.Done() {
			b = sec(b, int64(rec.Start))
		}
		b = append(b, ',')
		if rec.Done() {
			b = sec(b, int64(rec.End))
		}
		b = append(b, ',')
		b = strconv.AppendBool(b, rec.Cold)
		b = append(b, ',')
		if rec.Dispatch > 0 || rec.Done() {
			b = sec(b, int64(rec.Dispatch-rec.Arrival))
		}
		b = append(b, ',')
		if rec.Done() {
			b = sec(b, int64(rec.End-rec.Arrival))
		}
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("write invocations: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write invocations: %w", err)
	}
	return nil
}

// Table prints the comparison table.
func Table(w io.Writer, s Summary) {
	fmt.Fprintf(w, "workload: %s, %d functions, %d invocations over %.0fs (%.2f req/s, offered GPU util %.1f%%), seed %d\n",
		s.Workload.Source, s.Workload.Functions, s.Workload.Invocations, s.Workload.DurationS, s.Workload.RatePerS,
		100*s.Workload.OfferedUtil, s.Workload.Seed)
	fmt.Fprintf(w, "gpu model: %d GPU(s), D=%d, %.0f GiB, slowdown 2/6 = %.2f/%.2f, link %.0f GB/s, T=%gs, TTL=%g",
		s.GPUModel.GPUs, s.GPUModel.D, float64(s.GPUModel.MemBytes)/(1<<30), s.GPUModel.Slowdown2, s.GPUModel.Slowdown6,
		s.GPUModel.LinkBytesPerS/1e9, s.GPUModel.T, s.GPUModel.TTL)
	if s.GPUModel.Prewarm > 0 {
		fmt.Fprintf(w, ", prewarm %d per function", s.GPUModel.Prewarm)
	}
	fmt.Fprint(w, "\n\n")
	label := "(isolated)"
	if s.GPUModel.Prewarm > 0 {
		label = "(isolated, no cold starts)"
	}
	width := max(len("mqfq-sticky"), len(label))
	for _, m := range s.Results {
		width = max(width, len(m.Policy))
	}
	fmt.Fprintf(w, "%-*s %9s %9s %9s %9s %9s %7s %7s %10s %6s %8s\n", width, "policy", "done", "mean_s", "p50_s", "p99_s", "queue_s", "cold%", "util%", "fn_var_s2", "jain", "jain_iso")
	for _, m := range s.Results {
		fmt.Fprintf(w, "%-*s %4d/%-4d %9.3f %9.3f %9.3f %9.3f %7.2f %7.1f %10.2f %6.3f %8.3f\n", width, m.Policy, m.Completed, m.Invocations,
			m.MeanLatency, m.P50Latency, m.P99Latency, m.MeanQueue, m.ColdStartPct, 100*m.GPUUtilization, m.InterfunctionVariance, m.JainFairness,
			m.JainVsIsolated)
	}
	b := s.IsolatedBound
	fmt.Fprintf(w, "%-*s %9s %9.3f %9s %9s %9s %7s %7s %10.2f %6.3f\n", width, label, "", b.MeanLatency, "", "", "", "", "",
		b.InterfunctionVariance, b.JainFairness)
}
