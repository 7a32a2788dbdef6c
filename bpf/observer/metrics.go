package observer

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gpu/sluice/bpf"
)

// Metric names and help, all prefixed sluice_, in base units. Per-container
// series carry container (full id, "" outside containers) and function ("" if
// unknown): bounded by the containers on the host, and pruned once a
// container's cgroup is gone. Per-function views are sum by (function).
var (
	ctrLabels = []string{"container", "function"}

	descLaunches = prometheus.NewDesc("sluice_gpu_launches_total",
		"Kernel launches seen by the CUDA driver probes (needs launch probing on).", append(ctrLabels, "api"), nil)
	descLaunchRate = prometheus.NewDesc("sluice_gpu_launches_per_second",
		"Kernel launches per second over the last observer interval.", ctrLabels, nil)
	descSyncs = prometheus.NewDesc("sluice_gpu_syncs_total",
		"Synchronization calls (cuCtx/cuStream/cuEventSynchronize) that returned.", append(ctrLabels, "api"), nil)
	descSyncWait = prometheus.NewDesc("sluice_gpu_sync_wait_seconds_total",
		"Time threads spent inside synchronization calls, waiting for the GPU.", append(ctrLabels, "api"), nil)
	descSyncDur = prometheus.NewDesc("sluice_gpu_sync_duration_seconds",
		"Duration of synchronization calls.", ctrLabels, nil)
	descAllocs = prometheus.NewDesc("sluice_gpu_allocations_total",
		"Successful device memory allocations.", append(ctrLabels, "kind"), nil)
	descAllocBytes = prometheus.NewDesc("sluice_gpu_allocated_bytes_total",
		"Bytes of successful device memory allocations.", append(ctrLabels, "kind"), nil)
	descFreedBytes = prometheus.NewDesc("sluice_gpu_freed_bytes_total",
		"Bytes of device memory freed, or released when the owning process ended.", ctrLabels, nil)
	descLiveBytes = prometheus.NewDesc("sluice_gpu_live_bytes",
		"Device memory allocated since the probes were attached and not yet freed.", ctrLabels, nil)
	descMemcpyBytes = prometheus.NewDesc("sluice_gpu_memcpy_bytes_total",
		"Bytes copied by cuMemcpy* calls.", append(ctrLabels, "direction"), nil)
	descMemcpyWait = prometheus.NewDesc("sluice_gpu_memcpy_wait_seconds_total",
		"Time threads spent inside synchronous copies (which wait for the work queued before them).", append(ctrLabels, "direction"), nil)
	descPrefetchBytes = prometheus.NewDesc("sluice_gpu_prefetch_bytes_total",
		"Bytes asked for by cuMemPrefetchAsync calls.", ctrLabels, nil)
	descFailed = prometheus.NewDesc("sluice_gpu_failed_calls_total",
		"Probed allocations and synchronizations that returned an error.", ctrLabels, nil)

	descPolls = prometheus.NewDesc("sluice_ebpf_polls_total",
		"Reads of the BPF counter maps.", nil, nil)
	descPollErrs = prometheus.NewDesc("sluice_ebpf_poll_errors_total",
		"Reads of the BPF counter maps that failed.", nil, nil)
	descPollDur = prometheus.NewDesc("sluice_ebpf_poll_duration_seconds",
		"How long the last read of the BPF counter maps took.", nil, nil)
	descEvents = prometheus.NewDesc("sluice_ebpf_events_total",
		"Rare events read from the BPF ring buffer.", []string{"kind"}, nil)
	descBadEvents = prometheus.NewDesc("sluice_ebpf_bad_records_total",
		"Ring-buffer records that did not decode.", nil, nil)
	descDrops = prometheus.NewDesc("sluice_ebpf_drops_total",
		"Records the BPF programs could not keep because a map or the ring buffer was full.", []string{"reason"}, nil)
	descDroppedSamples = prometheus.NewDesc("sluice_ebpf_dropped_sample_batches_total",
		"Sample batches dropped because the scheduler did not read them in time.", nil, nil)
	descCgroups = prometheus.NewDesc("sluice_ebpf_cgroups",
		"Cgroups the BPF counters currently hold.", nil, nil)
)

