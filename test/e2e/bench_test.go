//go:build linux

package e2e_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"golang.org/x/sys/unix"
)

// Figures of the whole path, reported as percentiles of b.N runs (custom
// metrics; ns/op is the whole iteration). Run:
//
//	go test -run '^$' -bench . -benchtime 20x ./test/e2e

// BenchmarkGPUColdStart: pool.Start of gpu-matmul under the shim on the
// emulated GPU (create, start, cuInit and module load, readiness), and when
// its shim registered with the test's control server, both from the start
// of pool.Start; then the instance is killed and removed (not timed).
func BenchmarkGPUColdStart(b *testing.B) {
	onBothBackends(b, "e2e-bench-cold", benchColdStart)
}

// onBothBackends runs bench as the sub-benchmarks "docker" and "process",
// each on gpu-matmul set up for the instance label name.
func onBothBackends(b *testing.B, name string, bench func(*testing.B, runtime.Runtime, pool.Spec)) {
	b.Run("docker", func(b *testing.B) {
		rt, s, _ := dockerSetup(b, name)
		bench(b, rt, s)
	})
	b.Run("process", func(b *testing.B) {
		rt, s, _, _ := processSetup(b, name)
		bench(b, rt, s)
	})
}

func benchColdStart(b *testing.B, rt runtime.Runtime, s pool.Spec) {
	srt := newShimRuntime(b, rt)
	p := pool.New(srt, pool.Config{StopGrace: -1})
	defer p.Close(context.Background())
	ctx := b.Context()
	var ready, registered []time.Duration
	for b.Loop() {
		t0 := time.Now()
		id, err := p.Start(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		ready = append(ready, time.Since(t0))
		registered = append(registered, srt.registration(b, id, 10*time.Second).at.Sub(t0))
		b.StopTimer()
		if err := p.Stop(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, "ready", ready)
	reportPercentiles(b, "registered", registered)
}

// BenchmarkShimRoundTrip: one daemon command (report-usage) to the shim of
// a function in a container or a child process, over the instance
// directory's socket.
func BenchmarkShimRoundTrip(b *testing.B) {
	onBothBackends(b, "e2e-bench-rtt", benchRoundTrip)
}

func benchRoundTrip(b *testing.B, rt runtime.Runtime, s pool.Spec) {
	srt := newShimRuntime(b, rt)
	p := pool.New(srt, pool.Config{StopGrace: -1})
	defer p.Close(context.Background())
	id, err := p.Start(b.Context(), s)
	if err != nil {
		b.Fatal(err)
	}
	sess := srt.session(b, id, 10*time.Second)
	for b.Loop() {
		if r, err := sess.ReportUsage(b.Context()); err != nil || r.Err() != nil {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkDeathDetection: from SIGKILL of a registered function process
// (its host pid, sent by the test: the engine's own kill latency is not
// included) to the end of its shim session, in a container and as a child
// process.
func BenchmarkDeathDetection(b *testing.B) {
	onBothBackends(b, "e2e-bench-death", benchDeath)
}

func benchDeath(b *testing.B, rt runtime.Runtime, s pool.Spec) {
	srt := newShimRuntime(b, rt)
	p := pool.New(srt, pool.Config{StopGrace: -1, NoReplace: true})
	defer p.Close(context.Background())
	var detect []time.Duration
	for b.Loop() {
		b.StopTimer()
		id, err := p.Start(b.Context(), s)
		if err != nil {
			b.Fatal(err)
		}
		sess := srt.session(b, id, 10*time.Second)
		b.StartTimer()
		t0 := time.Now()
		if err := unix.Kill(int(sess.Peer.PID), unix.SIGKILL); err != nil {
			b.Fatal(err)
		}
		select {
		case <-sess.Done():
			detect = append(detect, time.Since(t0))
		case <-time.After(10 * time.Second):
			b.Fatal("session outlived its process by 10 s")
		}
	}
	reportPercentiles(b, "detect", detect)
}

// reportPercentiles reports the median and p90 of ds in milliseconds.
func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	ms := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) / 1e6 }
	b.ReportMetric(ms(0.5), name+"-p50-ms")
	b.ReportMetric(ms(0.9), name+"-p90-ms")
}
