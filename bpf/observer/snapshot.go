package observer

import (
	"slices"
	"sort"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
)

// Rates are one cgroup's (or container's, or function's) activity during
// the last interval: per-second rates and the interval's amounts.
type Rates struct {
	LaunchesPerSec    float64
	SyncWaitFrac      float64 // seconds spent in synchronization calls per second (may exceed 1 with several threads)
	CopyWaitFrac      float64 // the same for synchronous copies
	AllocBytesPerSec  float64
	MemcpyBytesPerSec float64

	Launches      uint64
	Syncs         uint64
	SyncWait      time.Duration
	CopyWait      time.Duration // inside synchronous copies
	AllocBytes    uint64
	FreedBytes    uint64
	MemcpyBytes   uint64
	PrefetchBytes uint64
}

func (r *Rates) active() bool {
	return r.Launches > 0 || r.Syncs > 0 || r.SyncWait > 0 || r.CopyWait > 0 || r.AllocBytes > 0 || r.FreedBytes > 0 || r.MemcpyBytes > 0 || r.PrefetchBytes > 0
}

func (r *Rates) add(o *Rates) {
	r.LaunchesPerSec += o.LaunchesPerSec
	r.SyncWaitFrac += o.SyncWaitFrac
	r.CopyWaitFrac += o.CopyWaitFrac
	r.AllocBytesPerSec += o.AllocBytesPerSec
	r.MemcpyBytesPerSec += o.MemcpyBytesPerSec
	r.Launches += o.Launches
	r.Syncs += o.Syncs
	r.SyncWait += o.SyncWait
	r.CopyWait += o.CopyWait
	r.AllocBytes += o.AllocBytes
	r.FreedBytes += o.FreedBytes
	r.MemcpyBytes += o.MemcpyBytes
	r.PrefetchBytes += o.PrefetchBytes
}

// delta is cur-prev, or cur when the counters went backwards (a cgroup id
// reused after Forget).
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func rates(cur, prev *bpf.Counters, dt time.Duration) Rates {
	r := Rates{
		Launches:      delta(cur.TotalLaunches(), prev.TotalLaunches()),
		Syncs:         delta(sumSlice(cur.Syncs[:]), sumSlice(prev.Syncs[:])),
		SyncWait:      time.Duration(delta(cur.TotalSyncNs(), prev.TotalSyncNs())),
		CopyWait:      time.Duration(delta(cur.TotalMemcpyNs(), prev.TotalMemcpyNs())),
		AllocBytes:    delta(cur.TotalAllocBytes(), prev.TotalAllocBytes()),
		FreedBytes:    delta(cur.FreedBytes+cur.ExitReleasedBytes, prev.FreedBytes+prev.ExitReleasedBytes),
		MemcpyBytes:   delta(cur.TotalMemcpyBytes(), prev.TotalMemcpyBytes()),
		PrefetchBytes: delta(cur.PrefetchBytes, prev.PrefetchBytes),
	}
	if dt > 0 {
		s := dt.Seconds()
		r.LaunchesPerSec = float64(r.Launches) / s
		r.SyncWaitFrac = r.SyncWait.Seconds() / s
		r.CopyWaitFrac = r.CopyWait.Seconds() / s
		r.AllocBytesPerSec = float64(r.AllocBytes) / s
		r.MemcpyBytesPerSec = float64(r.MemcpyBytes) / s
	}
	return r
}

func sumSlice(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}

// Cgroup is one cgroup's view.
type Cgroup struct {
	ID        uint64
	Path      string // "" if the cgroup was gone before it could be resolved
	Container string // "" for processes outside containers
	Function  string // "" if unknown
	Totals    bpf.Counters
	Rates     Rates
}

// Group sums the cgroups of one container or one function.
type Group struct {
	Name      string
	Cgroups   int
	LiveBytes uint64
	Totals    bpf.Counters
	Rates     Rates
}

