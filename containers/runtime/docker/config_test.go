package docker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-gpu/sluice/containers/runtime"
)

// TestContainerConfigGPU checks the GPU paths of the container configuration
// without an engine: real GPUs through DeviceRequests when the NVIDIA runtime
// is installed, a clear ErrNotSupported when neither it nor the emulated GPU
// is available.
func TestContainerConfigGPU(t *testing.T) {
	dir := t.TempDir()
	shim := filepath.Join(dir, "libsluice.so")
	os.WriteFile(shim, []byte("stand-in"), 0o644)
	s := runtime.Spec{Function: "g", Image: "i", GPU: true, GPUUUIDs: []string{"GPU-1234"}}

	r := &Runtime{cfg: Config{Instance: "x", GPU: runtime.GPUConfig{Shim: shim}}, nvidia: true}
	cfg, hc, err := r.containerConfig(s, dir)
	if err != nil {
		t.Fatalf("nvidia config: %v", err)
	}
	reqs := hc.Resources.DeviceRequests
	if len(reqs) != 1 || reqs[0].Driver != "nvidia" || !slices.Equal(reqs[0].DeviceIDs, []string{"GPU-1234"}) {
		t.Errorf("device requests %+v, want the nvidia driver with GPU-1234", reqs)
	}
	if !slices.Contains(cfg.Env, "LD_PRELOAD=/opt/sluice/shim/libsluice.so") || slices.ContainsFunc(cfg.Env, func(e string) bool {
		return len(e) > 16 && e[:16] == "LD_LIBRARY_PATH="
	}) {
		t.Errorf("env %v: want the shim preloaded and no fake driver path", cfg.Env)
	}

	r.nvidia = false
	if _, _, err := r.containerConfig(s, dir); !errors.Is(err, runtime.ErrNotSupported) {
		t.Errorf("no GPU available: got %v, want ErrNotSupported", err)
	}
	r.cfg.GPU.Shim = ""
	r.nvidia = true
	if _, _, err := r.containerConfig(s, dir); !errors.Is(err, runtime.ErrNotSupported) {
		t.Errorf("no shim: got %v, want ErrNotSupported", err)
	}
	s.GPU = false
	_, hc, err = r.containerConfig(s, dir)
	if err != nil || len(hc.Resources.DeviceRequests) != 0 || len(hc.Mounts) != 1 {
		t.Errorf("cpu function: %v, devices %v, mounts %v; want no GPU and only the instance dir", err, hc.Resources.DeviceRequests, hc.Mounts)
	}
}
