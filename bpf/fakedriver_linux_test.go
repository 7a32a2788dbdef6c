//go:build linux && (amd64 || arm64)

package bpf_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/internal/bpftest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// TestFakeDriver attaches to the project's fake CUDA driver (the emulated
// GPU's libcuda.so.1) and checks exact counts of a scripted process.
func TestFakeDriver(t *testing.T) {
	lib := testenv.Artifact(t, "fakecuda/libcuda.so.1")
	_, caller := bpftest.Build(t)
	p := open(t, lib, true)
	cg := bpftest.NewCgroup(t)
	cmd, done := cg.Command(t, caller, lib,
		"init", "alloc=1048576", "managed=65536", "htod=4096", "dtoh=2048", "prefetch=65536", "ctxsync", "free",
		"bench=100", // launches with a NULL function: errors, but calls all the same
		"gpa=7")     // through cuGetProcAddress, as the CUDA runtime calls
	defer done()
	cmd.Env = append(os.Environ(), "FAKECUDA_DEVICE_FILE="+filepath.Join(t.TempDir(), "emugpu"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caller on the fake driver: %v\n%s", err, out)
	}
	c := counters(t, p, cg.ID)
	t.Logf("counters: %+v", c)
	if c.Launches[bpf.LaunchKernel] != 107 {
		t.Errorf("launches = %d, want 107 (100 through dlsym, 7 through cuGetProcAddress)", c.Launches[bpf.LaunchKernel])
	}
	if c.Allocs != [bpf.AllocKinds]uint64{1, 1, 0} || c.AllocBytes != [bpf.AllocKinds]uint64{1048576, 65536, 0} {
		t.Errorf("allocations %v (%v bytes), want [1 1 0] ([1048576 65536 0])", c.Allocs, c.AllocBytes)
	}
	if c.Frees != 1 || c.FreedBytes != 65536 || c.ExitReleasedBytes != 1048576 || c.LiveBytes() != 0 {
		t.Errorf("frees %d (%d B), released at exit %d B, live %d; want 1 (65536 B), 1048576 B, 0",
			c.Frees, c.FreedBytes, c.ExitReleasedBytes, c.LiveBytes())
	}
	if c.MemcpyBytes != [bpf.MemcpyKinds]uint64{4096, 2048, 0, 0} || c.Prefetches != 1 || c.PrefetchBytes != 65536 {
		t.Errorf("copies %v bytes, prefetches %d (%d B); want [4096 2048 0 0], 1 (65536 B)", c.MemcpyBytes, c.Prefetches, c.PrefetchBytes)
	}
	if c.Syncs != [bpf.SyncKinds]uint64{1, 0, 0} || c.FailedCalls != 0 {
		t.Errorf("syncs %v, failed calls %d; want [1 0 0], 0", c.Syncs, c.FailedCalls)
	}
}

// TestRealDriver is a manual check for a GPU host: SLUICE_BPF_REAL_DRIVER
// names the host's libcuda.so.1. It checks that launches made through a
// cuGetProcAddress pointer are seen (the CUDA runtime calls that way), and
// that an allocation and its release are accounted. It is not a CI test.
func TestRealDriver(t *testing.T) {
	lib := os.Getenv("SLUICE_BPF_REAL_DRIVER")
	if lib == "" {
		t.Skip("skipping: set SLUICE_BPF_REAL_DRIVER to the host's libcuda.so.1 (GPU hosts only)")
	}
	_, caller := bpftest.Build(t)
	p := open(t, lib, true)
	cg := bpftest.NewCgroup(t)
	cg.Run(t, caller, lib, "init", "bench=3", "gpa=7", "launchbench=5", "alloc=1048576", "free", "ctxsync")
	c := counters(t, p, cg.ID)
	t.Logf("counters: %+v", c)
	if c.Launches[bpf.LaunchKernel] != 15 {
		t.Errorf("launches = %d, want 15 (3 dlsym, 7 cuGetProcAddress, 5 real)", c.Launches[bpf.LaunchKernel])
	}
	if c.AllocBytes[bpf.AllocDevice] < 1048576 || c.LiveBytes() != 0 {
		t.Errorf("device bytes allocated %d (want >= 1048576), live after exit %d (want 0)", c.AllocBytes[0], c.LiveBytes())
	}
	if c.Syncs[bpf.SyncCtx] < 2 {
		t.Errorf("ctx syncs %d, want >= 2", c.Syncs[bpf.SyncCtx])
	}
}
