package monitor

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gpu/sluice/bpf/observer"
	"github.com/sluice-gpu/sluice/daemon/core"
)

// mockServer is an 8-GPU H100 box whose GPU i reports utilization util[i]%;
// GPU 3's utilization query fails.
func mockServer(t *testing.T) *server.Server {
	t.Helper()
	s := dgxh100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		pct := uint32(10 * i)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			if pct == 30 {
				return nvml.Utilization{}, nvml.ERROR_GPU_IS_LOST
			}
			return nvml.Utilization{Gpu: pct}, nvml.SUCCESS
		}
	}
	s.Devices[1].(*server.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		return nvml.Memory{Total: 80 << 30, Used: 5 << 30, Free: 75 << 30}, nvml.SUCCESS
	}
	s.ErrorStringFunc = func(r nvml.Return) string { return "mock error " + string(rune('0'+int(r)%10)) }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	return s
}

func TestOpenNVMLAndSample(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	n, err := OpenNVML(mockServer(t), reg)
	if err != nil {
		t.Fatalf("OpenNVML: %v", err)
	}
	defer n.Close()
	devs := n.Devices()
	if len(devs) != 8 || devs[0].UUID == "" || devs[0].TotalBytes == 0 || devs[5].Index != 5 {
		t.Fatalf("Devices() = %+v", devs)
	}
	got, err := n.Sample()
	if err == nil || !strings.Contains(err.Error(), "gpu 3 utilization") {
		t.Errorf("Sample error = %v, want it to name gpu 3", err)
	}
	if len(got) != 7 {
		t.Fatalf("Sample returned %d GPUs, want the 7 that answered", len(got))
	}
	for _, s := range got {
		if s.Index == 3 || math.Abs(s.Util-float64(s.Index)/10) > 1e-9 {
			t.Errorf("sample %+v", s)
		}
		if s.Index == 1 && (s.UsedBytes != 5<<30 || s.FreeBytes != 75<<30) {
			t.Errorf("gpu 1 memory: used %d free %d, want 5 GiB and 75 GiB", s.UsedBytes, s.FreeBytes)
		}
	}
	if problems, err := testutil.CollectAndLint(n); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
	if c := testutil.CollectAndCount(reg, "sluice_gpu_utilization_ratio"); c != 7 {
		t.Errorf("%d utilization series, want 7", c)
	}
	if c := testutil.CollectAndCount(reg, "sluice_gpu_memory_total_bytes"); c != 8 {
		t.Errorf("%d memory total series, want 8", c)
	}
}

func TestOpenNVMLInitFails(t *testing.T) {
	calls := 0
	lib := &mock.Interface{
		InitFunc:        func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND },
		ErrorStringFunc: func(nvml.Return) string { calls++; return "NVML Shared Library Not Found" },
		// Any other call would panic: the real library would kill the process.
	}
	_, err := OpenNVML(lib, nil)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "Not Found") {
		t.Fatalf("OpenNVML = %v, want ErrNotSupported with the reason", err)
	}
	if len(lib.InitCalls()) != 1 || len(lib.DeviceGetCountCalls()) != 0 {
		t.Errorf("after a failed Init, only ErrorString may be called")
	}
}

type ctrMap map[string][2]int

func (m ctrMap) Lookup(id string) (core.CtrID, int, bool) {
	v, ok := m[id]
	return core.CtrID(v[0]), v[1], ok
}

func TestTicks(t *testing.T) {
	ctrs := ctrMap{"aaa": {7, 0}, "bbb": {3, 1}, "ccc": {2, 0}}
	act := []observer.Sample{
		{Container: "aaa", Busy: 0.5},
		{Container: "zzz", Busy: 0.9}, // not ours
		{Container: "", Busy: 1},      // host process
		{Container: "bbb", Busy: 1.7}, // clamped
		{Container: "ccc", Busy: math.NaN()},
	}
	gpus := []GPUSample{{Index: 1, Util: 0.4}, {Index: 0, Util: 1.2}, {Index: 2, Util: 0}}
	evs := Ticks(gpus, act, ctrs)
	want := []core.Event{
		core.MonitorTick(0, 1, []core.CtrActivity{{Ctr: 2, Busy: 0}, {Ctr: 7, Busy: 0.5}}),
		core.MonitorTick(1, 0.4, []core.CtrActivity{{Ctr: 3, Busy: 1}}),
		core.MonitorTick(2, 0, nil),
	}
	if len(evs) != len(want) {
		t.Fatalf("Ticks = %d events, want %d", len(evs), len(want))
	}
	for i := range want {
		g, w := evs[i], want[i]
		if g.Kind != core.EvMonitorTick || g.GPU != w.GPU || g.Util != w.Util || len(g.Activity) != len(w.Activity) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
		for j := range w.Activity {
			if g.Activity[j] != w.Activity[j] {
				t.Errorf("event %d activity %d = %+v, want %+v", i, j, g.Activity[j], w.Activity[j])
			}
		}
	}
}

// TestTicksAcceptedByCore steps a real core with the events Ticks builds.
func TestTicksAcceptedByCore(t *testing.T) {
	s, err := core.New(core.Config{}.WithDefaults())
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	for _, ev := range Ticks([]GPUSample{{Index: 0, Util: 0.3}}, nil, ctrMap{}) {
		if err := s.Step(0, ev); err != nil {
			t.Fatalf("core rejected %+v: %v", ev, err)
		}
	}
}
