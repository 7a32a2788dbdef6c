package monitor

import (
	"errors"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotSupported is wrapped by OpenNVML's error when NVML cannot run here
// (no libnvidia-ml.so.1, no driver, no GPU). The daemon logs it and runs on
// the emulated GPU or without device readings.
var ErrNotSupported = errors.New("nvml not available")

// Device is what NVML says about one GPU at start.
type Device struct {
	Index      int
	UUID       string
	Name       string
	TotalBytes uint64
}

// GPUSample is one reading of one GPU.
type GPUSample struct {
	Index int
	// Util is NVML's utilization.gpu as a ratio 0-1: the fraction of the
	// last sample period in which some kernel ran (not how busy the SMs were).
	Util      float64
	UsedBytes uint64
	FreeBytes uint64
	// NoMemory is set when the memory reading failed: UsedBytes and
	// FreeBytes are then unknown (zero), not an empty GPU.
	NoMemory bool
}

// NVML reads GPU state through an nvml.Interface. Safe for concurrent use.
type NVML struct {
	lib  nvml.Interface
	devs []nvml.Device
	info []Device

	mu   sync.Mutex
	last []GPUSample

	util, used, total *prometheus.Desc
}

// OpenNVML initializes lib and enumerates its devices. If Init fails, no
// other NVML function is called (the real library kills the process when
// called after a failed Init) and the error wraps ErrNotSupported.
func OpenNVML(lib nvml.Interface, reg prometheus.Registerer) (*NVML, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: init: %s", ErrNotSupported, nvmlError(lib, ret))
	}
	n := &NVML{
		lib: lib,
		util: prometheus.NewDesc("sluice_gpu_utilization_ratio",
			"NVML utilization.gpu of the last sample: fraction of time some kernel ran (0-1).", []string{"gpu", "uuid"}, nil),
		used: prometheus.NewDesc("sluice_gpu_memory_used_bytes",
			"GPU memory in use, from NVML.", []string{"gpu", "uuid"}, nil),
		total: prometheus.NewDesc("sluice_gpu_memory_total_bytes",
			"GPU memory capacity, from NVML.", []string{"gpu", "uuid"}, nil),
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		lib.Shutdown()
		return nil, fmt.Errorf("nvml device count: %s", nvmlError(lib, ret))
	}
	for i := 0; i < count; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			lib.Shutdown()
			return nil, fmt.Errorf("nvml device %d: %s", i, nvmlError(lib, ret))
		}
		info := Device{Index: i}
		if info.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
			lib.Shutdown()
			return nil, fmt.Errorf("nvml device %d uuid: %s", i, nvmlError(lib, ret))
		}
		info.Name, _ = d.GetName() // informational only
		if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			info.TotalBytes = mem.Total
		}
		n.devs = append(n.devs, d)
		n.info = append(n.info, info)
	}
	if reg != nil {
		if err := reg.Register(n); err != nil {
			lib.Shutdown()
			return nil, fmt.Errorf("register nvml metrics: %w", err)
		}
	}
	return n, nil
}

func nvmlError(lib nvml.Interface, ret nvml.Return) string {
	if s := lib.ErrorString(ret); s != "" {
		return s
	}
	return fmt.Sprintf("nvml return %d", int32(ret))
}

// Devices returns the GPUs found at open, in index order.
func (n *NVML) Devices() []Device { return append([]Device(nil), n.info...) }

// Sample reads every GPU's utilization and memory. A GPU whose utilization
// reading fails is left out, one whose memory reading fails is returned
// with NoMemory set; both are named in the returned error.
func (n *NVML) Sample() ([]GPUSample, error) {
	out := make([]GPUSample, 0, len(n.devs))
	var errs []error
	for i, d := range n.devs {
		u, ret := d.GetUtilizationRates()
		if ret != nvml.SUCCESS {
			errs = append(errs, fmt.Errorf("gpu %d utilization: %s", i, nvmlError(n.lib, ret)))
			continue
		}
		s := GPUSample{Index: i, Util: float64(u.Gpu) / 100}
		if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			s.UsedBytes, s.FreeBytes = mem.Used, mem.Free
		} else {
			s.NoMemory = true
			errs = append(errs, fmt.Errorf("gpu %d memory: %s", i, nvmlError(n.lib, ret)))
		}
		out = append(out, s)
	}
	n.mu.Lock()
	n.last = out
	n.mu.Unlock()
	return out, errors.Join(errs...)
}

// Close shuts NVML down.
func (n *NVML) Close() error {
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", nvmlError(n.lib, ret))
	}
	return nil
}

// Describe implements prometheus.Collector.
func (n *NVML) Describe(ch chan<- *prometheus.Desc) {
	ch <- n.util
	ch <- n.used
	ch <- n.total
}

// Collect implements prometheus.Collector with the last Sample's readings.
func (n *NVML) Collect(ch chan<- prometheus.Metric) {
	n.mu.Lock()
	last := n.last
	n.mu.Unlock()
	for _, d := range n.info {
		gpu := fmt.Sprint(d.Index)
		ch <- prometheus.MustNewConstMetric(n.total, prometheus.GaugeValue, float64(d.TotalBytes), gpu, d.UUID)
	}
	for _, s := range last {
		d := n.info[s.Index]
		gpu := fmt.Sprint(d.Index)
		ch <- prometheus.MustNewConstMetric(n.util, prometheus.GaugeValue, s.Util, gpu, d.UUID)
		if !s.NoMemory { // no series rather than a false 0 bytes used
			ch <- prometheus.MustNewConstMetric(n.used, prometheus.GaugeValue, float64(s.UsedBytes), gpu, d.UUID)
		}
	}
}
