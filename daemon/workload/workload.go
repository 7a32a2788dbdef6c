package workload

import (
	"fmt"
	"time"
)

// Function is one function of a workload, mapped onto a catalog entry.
type Function struct {
	// Name is the trace's function name (an Azure hash is shortened to 10
	// hex digits).
	Name string
	// Catalog is the catalog entry it runs as.
	Catalog string
	// WarmSec is the isolated warm GPU execution time, seconds.
	WarmSec float64
	// ColdSec is the container start time (with CUDA init), seconds.
	ColdSec float64
	// MemBytes is the GPU memory footprint.
	MemBytes int64
	// TraceWarmSec is the trace's own warm time the mapping used.
	TraceWarmSec float64
}

// Invocation is one arrival.
type Invocation struct {
	Fn int           // index into Workload.Functions
	At time.Duration // since the start
}

// Workload is a GPU workload: functions and sorted arrivals.
type Workload struct {
	Source      string
	Functions   []Function
	Invocations []Invocation
	Duration    time.Duration
	Seed        uint64
	// TargetUtil is the utilization arrivals were scaled to (0: not scaled).
	TargetUtil float64
	// IATScale is the factor trace inter-arrival times were multiplied by.
	IATScale float64
	// Arrivals is the arrival method of an Azure-derived workload.
	Arrivals string
}

// OfferedUtil is the GPU work (isolated warm seconds) per second of duration.
func (w *Workload) OfferedUtil() float64 {
	if w.Duration <= 0 {
		return 0
	}
	work := 0.0
	for _, inv := range w.Invocations {
		work += w.Functions[inv.Fn].WarmSec
	}
	return work / w.Duration.Seconds()
}

// Rate is the mean arrival rate, requests per second.
func (w *Workload) Rate() float64 {
	if w.Duration <= 0 {
		return 0
	}
	return float64(len(w.Invocations)) / w.Duration.Seconds()
}

// Options control workload generation.
type Options struct {
	// Functions is how many trace functions to sample. Default 24.
	Functions int
	// Duration of the generated run. Default 10m.
	Duration time.Duration
	// TargetUtil scales arrivals so the offered GPU work is this fraction
	// of the duration. Default 0.7; for Ilúvatar traces only if
	// ScaleIluvatar.
	TargetUtil float64
	// Seed for sampling functions and inter-arrival times.
	Seed uint64
	// ScaleIluvatar scales an Ilúvatar trace's arrival times to TargetUtil
	// (otherwise they are replayed as recorded).
	ScaleIluvatar bool
	// DurationSet truncates an Ilúvatar trace to Duration.
	DurationSet bool
	// Catalog to map onto. Default: the embedded V100 catalog.
	Catalog []CatalogEntry
	// Arrivals selects how Azure per-minute counts become arrivals:
	// ArrivalsSpread (default) or ArrivalsIluvatar.
	Arrivals string
}

// Arrival methods for Azure traces (Options.Arrivals).
const (
	// ArrivalsSpread spreads each minute's invocations evenly over the
	// minute (centred), draws inter-arrival times uniformly from the
	// resulting sorted values and starts each function at a random phase.
	ArrivalsSpread = "spread"
	// ArrivalsIluvatar emulates Ilúvatar's generator as its source
	// describes it: a trace minute counts as one second, a minute's k
	// invocations sit at minute + i/k (a single one at the minute's
	// start), inter-arrival times are drawn by linear interpolation of the
	// empirical CDF between its order statistics, and each function's
	// first arrival is its first draw after time 0.
	ArrivalsIluvatar = "iluvatar"
)

func (o Options) withDefaults() Options {
	if o.Functions == 0 {
		o.Functions = 24
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Minute
	}
	if o.TargetUtil == 0 {
		o.TargetUtil = 0.7
	}
	if o.Catalog == nil {
		o.Catalog = Catalog()
	}
	if o.Arrivals == "" {
		o.Arrivals = ArrivalsSpread
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Functions < 1 || o.Functions > 100000:
		return fmt.Errorf("functions %d not in 1..100000", o.Functions)
	case o.Duration <= 0 || o.Duration > 30*24*time.Hour:
		return fmt.Errorf("duration %v not in (0, 30 days]", o.Duration)
	case o.TargetUtil <= 0 || o.TargetUtil > 64:
		return fmt.Errorf("target utilization %g not in (0, 64]", o.TargetUtil)
	case len(o.Catalog) == 0:
		return fmt.Errorf("empty catalog")
	case o.Arrivals != ArrivalsSpread && o.Arrivals != ArrivalsIluvatar:
		return fmt.Errorf("arrival method %q not %s or %s", o.Arrivals, ArrivalsSpread, ArrivalsIluvatar)
	}
	return nil
}

func (f Function) fromCatalog(name string, traceWarm float64, c []CatalogEntry) Function {
	e := Match(c, traceWarm)
	return Function{Name: name, Catalog: e.Name, WarmSec: e.WarmSec, ColdSec: e.ColdSec, MemBytes: e.MemBytes, TraceWarmSec: traceWarm}
}
