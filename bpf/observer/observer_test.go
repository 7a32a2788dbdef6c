package observer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/cgroups"
)

// fakeSource is a Source whose counters the test sets.
type fakeSource struct {
	mu       sync.Mutex
	counters map[uint64]bpf.Counters
	events   chan bpf.Event
	closed   chan struct{}
	once     sync.Once
	forgot   []uint64
	err      error
}

func newFakeSource() *fakeSource {
	return &fakeSource{counters: map[uint64]bpf.Counters{}, events: make(chan bpf.Event, 8), closed: make(chan struct{})}
}

func (f *fakeSource) set(id uint64, c bpf.Counters) {
	f.mu.Lock()
	f.counters[id] = c
	f.mu.Unlock()
}

func (f *fakeSource) Counters() (map[uint64]bpf.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[uint64]bpf.Counters{}
	for k, v := range f.counters {
		out[k] = v
	}
	return out, nil
}

func (f *fakeSource) Drops() (bpf.Drops, error) { return bpf.Drops{RingbufFull: 2}, nil }

func (f *fakeSource) ReadEvent() (bpf.Event, error) {
	select {
	case e := <-f.events:
		if e.Kind == 0 {
			return bpf.Event{}, bpf.ErrBadRecord
		}
		return e, nil
	case <-f.closed:
		return bpf.Event{}, errors.New("closed")
	}
}

func (f *fakeSource) Forget(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.counters, id)
	f.forgot = append(f.forgot, id)
	return nil
}

func (f *fakeSource) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

// fakeResolver knows a fixed set of cgroups; gone ones do not exist.
type fakeResolver struct {
	mu    sync.Mutex
	infos map[uint64]cgroups.Info
}

func (r *fakeResolver) Lookup(id uint64) (cgroups.Info, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.infos[id]
	if !ok {
		return cgroups.Info{ID: id}, false
	}
	return i, true
}

func (r *fakeResolver) LookupPID(id uint64, _ uint32) (cgroups.Info, bool) { return r.Lookup(id) }

func (r *fakeResolver) Exists(id uint64) bool { _, ok := r.Lookup(id); return ok }

func (r *fakeResolver) Forget(uint64) {}

func (r *fakeResolver) remove(id uint64) {
	r.mu.Lock()
	delete(r.infos, id)
	r.mu.Unlock()
}

const (
	ctrA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	ctrB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T, reg prometheus.Registerer) (*Observer, *fakeSource, *fakeResolver, *clock) {
	t.Helper()
	src := newFakeSource()
	res := &fakeResolver{infos: map[uint64]cgroups.Info{
		10: {ID: 10, Path: "/docker/" + ctrA, Runtime: "docker", Container: ctrA},
		11: {ID: 11, Path: "/docker/" + ctrA + "/sub", Runtime: "docker", Container: ctrA},
		20: {ID: 20, Path: "/docker/" + ctrB, Runtime: "docker", Container: ctrB},
		30: {ID: 30, Path: "/user.slice"},
	}}
	clk := &clock{t: time.Unix(1000, 0)}
	fn := map[string]string{ctrA: "resnet", ctrB: "bert"}
	o, err := New(Config{
		Interval:   time.Second,
		PruneAfter: 10 * time.Second,
		Function:   func(id string) string { return fn[id] },
		Registerer: reg,
		Now:        clk.now,
	}, src, res)
	if err != nil {
		t.Fatal(err)
	}
	return o, src, res, clk
}

