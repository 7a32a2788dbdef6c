package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/containers/runtime/runtimetest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// binaries holds the test function, built once for the package's tests.
var binaries testenv.Binaries

func TestMain(m *testing.M) {
	code := m.Run()
	binaries.Remove()
	os.Exit(code)
}

func testFunction(t *testing.T) string {
	return binaries.Get(t, "testfn", func(dir string) string { return runtimetest.BuildTestFunction(t, dir) })
}

// stateDir is short: Unix socket paths must stay under 108 bytes.
func stateDir(t *testing.T) string { return testenv.ShortDir(t, "slp") }

func TestConformance(t *testing.T) {
	bin := testFunction(t)
	dir := stateDir(t)
	runtimetest.Run(t, runtimetest.Fixture{
		New: func(t *testing.T, instance string) runtime.Runtime {
			rt, err := process.New(process.Config{Instance: instance, StateDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			return rt
		},
		Spec: func(fn string) runtime.Spec {
			return runtime.Spec{Function: fn, Command: []string{bin}}
		},
	})
}

func TestCreateRejects(t *testing.T) {
	rt, err := process.New(process.Config{Instance: "rej", StateDir: stateDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec runtime.Spec
		want error
	}{
		{"openwhisk", runtime.Spec{Function: "ow", Command: []string{"/bin/true"}, Protocol: protocol.KindOpenWhisk}, runtime.ErrNotSupported},
		{"no command", runtime.Spec{Function: "x"}, runtime.ErrInvalid},
		{"missing binary", runtime.Spec{Function: "x", Command: []string{"/nonexistent/fn"}}, runtime.ErrNotFound},
		{"gpu without shim", runtime.Spec{Function: "g", Command: []string{"/bin/true"}, GPU: true}, runtime.ErrNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := rt.Create(context.Background(), tc.spec); !errors.Is(err, tc.want) {
				t.Errorf("create: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestGPUInjection(t *testing.T) {
	bin := testFunction(t)
	dir := t.TempDir()
	shim := dir + "/libsluice.so"
	fake := dir + "/fakecuda/libcuda.so.1"
	os.MkdirAll(dir+"/fakecuda", 0o755)
	os.WriteFile(shim, nil, 0o644) // an empty file: the test function is static, LD_PRELOAD is not loaded
	os.WriteFile(fake, nil, 0o644)
	rt, err := process.New(process.Config{Instance: "gpu", StateDir: stateDir(t), GPU: runtime.GPUConfig{
		Shim: shim, FakeCUDA: fake, FakeCUDADevice: dir + "/dev/gpu0"}})
	if err != nil {
		t.Fatal(err)
	}
	in := runtimetest.StartInstance(t, rt, runtime.Spec{Function: "gpufn", Command: []string{bin}, GPU: true})
	idir, _ := rt.Dir(in.ID)
	for name, want := range map[string]string{
		"LD_PRELOAD":                    shim,
		runtime.EnvShimSocket:           idir + "/" + runtime.ShimSocketName,
		runtime.EnvFakeCUDADevice:       dir + "/dev/gpu0",
		"LD_LIBRARY_PATH":               dir + "/fakecuda",
		"PYTORCH_CUDA_ALLOC_CONF":       "expandable_segments:False",
		"TF_FORCE_GPU_ALLOW_GROWTH":     "true",
		"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
	} {
		got := runtimetest.Call(t, in, map[string]any{"op": "env", "name": name})
		if got["value"] != want {
			t.Errorf("%s: got %v, want %q", name, got["value"], want)
		}
	}
}

// TestLimitsAppliedFromTheStart runs a function with a memory limit (and, as
// root, as another user, where the daemon could not prlimit it afterwards)
// and reads its limits and identity from /proc.
func TestLimitsAppliedFromTheStart(t *testing.T) {
	bin := testFunction(t)
	if os.Geteuid() == 0 {
		// The function runs as nobody: it must be able to exec the binary.
		if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := stateDir(t)
	if err := os.Chmod(dir, 0o711); err != nil { // traversable by the function's user
		t.Fatal(err)
	}
	rt, err := process.New(process.Config{Instance: "lim", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	spec := runtime.Spec{Function: "lim", Command: []string{bin}, MemoryBytes: 64 << 20}
	if os.Geteuid() == 0 {
		spec.User = "65534:65534"
	}
	in := runtimetest.StartInstance(t, rt, spec)
	got := runtimetest.Call(t, in, map[string]any{"op": "echo", "x": 1.0})
	if got["x"] != 1.0 {
		t.Fatalf("echo under limits: %v", got)
	}
	pid := instancePID(t, rt, in.ID)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	wantAS := strconv.FormatUint(4*(64<<20)+4<<30, 10)
	for _, want := range [][]string{
		{"Max core file size", "0", "0"},
		{"Max address space", wantAS, wantAS},
	} {
		if !hasLimit(string(limits), want) {
			t.Errorf("/proc/%d/limits lacks %q:\n%s", pid, want, limits)
		}
	}
	if spec.User != "" {
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if !strings.Contains(string(status), "\nUid:\t65534\t65534\t65534\t65534\n") {
			t.Errorf("function does not run as uid 65534:\n%s", status)
		}
	}
}

func hasLimit(limits string, want []string) bool {
	for _, line := range strings.Split(limits, "\n") {
		if rest, ok := strings.CutPrefix(line, want[0]); ok {
			f := strings.Fields(rest)
			return len(f) >= 2 && f[0] == want[1] && f[1] == want[2]
		}
	}
	return false
}

func instancePID(t *testing.T, rt *process.Runtime, id runtime.ID) int {
	t.Helper()
	dir, err := rt.Dir(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/instance.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 {
		t.Fatalf("instance.json %s: pid %d, %v", b, rec.PID, err)
	}
	return rec.PID
}
