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