func TestRatesAndAggregation(t *testing.T) {
	o, src, _, clk := setup(t, nil)
	src.set(10, bpf.Counters{Launches: [4]uint64{100, 0, 0, 0}, AllocBytes: [3]uint64{1000, 0, 0}})
	src.set(20, bpf.Counters{Launches: [4]uint64{5, 0, 0, 0}})
	o.Poll()
	if s := o.Snapshot(); s.Interval != 0 || len(s.Cgroups) != 2 {
		t.Fatalf("first poll: interval %v, %d cgroups", s.Interval, len(s.Cgroups))
	}
	select {
	case b := <-o.Samples():
		t.Fatalf("first poll (no interval yet) sent samples %+v", b)
	default:
	}

	clk.t = clk.t.Add(2 * time.Second)
	src.set(10, bpf.Counters{Launches: [4]uint64{300, 0, 0, 0}, AllocBytes: [3]uint64{1000, 500, 0},
		SyncNs: [3]uint64{0, 1e9, 0}, Syncs: [3]uint64{0, 2, 0}, MemcpyBytes: [4]uint64{10, 20, 0, 0}})
	src.set(11, bpf.Counters{Launches: [4]uint64{0, 40, 0, 0}, FreedBytes: 200, AllocBytes: [3]uint64{300},
		MemcpyNs: [4]uint64{0, 5e8, 0, 0}})
	// 20 unchanged: idle.
	o.Poll()
	s := o.Snapshot()
	if s.Interval != 2*time.Second {
		t.Fatalf("interval %v", s.Interval)
	}
	c10, _ := s.Cgroup(10)
	want := Rates{LaunchesPerSec: 100, SyncWaitFrac: 0.5, AllocBytesPerSec: 250, MemcpyBytesPerSec: 15,
		Launches: 200, Syncs: 2, SyncWait: time.Second, AllocBytes: 500, MemcpyBytes: 30}
	if c10.Rates != want || c10.Function != "resnet" || c10.Container != ctrA {
		t.Errorf("cgroup 10: %+v\nwant rates %+v", c10, want)
	}
	a, ok := s.Container(ctrA)
	if !ok || a.Cgroups != 2 || a.Rates.Launches != 240 || a.LiveBytes != 1600 || a.Totals.TotalLaunches() != 340 {
		t.Errorf("container A: %+v", a)
	}
	if f, ok := s.Function("resnet"); !ok || f.Rates.LaunchesPerSec != 120 {
		t.Errorf("function resnet: %+v", f)
	}
	if b, ok := s.Function("bert"); !ok || b.Rates.Launches != 0 || b.Totals.TotalLaunches() != 5 {
		t.Errorf("function bert: %+v", b)
	}

	// One sample for container A (cgroups 10 and 11 merged); B was idle.
	batch := <-o.Samples()
	if len(batch) != 1 {
		t.Fatalf("samples: %+v (want one, for container A; B was idle)", batch)
	}
	if b := batch[0]; b.CgroupID != 10 || b.Launches != 240 || b.LaunchesPerSec != 120 || b.SyncWait != time.Second ||
		b.CopyWait != 500*time.Millisecond || b.Busy != 0.75 || b.FreedBytes != 200 || b.LiveBytes != 1600 ||
		b.Container != ctrA || b.Function != "resnet" || b.Interval != 2*time.Second {
		t.Errorf("sample of container A: %+v", b)
	}
}

func TestSamplesPerContainerAndHost(t *testing.T) {
	o, src, _, clk := setup(t, nil)
	o.Poll()
	clk.t = clk.t.Add(time.Second)
	src.set(30, bpf.Counters{Syncs: [3]uint64{3}, SyncNs: [3]uint64{3e9}}) // host cgroup: 3 s of waits in 1 s (threads)
	src.set(20, bpf.Counters{MemcpyBytes: [4]uint64{1}})                   // container B
	src.set(99, bpf.Counters{Launches: [4]uint64{1}})                      // unknown cgroup
	o.Poll()
	batch := <-o.Samples()
	if len(batch) != 3 || batch[0].CgroupID != 20 || batch[1].CgroupID != 30 || batch[2].CgroupID != 99 {
		t.Fatalf("samples %+v, want cgroups 20, 30, 99", batch)
	}
	if batch[1].Busy != 1 || batch[1].Container != "" {
		t.Errorf("host sample %+v: want busy capped at 1, no container", batch[1])
	}
	if batch[0].Container != ctrB || batch[0].Function != "bert" || batch[0].Busy != 0 {
		t.Errorf("container B sample %+v", batch[0])
	}
}

