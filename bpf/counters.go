package bpf

// Indexes of the counter arrays; they mirror the enums in probe.h.
const (
	LaunchKernel     = 0 // cuLaunchKernel, cuLaunchCooperativeKernel
	LaunchKernelPtsz = 1 // their _ptsz forms
	LaunchKernelEx   = 2 // cuLaunchKernelEx(_ptsz)
	LaunchGraph      = 3 // cuGraphLaunch(_ptsz)
	LaunchKinds      = 4

	SyncCtx    = 0 // cuCtxSynchronize
	SyncStream = 1 // cuStreamSynchronize(_ptsz)
	SyncEvent  = 2 // cuEventSynchronize
	SyncKinds  = 3

	MemcpyHtoD    = 0
	MemcpyDtoH    = 1
	MemcpyDtoD    = 2
	MemcpyUnified = 3 // cuMemcpy(Async): direction known only to the driver
	MemcpyKinds   = 4

	AllocDevice  = 0 // cuMemAlloc_v2
	AllocManaged = 1 // cuMemAllocManaged
	AllocAsync   = 2 // cuMemAllocAsync, cuMemAllocFromPoolAsync (and _ptsz)
	AllocKinds   = 3

	// SyncHistBuckets is the number of buckets of [Counters.SyncHist]:
	// bucket i counts waits of [2^i, 2^(i+1)) ns, the last one everything above.
	SyncHistBuckets = 40
)

// LaunchNames, SyncNames, MemcpyNames and AllocNames label the counter
// indexes above (for metrics and logs).
func LaunchNames() [LaunchKinds]string {
	return [...]string{"cuLaunchKernel", "cuLaunchKernel_ptsz", "cuLaunchKernelEx", "cuGraphLaunch"}
}

// SyncNames: see [LaunchNames].
func SyncNames() [SyncKinds]string {
	return [...]string{"cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize"}
}

// MemcpyNames: see [LaunchNames].
func MemcpyNames() [MemcpyKinds]string { return [...]string{"htod", "dtoh", "dtod", "unified"} }

// AllocNames: see [LaunchNames].
func AllocNames() [AllocKinds]string { return [...]string{"device", "managed", "async"} }

// Counters are one cgroup's totals since the probes were attached (or since
// the cgroup's first probed call). All fields only grow.
type Counters struct {
	Launches          [LaunchKinds]uint64
	Syncs             [SyncKinds]uint64
	SyncNs            [SyncKinds]uint64 // time spent inside the synchronization calls
	Allocs            [AllocKinds]uint64
	AllocBytes        [AllocKinds]uint64
	Frees             uint64
	FreedBytes        uint64
	ExitReleased      uint64 // allocations still live when their process exited or exec'd
	ExitReleasedBytes uint64
	UntrackedBytes    uint64 // allocated while the allocation table was full
	Memcpys           [MemcpyKinds]uint64
	MemcpyBytes       [MemcpyKinds]uint64
	MemcpyNs          [MemcpyKinds]uint64 // time inside synchronous copies (they wait for the GPU)
	Prefetches        uint64
	PrefetchBytes     uint64
	FailedCalls       uint64 // probed allocations, synchronizations and synchronous copies that returned an error
	SyncHist          [SyncHistBuckets]uint64
}

// TotalLaunches sums the launch APIs.
func (c *Counters) TotalLaunches() uint64 { return sum(c.Launches[:]) }

// TotalSyncNs sums the time spent in all synchronization APIs.
func (c *Counters) TotalSyncNs() uint64 { return sum(c.SyncNs[:]) }

// TotalMemcpyNs sums the time spent in synchronous copies.
func (c *Counters) TotalMemcpyNs() uint64 { return sum(c.MemcpyNs[:]) }

// TotalAllocBytes sums the bytes of successful allocations of all kinds.
func (c *Counters) TotalAllocBytes() uint64 { return sum(c.AllocBytes[:]) }

// TotalMemcpyBytes sums the bytes of all copies.
func (c *Counters) TotalMemcpyBytes() uint64 { return sum(c.MemcpyBytes[:]) }

// LiveBytes is what the cgroup's processes hold now: allocated minus freed,
// minus what exiting processes still held, minus untracked allocations.
// Allocations made before the probes were attached are not counted, so
// their frees are not either; the result is never negative.
func (c *Counters) LiveBytes() uint64 {
	out := c.FreedBytes + c.ExitReleasedBytes + c.UntrackedBytes
	in := c.TotalAllocBytes()
	if out >= in {
		return 0
	}
	return in - out
}

// Add adds o to c field by field.
func (c *Counters) Add(o *Counters) {
	addAll(c.Launches[:], o.Launches[:])
	addAll(c.Syncs[:], o.Syncs[:])
	addAll(c.SyncNs[:], o.SyncNs[:])
	addAll(c.Allocs[:], o.Allocs[:])
	addAll(c.AllocBytes[:], o.AllocBytes[:])
	c.Frees += o.Frees
	c.FreedBytes += o.FreedBytes
	c.ExitReleased += o.ExitReleased
	c.ExitReleasedBytes += o.ExitReleasedBytes
	c.UntrackedBytes += o.UntrackedBytes
	addAll(c.Memcpys[:], o.Memcpys[:])
	addAll(c.MemcpyBytes[:], o.MemcpyBytes[:])
	addAll(c.MemcpyNs[:], o.MemcpyNs[:])
	c.Prefetches += o.Prefetches
	c.PrefetchBytes += o.PrefetchBytes
	c.FailedCalls += o.FailedCalls
	addAll(c.SyncHist[:], o.SyncHist[:])
}

func sum(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}

func addAll(dst, src []uint64) {
	for i := range dst {
		dst[i] += src[i]
	}
}

// Drops counts what the BPF side could not record; all zero when healthy.
type Drops struct {
	StatsFull    uint64 // a new cgroup found the counters map full
	AllocsFull   uint64 // an allocation found the allocation table full
	InflightFull uint64 // an entry probe found the in-flight table full
	ProcsFull    uint64 // a new process found the process table full
	RingbufFull  uint64 // a rare event found the ring buffer full
}
