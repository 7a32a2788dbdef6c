package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/runtimetest"
	"github.com/sluice-gpu/sluice/internal/dockertest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// testImage builds (once per test binary) an image holding testfn, labelled
// with a per-run instance label, and removes it when the test ends.
var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

func testImage(t *testing.T, cli *client.Client) string {
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-testfn")
		if err != nil {
			imageErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := runtimetest.BuildTestFunction(t, dir)
		rfs := image.NewRootfs()
		if imageErr = rfs.AddELF("/fn/testfn", bin); imageErr != nil {
			return
		}
		label := "t" + runtime.RandomSuffix(4)
		imageRef = "sluice-test/testfn:" + label
		_, imageErr = image.Import(context.Background(), cli, rfs, imageRef, image.Config{
			Cmd: []string{"/fn/testfn"}, Labels: map[string]string{runtime.LabelInstance: label}})
	})
	if imageErr != nil {
		t.Fatalf("build test image: %v", imageErr)
	}
	return imageRef
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imageRef != "" {
		if cli, err := client.New(client.FromEnv); err == nil {
			_ = image.Remove(context.Background(), cli, imageRef)
			cli.Close()
		}
	}
	os.Exit(code)
}

// stateDir is short: Unix socket paths must stay under 108 bytes.
func stateDir(t *testing.T) string { return testenv.ShortDir(t, "sld") }

func newRuntime(t *testing.T, cli *client.Client, instance, dir string, gpu runtime.GPUConfig) *Runtime {
	t.Helper()
	rt, err := New(context.Background(), Config{Instance: instance, StateDir: dir, Client: cli, GPU: gpu})
	if err != nil {
		t.Fatalf("new docker runtime: %v", err)
	}
	t.Cleanup(func() {
		// Remove whatever this test's label still has (never other labels).
		_, _ = runtime.Recover(context.Background(), rt)
		rt.Close()
	})
	return rt
}

func TestConformance(t *testing.T) {
	cli := dockertest.Client(t)
	ref := testImage(t, cli)
	dir := stateDir(t)
	runtimetest.Run(t, runtimetest.Fixture{
		New: func(t *testing.T, instance string) runtime.Runtime {
			return newRuntime(t, cli, instance, dir, runtime.GPUConfig{})
		},
		Spec: func(fn string) runtime.Spec {
			return runtime.Spec{Function: fn, Image: ref, MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 64}
		},
		Sandboxed: true,
	})
}

// TestSecuritySettings checks the security defaults by inspecting the container.
func TestSecuritySettings(t *testing.T) {
	cli := dockertest.Client(t)
	ref := testImage(t, cli)
	label := "t" + runtime.RandomSuffix(6)
	rt := newRuntime(t, cli, label, stateDir(t), runtime.GPUConfig{})
	in := runtimetest.StartInstance(t, rt, runtime.Spec{Function: "sec", Generation: 3, Image: ref,
		MemoryBytes: 96 << 20, CPUs: 0.25, Pids: 40})
	res, err := cli.ContainerInspect(context.Background(), string(in.ID), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	c := res.Container
	hc := c.HostConfig
	if hc.NetworkMode != "none" {
		t.Errorf("network mode %q, want none", hc.NetworkMode)
	}
	if len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" {
		t.Errorf("cap drop %v, want [ALL]", hc.CapDrop)
	}
	if len(hc.CapAdd) != 0 || hc.Privileged {
		t.Errorf("cap add %v privileged %v, want none", hc.CapAdd, hc.Privileged)
	}
	if len(hc.SecurityOpt) != 1 || hc.SecurityOpt[0] != "no-new-privileges" {
		t.Errorf("security opts %v, want [no-new-privileges]", hc.SecurityOpt)
	}
	if !hc.ReadonlyRootfs {
		t.Errorf("root filesystem is writable")
	}
	if _, ok := hc.Tmpfs["/tmp"]; !ok {
		t.Errorf("no tmpfs /tmp: %v", hc.Tmpfs)
	}
	if hc.Memory != 96<<20 || hc.NanoCPUs != 250_000_000 || hc.PidsLimit == nil || *hc.PidsLimit != 40 {
		t.Errorf("limits: memory %d nanocpus %d pids %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit)
	}
	if c.Config.User != "65534:65534" {
		t.Errorf("user %q, want the image's 65534:65534", c.Config.User)
	}
	for k, want := range map[string]string{runtime.LabelManaged: "1", runtime.LabelInstance: label,
		runtime.LabelFunction: "sec", runtime.LabelGeneration: "3"} {
		if got := c.Config.Labels[k]; got != want {
			t.Errorf("label %s=%q, want %q", k, got, want)
		}
	}
	// The image's non-root user applies when the spec names none.
	if id := runtimetest.Call(t, in, map[string]any{"op": "id"}); id["uid"] != 65534.0 {
		t.Errorf("uid %v, want 65534 (the image's user)", id["uid"])
	}
}

func TestNetworkOnRequest(t *testing.T) {
	cli := dockertest.Client(t)
	rt := newRuntime(t, cli, "t"+runtime.RandomSuffix(6), stateDir(t), runtime.GPUConfig{})
	in := runtimetest.StartInstance(t, rt, runtime.Spec{Function: "net", Image: testImage(t, cli), Network: true})
	n := runtimetest.Call(t, in, map[string]any{"op": "net"})
	if ifs, _ := n["interfaces"].([]any); len(ifs) < 2 {
		t.Errorf("interfaces with network requested: %v, want lo and eth0", n["interfaces"])
	}
}

func TestMissingImage(t *testing.T) {
	cli := dockertest.Client(t)
	rt := newRuntime(t, cli, "t"+runtime.RandomSuffix(6), stateDir(t), runtime.GPUConfig{})
	_, err := rt.Create(context.Background(), runtime.Spec{Function: "nope", Image: "sluice-test/does-not-exist:1"})
	if !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("create with a missing image: got %v, want ErrNotFound", err)
	}
}

