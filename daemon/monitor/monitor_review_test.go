package monitor

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A GPU whose memory reading fails must not be exported as using 0 bytes
// (it would look empty); its utilization is still valid.
func TestMemoryReadFailureIsNotZeroUsed(t *testing.T) {
	s := dgxh100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 50}, nvml.SUCCESS
		}
		fail := i == 2
		dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			if fail {
				return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST
			}
			return nvml.Memory{Total: 80 << 30, Used: 7 << 30, Free: 73 << 30}, nvml.SUCCESS
		}
	}
	s.ErrorStringFunc = func(nvml.Return) string { return "mock error" }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	reg := prometheus.NewPedanticRegistry()
	n, err := OpenNVML(s, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	got, err := n.Sample()
	if err == nil || !strings.Contains(err.Error(), "gpu 2 memory") {
		t.Errorf("Sample error = %v, want it to name gpu 2's memory", err)
	}
	if len(got) != 8 {
		t.Fatalf("%d samples, want 8 (utilization is valid everywhere)", len(got))
	}
	for _, g := range got {
		if g.NoMemory != (g.Index == 2) {
			t.Errorf("sample %+v: NoMemory wrong", g)
		}
	}
	if c := testutil.CollectAndCount(reg, "sluice_gpu_memory_used_bytes"); c != 7 {
		t.Errorf("%d memory used series, want 7 (none for the GPU whose reading failed)", c)
	}
	if c := testutil.CollectAndCount(reg, "sluice_gpu_utilization_ratio"); c != 8 {
		t.Errorf("%d utilization series, want 8", c)
	}
}
