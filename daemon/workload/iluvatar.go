package workload

import (
	"fmt"
	"math"
	"os"
	"sort"
	"time"
)

// IluvatarFunction is one row of an Ilúvatar metadata file.
type IluvatarFunction struct {
	Name             string
	ColdMs, WarmMs   float64
	MemMb, MeanIATMs float64
}

// IluvatarTrace is a parsed Ilúvatar-format trace.
type IluvatarTrace struct {
	Path      string
	Functions []IluvatarFunction
	// Calls are (function index, invoke time ms), in file order (sorted).
	Calls []IluvatarCall
}

// IluvatarCall is one trace line.
type IluvatarCall struct {
	Fn int
	Ms float64
}

// LoadIluvatar reads trace (func_name,invoke_time_ms, sorted) and its
// metadata (func_name,cold_dur_ms,warm_dur_ms,mem_mb,mean_iat).
func LoadIluvatar(tracePath, metaPath string) (*IluvatarTrace, error) {
	mf, err := os.Open(metaPath)
	if err != nil {
		return nil, fmt.Errorf("read iluvatar metadata: %w", err)
	}
	defer mf.Close()
	meta, err := readCSV(mf, metaPath)
	if err != nil {
		return nil, err
	}
	if len(meta) == 0 {
		return nil, fmt.Errorf("%s: empty file", metaPath)
	}
	hm, err := header(metaPath, meta[0], "func_name", "cold_dur_ms", "warm_dur_ms", "mem_mb")
	if err != nil {
		return nil, err
	}
	t := &IluvatarTrace{Path: tracePath}
	index := map[string]int{}
	for _, row := range meta[1:] {
		name := row.get(hm["func_name"])
		if name == "" {
			return nil, row.errorf("empty func_name")
		}
		if _, dup := index[name]; dup {
			return nil, row.errorf("duplicate function %q", name)
		}
		f := IluvatarFunction{Name: name}
		for _, c := range []struct {
			col string
			dst *float64
		}{{"cold_dur_ms", &f.ColdMs}, {"warm_dur_ms", &f.WarmMs}, {"mem_mb", &f.MemMb}} {
			v, err := row.float(hm[c.col], c.col, false)
			if err != nil {
				return nil, err
			}
			if v < 0 {
				return nil, row.errorf("%s %g must not be negative", c.col, v)
			}
			*c.dst = v
		}
		if i, ok := hm["mean_iat"]; ok {
			if f.MeanIATMs, err = row.float(i, "mean_iat", true); err != nil {
				return nil, err
			}
		}
		index[name] = len(t.Functions)
		t.Functions = append(t.Functions, f)
	}
	tf, err := os.Open(tracePath)
	if err != nil {
		return nil, fmt.Errorf("read iluvatar trace: %w", err)
	}
	defer tf.Close()
	rows, err := readCSV(tf, tracePath)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: empty file", tracePath)
	}
	ht, err := header(tracePath, rows[0], "func_name", "invoke_time_ms")
	if err != nil {
		return nil, err
	}
	last := math.Inf(-1)
	for _, row := range rows[1:] {
		name := row.get(ht["func_name"])
		i, ok := index[name]
		if !ok {
			return nil, row.errorf("function %q is not in %s", name, metaPath)
		}
		ms, err := row.float(ht["invoke_time_ms"], "invoke_time_ms", false)
		if err != nil {
			return nil, err
		}
		if ms < 0 {
			return nil, row.errorf("invoke_time_ms %g is negative", ms)
		}
		if ms < last {
			return nil, row.errorf("invoke_time_ms %g before the previous line's %g (trace must be sorted)", ms, last)
		}
		last = ms
		t.Calls = append(t.Calls, IluvatarCall{Fn: i, Ms: ms})
	}
	if len(t.Calls) == 0 {
		return nil, fmt.Errorf("%s: no invocations", tracePath)
	}
	return t, nil
}

// FromIluvatar maps an Ilúvatar trace onto the catalog and replays its
// arrivals (scaled to TargetUtil if ScaleIluvatar; truncated to Duration if
// DurationSet). Functions keep the trace's names and order.
func FromIluvatar(t *IluvatarTrace, opts Options) (*Workload, error) {
	dur := opts.Duration
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	w := &Workload{Source: "iluvatar:" + t.Path, Seed: opts.Seed, IATScale: 1}
	for _, f := range t.Functions {
		w.Functions = append(w.Functions, Function{}.fromCatalog(f.Name, f.WarmMs/1000, opts.Catalog))
	}
	span := t.Calls[len(t.Calls)-1].Ms / 1000
	work := 0.0
	for _, c := range t.Calls {
		work += w.Functions[c.Fn].WarmSec
	}
	end := math.Inf(1)
	if opts.DurationSet && dur > 0 {
		end = dur.Seconds()
	}
	// gen replays the calls with times multiplied by scale, up to end.
	gen := func(scale float64) []Invocation {
		var out []Invocation
		for _, c := range t.Calls {
			at := c.Ms / 1000 * scale
			if at >= end {
				break
			}
			out = append(out, Invocation{Fn: c.Fn, At: time.Duration(at * 1e9)})
		}
		return out
	}
	scale := 1.0
	if opts.ScaleIluvatar && span > 0 {
		scale = work / span / opts.TargetUtil
		w.TargetUtil = opts.TargetUtil
	}
	w.IATScale = scale
	w.Invocations = gen(scale)
	if opts.ScaleIluvatar && span > 0 && end < span*scale {
		// The window cuts the scaled trace: scale so the work inside the
		// window is the target, not the whole trace's (its load need not
		// be uniform). A window past the trace's end keeps the whole
		// trace's scale, and so the target over the trace itself.
		w.Duration = dur
		scaleToUtil(w, scale, opts.TargetUtil, gen)
		scale = w.IATScale
	}
	sort.SliceStable(w.Invocations, func(i, j int) bool { return w.Invocations[i].At < w.Invocations[j].At })
	if len(w.Invocations) == 0 {
		return nil, fmt.Errorf("iluvatar trace %s: no invocations within %v", t.Path, dur)
	}
	w.Duration = time.Duration(math.Min(end, span*scale+1e-3) * 1e9)
	if opts.DurationSet {
		w.Duration = dur
	}
	return w, nil
}
