package bpf_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
)

func TestDecodeEvent(t *testing.T) {
	ok := bpf.Event{Time: 5 * time.Second, CgroupID: 77, PID: 10, TID: 11, Kind: bpf.EventExit, Bytes: 1 << 30, Count: 3, Comm: "python3"}
	long := ok
	long.Comm = "a-very-long-command-name"
	tests := []struct {
		name    string
		in      []byte
		want    bpf.Event
		wantErr bool
	}{
		{"round trip", ok.Encode(), ok, false},
		{"comm cut to 16 bytes", long.Encode(), func() bpf.Event { e := long; e.Comm = "a-very-long-comm"; return e }(), false},
		{"short", ok.Encode()[:63], bpf.Event{}, true},
		{"long", append(ok.Encode(), 0), bpf.Event{}, true},
		{"empty", nil, bpf.Event{}, true},
		{"kind 0", (bpf.Event{Kind: 0}).Encode(), bpf.Event{}, true},
		{"kind 5", (bpf.Event{Kind: 5}).Encode(), bpf.Event{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bpf.DecodeEvent(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecodeEvent: any input either fails cleanly or decodes to an event
// whose encoding decodes to the same event.
func FuzzDecodeEvent(f *testing.F) {
	f.Add((bpf.Event{Kind: bpf.EventFirstAlloc, Comm: "x"}).Encode())
	f.Add((bpf.Event{Kind: bpf.EventAllocFailed, Result: -1, Bytes: ^uint64(0)}).Encode())
	f.Add(bytes.Repeat([]byte{0xff}, bpf.EventSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := bpf.DecodeEvent(b)
		if err != nil {
			if len(b) == bpf.EventSize && e != (bpf.Event{}) {
				t.Fatalf("error %v with non-zero event %+v", err, e)
			}
			return
		}
		if len(b) != bpf.EventSize {
			t.Fatalf("decoded %d bytes", len(b))
		}
		e2, err := bpf.DecodeEvent(e.Encode())
		if err != nil || e2 != e {
			t.Fatalf("re-decode: %+v, %v; want %+v", e2, err, e)
		}
		if bytes.IndexByte([]byte(e.Comm), 0) >= 0 || len(e.Comm) > 16 {
			t.Fatalf("comm %q", e.Comm)
		}
	})
}

// TestConstantsMatchHeader keeps the Go constants in step with probe.h.
func TestConstantsMatchHeader(t *testing.T) {
	h, err := os.ReadFile(filepath.Join("probe.h"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*(?:#define\s+)?([A-Z_]+)\s*=?\s*(\d+)\b`)
	got := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(h), -1) {
		n, _ := strconv.Atoi(m[2])
		got[m[1]] = n
	}
	want := map[string]int{
		"LAUNCH_KERNEL": bpf.LaunchKernel, "LAUNCH_KERNEL_PTSZ": bpf.LaunchKernelPtsz,
		"LAUNCH_KERNEL_EX": bpf.LaunchKernelEx, "LAUNCH_GRAPH": bpf.LaunchGraph, "LAUNCH_KINDS": bpf.LaunchKinds,
		"SYNC_CTX": bpf.SyncCtx, "SYNC_STREAM": bpf.SyncStream, "SYNC_EVENT": bpf.SyncEvent, "SYNC_KINDS": bpf.SyncKinds,
		"MEMCPY_HTOD": bpf.MemcpyHtoD, "MEMCPY_DTOH": bpf.MemcpyDtoH, "MEMCPY_DTOD": bpf.MemcpyDtoD,
		"MEMCPY_UNIFIED": bpf.MemcpyUnified, "MEMCPY_KINDS": bpf.MemcpyKinds,
		"ALLOC_DEVICE": bpf.AllocDevice, "ALLOC_MANAGED": bpf.AllocManaged, "ALLOC_ASYNC": bpf.AllocAsync,
		"ALLOC_KINDS": bpf.AllocKinds, "SYNC_HIST_BUCKETS": bpf.SyncHistBuckets,
		"EV_PROC_FIRST_ALLOC": int(bpf.EventFirstAlloc), "EV_EXIT": int(bpf.EventExit),
		"EV_EXEC": int(bpf.EventExec), "EV_ALLOC_FAILED": int(bpf.EventAllocFailed),
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("probe.h %s = %d (found %v), Go says %d", name, g, ok, w)
		}
	}
}
