package sim

import (
	"fmt"
	"math"
	"time"
)

// GPUModel is the simulated device. All fields are flags of `sluice sim`
// and identical for every policy.
type GPUModel struct {
	// Slowdown2 and Slowdown6 are the normalized execution times of
	// invocations running 2 and 6 at a time (paper: about 1.27 and 3.0).
	// Slowdown(k) = 1 + a(k-1)^b passes through both.
	Slowdown2, Slowdown6 float64
	// MemBytes is each GPU's memory. Default 16 GiB (V100).
	MemBytes int64
	// LinkBytesPerSec is the host link bandwidth for prefetch and eviction,
	// each direction. Default 12 GB/s.
	LinkBytesPerSec float64
	// FaultBytesPerSec is the effective bandwidth of demand paging, for
	// memory touched while not resident. Default 2.618 GB/s, calibrated so
	// the paper's FFT experiment takes 1.470 s without prefetch.
	FaultBytesPerSec float64
	// MonitorPeriod is the utilization sampling period. Default 500ms.
	MonitorPeriod time.Duration
}

// DefaultGPUModel returns the V100 model.
func DefaultGPUModel() GPUModel {
	return GPUModel{
		Slowdown2:        1.27,
		Slowdown6:        3.0,
		MemBytes:         16 << 30,
		LinkBytesPerSec:  12e9,
		FaultBytesPerSec: 1.5e9 / (1.470 - 0.897),
		MonitorPeriod:    500 * time.Millisecond,
	}
}

// Validate rejects impossible parameters.
func (m GPUModel) Validate() error {
	switch {
	case !(m.Slowdown2 >= 1) || m.Slowdown2 > 100:
		return fmt.Errorf("gpu model: slowdown at 2 concurrent %g not in [1, 100]", m.Slowdown2)
	case !(m.Slowdown6 >= m.Slowdown2) || m.Slowdown6 > 1000:
		return fmt.Errorf("gpu model: slowdown at 6 concurrent %g not in [slowdown at 2, 1000]", m.Slowdown6)
	case m.Slowdown6 > m.Slowdown2 && m.Slowdown2 == 1:
		return fmt.Errorf("gpu model: slowdown at 2 must exceed 1 when slowdown at 6 does")
	case m.MemBytes <= 0:
		return fmt.Errorf("gpu model: memory %d must be positive", m.MemBytes)
	case !(m.LinkBytesPerSec > 0) || math.IsInf(m.LinkBytesPerSec, 0):
		return fmt.Errorf("gpu model: link bandwidth %g must be positive", m.LinkBytesPerSec)
	case !(m.FaultBytesPerSec > 0) || math.IsInf(m.FaultBytesPerSec, 0):
		return fmt.Errorf("gpu model: fault bandwidth %g must be positive", m.FaultBytesPerSec)
	case m.MonitorPeriod < time.Millisecond:
		return fmt.Errorf("gpu model: monitor period %v below 1ms", m.MonitorPeriod)
	}
	return nil
}

// Slowdown returns the normalized execution time of each of k invocations
// running at once (1 for k <= 1).
func (m GPUModel) Slowdown(k int) float64 {
	if k <= 1 {
		return 1
	}
	a := m.Slowdown2 - 1
	if a == 0 {
		return 1
	}
	b := math.Log((m.Slowdown6-1)/a) / math.Log(5)
	return 1 + a*math.Pow(float64(k-1), b)
}
