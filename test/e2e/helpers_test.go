//go:build linux

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/cgo/shimctl"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/spec"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// Emulated-GPU settings (the fake driver reads them per process; see
// docs/FAKECUDA.md). queueAtSubmission runs every operation at submission,
// so the emulated GPU's per-process kernel count says where the function is
// and the shim's control thread is not queued behind the function's work.
// slowKernels adds a slow emulated fp32 rate: each 64x64 matmul kernel then
// lasts ~105 ms of modelled (slept, not computed) time, so an invocation can
// be kept busy for seconds at almost no CPU.
var (
	queueAtSubmission = map[string]string{"FAKECUDA_QUEUE_DEPTH": "0"}
	slowKernels       = map[string]string{"FAKECUDA_QUEUE_DEPTH": "0", "FAKECUDA_TFLOPS": "0.000005"}
)

// gpuArtifacts are the built pieces a GPU function needs.
type gpuArtifacts struct {
	shim, fake, matmul string
}

func needArtifacts(t testing.TB) gpuArtifacts {
	t.Helper()
	return gpuArtifacts{
		shim:   testenv.Artifact(t, "libsluice.so"),
		fake:   testenv.Artifact(t, "fakecuda/libcuda.so.1"),
		matmul: testenv.Artifact(t, "gpu-matmul"),
	}
}

// gpuConfig gives instances the real shim and the emulated GPU, on a device
// file of the test's own.
func (a gpuArtifacts) gpuConfig(t testing.TB) runtime.GPUConfig {
	return runtime.GPUConfig{Shim: a.shim, FakeCUDA: a.fake, FakeCUDADevice: filepath.Join(shortDir(t), "gpu0")}
}

// matmulFunction loads the gpu-matmul example's spec under another name (so
// the name the shim reports provably comes from the instance's spec).
func matmulFunction(t testing.TB, name, binary string) *spec.Function {
	t.Helper()
	f, err := spec.Load(filepath.Join(testenv.RepoRoot(t), "containers", "functions", "gpu-matmul"))
	if err != nil {
		t.Fatal(err)
	}
	f.Name = name
	f.Build.Binary = binary
	return f
}

// withEnv returns s with extra environment.
func withEnv(s pool.Spec, extra map[string]string) pool.Spec {
	env := make(map[string]string, len(s.Env)+len(extra))
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	s.Env = env
	return s
}

