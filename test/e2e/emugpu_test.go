//go:build linux

package e2e_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// A reader of the emulated GPU's device file, written from the documented
// layout (docs/FAKECUDA.md, "Device file layout (version 1)"): the test
// checks the shim's claims against the emulator's own accounting. Reads are
// lock-free, like the daemon's would be: a field may be torn against
// another, never within itself.

const (
	emuMagic    = 0x47454c53 // "SLEG"
	emuVersion  = 1
	emuSlotSize = 256
)

// emuDevice is the header fields the tests use.
type emuDevice struct {
	Capacity     uint64
	UsedDevice   uint64 // non-evictable bytes
	UsedResident uint64 // resident managed bytes
	Reaped       uint64
	Procs        []emuProc // live slots only
}

// emuProc is one live process slot.
type emuProc struct {
	Slot          int
	PID           int32 // in the process's own pid namespace
	Comm          string
	DeviceBytes   uint64 // live non-evictable bytes
	ManagedBytes  uint64 // live managed bytes
	ResidentBytes uint64 // managed bytes resident on the device
	Kernels       uint64
	FaultBytes    uint64
	H2DBytes      uint64 // prefetched to the device
	D2HBytes      uint64 // prefetched (or written back) to the host
	EvictedBytes  uint64 // its resident bytes evicted by others' demands
}

func readEmuDevice(path string) (emuDevice, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return emuDevice{}, err
	}
	le := binary.LittleEndian
	if len(b) < 4096 {
		return emuDevice{}, fmt.Errorf("device file %s: %d bytes, not initialised", path, len(b))
	}
	if m, v := le.Uint32(b[0:]), le.Uint32(b[4:]); m != emuMagic || v != emuVersion {
		return emuDevice{}, fmt.Errorf("device file %s: magic %#x version %d", path, m, v)
	}
	maxProcs := int(le.Uint32(b[12:]))
	procsOff := le.Uint64(b[40:])
	if procsOff+uint64(maxProcs)*emuSlotSize > uint64(len(b)) {
		return emuDevice{}, errors.New("device file: process slots beyond the end of the file")
	}
	d := emuDevice{
		Capacity:     le.Uint64(b[64:]),
		UsedDevice:   le.Uint64(b[176:]),
		UsedResident: le.Uint64(b[184:]),
		Reaped:       le.Uint64(b[256:]),
	}
	for i := range maxProcs {
		s := b[procsOff+uint64(i)*emuSlotSize:][:emuSlotSize]
		if le.Uint32(s[4:]) != 1 {
			continue
		}
		comm := s[24:56]
		if j := bytes.IndexByte(comm, 0); j >= 0 {
			comm = comm[:j]
		}
		d.Procs = append(d.Procs, emuProc{
			Slot:          i,
			PID:           int32(le.Uint32(s[0:])),
			Comm:          string(comm),
			DeviceBytes:   le.Uint64(s[56:]),
			ManagedBytes:  le.Uint64(s[64:]),
			ResidentBytes: le.Uint64(s[72:]),
			Kernels:       le.Uint64(s[80:]),
			FaultBytes:    le.Uint64(s[112:]),
			H2DBytes:      le.Uint64(s[128:]),
			D2HBytes:      le.Uint64(s[136:]),
			EvictedBytes:  le.Uint64(s[152:]),
		})
	}
	return d, nil
}

// emuProcOf returns the live slot of the process with pid (in its own
// namespace), which the shim reports as its claimed pid.
func emuProcOf(path string, pid int32) (emuProc, error) {
	d, err := readEmuDevice(path)
	if err != nil {
		return emuProc{}, err
	}
	for _, p := range d.Procs {
		if p.PID == pid {
			return p, nil
		}
	}
	return emuProc{}, fmt.Errorf("no live process %d on the emulated GPU (%d live: %+v)", pid, len(d.Procs), d.Procs)
}