// TestGPUInjectionEmulated checks what a GPU function's container gets in
// emulated mode: the shim and fake driver directories mounted read-only,
// LD_PRELOAD, the sockets and framework settings. The files are stand-ins
// (the test function is static, so the loader ignores LD_PRELOAD); the real
// shim and driver run in TestGPUMatmulEmulated.
func TestGPUInjectionEmulated(t *testing.T) {
	cli := dockertest.Client(t)
	art := t.TempDir()
	os.MkdirAll(filepath.Join(art, "fakecuda"), 0o755)
	os.WriteFile(filepath.Join(art, "libsluice.so"), []byte("stand-in"), 0o644)
	os.WriteFile(filepath.Join(art, "fakecuda", "libcuda.so.1"), []byte("stand-in"), 0o644)
	gpu := runtime.GPUConfig{Shim: filepath.Join(art, "libsluice.so"), FakeCUDA: filepath.Join(art, "fakecuda", "libcuda.so.1"),
		FakeCUDADevice: filepath.Join(art, "dev", "gpu0")}
	rt := newRuntime(t, cli, "t"+runtime.RandomSuffix(6), stateDir(t), gpu)
	in := runtimetest.StartInstance(t, rt, runtime.Spec{Function: "gpu", Image: testImage(t, cli), GPU: true})
	for name, want := range map[string]string{
		"LD_PRELOAD":                    "/opt/sluice/shim/libsluice.so",
		runtime.EnvShimSocket:           "/run/sluice/shim.sock",
		runtime.EnvFakeCUDADevice:       "/run/sluice-gpu/gpu0",
		"LD_LIBRARY_PATH":               "/opt/sluice/fakecuda",
		"PYTORCH_CUDA_ALLOC_CONF":       "expandable_segments:False",
		"TF_FORCE_GPU_ALLOW_GROWTH":     "true",
		"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
	} {
		if got := runtimetest.Call(t, in, map[string]any{"op": "env", "name": name}); got["value"] != want {
			t.Errorf("%s=%v, want %q", name, got["value"], want)
		}
	}
	for _, p := range []string{"/opt/sluice/shim/x", "/opt/sluice/fakecuda/x"} {
		if w := runtimetest.Call(t, in, map[string]any{"op": "write", "path": p}); w["ok"] != false {
			t.Errorf("write to %s succeeded: the mount must be read-only", p)
		}
	}
	res, err := cli.ContainerInspect(context.Background(), string(in.ID), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, m := range res.Container.Mounts {
		if m.Destination == "/opt/sluice/shim" || m.Destination == "/opt/sluice/fakecuda" {
			found++
			if m.RW {
				t.Errorf("mount %s is writable", m.Destination)
			}
		}
	}
	if found != 2 {
		t.Errorf("shim and fake driver mounts: found %d, want 2", found)
	}
}

// TestOOMKilledReported checks that an instance killed by its memory limit
// is reported as such on the exit channel.
func TestOOMKilledReported(t *testing.T) {
	cli := dockertest.Client(t)
	rt := newRuntime(t, cli, "t"+runtime.RandomSuffix(6), stateDir(t), runtime.GPUConfig{})
	in := runtimetest.StartInstance(t, rt, runtime.Spec{Function: "oom", Image: testImage(t, cli), MemoryBytes: 32 << 20})
	if _, err := in.Client.Invoke(context.Background(), []byte(`{"op":"alloc","ms":256}`)); err == nil {
		t.Fatalf("allocating 256 MiB under a 32 MiB limit succeeded")
	}
	select {
	case ex := <-in.Exit:
		if !ex.OOMKilled || ex.Code != 137 {
			t.Errorf("exit %+v (%s), want OOMKilled with status 137", ex, ex)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after the memory limit was hit")
	}
}
