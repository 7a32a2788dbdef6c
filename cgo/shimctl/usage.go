package shimctl

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in struct sluice_usage_page (asserted against the C header).
const (
	offUsageMagic   = 0
	offUsageVersion = 4
	offSeq          = 8
	offLive         = 16
	offPeak         = offLive + 8*KindCount
	offAllocs       = offPeak + 8
	offFrees        = offAllocs + 8*KindCount
	offBudget       = offFrees + 8
	offOOMRefused   = offBudget + 8
	offPrefetches   = offOOMRefused + 8
	offEvictions    = offPrefetches + 8
	offInflight     = offEvictions + 8
)

// Usage is a snapshot of a shim's shared usage page.
type Usage struct {
	Seq        uint64
	Live       [KindCount]uint64 // live bytes by kind
	Peak       uint64            // high-water mark of all live bytes
	Allocs     [KindCount]uint64
	Frees      uint64
	Budget     uint64 // budget the shim enforces, 0 = none
	OOMRefused uint64 // allocations the budget refused
	Prefetches uint64
	Evictions  uint64
	// PrefetchInFlight: a daemon prefetch is running and the process's
	// submissions are ordered after it.
	PrefetchInFlight bool
}

// LiveBytes is the sum over all kinds.
func (u Usage) LiveBytes() uint64 {
	var s uint64
	for _, v := range u.Live {
		s += v
	}
	return s
}

// EvictableBytes is the sum over the kinds the daemon can move.
func (u Usage) EvictableBytes() uint64 {
	var s uint64
	for k, v := range u.Live {
		if Kind(k).Evictable() {
			s += v
		}
	}
	return s
}

// usagePage is a read-only mapping of a shim's page.
type usagePage struct {
	mem []byte
}

// mapUsagePage validates fd (a sealed memfd of at least one page: the shim
// cannot shrink it under us and fault the daemon) and maps it read-only.
func mapUsagePage(fd int) (*usagePage, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat usage page: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < usagePageSize {
		return nil, fmt.Errorf("usage page: not a %d-byte memory file (mode %#o, %d bytes)", usagePageSize, st.Mode, st.Size)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("usage page seals: %w", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("usage page: not sealed against shrinking")
	}
	mem, err := unix.Mmap(fd, 0, usagePageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map usage page: %w", err)
	}
	p := &usagePage{mem: mem}
	if m := p.load32(offUsageMagic); m != usageMagic {
		unix.Munmap(mem)
		return nil, fmt.Errorf("usage page: magic %#x", m)
	}
	return p, nil
}

func (p *usagePage) load64(off int) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&p.mem[off])))
}

func (p *usagePage) load32(off int) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&p.mem[off])))
}

func (p *usagePage) snapshot() Usage {
	var u Usage
	u.Seq = p.load64(offSeq)
	for k := 0; k < KindCount; k++ {
		u.Live[k] = p.load64(offLive + 8*k)
		u.Allocs[k] = p.load64(offAllocs + 8*k)
	}
	u.Peak = p.load64(offPeak)
	u.Frees = p.load64(offFrees)
	u.Budget = p.load64(offBudget)
	u.OOMRefused = p.load64(offOOMRefused)
	u.Prefetches = p.load64(offPrefetches)
	u.Evictions = p.load64(offEvictions)
	u.PrefetchInFlight = p.load64(offInflight) != 0
	return u
}

func (p *usagePage) close() {
	if p != nil && p.mem != nil {
		unix.Munmap(p.mem)
		p.mem = nil
	}
}
