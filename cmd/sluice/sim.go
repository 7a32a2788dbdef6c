package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gpu/sluice/daemon/core"
	"github.com/sluice-gpu/sluice/daemon/report"
	"github.com/sluice-gpu/sluice/daemon/sim"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// runSim implements `sluice sim`: generate or load a workload, run each
// policy through the scheduler core in virtual time, write the outputs.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := sim.DefaultGPUModel()
	var (
		tracePath = fs.String("trace", "", "trace: an Azure 2019 directory, or an Ilúvatar trace.csv (default: the embedded default workload)")
		format    = fs.String("format", "", "trace format: iluvatar or azure2019 (default: azure2019 for a directory, iluvatar for a file)")
		metaPath  = fs.String("metadata", "", "Ilúvatar metadata csv (default: metadata-<trace name> beside the trace)")
		nFns      = fs.Int("functions", 24, "functions to sample from an Azure trace")
		duration  = fs.Duration("duration", 10*time.Minute, "length of the generated workload")
		target    = fs.Float64("target-util", 0.7, "offered GPU utilization to scale arrivals to (Ilúvatar traces: only if given)")
		seed      = fs.Uint64("seed", 1, "seed for sampling functions and inter-arrival times")
		arrivals  = fs.String("arrivals", workload.ArrivalsSpread, "Azure traces: how per-minute counts become arrivals: spread (each minute's invocations spread over the minute) or iluvatar (emulates Ilúvatar's generator: minute as one second, interpolated empirical CDF)")
		gpus      = fs.Int("gpus", 1, "GPUs")
		d         = fs.Int("d", 2, "device concurrency D per GPU")
		dMax      = fs.Int("d-max", 0, "sluice (adaptived): the highest concurrency its measured-throughput limit may reach (default --d + 1)")
		t         = fs.Duration("t", 5*time.Second, "throttle threshold T (negative: off)")
		ttl       = fs.Float64("ttl", -1.5, "anticipation TTL: seconds if >= 0, else |ttl| x mean inter-arrival time")
		policies  = fs.String("policy", "fcfs,batch,sjf,mqfq,mqfq-sticky,sluice", "comma-separated policies; batch:N caps batches; sluice:-name drops an improvement ("+strings.Join(improvementNames, ", ")+"), sluice:+a+b keeps only those, sluice:+default+evictahead adds one that is off by default (evictahead, partialevict, prefetch); a :hold-cold suffix (e.g. mqfq-sticky:hold-cold) reproduces the reference implementation's D slot held during cold starts")
		out       = fs.String("out", "", "output directory (required)")
		selectCnt = fs.Int("select", 20, "MQFQ-Sticky candidate set size")
		utilCap   = fs.Float64("util-cap", 0, "utilization cap 0-1 (0: off)")
		ctrs      = fs.Int("containers", 32, "warm containers per GPU")
		prewarm   = fs.Int("prewarm", 0, "containers of every function to prewarm: started in the background from time 0, only while no request is queued and as budget, pool room and memory allow (docs/EVALUATION.md, Prewarm)")
		keepAlive = fs.Duration("keep-alive", 10*time.Minute, "stop containers idle this long")
		noMem     = fs.Bool("no-memory-management", false, "no prefetch or eviction: pure demand paging")
		memGiB    = fs.Float64("mem-gib", float64(def.MemBytes)/(1<<30), "GPU memory, GiB")
		linkGBps  = fs.Float64("link-gbps", def.LinkBytesPerSec/1e9, "host link bandwidth per direction, GB/s")
		faultGBps = fs.Float64("fault-gbps", def.FaultBytesPerSec/1e9, "demand-paging bandwidth, GB/s")
		slow2     = fs.Float64("slowdown2", def.Slowdown2, "normalized execution time at 2 concurrent")
		slow6     = fs.Float64("slowdown6", def.Slowdown6, "normalized execution time at 6 concurrent")
		monitor   = fs.Duration("monitor", def.MonitorPeriod, "utilization sampling period")
		tScale    = fs.Float64("t-scale", 3, "sluice: T = t-scale x work-weighted mean GPU time of backlogged flows (at least --t/10)")
		costTTL   = fs.Float64("cost-ttl-factor", 4, "sluice: keep a flow resident at least this many times its measured swap-in time")
		footprint = fs.Float64("footprint-gb", 0, "GPU memory footprint of every function, GB (0: the catalog's, 3 GB; FFT 1.5 GB)")
		noPlots   = fs.Bool("no-plots", false, "skip the PNG plots")
		quiet     = fs.Bool("q", false, "do not print the table")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sluice sim [flags] --out DIR\n\nRuns the scheduler core in virtual time against the GPU model and writes\nDIR/summary.json, DIR/invocations.csv and PNG plots.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "sluice sim: "+format+"\n", a...)
		fs.Usage()
		return errUsage
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return usageErr("--out is required")
	}
	model := sim.GPUModel{Slowdown2: *slow2, Slowdown6: *slow6, MemBytes: int64(*memGiB * (1 << 30)),
		LinkBytesPerSec: *linkGBps * 1e9, FaultBytesPerSec: *faultGBps * 1e9, MonitorPeriod: *monitor}
	if err := model.Validate(); err != nil {
		return usageErr("%v", err)
	}
	if math.IsNaN(*target) || *target <= 0 {
		return usageErr("--target-util %g must be positive", *target)
	}
	if *arrivals != workload.ArrivalsSpread && *arrivals != workload.ArrivalsIluvatar {
		return usageErr("--arrivals %q: want %s or %s", *arrivals, workload.ArrivalsSpread, workload.ArrivalsIluvatar)
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"gpus", *gpus}, {"d", *d}, {"functions", *nFns}, {"select", *selectCnt}, {"containers", *ctrs}} {
		if c.v < 1 {
			return usageErr("--%s %d must be at least 1", c.name, c.v)
		}
	}
	if !(*footprint >= 0) || *footprint > 1e6 {
		return usageErr("--footprint-gb %g must be in [0, 1e6]", *footprint)
	}
	if !(*tScale > 0) || !(*costTTL >= 0) {
		return usageErr("--t-scale must be positive and --cost-ttl-factor not negative")
	}
	if *duration <= 0 {
		return usageErr("--duration %v must be positive", *duration)
	}
	if *prewarm < 0 || *prewarm > *ctrs {
		return usageErr("--prewarm %d must be in [0, --containers]", *prewarm)
	}
	if *keepAlive <= 0 {
		return usageErr("--keep-alive %v must be positive", *keepAlive)
	}
	specs, err := parsePolicies(*policies)
	if err != nil {
		return usageErr("%v", err)
	}
	base := core.Config{GPUs: *gpus, D: *d, DMax: *dMax, T: *t, TTL: *ttl, TTLSet: true, SelectCount: *selectCnt, UtilCap: *utilCap,
		ContainersPerGPU: *ctrs, KeepAlive: *keepAlive, NoMemoryManagement: *noMem, TScale: *tScale, CostTTLFactor: *costTTL}
	if *t == 0 {
		base.T = time.Nanosecond // T = 0 means "throttle as soon as ahead"
	}
	for _, sp := range specs {
		c := sp.apply(base)
		c.GPUMemBytes = model.MemBytes
		c.MonitorPeriod = model.MonitorPeriod
		if err := c.WithDefaults().Validate(); err != nil {
			return usageErr("policy %s: %v", sp.name, err)
		}
	}

	opts := workload.Options{Functions: *nFns, Duration: *duration, TargetUtil: *target, Seed: *seed,
		ScaleIluvatar: set["target-util"], DurationSet: set["duration"], Arrivals: *arrivals}
	w, err := loadWorkload(*tracePath, *format, *metaPath, opts)
	if err != nil {
		return err
	}
	if *footprint > 0 {
		for i := range w.Functions {
			w.Functions[i].MemBytes = int64(*footprint * 1e9)
		}
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	csvFile, err := os.Create(filepath.Join(*out, "invocations.csv"))
	if err != nil {
		return fmt.Errorf("create invocations.csv: %w", err)
	}
	defer csvFile.Close()
	if _, err := io.WriteString(csvFile, report.InvocationsHeader); err != nil {
		return fmt.Errorf("write invocations.csv: %w", err)
	}
	summary := report.Summary{Workload: report.Workload(w), IsolatedBound: report.IsolatedBound(w, *prewarm)}
	var runs []report.Run
	for i, sp := range specs {
		cfg := sp.apply(base)
		res, err := sim.Run(ctx, w, sim.Options{Model: model, Core: cfg, Prewarm: *prewarm})
		if err != nil {
			return fmt.Errorf("simulate %s: %w", sp.name, err)
		}
		if i == 0 {
			summary.GPUModel = report.Model(model, res.Config, *prewarm)
		}
		summary.Results = append(summary.Results, report.Compute(w, res, sp.name))
		if err := report.WriteInvocations(csvFile, w, sp.name, res); err != nil {
			return err
		}
		runs = append(runs, report.Run{Name: sp.name, Result: res})
	}
	if err := csvFile.Close(); err != nil {
		return fmt.Errorf("write invocations.csv: %w", err)
	}
	sf, err := os.Create(filepath.Join(*out, "summary.json"))
	if err != nil {
		return fmt.Errorf("create summary.json: %w", err)
	}
	if err := report.WriteSummary(sf, summary); err != nil {
		sf.Close()
		return err
	}
	if err := sf.Close(); err != nil {
		return fmt.Errorf("write summary.json: %w", err)
	}
	if !*noPlots {
		if err := report.Plots(*out, w, runs); err != nil {
			return err
		}
	}
	if !*quiet {
		report.Table(stdout, summary)
		fmt.Fprintf(stdout, "\nwrote %s\n", filepath.Join(*out, "{summary.json,invocations.csv,*.png}"))
	}
	return nil
}

