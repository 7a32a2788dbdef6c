package pool_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/docker"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/internal/dockertest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// echoBinary builds containers/functions/echo (static) into dir.
func echoBinary(b *testing.B, dir string) string {
	return testenv.GoBuild(b, testenv.RepoRoot(b), "./containers/functions/echo", filepath.Join(dir, "fn-echo"))
}

// reportQuantiles adds p50 and p90 of samples, in unit, as metrics.
func reportQuantiles(b *testing.B, samples []time.Duration, unit time.Duration, name string) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(f float64) float64 { return float64(samples[int(f*float64(len(samples)-1))]) / float64(unit) }
	b.ReportMetric(q(0.5), name+"-p50")
	b.ReportMetric(q(0.9), name+"-p90")
}

// coldStart measures Pool.Start (create to ready) of echo, b.N times,
// removing each instance outside the timed part.
func coldStart(b *testing.B, rt runtime.Runtime, s pool.Spec) {
	p := pool.New(rt, pool.Config{})
	defer p.Close(context.Background())
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		id, err := p.Start(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
		b.StopTimer()
		if err := p.Stop(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportQuantiles(b, samples, time.Millisecond, "ms")
}

// warmInvoke measures Pool.Invoke round trips of a small JSON body on one
// warm echo instance.
func warmInvoke(b *testing.B, rt runtime.Runtime, s pool.Spec) {
	p := pool.New(rt, pool.Config{})
	defer p.Close(context.Background())
	ctx := context.Background()
	id, err := p.Start(ctx, s)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"name":"sluice","n":42}`)
	for range 200 { // warm the connection and both processes
		if _, err := p.Invoke(ctx, id, body); err != nil {
			b.Fatal(err)
		}
	}
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := p.Invoke(ctx, id, body); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	b.StopTimer()
	reportQuantiles(b, samples, time.Microsecond, "us")
}

func processEcho(b *testing.B) (runtime.Runtime, pool.Spec) {
	bin := echoBinary(b, testenv.ShortDir(b, "slbin"))
	rt, err := process.New(process.Config{Instance: "bench", StateDir: testenv.ShortDir(b, "slb")})
	if err != nil {
		b.Fatal(err)
	}
	return rt, pool.Spec{Spec: runtime.Spec{Function: "echo", Command: []string{bin}}}
}

func dockerEcho(b *testing.B) (runtime.Runtime, pool.Spec) {
	cli := dockertest.Client(b)
	bin := echoBinary(b, testenv.ShortDir(b, "slbin"))
	rfs := image.NewRootfs()
	if err := rfs.AddELF("/fn/fn-echo", bin); err != nil {
		b.Fatal(err)
	}
	label := "b" + runtime.RandomSuffix(4)
	ref := "sluice-bench/echo:" + label
	if _, err := image.Import(context.Background(), cli, rfs, ref, image.Config{Cmd: []string{"/fn/fn-echo"},
		Labels: map[string]string{runtime.LabelInstance: label}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = image.Remove(context.Background(), cli, ref) })
	rt, err := docker.New(context.Background(), docker.Config{Instance: label, StateDir: testenv.ShortDir(b, "slb"), Client: cli})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = runtime.Recover(context.Background(), rt) })
	return rt, pool.Spec{Spec: runtime.Spec{Function: "echo", Image: ref, MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 32}}
}

func BenchmarkColdStartProcess(b *testing.B)  { rt, s := processEcho(b); coldStart(b, rt, s) }
func BenchmarkColdStartDocker(b *testing.B)   { rt, s := dockerEcho(b); coldStart(b, rt, s) }
func BenchmarkWarmInvokeProcess(b *testing.B) { rt, s := processEcho(b); warmInvoke(b, rt, s) }
func BenchmarkWarmInvokeDocker(b *testing.B)  { rt, s := dockerEcho(b); warmInvoke(b, rt, s) }

// BenchmarkWarmInvokeDockerNoCPULimit is the same without the 0.5-CPU quota,
// to show what CFS throttling adds.
func BenchmarkWarmInvokeDockerNoCPULimit(b *testing.B) {
	rt, s := dockerEcho(b)
	s.CPUs = 0
	warmInvoke(b, rt, s)
}