// syncBuckets are the histogram's upper bounds: 1 µs to ~69 s, powers of 4,
// each matching a boundary of the BPF log2(ns) histogram.
var syncBuckets = func() []int {
	var b []int // exponent e: bound 2^e ns
	for e := 10; e <= 36; e += 2 {
		b = append(b, e)
	}
	return b
}()

type collector struct{ o *Observer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLaunches, descLaunchRate, descSyncs, descSyncWait, descSyncDur,
		descAllocs, descAllocBytes, descFreedBytes, descLiveBytes, descMemcpyBytes, descMemcpyWait, descPrefetchBytes, descFailed,
		descPolls, descPollErrs, descPollDur, descEvents, descBadEvents, descDrops, descDroppedSamples, descCgroups} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.o.Snapshot()
	st := c.o.Stats()
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}

	// Several cgroups can belong to one container (nested cgroups): sum them.
	type key struct{ container, function string }
	byCtr := map[key]*Group{}
	var order []key
	for _, cg := range snap.Cgroups {
		k := key{cg.Container, cg.Function}
		g, ok := byCtr[k]
		if !ok {
			g = &Group{}
			byCtr[k] = g
			order = append(order, k)
		}
		g.Totals.Add(&cg.Totals)
		g.Rates.add(&cg.Rates)
	}
	for _, k := range order {
		g := byCtr[k]
		t := &g.Totals
		lv := []string{k.container, k.function}
		for i, name := range bpf.LaunchNames() {
			counter(descLaunches, float64(t.Launches[i]), append(lv, name)...)
		}
		gauge(descLaunchRate, g.Rates.LaunchesPerSec, lv...)
		for i, name := range bpf.SyncNames() {
			counter(descSyncs, float64(t.Syncs[i]), append(lv, name)...)
			counter(descSyncWait, float64(t.SyncNs[i])/1e9, append(lv, name)...)
		}
		ch <- syncHistogram(t, lv)
		for i, name := range bpf.AllocNames() {
			counter(descAllocs, float64(t.Allocs[i]), append(lv, name)...)
			counter(descAllocBytes, float64(t.AllocBytes[i]), append(lv, name)...)
		}
		counter(descFreedBytes, float64(t.FreedBytes+t.ExitReleasedBytes+t.UntrackedBytes), lv...)
		gauge(descLiveBytes, float64(t.LiveBytes()), lv...)
		for i, name := range bpf.MemcpyNames() {
			counter(descMemcpyBytes, float64(t.MemcpyBytes[i]), append(lv, name)...)
			counter(descMemcpyWait, float64(t.MemcpyNs[i])/1e9, append(lv, name)...)
		}
		counter(descPrefetchBytes, float64(t.PrefetchBytes), lv...)
		counter(descFailed, float64(t.FailedCalls), lv...)
	}

	counter(descPolls, float64(st.Polls))
	counter(descPollErrs, float64(st.PollErrors))
	gauge(descPollDur, st.LastPoll.Seconds())
	for k, n := range st.Events {
		counter(descEvents, float64(n), k.String())
	}
	counter(descBadEvents, float64(st.BadEvents))
	for _, d := range []struct {
		reason string
		n      uint64
	}{
		{"counters_full", st.Drops.StatsFull}, {"allocations_full", st.Drops.AllocsFull},
		{"inflight_full", st.Drops.InflightFull}, {"processes_full", st.Drops.ProcsFull},
		{"ringbuf_full", st.Drops.RingbufFull},
	} {
		counter(descDrops, float64(d.n), d.reason)
	}
	counter(descDroppedSamples, float64(st.DroppedSamples))
	gauge(descCgroups, float64(len(snap.Cgroups)))
}

// syncHistogram turns the BPF log2(ns) histogram into a cumulative one.
// Bucket i of the BPF side holds waits in [2^i, 2^(i+1)) ns, so the
// cumulative count up to 2^e ns is the sum of buckets below e.
func syncHistogram(t *bpf.Counters, lv []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(syncBuckets))
	var total uint64
	for _, n := range t.SyncHist {
		total += n
	}
	for _, e := range syncBuckets {
		var cum uint64
		for i := 0; i < e && i < bpf.SyncHistBuckets; i++ {
			cum += t.SyncHist[i]
		}
		buckets[math.Ldexp(1, e)/1e9] = cum
	}
	return prometheus.MustNewConstHistogram(descSyncDur, total, float64(t.TotalSyncNs())/1e9, buckets, lv...)
}
