package report

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/sluice-gpu/sluice/daemon/sim"
	"github.com/sluice-gpu/sluice/daemon/workload"
)

// Run is one policy's simulation, for plotting.
type Run struct {
	Name   string
	Result *sim.Result
}

// Plots writes latency_cdf.png, function_latency.png and
// latency_over_time.png into dir.
func Plots(dir string, w *workload.Workload, runs []Run) error {
	for _, p := range []struct {
		file string
		make func(*workload.Workload, []Run) (*plot.Plot, error)
	}{
		{"latency_cdf.png", latencyCDF},
		{"function_latency.png", functionLatency},
		{"latency_over_time.png", latencyOverTime},
	} {
		pl, err := p.make(w, runs)
		if err != nil {
			return fmt.Errorf("plot %s: %w", p.file, err)
		}
		if err := pl.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, p.file)); err != nil {
			return fmt.Errorf("save %s: %w", p.file, err)
		}
	}
	return nil
}

func latencies(r *sim.Result) []float64 {
	var out []float64
	for _, rec := range r.Records {
		if rec.Done() {
			out = append(out, rec.End.Sub(rec.Arrival).Seconds())
		}
	}
	slices.Sort(out)
	return out
}

// latencyCDF: fraction of invocations finished within x seconds (log x).
func latencyCDF(_ *workload.Workload, runs []Run) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "End-to-end latency CDF"
	p.X.Label.Text = "latency (s, log scale)"
	p.Y.Label.Text = "fraction of invocations"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for i, r := range runs {
		lat := latencies(r.Result)
		// At most 400 points per curve.
		step := max(1, len(lat)/400)
		var pts plotter.XYs
		for j := 0; j < len(lat); j += step {
			pts = append(pts, plotter.XY{X: math.Max(lat[j], 1e-3), Y: float64(j+1) / float64(len(lat))})
		}
		if len(lat) > 0 {
			pts = append(pts, plotter.XY{X: math.Max(lat[len(lat)-1], 1e-3), Y: 1})
		}
		if err := addLine(p, i, r.Name, pts); err != nil {
			return nil, err
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p, nil
}

// functionLatency: mean latency of each function (x = function index).
func functionLatency(w *workload.Workload, runs []Run) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Mean latency per function"
	p.X.Label.Text = "function (index in summary.json's function_list)"
	p.Y.Label.Text = "mean latency (s, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	for i, r := range runs {
		sum := make([]float64, len(w.Functions))
		n := make([]int, len(w.Functions))
		for _, rec := range r.Result.Records {
			if rec.Done() {
				sum[rec.Fn] += rec.End.Sub(rec.Arrival).Seconds()
				n[rec.Fn]++
			}
		}
		var pts plotter.XYs
		for f := range sum {
			if n[f] > 0 {
				pts = append(pts, plotter.XY{X: float64(f), Y: math.Max(sum[f]/float64(n[f]), 1e-3)})
			}
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(r.Name, l, s)
	}
	p.Legend.Top = true
	return p, nil
}

// latencyOverTime: mean latency of invocations arriving in each 10 s bin.
func latencyOverTime(w *workload.Workload, runs []Run) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency over time (mean per 10 s of arrivals)"
	p.X.Label.Text = "arrival time (s)"
	p.Y.Label.Text = "mean latency (s)"
	const bin = 10.0
	nb := int(w.Duration.Seconds()/bin) + 1
	for i, r := range runs {
		sum := make([]float64, nb)
		n := make([]int, nb)
		for _, rec := range r.Result.Records {
			if !rec.Done() {
				continue
			}
			b := min(nb-1, int(rec.Arrival.Seconds()/bin))
			sum[b] += rec.End.Sub(rec.Arrival).Seconds()
			n[b]++
		}
		var pts plotter.XYs
		for b := range sum {
			if n[b] > 0 {
				pts = append(pts, plotter.XY{X: (float64(b) + 0.5) * bin, Y: sum[b] / float64(n[b])})
			}
		}
		if err := addLine(p, i, r.Name, pts); err != nil {
			return nil, err
		}
	}
	p.Legend.Top = true
	return p, nil
}

func addLine(p *plot.Plot, i int, name string, pts plotter.XYs) error {
	if len(pts) == 0 {
		return nil
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
