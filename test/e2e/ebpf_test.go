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
// below the shim), none as cuMemAlloc_v2; and the daemon's evict and
// prefetch commands, carried out by the shim inside the container, show up
// as that container's prefetches.
func TestObserverSeesContainer(t *testing.T) {
	testenv.RequireRoot(t)
	rt, s, devFile := dockerSetup(t, "e2e-observed")
	s = withEnv(s, queueAtSubmission)
	srt := newShimRuntime(t, rt)
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
	p := pool.New(srt, pool.Config{Logger: testLogger(t), StopGrace: -1})
	defer p.Close(context.Background())
	id, err := p.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	functions[string(id)] = s.Function
	mu.Unlock()
	sess := srt.session(t, id, 10*time.Second)

	// Two quick invocations, then a long one whose memory the test evicts
	// and prefetches (each command: one cuMemPrefetchAsync_v2 per
	// allocation, one cuEventSynchronize, in the shim's control thread).
	args := matmulArgs{MB: 4, Iters: 3, N: 32}
	const quick = 2
	for range quick {
		if _, err := invokeMatmul(ctx, p, id, args); err != nil {
			t.Fatal(err)
		}
	}
	cmds, long := evictPrefetchRetrying(ctx, t, p, sess, id, devFile)

	o.Poll()
	snap := o.Snapshot()
	c, ok := snap.Container(string(id))
	if !ok {
		t.Fatalf("container %s not in the observer's snapshot: %+v", shortID(id), snap.Containers)
	}
	tot := c.Totals
	q, l := uint64(quick), uint64(long)
	n := q + l
	want := bpf.Counters{}
	want.Allocs[bpf.AllocManaged] = 4 * n
	want.AllocBytes[bpf.AllocManaged] = q*args.bytes() + l*longArgs.bytes()
	want.Frees, want.FreedBytes = 4*n, want.AllocBytes[bpf.AllocManaged]
	// htod: A and B; dtoh: C and the buffer's tail
	want.Memcpys[bpf.MemcpyHtoD], want.MemcpyBytes[bpf.MemcpyHtoD] = 2*n, q*args.htod()+l*longArgs.htod()
	want.Memcpys[bpf.MemcpyDtoH], want.MemcpyBytes[bpf.MemcpyDtoH] = 2*n, q*args.dtoh()+l*longArgs.dtoh()
	want.Launches[bpf.LaunchKernel] = q*2*uint64(args.Iters) + l*2*uint64(longArgs.Iters)
	check := func(what string, got, exp uint64) {
		t.Helper()
		if got != exp {
			t.Errorf("container %s: %s = %d, want %d", shortID(id), what, got, exp)
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
	check("cuEventSynchronize calls (the shim's, one per command that moved memory)", tot.Syncs[bpf.SyncEvent], cmds.moving)
	check("prefetched bytes (the daemon's evict and prefetch, the shim's placement of new ranges)",
		tot.PrefetchBytes, cmds.bytes+q*args.populated()+l*longArgs.populated())
	if tot.Prefetches < cmds.moving || cmds.bytes < 2*longArgs.bytes() {
		t.Errorf("container %s: %d prefetch calls for %+v", shortID(id), tot.Prefetches, cmds)
	}
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
