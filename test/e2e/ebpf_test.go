//go:build linux && (amd64 || arm64)

package e2e_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/observer"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// TestObserverSeesContainer attaches the eBPF observer to the host's copy of
// the driver library (the fake driver, which the Docker backend bind-mounts
// into GPU containers from its host path, so the host-path uprobes fire for
// calls made in the container), runs gpu-matmul in Docker under the shim,
// and checks that the observer attributes exactly the function's driver
// calls to its container and, through the Function callback, to its name:
// the allocations arrive as cuMemAllocManaged (the shim's conversion, seen
// below the shim), none as cuMemAlloc_v2.
func TestObserverSeesContainer(t *testing.T) {
	testenv.RequireRoot(t)
	rt, s, _ := dockerSetup(t, "e2e-observed")
	lib := testenv.Artifact(t, "fakecuda/libcuda.so.1")

	var mu sync.Mutex
	functions := map[string]string{} // what the daemon knows from its own labels
	o, err := observer.Open(observer.Config{
		Logger: testLogger(t),
		Function: func(ctr string) string {
			mu.Lock()
			defer mu.Unlock()
			return functions[ctr]
		},
	}, &bpf.Options{Library: lib, Launches: true})
	if errors.Is(err, bpf.ErrNotSupported) {
		testenv.Skip(t, "skipping: "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- o.Run(runCtx) }()
	defer func() { stop(); <-ran }()

	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	p := pool.New(rt, pool.Config{Logger: testLogger(t), StopGrace: -1})
	defer p.Close(context.Background())
	id, err := p.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	functions[string(id)] = s.Function
	mu.Unlock()

	args := matmulArgs{MB: 4, Iters: 3, N: 32}
	const invocations = 2
	for range invocations {
		if _, err := invokeMatmul(ctx, p, id, args); err != nil {
			t.Fatal(err)
		}
	}

	o.Poll()
	snap := o.Snapshot()
	c, ok := snap.Container(string(id))
	if !ok {
		t.Fatalf("container %s not in the observer's snapshot: %+v", shortID(id), snap.Containers)
	}
	tot := c.Totals
	n := uint64(invocations)
	want := bpf.Counters{}
	want.Allocs[bpf.AllocManaged] = 4 * n
	want.AllocBytes[bpf.AllocManaged] = n * args.bytes()
	want.Frees, want.FreedBytes = 4*n, n*args.bytes()
	want.Memcpys[bpf.MemcpyHtoD], want.MemcpyBytes[bpf.MemcpyHtoD] = 2*n, n*args.htod() // htod: A and B
	want.Memcpys[bpf.MemcpyDtoH], want.MemcpyBytes[bpf.MemcpyDtoH] = 2*n, n*args.dtoh() // dtoh: C and the buffer's tail
	want.Launches[bpf.LaunchKernel] = n * 2 * uint64(args.Iters)
	check := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("container %s: %s = %d, want %d", shortID(id), what, got, want)
		}
	}
	check("cuMemAllocManaged calls", tot.Allocs[bpf.AllocManaged], want.Allocs[bpf.AllocManaged])
	check("cuMemAllocManaged bytes", tot.AllocBytes[bpf.AllocManaged], want.AllocBytes[bpf.AllocManaged])
	check("cuMemAlloc_v2 calls (the shim converts them)", tot.Allocs[bpf.AllocDevice], 0)
	check("frees", tot.Frees, want.Frees)
	check("freed bytes", tot.FreedBytes, want.FreedBytes)
	check("live bytes", c.LiveBytes, 0)
	check("htod copies", tot.Memcpys[bpf.MemcpyHtoD], want.Memcpys[bpf.MemcpyHtoD])
	check("htod bytes", tot.MemcpyBytes[bpf.MemcpyHtoD], want.MemcpyBytes[bpf.MemcpyHtoD])
	check("dtoh copies", tot.Memcpys[bpf.MemcpyDtoH], want.Memcpys[bpf.MemcpyDtoH])
	check("dtoh bytes", tot.MemcpyBytes[bpf.MemcpyDtoH], want.MemcpyBytes[bpf.MemcpyDtoH])
	check("cuLaunchKernel calls", tot.Launches[bpf.LaunchKernel], want.Launches[bpf.LaunchKernel])
	// gpu-matmul synchronizes the context after its copies and its stream
	// after the kernels, once each per invocation.
	check("cuCtxSynchronize calls", tot.Syncs[bpf.SyncCtx], n)
	check("cuStreamSynchronize calls", tot.Syncs[bpf.SyncStream], n)
	if tot.SyncNs[bpf.SyncStream] == 0 {
		t.Errorf("container %s: no time measured in cuStreamSynchronize", shortID(id))
	}

	f, ok := snap.Function(s.Function)
	if !ok {
		t.Fatalf("function %s not in the snapshot: %+v", s.Function, snap.Functions)
	}
	if f.Totals.AllocBytes != tot.AllocBytes || f.Totals.Syncs != tot.Syncs || f.Totals.Launches != tot.Launches {
		t.Errorf("function %s totals %+v differ from its only container's %+v", s.Function, f.Totals, tot)
	}
}