func TestSamplesNeverBlock(t *testing.T) {
	o, src, _, clk := setup(t, nil)
	for i := range o.cfg.SampleBuffer + 5 {
		src.set(10, bpf.Counters{Launches: [4]uint64{uint64(i + 1)}})
		clk.t = clk.t.Add(time.Second)
		o.Poll()
	}
	if st := o.Stats(); st.DroppedSamples != 4 { // the first poll sends nothing
		t.Errorf("dropped %d batches, want 4", st.DroppedSamples)
	}
}

func TestPruneGoneCgroups(t *testing.T) {
	o, src, res, clk := setup(t, nil)
	src.set(20, bpf.Counters{Launches: [4]uint64{1}})
	o.Poll()
	res.remove(20)
	for range 2 {
		clk.t = clk.t.Add(6 * time.Second)
		o.Poll()
		if _, ok := o.Snapshot().Cgroup(20); !ok {
			t.Fatalf("cgroup pruned before PruneAfter")
		}
	}
	clk.t = clk.t.Add(6 * time.Second)
	o.Poll()
	if _, ok := o.Snapshot().Cgroup(20); ok || len(src.forgot) != 1 || src.forgot[0] != 20 {
		t.Errorf("cgroup 20 not pruned after PruneAfter: forgot %v", src.forgot)
	}
}

func TestPollErrorKeepsSnapshot(t *testing.T) {
	o, src, _, _ := setup(t, nil)
	src.set(10, bpf.Counters{Launches: [4]uint64{1}})
	o.Poll()
	src.err = errors.New("map gone")
	o.Poll()
	if st := o.Stats(); st.PollErrors != 1 || st.Polls != 2 {
		t.Errorf("stats %+v", st)
	}
	if _, ok := o.Snapshot().Cgroup(10); !ok {
		t.Errorf("a failed poll lost the snapshot")
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	o, src, _, clk := setup(t, reg)
	src.set(10, bpf.Counters{Launches: [4]uint64{3}, SyncHist: [bpf.SyncHistBuckets]uint64{10: 1, 20: 2}, SyncNs: [3]uint64{0, 3e6, 0}})
	src.set(30, bpf.Counters{AllocBytes: [3]uint64{7}})
	o.Poll()
	clk.t = clk.t.Add(time.Second)
	o.Poll()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP sluice_gpu_launches_total Kernel launches seen by the CUDA driver probes (needs launch probing on).
# TYPE sluice_gpu_launches_total counter
sluice_gpu_launches_total{api="cuGraphLaunch",container="",function=""} 0
sluice_gpu_launches_total{api="cuGraphLaunch",container="` + ctrA + `",function="resnet"} 0
sluice_gpu_launches_total{api="cuLaunchKernel",container="",function=""} 0
sluice_gpu_launches_total{api="cuLaunchKernel",container="` + ctrA + `",function="resnet"} 3
sluice_gpu_launches_total{api="cuLaunchKernelEx",container="",function=""} 0
sluice_gpu_launches_total{api="cuLaunchKernelEx",container="` + ctrA + `",function="resnet"} 0
sluice_gpu_launches_total{api="cuLaunchKernel_ptsz",container="",function=""} 0
sluice_gpu_launches_total{api="cuLaunchKernel_ptsz",container="` + ctrA + `",function="resnet"} 0
# HELP sluice_gpu_live_bytes Device memory allocated since the probes were attached and not yet freed.
# TYPE sluice_gpu_live_bytes gauge
sluice_gpu_live_bytes{container="",function=""} 7
sluice_gpu_live_bytes{container="` + ctrA + `",function="resnet"} 0
# HELP sluice_gpu_sync_duration_seconds Duration of synchronization calls.
# TYPE sluice_gpu_sync_duration_seconds histogram
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="1.024e-06"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="4.096e-06"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="1.6384e-05"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="6.5536e-05"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.000262144"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.001048576"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.004194304"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.016777216"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.067108864"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="0.268435456"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="1.073741824"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="4.294967296"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="17.179869184"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="68.719476736"} 0
sluice_gpu_sync_duration_seconds_bucket{container="",function="",le="+Inf"} 0
sluice_gpu_sync_duration_seconds_sum{container="",function=""} 0
sluice_gpu_sync_duration_seconds_count{container="",function=""} 0
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="1.024e-06"} 0
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="4.096e-06"} 1
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="1.6384e-05"} 1
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="6.5536e-05"} 1
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.000262144"} 1
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.001048576"} 1
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.004194304"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.016777216"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.067108864"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="0.268435456"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="1.073741824"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="4.294967296"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="17.179869184"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="68.719476736"} 3
sluice_gpu_sync_duration_seconds_bucket{container="` + ctrA + `",function="resnet",le="+Inf"} 3
sluice_gpu_sync_duration_seconds_sum{container="` + ctrA + `",function="resnet"} 0.003
sluice_gpu_sync_duration_seconds_count{container="` + ctrA + `",function="resnet"} 3
# HELP sluice_ebpf_drops_total Records the BPF programs could not keep because a map or the ring buffer was full.
# TYPE sluice_ebpf_drops_total counter
sluice_ebpf_drops_total{reason="allocations_full"} 0
sluice_ebpf_drops_total{reason="counters_full"} 0
sluice_ebpf_drops_total{reason="inflight_full"} 0
sluice_ebpf_drops_total{reason="processes_full"} 0
sluice_ebpf_drops_total{reason="ringbuf_full"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_gpu_launches_total",
		"sluice_gpu_live_bytes", "sluice_gpu_sync_duration_seconds", "sluice_ebpf_drops_total"); err != nil {
		t.Error(err)
	}
}

