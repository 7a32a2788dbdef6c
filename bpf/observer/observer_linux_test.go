//go:build linux && (amd64 || arm64)

package observer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/internal/bpftest"
	"github.com/sluice-gpu/sluice/bpf/observer"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

func openObserver(t *testing.T, lib string, reg prometheus.Registerer, fn func(string) string) *observer.Observer {
	t.Helper()
	testenv.RequireRoot(t)
	o, err := observer.Open(observer.Config{Registerer: reg, Function: fn}, &bpf.Options{Library: lib, Launches: true})
	if errors.Is(err, bpf.ErrNotSupported) {
		testenv.Skip(t, "skipping: "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestContainerCgroupMapping runs the caller in a cgroup named the way
// Docker's systemd driver names containers and checks that the observer
// reports its exact activity under that container and its function.
func TestContainerCgroupMapping(t *testing.T) {
	lib, caller := bpftest.Build(t)
	reg := prometheus.NewPedanticRegistry()
	id := strings.Repeat("5a", 32)
	o := openObserver(t, lib, reg, func(c string) string {
		if c == id {
			return "resnet"
		}
		return ""
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	defer func() { cancel(); <-done }()

	parent := bpftest.NewCgroup(t)
	cg := parent.Child(t, "docker-"+id+".scope")
	cg.Run(t, caller, lib, "launch=42", "alloc=1048576", "managed=2048", "free", "htod=512", "dtoh=256", "streamsync=1000")

	o.Poll()
	s := o.Snapshot()
	c, ok := s.Container(id)
	if !ok {
		t.Fatalf("container %s not in snapshot %+v", id, s.Containers)
	}
	tot := c.Totals
	if tot.Launches[bpf.LaunchKernel] != 42 || tot.TotalAllocBytes() != 1048576+2048 || tot.FreedBytes != 2048 ||
		tot.MemcpyBytes[bpf.MemcpyHtoD] != 512 || tot.MemcpyBytes[bpf.MemcpyDtoH] != 256 || tot.Syncs[bpf.SyncStream] != 1 ||
		c.LiveBytes != 0 || tot.ExitReleasedBytes != 1048576 {
		t.Errorf("container totals %+v", tot)
	}
	if f, ok := s.Function("resnet"); !ok || f.Totals.Launches[bpf.LaunchKernel] != 42 {
		t.Errorf("function resnet: %+v, %v", f, ok)
	}
	n, err := testutil.GatherAndCount(reg, "sluice_gpu_launches_total")
	if err != nil || n == 0 {
		t.Errorf("no launch series gathered: %d, %v", n, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// TestSamplesFromRealProbes checks that a process's activity reaches the
// Samples channel between two polls.
func TestSamplesFromRealProbes(t *testing.T) {
	lib, caller := bpftest.Build(t)
	o := openObserver(t, lib, nil, nil)
	defer o.Close()
	cg := bpftest.NewCgroup(t)
	o.Poll()
	time.Sleep(10 * time.Millisecond)
	cg.Run(t, caller, lib, "launch=9", "eventsync=500")
	o.Poll()
	select {
	case batch := <-o.Samples():
		for _, s := range batch {
			if s.CgroupID == cg.ID {
				if s.Launches != 9 || s.Syncs != 1 || s.SyncWait < 500*time.Microsecond || s.LaunchesPerSec <= 0 {
					t.Errorf("sample %+v", s)
				}
				return
			}
		}
		t.Errorf("no sample for cgroup %d in %+v", cg.ID, batch)
	case <-time.After(5 * time.Second):
		t.Fatal("no samples")
	}
}