// shortDir is a fresh directory with a short path (Unix socket paths are
// limited to 107 bytes), traversable by the unprivileged uid functions run
// as, removed at the end of the test.
func shortDir(t testing.TB) string {
	t.Helper()
	d := testenv.ShortDir(t, "sle2e")
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// testLogger logs to the test (benchmarks discard). Lines logged by
// goroutines after the test's cleanup began are dropped: t.Log would panic.
func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log lines to t.Log (shown on failure or with -v).
type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

// shimRuntime is a runtime.Runtime that plays the daemon's side of the shim
// control channel: once the backend has created an instance (and with it the
// instance directory it mounts at /run/sluice), it listens on the shim
// socket there, before the function starts, as the live daemon does. Each
// instance gets its own shimctl server; Remove stops it.
type shimRuntime struct {
	runtime.Runtime
	log *slog.Logger

	mu      sync.Mutex
	servers map[runtime.ID]*shimServer
}

type shimServer struct {
	srv      *shimctl.Server
	path     string
	cancel   context.CancelFunc
	served   chan error
	sessions chan registration
}

// registration is a session and when it registered.
type registration struct {
	s  *shimctl.Session
	at time.Time
}

func newShimRuntime(t testing.TB, rt runtime.Runtime) *shimRuntime {
	r := &shimRuntime{Runtime: rt, log: testLogger(t), servers: make(map[runtime.ID]*shimServer)}
	t.Cleanup(r.stopAll)
	return r
}

// Create creates the instance and starts listening on its shim socket.
func (r *shimRuntime) Create(ctx context.Context, s runtime.Spec) (runtime.ID, error) {
	id, err := r.Runtime.Create(ctx, s)
	if err != nil {
		return id, err
	}
	dir, err := r.Runtime.Dir(id)
	if err == nil {
		err = r.listen(id, filepath.Join(dir, runtime.ShimSocketName))
	}
	if err != nil {
		if rerr := r.Runtime.Remove(ctx, id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return "", fmt.Errorf("shim socket of %s: %w", s.Function, err)
	}
	return id, nil
}

func (r *shimRuntime) listen(id runtime.ID, path string) error {
	ss := &shimServer{path: path, served: make(chan error, 1), sessions: make(chan registration, 8)}
	srv, err := shimctl.Listen(shimctl.Config{
		Path:      path,
		Logger:    r.log.With("instance", shortID(id)),
		OnSession: func(s *shimctl.Session) { ss.sessions <- registration{s, time.Now()} },
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss.srv, ss.cancel = srv, cancel
	go func() { ss.served <- srv.Serve(ctx) }()
	r.mu.Lock()
	r.servers[id] = ss
	r.mu.Unlock()
	return nil
}

// Remove removes the instance, then stops its shim server.
func (r *shimRuntime) Remove(ctx context.Context, id runtime.ID) error {
	err := r.Runtime.Remove(ctx, id)
	r.mu.Lock()
	ss := r.servers[id]
	delete(r.servers, id)
	r.mu.Unlock()
	if ss != nil {
		ss.stop()
	}
	return err
}

func (ss *shimServer) stop() {
	ss.cancel()
	<-ss.served
}

func (r *shimRuntime) stopAll() {
	r.mu.Lock()
	servers := r.servers
	r.servers = make(map[runtime.ID]*shimServer)
	r.mu.Unlock()
	for _, ss := range servers {
		ss.stop()
	}
}

func (r *shimRuntime) server(t testing.TB, id runtime.ID) *shimServer {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.servers[id]
	if ss == nil {
		t.Fatalf("no shim server for instance %s", shortID(id))
	}
	return ss
}

// session waits for the instance's shim to register.
func (r *shimRuntime) session(t testing.TB, id runtime.ID, within time.Duration) *shimctl.Session {
	t.Helper()
	return r.registration(t, id, within).s
}

func (r *shimRuntime) registration(t testing.TB, id runtime.ID, within time.Duration) registration {
	t.Helper()
	ss := r.server(t, id)
	select {
	case reg := <-ss.sessions:
		return reg
	case <-time.After(within):
		t.Fatalf("the shim of instance %s did not register on %s within %v", shortID(id), ss.path, within)
	}
	return registration{}
}

func shortID(id runtime.ID) string {
	if len(id) > 12 {
		return string(id[:12])
	}
	return string(id)
}

// matmulResult is gpu-matmul's answer (containers/functions/gpu-matmul/PROGRAM.md).
type matmulResult struct {
	Program   string  `json:"program"`
	Emulated  bool    `json:"emulated"`
	MB        int64   `json:"mb"`
	Iters     int64   `json:"iters"`
	N         int64   `json:"n"`
	OK        bool    `json:"ok"`
	MaxAbsErr float64 `json:"max_abs_err"`
	BufferOK  bool    `json:"buffer_ok"`
	Error     string  `json:"error"`
}

// matmulArgs is one invocation's request.
type matmulArgs struct {
	MB    int64 `json:"mb"`
	Iters int64 `json:"iters"`
	N     int64 `json:"n"`
}

// bytes is what one invocation allocates: A, B and C (n x n fp32) and the
// MB buffer, each with cuMemAlloc_v2.
func (a matmulArgs) bytes() uint64 { return uint64(3*a.N*a.N*4) + uint64(a.MB)<<20 }

// populated is the bytes the shim prefetches to the GPU when one invocation
// allocates: each converted range of 2 MiB or more is placed there at once
// (SLUICE_POPULATE, docs/SHIM.md).
func (a matmulArgs) populated() uint64 {
	var n uint64
	for _, b := range []uint64{uint64(a.N * a.N * 4), uint64(a.N * a.N * 4), uint64(a.N * a.N * 4), uint64(a.MB) << 20} {
		if b >= 2<<20 {
			n += b
		}
	}
	return n
}

// htod and dtoh are the bytes one invocation copies: A and B in; C and the
// probed tail of the buffer (at most 4096 floats) out.
func (a matmulArgs) htod() uint64 { return uint64(2 * a.N * a.N * 4) }

func (a matmulArgs) dtoh() uint64 {
	probe := min(a.MB<<20/4, 4096)
	return uint64(a.N*a.N*4 + probe*4)
}

// invokeMatmul runs one invocation through the pool and checks that the
// function computed the right result on the emulated GPU.
func invokeMatmul(ctx context.Context, p *pool.Pool, id runtime.ID, a matmulArgs) (matmulResult, error) {
	body, _ := json.Marshal(a)
	out, err := p.Invoke(ctx, id, body)
	if err != nil {
		return matmulResult{}, fmt.Errorf("invoke %s: %w", shortID(id), err)
	}
	var r matmulResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("decode %q: %w", out, err)
	}
	if !r.OK || !r.BufferOK || r.MaxAbsErr != 0 || !r.Emulated || r.N != a.N || r.Iters != a.Iters || r.MB != a.MB {
		return r, fmt.Errorf("wrong answer for %+v: %s", a, out)
	}
	return r, nil
}

// eventually polls cond every 5 ms until it holds or within passes.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procCgroup returns /proc/PID/cgroup.
func procCgroup(pid int32) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	return string(b), err
}