// loadWorkload builds the workload from flags.
func loadWorkload(path, format, meta string, opts workload.Options) (*workload.Workload, error) {
	if path == "" {
		if format != "" || meta != "" {
			return nil, fmt.Errorf("--format and --metadata need --trace")
		}
		return workload.Default(opts)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	if format == "" {
		format = "iluvatar"
		if st.IsDir() {
			format = "azure2019"
			if _, err := os.Stat(filepath.Join(path, "trace.csv")); err == nil {
				format = "iluvatar"
			}
		}
	}
	switch format {
	case "azure2019":
		if !st.IsDir() {
			return nil, fmt.Errorf("azure2019 trace %s: want a directory with invocations.csv, durations.csv, memory.csv", path)
		}
		t, err := workload.LoadAzure(path)
		if err != nil {
			return nil, err
		}
		return workload.FromAzure(t, opts)
	case "iluvatar":
		if opts.Arrivals != "" && opts.Arrivals != workload.ArrivalsSpread {
			return nil, fmt.Errorf("--arrivals applies to Azure traces; an Ilúvatar trace is replayed or scaled as recorded")
		}
		if st.IsDir() {
			path = filepath.Join(path, "trace.csv")
		}
		if meta == "" {
			meta = filepath.Join(filepath.Dir(path), "metadata-"+filepath.Base(path))
		}
		t, err := workload.LoadIluvatar(path, meta)
		if err != nil {
			return nil, err
		}
		return workload.FromIluvatar(t, opts)
	}
	return nil, fmt.Errorf("unknown trace format %q (want iluvatar or azure2019)", format)
}

// policySpec is one --policy entry.
type policySpec struct {
	name     string
	policy   core.Policy
	batchCap int
	hold     bool // core.HoldColdSuffix: reproduce the reference's slot held during cold starts
	custom   bool
	only     bool     // names are the improvements kept (else: dropped)
	names    []string // improvement names
}

var improvementNames = []string{"adaptived", "memory", "costttl", "scalet", "waitbusy", "prefetch", "retag", "coldahead", "warmfirst", "shareslots", "coldt", "ratio", "firststarts", "evictahead", "partialevict", "keeplong"}

// defaultName, in a sluice:+name list, stands for every improvement sluice
// has by default: sluice:+default+evictahead is sluice plus evictahead.
const defaultName = "default"

func parsePolicies(s string) ([]policySpec, error) {
	var out []policySpec
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if seen[item] {
			return nil, fmt.Errorf("policy %q listed twice", item)
		}
		seen[item] = true
		sp := policySpec{name: item}
		if rest, ok := strings.CutPrefix(item, "sluice:"); ok {
			sp.policy, sp.custom = core.PolicySluice, true
			if rest == "" || (rest[0] != '-' && rest[0] != '+') {
				return nil, fmt.Errorf("policy %q: write sluice:-name[-name...] to drop improvements or sluice:+name[+name...] to keep only those (+default: the default set)", item)
			}
			sp.only = rest[0] == '+'
			for _, d := range strings.FieldsFunc(rest, func(r rune) bool { return r == '-' || r == '+' }) {
				if !slices.Contains(improvementNames, d) && !(sp.only && d == defaultName) {
					return nil, fmt.Errorf("policy %q: unknown improvement %q (want %s)", item, d, strings.Join(improvementNames, ", "))
				}
				sp.names = append(sp.names, d)
			}
			if strings.ContainsRune(rest, '+') && strings.ContainsRune(rest, '-') {
				return nil, fmt.Errorf("policy %q: mixes - and +: write sluice:-name[-name...] or sluice:+name[+name...] (+default: the default set)", item)
			}
			out = append(out, sp)
			continue
		}
		c, err := core.ApplyPolicy(item, core.Config{})
		if err != nil {
			return nil, err
		}
		sp.policy, sp.batchCap, sp.hold = c.Policy, c.BatchCap, c.HoldColdSlot
		out = append(out, sp)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no policy given")
	}
	return out, nil
}

