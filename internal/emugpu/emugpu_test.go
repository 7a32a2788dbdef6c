package emugpu

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Sizes of the driver's version-1 file (docs/FAKECUDA.md).
const (
	testHdrBytes  = 4096
	testMaxProcs  = 128
	testFileBytes = 2142208
	testSlotsEnd  = testHdrBytes + testMaxProcs*ProcSize
)

// field is one value written at an offset: 4 or 8 bytes, or a string.
type field struct {
	off  int
	size int // 4 or 8; 0 for str
	v    uint64
	str  string
}

// Header and slot fields of the synthetic file, from the documented layout.
var (
	synthHeader = []field{
		{0, 4, uint64(Magic), ""}, {4, 4, uint64(Version), ""}, {8, 4, testHdrBytes, ""},
		{12, 4, testMaxProcs, ""}, {16, 4, 32768, ""}, {20, 4, 512, ""}, {24, 4, 1, ""}, // share
		{32, 8, testFileBytes, ""}, {40, 8, testHdrBytes, ""}, {48, 8, testSlotsEnd, ""},
		{56, 8, testSlotsEnd + 512*16, ""}, {64, 8, 64 << 20, ""}, {72, 8, 25e9, ""},
		{80, 8, 24e9, ""}, {88, 8, 8e9, ""}, {96, 8, 2e6, ""}, {176, 8, 6 << 20, ""},
		{184, 8, 3 << 20, ""}, {216, 4, 2, ""}, {220, 4, 4, ""}, {232, 8, 9e9, ""},
		{240, 8, 7, ""}, {248, 8, 5 << 20, ""}, {256, 8, 2, ""}, {264, 8, 1, ""}, {276, 4, 1, ""},
	}
	synthLive = []field{
		{0, 4, 4242, ""}, {4, 4, 1, ""}, {8, 8, 9, ""}, {24, 0, 0, "gpu-matmul\x00junk"},
		{56, 8, 6 << 20, ""}, {64, 8, 4 << 20, ""}, {72, 8, 3 << 20, ""}, {80, 8, 11, ""},
		{88, 8, 1e6, ""}, {96, 8, 2e6, ""}, {104, 8, 12, ""}, {112, 8, 1 << 20, ""},
		{120, 8, 3e6, ""}, {128, 8, 2 << 20, ""}, {136, 8, 1 << 19, ""}, {144, 8, 4e6, ""},
		{152, 8, 1 << 18, ""}, {168, 4, 1, ""},
	}
	synthFree = []field{{0, 4, 77, ""}, {4, 4, 0, ""}, {56, 8, 1 << 20, ""}}
)

// synthFile builds a version-1 file through the process slots: one live
// slot (3) and one free slot that still holds a pid (5, which the reader
// must skip).
func synthFile() []byte {
	b := make([]byte, testSlotsEnd)
	put := func(base int, fs []field) {
		for _, f := range fs {
			switch f.size {
			case 4:
				le.PutUint32(b[base+f.off:], uint32(f.v))
			case 8:
				le.PutUint64(b[base+f.off:], f.v)
			default:
				copy(b[base+f.off:], f.str)
			}
		}
	}
	put(0, synthHeader)
	put(testHdrBytes+3*ProcSize, synthLive)
	put(testHdrBytes+5*ProcSize, synthFree)
	return b
}

