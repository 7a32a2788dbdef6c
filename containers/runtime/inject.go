package runtime

import (
	"fmt"
	"os"
	"path/filepath"
)

// GPUConfig says how GPU functions get the shim and a GPU.
type GPUConfig struct {
	// Shim is the host path of libsluice.so (built into build/libsluice.so).
	// Required for GPU functions: without it they fail with ErrNotSupported.
	Shim string
	// FakeCUDA is the host path of the fake driver (build/fakecuda/libcuda.so.1).
	// Test and demo infrastructure: when set, GPU functions get the emulated
	// GPU instead of a real one.
	FakeCUDA string
	// FakeCUDADevice is the emulated GPU's shared device file. Default
	// FAKECUDA_DEVICE_FILE from the daemon's environment, else the fake
	// driver's default, /dev/shm/sluice-fakecuda-gpu0.
	FakeCUDADevice string
}

// Emulated reports whether GPU functions get the emulated GPU.
func (g GPUConfig) Emulated() bool { return g.FakeCUDA != "" }

// DeviceFile returns the emulated device file path with its default applied.
func (g GPUConfig) DeviceFile() string {
	switch {
	case g.FakeCUDADevice != "":
		return g.FakeCUDADevice
	case os.Getenv("FAKECUDA_DEVICE_FILE") != "":
		return os.Getenv("FAKECUDA_DEVICE_FILE")
	}
	return "/dev/shm/sluice-fakecuda-gpu0"
}

// Check validates the paths for a GPU instance.
func (g GPUConfig) Check() error {
	if g.Shim == "" {
		return fmt.Errorf("gpu function: no shim configured: %w", ErrNotSupported)
	}
	if st, err := os.Stat(g.Shim); err != nil || st.IsDir() {
		return fmt.Errorf("gpu function: shim %s: %w", g.Shim, ErrNotFound)
	}
	if g.FakeCUDA != "" {
		if _, err := os.Stat(g.FakeCUDA); err != nil {
			return fmt.Errorf("gpu function: fake driver %s: %w", g.FakeCUDA, ErrNotFound)
		}
		if err := ensureDeviceFile(g.DeviceFile()); err != nil {
			return fmt.Errorf("gpu function: emulated device file: %w", err)
		}
	}
	return nil
}

// ensureDeviceFile creates the emulated device file, empty, if it is missing
// (the fake driver initialises an empty file on first use), so it can be
// bind-mounted, and makes it writable by functions running as any user.
func ensureDeviceFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm() != 0o666 {
		return f.Chmod(0o666)
	}
	return nil
}

// FrameworkEnv are the settings that keep ML frameworks on the allocation
// paths the shim turns into unified memory (cuda-shim.md section 4).
func FrameworkEnv() map[string]string {
	return map[string]string{
		"PYTORCH_CUDA_ALLOC_CONF":       "expandable_segments:False",
		"PYTORCH_ALLOC_CONF":            "expandable_segments:False",
		"TF_FORCE_GPU_ALLOW_GROWTH":     "true",
		"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
		"NCCL_CUMEM_ENABLE":             "0",
	}
}

// Environment variable names the backends set.
const (
	EnvShimSocket     = "SLUICE_SOCKET"
	EnvFunction       = "SLUICE_FUNCTION"
	EnvFakeCUDADevice = "FAKECUDA_DEVICE_FILE"
)