func (sp policySpec) apply(c core.Config) core.Config {
	c.Policy, c.BatchCap, c.HoldColdSlot = sp.policy, sp.batchCap, sp.hold
	if sp.custom {
		// sluice:-a-b: the default set without a and b; sluice:+a+b: only a
		// and b; sluice:+default+a: the default set and a.
		def := core.SluiceImprovements()
		keepDefault := sp.only && slices.Contains(sp.names, defaultName)
		for _, x := range []struct {
			name string
			v    *bool
		}{{"memory", &def.MemoryAware}, {"costttl", &def.CostAwareTTL}, {"scalet", &def.ScaleT}, {"adaptived", &def.AdaptiveD},
			{"waitbusy", &def.WaitForBusy}, {"warmfirst", &def.WarmFirst}, {"shareslots", &def.ShareSlots}, {"coldt", &def.ColdT}, {"ratio", &def.ResponseRatio}, {"firststarts", &def.FirstStarts}, {"prefetch", &def.PrefetchAhead}, {"retag", &def.Retag}, {"evictahead", &def.EvictAhead}, {"partialevict", &def.PartialEvict}, {"keeplong", &def.KeepLong}} {
			if slices.Contains(sp.names, x.name) {
				*x.v = sp.only
			} else if sp.only && !keepDefault {
				*x.v = false
			}
		}
		// coldahead is on by default and switched off by a negative field.
		named := slices.Contains(sp.names, "coldahead") || keepDefault
		def.NoColdAhead = named != sp.only
		c.Improvements = def
		c.ImprovementsSet = true
	}
	return c
}