func wantSynth() Device {
	return Device{
		Version: 1, MaxProcs: 128, SchedMode: SchedShare, FileBytes: testFileBytes,
		Capacity: 64 << 20, H2DBps: 25e9, D2HBps: 24e9, FaultBps: 8e9, Quantum: 2 * time.Millisecond,
		UsedDevice: 6 << 20, UsedResident: 3 << 20, Running: 2, Waiters: 4, TotalBusy: 9 * time.Second,
		Evictions: 7, EvictedBytes: 5 << 20, Reaped: 2, Repairs: 1, NProcs: 1,
		Procs: []Proc{{
			Slot: 3, PID: 4242, Gen: 9, Comm: "gpu-matmul",
			DeviceBytes: 6 << 20, ManagedBytes: 4 << 20, ResidentBytes: 3 << 20, Kernels: 11,
			Busy: time.Millisecond, Wait: 2 * time.Millisecond, Slices: 12,
			FaultBytes: 1 << 20, FaultTime: 3 * time.Millisecond,
			H2DBytes: 2 << 20, D2HBytes: 1 << 19, PrefetchTime: 4 * time.Millisecond,
			EvictedBytes: 1 << 18, Running: 1,
		}},
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		edit func([]byte) []byte
		err  error  // nil: want wantSynth()
		msg  string // in the error
	}{
		{"valid", func(b []byte) []byte { return b }, nil, ""},
		{"with allocation table", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, nil, ""},
		{"empty", func([]byte) []byte { return nil }, ErrShort, "0 bytes"},
		{"four bytes", func(b []byte) []byte { return b[:4] }, ErrShort, "4 bytes"},
		{"all-zero header", func(b []byte) []byte { return make([]byte, len(b)) }, ErrNotDevice, "magic 0x0"},
		{"wrong magic", func(b []byte) []byte { le.PutUint32(b, 0x464c457f); return b }, ErrNotDevice, "magic 0x464c457f"},
		{"version 2", func(b []byte) []byte { le.PutUint32(b[4:], 2); return b }, ErrVersion, "version 2"},
		{"version 0", func(b []byte) []byte { le.PutUint32(b[4:], 0); return b }, ErrVersion, "version 0"},
		{"header cut", func(b []byte) []byte { return b[:200] }, ErrShort, "200 bytes"},
		{"slots cut", func(b []byte) []byte { return b[:testSlotsEnd-1] }, ErrShort, "process slots end at 36864"},
		{"header too small", func(b []byte) []byte { le.PutUint32(b[8:], 64); return b }, ErrLayout, "header of 64 bytes"},
		{"no slots", func(b []byte) []byte { le.PutUint32(b[12:], 0); return b }, ErrLayout, "max_procs 0"},
		{"too many slots", func(b []byte) []byte { le.PutUint32(b[12:], 1<<31); return b }, ErrLayout, "max_procs"},
		{"slots in header", func(b []byte) []byte { le.PutUint64(b[40:], 128); return b }, ErrLayout, "process slots at 128"},
		{"slots far away", func(b []byte) []byte { le.PutUint64(b[40:], 1<<62); return b }, ErrLayout, "process slots at"},
		{"slots past file", func(b []byte) []byte { le.PutUint64(b[32:], 8192); return b }, ErrLayout, "beyond the file's 8192 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.edit(synthFile()))
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if want := wantSynth(); !reflect.DeepEqual(d, want) {
					t.Errorf("Parse:\n got %+v\nwant %+v", d, want)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Parse: error %v, want %v containing %q", err, tc.err, tc.msg)
			}
		})
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	full := append(synthFile(), make([]byte, testFileBytes-testSlotsEnd)...)
	tests := []struct {
		name    string
		content []byte // nil: no file
		err     error
	}{
		{"whole file", full, nil},
		{"through the slots", synthFile(), nil},
		{"missing", nil, fs.ErrNotExist},
		{"empty", []byte{}, ErrShort},
		{"slots cut", synthFile()[:5000], ErrShort},
		{"not a device file", []byte("#!/bin/sh\necho this is a script, not an emulated GPU, padded out to the header's size ......................................................................................................................................................................................................................................................\n"), ErrNotDevice},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "gpu"+string(rune('a'+i)))
			if tc.content != nil {
				if err := os.WriteFile(path, tc.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d, err := Read(path)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Read: error %v, want %v naming %s", err, tc.err, path)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if want := wantSynth(); !reflect.DeepEqual(d, want) {
				t.Errorf("Read:\n got %+v\nwant %+v", d, want)
			}
		})
	}
}

func TestDeviceHelpers(t *testing.T) {
	d := wantSynth()
	if p, ok := d.Proc(4242); !ok || p.Slot != 3 {
		t.Errorf("Proc(4242) = %+v, %v; want slot 3", p, ok)
	}
	if _, ok := d.Proc(77); ok {
		t.Errorf("Proc(77) found a free slot's pid")
	}
	tests := []struct {
		device, resident, want uint64
	}{
		{6 << 20, 3 << 20, 55 << 20},
		{0, 0, 64 << 20},
		{64 << 20, 0, 0},
		{60 << 20, 8 << 20, 0}, // torn read: more used than capacity
	}
	for _, tc := range tests {
		d.UsedDevice, d.UsedResident = tc.device, tc.resident
		if got := d.Free(); got != tc.want {
			t.Errorf("Free() with device %d resident %d = %d, want %d", tc.device, tc.resident, got, tc.want)
		}
	}
	for m, want := range map[SchedMode]string{SchedTimeslice: "timeslice", SchedShare: "share", 7: "SchedMode(7)"} {
		if m.String() != want {
			t.Errorf("SchedMode(%d).String() = %q, want %q", uint32(m), m.String(), want)
		}
	}
}
