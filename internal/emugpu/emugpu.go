package emugpu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Layout constants of version 1 (docs/FAKECUDA.md, shim/fakecuda/emugpu.h).
const (
	Magic    uint32 = 0x47454c53 // "SLEG"
	Version  uint32 = 1
	ProcSize        = 256 // bytes of one process slot

	// headerFields is how many header bytes the fields read here span
	// (through nprocs at 276).
	headerFields = 280
	// maxProcsLimit bounds max_procs so that a corrupt header cannot make
	// the reader allocate without limit (the driver uses 128).
	maxProcsLimit = 1 << 16
)

// Errors wrapped by Read and Parse.
var (
	ErrShort     = errors.New("file too short (not initialised?)")
	ErrNotDevice = errors.New("not an emulated GPU device file")
	ErrVersion   = errors.New("unsupported device file version")
	ErrLayout    = errors.New("inconsistent device file header")
)

// SchedMode is how the emulated GPU shares the device between processes.
type SchedMode uint32

// The scheduler modes (FAKECUDA_SCHED).
const (
	SchedTimeslice SchedMode = 0
	SchedShare     SchedMode = 1
)

func (m SchedMode) String() string {
	switch m {
	case SchedTimeslice:
		return "timeslice"
	case SchedShare:
		return "share"
	}
	return fmt.Sprintf("SchedMode(%d)", uint32(m))
}

// Device is a snapshot of the emulated GPU's header and live process slots.
type Device struct {
	Version   uint32
	MaxProcs  int
	SchedMode SchedMode
	FileBytes uint64

	Capacity uint64 // device bytes
	H2DBps   uint64 // prefetch host-to-device bandwidth, bytes/s
	D2HBps   uint64 // prefetch device-to-host and write-back bandwidth, bytes/s
	FaultBps uint64 // demand-fault bandwidth, bytes/s
	Quantum  time.Duration

	UsedDevice   uint64 // non-evictable bytes
	UsedResident uint64 // resident managed bytes
	Running      uint32 // kernels running now
	Waiters      uint32 // kernels waiting for the device
	TotalBusy    time.Duration
	Evictions    uint64
	EvictedBytes uint64
	Reaped       uint64 // dead processes cleaned up
	Repairs      uint64 // EOWNERDEAD recoveries
	NProcs       int    // live slots, as the header counts them

	Procs []Proc // live slots, in slot order
}

// Proc is one live process slot. Counters are cumulative over the slot's
// current use.
type Proc struct {
	Slot          int
	PID           int32 // in the process's own pid namespace
	Gen           uint64
	Comm          string
	DeviceBytes   uint64 // live non-evictable bytes
	ManagedBytes  uint64 // live managed bytes
	ResidentBytes uint64 // managed bytes resident on the device
	Kernels       uint64
	Busy          time.Duration // time it held the device
	Wait          time.Duration // time its kernels waited for the device
	Slices        uint64
	FaultBytes    uint64
	FaultTime     time.Duration
	H2DBytes      uint64 // prefetched to the device
	D2HBytes      uint64 // prefetched (or written back) to the host
	PrefetchTime  time.Duration
	EvictedBytes  uint64 // its resident bytes evicted by others' demands
	Running       uint32 // its kernels running now (share mode)
}

// Proc returns the live slot of the process with pid (in its own pid
// namespace).
func (d Device) Proc(pid int32) (Proc, bool) {
	for _, p := range d.Procs {
		if p.PID == pid {
			return p, true
		}
	}
	return Proc{}, false
}

// Free is what cuMemGetInfo reports as free: capacity less non-evictable
// and resident bytes (0 if a torn read makes them exceed it).
func (d Device) Free() uint64 {
	used := d.UsedDevice + d.UsedResident
	if used > d.Capacity {
		return 0
	}
	return d.Capacity - used
}

var le = binary.LittleEndian

// maxSlotsEnd bounds where the process slots may end, so that a corrupt
// header cannot make Read allocate without limit (the driver's end at
// 36,864 bytes).
const maxSlotsEnd = 16 << 20

// Read takes a snapshot of the device file at path: its header and live
// process slots (the allocation table is not read).
func Read(path string) (Device, error) {
	f, err := os.Open(path)
	if err != nil {
		return Device{}, fmt.Errorf("open emulated GPU device file: %w", err)
	}
	defer f.Close()
	name := "emulated GPU device file " + path
	hdr, err := readPrefix(f, headerFields)
	if err != nil {
		return Device{}, fmt.Errorf("read %s: %w", name, err)
	}
	end, err := slotsEnd(name, hdr)
	if err != nil {
		return Device{}, err
	}
	b, err := readPrefix(f, end)
	if err != nil {
		return Device{}, fmt.Errorf("read %s: %w", name, err)
	}
	return parse(name, b)
}

// Parse decodes a device file's contents from its start through at least
// the end of its process slots (the allocation table may be left out).
func Parse(b []byte) (Device, error) {
	return parse("emulated GPU device file", b)
}

