package workload

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"
)

// AzureFunction is one function of an Azure Functions 2019 trace.
type AzureFunction struct {
	Hash    string
	Trigger string
	// Counts holds invocations per minute, from the first minute column.
	Counts []int
	// WarmMs is percentile_Average_25, ColdMs is Maximum (the paper's choice).
	WarmMs, ColdMs float64
	// MemMb is the average allocated memory, MB (0 if memory.csv lacks it).
	MemMb float64
}

// AzureTrace is a parsed Azure 2019 directory.
type AzureTrace struct {
	Dir       string
	Functions []AzureFunction // in invocations.csv order
}

// LoadAzure reads invocations.csv, durations.csv and memory.csv from dir.
func LoadAzure(dir string) (*AzureTrace, error) {
	return loadAzureFS(os.DirFS(dir), dir)
}

//go:embed data/azure2019-default/*.csv
var defaultFS embed.FS

func loadAzureFS(fsys fs.FS, dir string) (*AzureTrace, error) {
	open := func(name string) ([]csvRow, string, error) {
		path := filepath.Join(dir, name)
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, path, fmt.Errorf("read azure trace: %w", err)
		}
		rows, err := readCSV(bytes.NewReader(b), path)
		if err != nil {
			return nil, path, err
		}
		if len(rows) == 0 {
			return nil, path, fmt.Errorf("%s: empty file", path)
		}
		return rows, path, nil
	}
	inv, _, err := open("invocations.csv")
	if err != nil {
		return nil, err
	}
	dur, _, err := open("durations.csv")
	if err != nil {
		return nil, err
	}
	mem, _, err := open("memory.csv")
	if err != nil {
		return nil, err
	}
	hi, err := header("", inv[0], "HashFunction", "Trigger")
	if err != nil {
		return nil, err
	}
	first := hi["Trigger"] + 1
	if first >= len(inv[0].fields) {
		return nil, inv[0].errorf("no minute columns after Trigger")
	}
	for i := first; i < len(inv[0].fields); i++ {
		m, err := strconv.Atoi(inv[0].get(i))
		if err != nil || (i > first && m != mustAtoi(inv[0].get(i-1))+1) {
			return nil, inv[0].errorf("minute column %d: %q is not the next minute number", i+1, inv[0].get(i))
		}
	}
	t := &AzureTrace{Dir: dir}
	index := map[string]int{}
	for _, row := range inv[1:] {
		h := row.get(hi["HashFunction"])
		if h == "" {
			return nil, row.errorf("empty HashFunction")
		}
		if _, dup := index[h]; dup {
			return nil, row.errorf("duplicate function %s", h)
		}
		f := AzureFunction{Hash: h, Trigger: row.get(hi["Trigger"]), WarmMs: math.NaN()}
		for i := first; i < len(row.fields); i++ {
			n, err := strconv.Atoi(row.get(i))
			if err != nil || n < 0 {
				return nil, row.errorf("column %s: %q is not a count", inv[0].get(i), row.get(i))
			}
			f.Counts = append(f.Counts, n)
		}
		index[h] = len(t.Functions)
		t.Functions = append(t.Functions, f)
	}
	hd, err := header("", dur[0], "HashFunction", "Maximum", "percentile_Average_25")
	if err != nil {
		return nil, err
	}
	for _, row := range dur[1:] {
		i, ok := index[row.get(hd["HashFunction"])]
		if !ok {
			continue // a function with durations but no invocations: unused
		}
		w, err := row.float(hd["percentile_Average_25"], "percentile_Average_25", false)
		if err != nil {
			return nil, err
		}
		c, err := row.float(hd["Maximum"], "Maximum", false)
		if err != nil {
			return nil, err
		}
		if w < 0 || c < 0 {
			return nil, row.errorf("negative duration")
		}
		if w > c {
			return nil, row.errorf("percentile_Average_25 %g above Maximum %g", w, c)
		}
		t.Functions[i].WarmMs, t.Functions[i].ColdMs = w, c
	}
	hm, err := header("", mem[0], "HashFunction", "AverageAllocatedMb")
	if err != nil {
		return nil, err
	}
	for _, row := range mem[1:] {
		if i, ok := index[row.get(hm["HashFunction"])]; ok {
			m, err := row.float(hm["AverageAllocatedMb"], "AverageAllocatedMb", false)
			if err != nil {
				return nil, err
			}
			if m < 0 {
				return nil, row.errorf("negative AverageAllocatedMb")
			}
			t.Functions[i].MemMb = m
		}
	}
	return t, nil
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// Usable returns the functions the paper kept: invoked at least twice and
// with durations.
func (t *AzureTrace) Usable() []AzureFunction {
	var out []AzureFunction
	for _, f := range t.Functions {
		n := 0
		for _, c := range f.Counts {
			n += c
		}
		if n >= 2 && !math.IsNaN(f.WarmMs) {
			out = append(out, f)
		}
	}
	return out
}

