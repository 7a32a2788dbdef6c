package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/containers/spec"
	"github.com/sluice-gpu/sluice/internal/dockertest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// gpuSetup loads gpu-matmul (which serves the function protocol itself, see
// gpu-matmul/PROGRAM.md) with the real shim and the fake driver (test
// infrastructure: the emulated GPU) from the build directory.
func gpuSetup(t *testing.T) (*spec.Function, runtime.GPUConfig) {
	shim := testenv.Artifact(t, "libsluice.so")
	fake := testenv.Artifact(t, "fakecuda/libcuda.so.1")
	bin := testenv.Artifact(t, "gpu-matmul")
	f, err := spec.Load("gpu-matmul")
	if err != nil {
		t.Fatal(err)
	}
	f.Build.Binary = bin
	dev := filepath.Join(shortDir(t), "gpu0")
	return f, runtime.GPUConfig{Shim: shim, FakeCUDA: fake, FakeCUDADevice: dev}
}

// checkDeviceFile checks the instance attached to the shared emulated device:
// the fake driver initialised the device file (magic "SLEG", see
// docs/FAKECUDA.md) that Sluice created empty.
func checkDeviceFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("device file: %v", err)
	}
	if len(b) < 4 || string(b[:4]) != "SLEG" {
		t.Errorf("device file %s not initialised by the function (%d bytes): the emulated GPU is not shared", path, len(b))
	}
}

func invokeGPU(t *testing.T, p *pool.Pool, s pool.Spec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, err := p.Start(ctx, s)
	if err != nil {
		t.Fatalf("start gpu-matmul: %v", err)
	}
	for i := range 2 {
		out, err := p.Invoke(ctx, id, []byte(`{"mb":4,"iters":2,"n":32}`))
		if err != nil {
			t.Fatalf("invocation %d of gpu-matmul on the emulated GPU: %v", i, err)
		}
		var res struct {
			OK       bool `json:"ok"`
			Emulated bool `json:"emulated"`
		}
		if err := json.Unmarshal(out, &res); err != nil || !res.OK || !res.Emulated {
			t.Errorf("invocation %d: %s (%v), want ok and emulated", i, out, err)
		}
	}
}

func TestGPUMatmulEmulatedDocker(t *testing.T) {
	cli := dockertest.Client(t)
	f, gpu := gpuSetup(t)
	label := "t" + runtime.RandomSuffix(6)
	buildImage(t, cli, f, "gpu-matmul", label)
	p := dockerPool(t, cli, label, gpu)
	invokeGPU(t, p, pool.FromFunction(f, runtime.FromFunction(f, 1)))
	checkDeviceFile(t, gpu.FakeCUDADevice)
}

func TestGPUMatmulEmulatedProcess(t *testing.T) {
	f, gpu := gpuSetup(t)
	dir := shortDir(t)
	rt, err := process.New(process.Config{Instance: "gpu", StateDir: dir, GPU: gpu})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := runtime.FromFunctionHost(f, 1, spec.HostRuntimes{})
	if err != nil {
		t.Fatal(err)
	}
	p := pool.New(rt, pool.Config{})
	t.Cleanup(func() { p.Close(context.Background()) })
	invokeGPU(t, p, pool.FromFunction(f, rs))
	checkDeviceFile(t, gpu.FakeCUDADevice)
}
