//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/docker"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/containers/spec"
	"github.com/sluice-gpu/sluice/internal/dockertest"
)

// label marks everything this run of the package creates in Docker
// (containers through the runtime's instance label, the image through its
// tag and label), so cleanup removes exactly that.
var label = "e2e" + runtime.RandomSuffix(5)

// The gpu-matmul image is built once per run (it does not depend on the
// function's name) and removed by TestMain.
var matmulImage struct {
	once sync.Once
	ref  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if matmulImage.ref != "" {
		if err := removeImage(matmulImage.ref); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove image %s: %v\n", matmulImage.ref, err)
			code = 1
		}
	}
	os.Exit(code)
}

func removeImage(ref string) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	return image.Remove(context.Background(), cli, ref)
}

// buildMatmulImage builds (once) the image of gpu-matmul and sets f.Image.
func buildMatmulImage(t testing.TB, cli *client.Client, f *spec.Function) {
	t.Helper()
	matmulImage.once.Do(func() {
		ref := "sluice-test/e2e-gpu-matmul:" + label
		g := *f
		g.Image = ref
		_, matmulImage.err = image.Build(t.Context(), cli, &g, map[string]string{runtime.LabelInstance: label})
		if matmulImage.err == nil {
			matmulImage.ref = ref
		}
	})
	if matmulImage.err != nil {
		t.Fatalf("build gpu-matmul image: %v", matmulImage.err)
	}
	f.Image = matmulImage.ref
}

// dockerSetup returns a Docker backend (labelled with this run's label plus
// the test's suffix) with the shim and the emulated GPU, the function spec
// of gpu-matmul named name, and the device file.
func dockerSetup(t testing.TB, name string) (*docker.Runtime, pool.Spec, string) {
	t.Helper()
	cli := dockertest.Client(t)
	art := needArtifacts(t)
	f := matmulFunction(t, name, art.matmul)
	buildMatmulImage(t, cli, f)
	gpu := art.gpuConfig(t)
	inst := label + runtime.RandomSuffix(3)
	rt, err := docker.New(t.Context(), docker.Config{Instance: inst, StateDir: shortDir(t), Client: cli, GPU: gpu, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left behind, by label only.
		if n, err := runtime.Recover(context.Background(), rt); err != nil || n != 0 {
			t.Logf("removed %d leftover containers (%v)", n, err)
		}
		rt.Close()
	})
	return rt, pool.FromFunction(f, runtime.FromFunction(f, 1)), gpu.DeviceFile()
}

// processSetup is dockerSetup for the process backend.
func processSetup(t testing.TB, name string) (*process.Runtime, pool.Spec, string, uint32) {
	t.Helper()
	art := needArtifacts(t)
	f := matmulFunction(t, name, art.matmul)
	gpu := art.gpuConfig(t)
	rt, err := process.New(process.Config{Instance: label, StateDir: shortDir(t), GPU: gpu, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	rs, err := runtime.FromFunctionHost(f, 1, spec.HostRuntimes{})
	if err != nil {
		t.Fatal(err)
	}
	// The function runs as the test's own uid: with another user the
	// backend's prlimit(RLIMIT_CORE) on the child needs CAP_SYS_RESOURCE,
	// which root lacks on this dev box and CI (reported to the lead).
	return rt, pool.FromFunction(f, rs), gpu.DeviceFile(), uint32(os.Geteuid())
}

// TestShimControlDocker: gpu-matmul in a Docker container (uid 65534,
// read-only root, no network) on the emulated GPU; the test is the daemon
// on the shim socket the backend mounts at /run/sluice/shim.sock.
func TestShimControlDocker(t *testing.T) {
	rt, s, dev := dockerSetup(t, "e2e-shim-docker")
	testShimControl(t, newShimRuntime(t, rt), withEnv(s, queueAtSubmission), dev, checkDockerIdentity)
}

// TestShimControlProcess: the same through the process backend.
func TestShimControlProcess(t *testing.T) {
	rt, s, dev, uid := processSetup(t, "e2e-shim-process")
	srt := newShimRuntime(t, rt)
	testShimControl(t, srt, withEnv(s, queueAtSubmission), dev, processIdentity(srt, uid))
}