// iats returns f's sorted inter-arrival times in seconds.
//
// ArrivalsSpread places a minute's c invocations at 60*(m + (i+0.5)/c).
// ArrivalsIluvatar places them at m + i/c (a minute counts as one second,
// Ilúvatar's 60x compression; a single invocation at the minute's start);
// the compression is a uniform factor that the target-utilization scaling
// removes, the placement is what differs.
func (f AzureFunction) iats(method string) []float64 {
	var times []float64
	for m, c := range f.Counts {
		for i := 0; i < c; i++ {
			if method == ArrivalsIluvatar {
				times = append(times, float64(m)+float64(i)/float64(c))
			} else {
				times = append(times, 60*float64(m)+(float64(i)+0.5)*60/float64(c))
			}
		}
	}
	out := make([]float64, 0, len(times))
	for i := 1; i < len(times); i++ {
		out = append(out, times[i]-times[i-1])
	}
	slices.Sort(out)
	return out
}

// Sample picks n usable functions with seed (all of them, in a seeded
// order, if there are at most n).
func (t *AzureTrace) Sample(n int, seed uint64) ([]AzureFunction, error) {
	u := t.Usable()
	if len(u) == 0 {
		return nil, fmt.Errorf("azure trace %s: no function invoked at least twice with durations", t.Dir)
	}
	if n > len(u) {
		return nil, fmt.Errorf("azure trace %s: %d functions requested, %d usable", t.Dir, n, len(u))
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	rng.Shuffle(len(u), func(i, j int) { u[i], u[j] = u[j], u[i] })
	u = u[:n]
	sort.Slice(u, func(i, j int) bool { return u[i].Hash < u[j].Hash })
	return u, nil
}

// FromAzure generates a workload from an Azure trace: sample functions,
// draw inter-arrival times from each function's empirical distribution,
// and scale them to the target utilization.
func FromAzure(t *AzureTrace, opts Options) (*Workload, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	fns, err := t.Sample(opts.Functions, opts.Seed)
	if err != nil {
		return nil, err
	}
	w := &Workload{Source: "azure2019:" + t.Dir, Duration: opts.Duration, Seed: opts.Seed, TargetUtil: opts.TargetUtil,
		Arrivals: opts.Arrivals}
	iats := make([][]float64, len(fns))
	expected := 0.0 // utilization at scale 1
	for i, f := range fns {
		name := f.Hash
		if len(name) > 10 {
			name = name[:10]
		}
		w.Functions = append(w.Functions, Function{}.fromCatalog(name, f.WarmMs/1000, opts.Catalog))
		iats[i] = f.iats(opts.Arrivals)
		mean := meanDraw(iats[i], opts.Arrivals)
		if mean > 0 {
			expected += w.Functions[i].WarmSec / mean
		}
	}
	if expected <= 0 {
		return nil, fmt.Errorf("azure trace %s: sampled functions have no inter-arrival times", t.Dir)
	}
	scaleToUtil(w, expected/opts.TargetUtil, opts.TargetUtil, func(scale float64) []Invocation {
		return generate(iats, scale, opts.Duration, opts.Seed, opts.Arrivals)
	})
	if len(w.Invocations) == 0 {
		return nil, fmt.Errorf("azure trace %s: no invocations in %v", t.Dir, opts.Duration)
	}
	return w, nil
}

// scaleToUtil sets w.Invocations and w.IATScale to the arrivals gen makes
// at the IAT scale whose offered utilization is closest to target, starting
// from the estimate s0. Every arrival time is proportional to the scale (the
// draws do not depend on it), so offered utilization is a non-increasing
// step function of the scale: bracket the target, then bisect. (A
// fixed-point iteration used before this missed the target by more than
// 5% on 40 of 100 seeds of the default functions, by up to 1.9x.)
func scaleToUtil(w *Workload, s0, target float64, gen func(float64) []Invocation) {
	util := func(scale float64) float64 {
		w.IATScale, w.Invocations = scale, gen(scale)
		return w.OfferedUtil()
	}
	const maxSteps = 12 // a factor of 4096 either way of the estimate
	lo, hi := s0, s0    // util(lo) >= target >= util(hi)
	for i := 0; i < maxSteps && util(hi) > target; i++ {
		hi *= 2
	}
	for i := 0; i < maxSteps && util(lo) < target; i++ {
		lo /= 2
	}
	for range 40 {
		if hi/lo < 1+1e-9 {
			break
		}
		mid := math.Sqrt(lo * hi)
		if util(mid) >= target {
			lo = mid
		} else {
			hi = mid
		}
	}
	best := lo
	if ul, uh := util(lo), util(hi); math.Abs(uh-target) < math.Abs(ul-target) {
		best = hi
	}
	util(best)
}

// meanDraw is the mean of the distribution draw samples from sorted xs.
func meanDraw(xs []float64, method string) float64 {
	if len(xs) == 0 {
		return 0
	}
	if method == ArrivalsIluvatar && len(xs) > 1 {
		// Piecewise linear between consecutive order statistics, each
		// segment equally likely.
		sum := 0.0
		for i := 1; i < len(xs); i++ {
			sum += (xs[i-1] + xs[i]) / 2
		}
		return sum / float64(len(xs)-1)
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// generate draws arrivals for each function from its sorted IATs.
func generate(iats [][]float64, scale float64, d time.Duration, seed uint64, method string) []Invocation {
	var out []Invocation
	end := d.Seconds()
	for fi, xs := range iats {
		rng := rand.New(rand.NewPCG(seed, uint64(fi)+1))
		draw := func() float64 {
			// The index draw is made for both methods so that each keeps
			// one fixed random sequence per seed.
			v := xs[rng.IntN(len(xs))]
			if method == ArrivalsIluvatar && len(xs) > 1 {
				// Inverse of the empirical CDF (F(xs[j]) = (j+1)/n),
				// linearly interpolated, u uniform in [1/n, 1].
				pos := rng.Float64() * float64(len(xs)-1)
				j := int(pos)
				if j >= len(xs)-1 {
					j = len(xs) - 2
				}
				v = xs[j] + (pos-float64(j))*(xs[j+1]-xs[j])
			}
			return math.Max(v*scale, 1e-3)
		}
		var t float64
		if method == ArrivalsIluvatar {
			t = draw()
		} else {
			t = rng.Float64() * draw()
		}
		for t < end {
			out = append(out, Invocation{Fn: fi, At: time.Duration(t * 1e9)})
			t += draw()
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].At != out[j].At {
			return out[i].At < out[j].At
		}
		return out[i].Fn < out[j].Fn
	})
	return out
}

// DefaultAzure returns the embedded Azure subset of the default workload.
func DefaultAzure() *AzureTrace {
	sub, err := fs.Sub(defaultFS, "data/azure2019-default")
	if err != nil {
		panic("workload: embedded default trace: " + err.Error())
	}
	t, err := loadAzureFS(sub, "embedded:azure2019-default")
	if err != nil {
		panic("workload: embedded default trace: " + err.Error()) // a build defect, covered by tests
	}
	return t
}

// Default returns the default workload: the embedded 24-function Azure
// 2019 subset, 10 minutes at 70% offered GPU utilization, seed 1 unless
// opts say otherwise.
func Default(opts Options) (*Workload, error) {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	return FromAzure(DefaultAzure(), opts)
}