func TestRunEventsAndShutdown(t *testing.T) {
	o, src, _, _ := setup(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	src.events <- bpf.Event{Kind: bpf.EventExit, CgroupID: 10, Bytes: 5}
	src.events <- bpf.Event{} // a record that does not decode
	src.events <- bpf.Event{Kind: bpf.EventAllocFailed, CgroupID: 10}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := o.Stats()
		if st.Events[bpf.EventExit] == 1 && st.Events[bpf.EventAllocFailed] == 1 && st.BadEvents == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not counted: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestOpenNotSupportedLogsOneLine(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	_, err := Open(Config{Logger: logger}, &bpf.Options{Library: "/nonexistent/libcuda.so.1"})
	if !errors.Is(err, bpf.ErrNotSupported) {
		t.Fatalf("err = %v, want ErrNotSupported", err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 1 || !strings.Contains(buf.String(), "ebpf observability disabled") {
		t.Errorf("log:\n%s\nwant one 'ebpf observability disabled' line", buf.String())
	}
}

// TestFunctionCallbackMayCallObserver: Config.Function runs outside the
// observer's lock, so a callback that reads the snapshot cannot deadlock.
func TestFunctionCallbackMayCallObserver(t *testing.T) {
	src := newFakeSource()
	res := &fakeResolver{infos: map[uint64]cgroups.Info{10: {ID: 10, Container: ctrA}}}
	var o *Observer
	o, err := New(Config{Function: func(string) string { o.Snapshot(); o.Stats(); return "fn" }}, src, res)
	if err != nil {
		t.Fatal(err)
	}
	src.set(10, bpf.Counters{Launches: [4]uint64{1}})
	done := make(chan struct{})
	go func() { o.Poll(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Poll deadlocked on a Function callback that reads the observer")
	}
	if c, _ := o.Snapshot().Cgroup(10); c.Function != "fn" {
		t.Errorf("function %q", c.Function)
	}
}
