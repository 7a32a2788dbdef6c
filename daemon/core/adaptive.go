package core

// Improvements.AdaptiveD: each GPU's concurrency limit follows measured
// throughput between Config.D and Config.DMax instead of staying at D.

// adaptMinSamples is how many slowdown samples a concurrency level needs
// before the limit moves on its evidence.
const adaptMinSamples = 20

// adaptGain is the throughput gain a higher level must promise to be kept.
const adaptGain = 1.05

// adaptD records that an invocation of f which shared g with conc
// invocations on average (itself included) took sec seconds of GPU time,
// and moves g's limit one step if the evidence says so. The slowdown sample
// is sec over f's shortest GPU time measured while it ran alone (its
// isolated time); until f has run alone it gives no samples (a minimum
// taken under load would hide the slowdown).
func (s *Scheduler) adaptD(g *gpu, f *flow, conc, sec float64) {
	if sec <= 0 {
		return
	}
	if conc < 1.05 && (f.minGPU == 0 || sec < f.minGPU) {
		f.minGPU = sec
	}
	k := int(conc + 0.5)
	if f.minGPU == 0 || k < 1 || k >= len(g.slow) {
		return
	}
	// A sample far beyond what k-way sharing can cost is not concurrency
	// (demand paging, a first run): clip it at 2k so one outlier does not
	// swing the estimate.
	x := min(sec/f.minGPU, 2*float64(k))
	if g.slowN[k] == 0 {
		g.slow[k] = x
	} else {
		g.slow[k] = 0.9*g.slow[k] + 0.1*x
	}
	g.slowN[k]++
	l := g.lim
	if g.slowN[l] < adaptMinSamples {
		return
	}
	th := func(k int) float64 { return float64(k) / g.slow[k] }
	switch {
	case l < s.cfg.DMax && (g.slowN[l+1] < adaptMinSamples || th(l+1) > adaptGain*th(l)):
		g.lim++
	case l > s.cfg.D && g.slowN[l-1] >= adaptMinSamples && th(l-1) > th(l):
		g.lim--
	}
}