// Snapshot is the observer's view after one poll.
type Snapshot struct {
	At         time.Time
	Interval   time.Duration // since the previous poll; 0 on the first
	Cgroups    []Cgroup      // by ID
	Containers []Group       // by container id; processes outside containers under ""
	Functions  []Group       // by function name; unknown under ""
}

// Cgroup returns the entry of cgroup id.
func (s Snapshot) Cgroup(id uint64) (Cgroup, bool) {
	i, ok := slices.BinarySearchFunc(s.Cgroups, id, func(c Cgroup, id uint64) int {
		switch {
		case c.ID < id:
			return -1
		case c.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return Cgroup{}, false
	}
	return s.Cgroups[i], true
}

// Container returns the group of container id.
func (s Snapshot) Container(id string) (Group, bool) { return find(s.Containers, id) }

// Function returns the group of function name.
func (s Snapshot) Function(name string) (Group, bool) { return find(s.Functions, name) }

func find(gs []Group, name string) (Group, bool) {
	for _, g := range gs {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

func (s *Snapshot) aggregate() {
	s.Containers = group(s.Cgroups, func(c *Cgroup) string { return c.Container })
	s.Functions = group(s.Cgroups, func(c *Cgroup) string { return c.Function })
}

func group(cgs []Cgroup, key func(*Cgroup) string) []Group {
	idx := map[string]int{}
	var out []Group
	for i := range cgs {
		c := &cgs[i]
		k := key(c)
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, Group{Name: k})
		}
		g := &out[j]
		g.Cgroups++
		g.Totals.Add(&c.Totals)
		g.Rates.add(&c.Rates)
	}
	for i := range out {
		out[i].LiveBytes = out[i].Totals.LiveBytes()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s Snapshot) clone() Snapshot {
	s.Cgroups = slices.Clone(s.Cgroups)
	s.Containers = slices.Clone(s.Containers)
	s.Functions = slices.Clone(s.Functions)
	return s
}

// Sample is one container's activity over one interval (or one cgroup's,
// outside containers), for the scheduling core: a plain struct the daemon
// converts into its own monitor event.
type Sample struct {
	At        time.Time
	Interval  time.Duration
	CgroupID  uint64 // the cgroup; for a container with nested cgroups, the lowest id
	Container string // "" outside containers
	Function  string // "" if unknown

	Launches       uint64 // 0 when launch probing is off
	LaunchesPerSec float64
	Syncs          uint64
	SyncWait       time.Duration // time the cgroup's threads spent in synchronization calls
	CopyWait       time.Duration // ... and in synchronous copies (which wait for queued work too)
	// Busy estimates the fraction of the interval the GPU had this
	// cgroup's work to do: (SyncWait + CopyWait) / Interval, capped at 1.
	// A lower bound (work no thread waited for is not seen), but per
	// container, unlike NVML's device-wide utilization.
	Busy          float64
	AllocBytes    uint64
	FreedBytes    uint64 // freed or released at process exit
	LiveBytes     uint64 // device memory held at the end of the interval
	MemcpyBytes   uint64
	PrefetchBytes uint64
}

func (c *Cgroup) sample(at time.Time, dt time.Duration) Sample {
	return Sample{
		At: at, Interval: dt, CgroupID: c.ID, Container: c.Container, Function: c.Function,
		Launches: c.Rates.Launches, LaunchesPerSec: c.Rates.LaunchesPerSec,
		Syncs: c.Rates.Syncs, SyncWait: c.Rates.SyncWait, CopyWait: c.Rates.CopyWait,
		Busy:       min(1, (c.Rates.SyncWait+c.Rates.CopyWait).Seconds()/dt.Seconds()),
		AllocBytes: c.Rates.AllocBytes, FreedBytes: c.Rates.FreedBytes, LiveBytes: c.Totals.LiveBytes(),
		MemcpyBytes: c.Rates.MemcpyBytes, PrefetchBytes: c.Rates.PrefetchBytes,
	}
}
