package monitor

import (
	"sort"

	"github.com/sluice-gpu/sluice/bpf/observer"
	"github.com/sluice-gpu/sluice/daemon/core"
)

// Containers maps a runtime container id (what the eBPF observer resolves a
// cgroup to) to the core's container and the GPU it runs on.
type Containers interface {
	Lookup(containerID string) (ctr core.CtrID, gpu int, ok bool)
}

// Ticks returns one core.MonitorTick per GPU in gpus, in GPU order, carrying
// that GPU's utilization and the activity of the containers on it.
// Activity samples of containers Sluice does not know (other processes on
// the host, containers already gone) are dropped; Busy is clamped to 0-1.
func Ticks(gpus []GPUSample, act []observer.Sample, ctrs Containers) []core.Event {
	byGPU := make(map[int][]core.CtrActivity, len(gpus))
	for _, a := range act {
		if a.Container == "" {
			continue
		}
		ctr, gpu, ok := ctrs.Lookup(a.Container)
		if !ok {
			continue
		}
		byGPU[gpu] = append(byGPU[gpu], core.CtrActivity{Ctr: ctr, Busy: clamp01(a.Busy)})
	}
	sorted := append([]GPUSample(nil), gpus...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Index < sorted[j].Index })
	evs := make([]core.Event, 0, len(sorted))
	for _, g := range sorted {
		a := byGPU[g.Index]
		sort.Slice(a, func(i, j int) bool { return a[i].Ctr < a[j].Ctr })
		evs = append(evs, core.MonitorTick(g.Index, clamp01(g.Util), a))
	}
	return evs
}

func clamp01(v float64) float64 {
	switch {
	case v < 0 || v != v:
		return 0
	case v > 1:
		return 1
	}
	return v
}