// readPrefix reads up to n bytes from the start of f; fewer at end of file.
func readPrefix(f *os.File, n int) ([]byte, error) {
	b := make([]byte, n)
	k, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:k], nil
}

// slotsEnd checks the header in b and returns the offset at which the
// process slots end.
func slotsEnd(name string, b []byte) (int, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("%s: %d bytes: %w", name, len(b), ErrShort)
	}
	if m := le.Uint32(b[0:]); m != Magic {
		return 0, fmt.Errorf("%s: magic %#x, want %#x: %w", name, m, Magic, ErrNotDevice)
	}
	if v := le.Uint32(b[4:]); v != Version {
		return 0, fmt.Errorf("%s: version %d, this reader knows %d: %w", name, v, Version, ErrVersion)
	}
	if len(b) < headerFields {
		return 0, fmt.Errorf("%s: %d bytes, header needs %d: %w", name, len(b), headerFields, ErrShort)
	}
	hdrBytes := uint64(le.Uint32(b[8:]))
	maxProcs := uint64(le.Uint32(b[12:]))
	fileBytes := le.Uint64(b[32:])
	procsOff := le.Uint64(b[40:])
	switch {
	case hdrBytes < headerFields:
		return 0, fmt.Errorf("%s: header of %d bytes, want at least %d: %w", name, hdrBytes, headerFields, ErrLayout)
	case maxProcs == 0 || maxProcs > maxProcsLimit:
		return 0, fmt.Errorf("%s: max_procs %d: %w", name, maxProcs, ErrLayout)
	case procsOff < hdrBytes || procsOff > maxSlotsEnd:
		return 0, fmt.Errorf("%s: process slots at %d, header is %d bytes: %w", name, procsOff, hdrBytes, ErrLayout)
	}
	end := procsOff + maxProcs*ProcSize
	if end > maxSlotsEnd || end > fileBytes {
		return 0, fmt.Errorf("%s: process slots end at %d, beyond the file's %d bytes: %w", name, end, fileBytes, ErrLayout)
	}
	return int(end), nil
}

func parse(name string, b []byte) (Device, error) {
	end, err := slotsEnd(name, b)
	if err != nil {
		return Device{}, err
	}
	if len(b) < end {
		return Device{}, fmt.Errorf("%s: %d bytes, process slots end at %d: %w", name, len(b), end, ErrShort)
	}
	d := Device{
		Version:      le.Uint32(b[4:]),
		MaxProcs:     int(le.Uint32(b[12:])),
		SchedMode:    SchedMode(le.Uint32(b[24:])),
		FileBytes:    le.Uint64(b[32:]),
		Capacity:     le.Uint64(b[64:]),
		H2DBps:       le.Uint64(b[72:]),
		D2HBps:       le.Uint64(b[80:]),
		FaultBps:     le.Uint64(b[88:]),
		Quantum:      nanos(b[96:]),
		UsedDevice:   le.Uint64(b[176:]),
		UsedResident: le.Uint64(b[184:]),
		Running:      le.Uint32(b[216:]),
		Waiters:      le.Uint32(b[220:]),
		TotalBusy:    nanos(b[232:]),
		Evictions:    le.Uint64(b[240:]),
		EvictedBytes: le.Uint64(b[248:]),
		Reaped:       le.Uint64(b[256:]),
		Repairs:      le.Uint64(b[264:]),
		NProcs:       int(le.Uint32(b[276:])),
	}
	procsOff := int(le.Uint64(b[40:]))
	for i := range d.MaxProcs {
		s := b[procsOff+i*ProcSize:][:ProcSize]
		if le.Uint32(s[4:]) != 1 { // state: 0 free, 1 live
			continue
		}
		d.Procs = append(d.Procs, parseProc(i, s))
	}
	return d, nil
}

func parseProc(slot int, s []byte) Proc {
	comm := s[24:56]
	if j := bytes.IndexByte(comm, 0); j >= 0 {
		comm = comm[:j]
	}
	return Proc{
		Slot:          slot,
		PID:           int32(le.Uint32(s[0:])),
		Gen:           le.Uint64(s[8:]),
		Comm:          string(comm),
		DeviceBytes:   le.Uint64(s[56:]),
		ManagedBytes:  le.Uint64(s[64:]),
		ResidentBytes: le.Uint64(s[72:]),
		Kernels:       le.Uint64(s[80:]),
		Busy:          nanos(s[88:]),
		Wait:          nanos(s[96:]),
		Slices:        le.Uint64(s[104:]),
		FaultBytes:    le.Uint64(s[112:]),
		FaultTime:     nanos(s[120:]),
		H2DBytes:      le.Uint64(s[128:]),
		D2HBytes:      le.Uint64(s[136:]),
		PrefetchTime:  nanos(s[144:]),
		EvictedBytes:  le.Uint64(s[152:]),
		Running:       le.Uint32(s[168:]),
	}
}

// nanos reads a u64 nanosecond count (saturating at the largest Duration).
func nanos(b []byte) time.Duration {
	n := le.Uint64(b)
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return time.Duration(n)
}
