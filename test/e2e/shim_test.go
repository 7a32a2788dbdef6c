//go:build linux

package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/cgo/shimctl"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/emugpu"
)

// Invocations of the shim-control scenario: a quick one whose usage is
// checked exactly afterwards, a long one during which the memory is evicted
// and prefetched, and a quick one afterwards. The long one's window: after
// its last kernel, gpu-matmul checks C against a CPU matmul (n=1024: a few
// hundred ms of CPU) while A, B, C and the buffer are still allocated and no
// kernel runs, so nothing faults the memory back behind the test's back.
var (
	quickArgs = matmulArgs{MB: 4, Iters: 1, N: 32}
	longArgs  = matmulArgs{MB: 8, Iters: 1, N: 1024}
)

// commandCount counts the memory commands that reached the shim, the bytes
// their results say they moved, and how many moved any.
type commandCount struct{ evictions, prefetches, bytes, moving uint64 }

func (c *commandCount) add(r shimctl.Result) {
	switch r.Op {
	case shimctl.OpEvictHost:
		c.evictions++
	case shimctl.OpPrefetchDevice:
		c.prefetches++
	}
	c.bytes += r.Bytes
	if r.Bytes > 0 {
		c.moving++
	}
}

// evictPrefetchRetrying runs evictPrefetchMidInvocation until it catches
// its window, at most three times, and returns the commands sent and the
// long invocations made.
func evictPrefetchRetrying(ctx context.Context, t *testing.T, p *pool.Pool, sess *shimctl.Session, id runtime.ID, devFile string) (commandCount, int) {
	t.Helper()
	var cmds commandCount
	for attempt := 1; ; attempt++ {
		if evictPrefetchMidInvocation(ctx, t, p, sess, id, devFile, &cmds) {
			return cmds, attempt
		}
		if attempt == 3 {
			t.Fatalf("in %d attempts the function never held its memory long enough for evict and prefetch", attempt)
		}
	}
}

// evictPrefetchMidInvocation runs longArgs and, in the window after its last
// kernel, evicts and prefetches its memory, checking the command results
// against the emulated GPU's accounting. It returns false (after checking
// the invocation's result) when the function freed its memory before both
// commands were done: a race with the machine's load, to be retried.
func evictPrefetchMidInvocation(ctx context.Context, t *testing.T, p *pool.Pool, sess *shimctl.Session, id runtime.ID, devFile string, cmds *commandCount) bool {
	t.Helper()
	start, err := emuProcOf(devFile, sess.ClaimedPID)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := invokeMatmul(ctx, p, id, longArgs)
		done <- err
	}()
	var finished bool
	wait := func() {
		if finished {
			return
		}
		finished = true
		if err := <-done; err != nil {
			t.Fatalf("invocation across evict and prefetch: %v", err)
		}
	}
	want := longArgs.bytes()
	var before emugpu.Proc
	inWindow := eventually(20*time.Second, func() bool {
		u, _ := sess.Usage()
		before, err = emuProcOf(devFile, sess.ClaimedPID)
		if err == nil && u.LiveBytes() == want && before.Kernels >= start.Kernels+2 {
			return true
		}
		select {
		case err := <-done: // over before the test saw its memory
			finished = true
			if err != nil {
				t.Fatalf("invocation: %v", err)
			}
			return true
		default:
			return false
		}
	})
	if !inWindow || finished {
		wait()
		t.Logf("missed the window: the invocation ended before the test saw its memory (%+v)", before)
		return false
	}
	// The emulator agrees that every byte is managed (the shim converted
	// the function's cuMemAlloc_v2 calls), and resident: the kernels
	// faulted it in.
	if before.ManagedBytes != want || before.DeviceBytes != 0 || before.ResidentBytes != want {
		t.Errorf("emulated GPU mid-invocation: %+v; want %d managed and resident bytes, 0 device", before, want)
	}
	if r, err := sess.ReportUsage(ctx); err != nil || r.Err() != nil || r.Bytes != want || r.Usage[shimctl.KindManaged] != want {
		t.Errorf("report-usage: %+v %v, want %d live managed bytes", r, err, want)
	}

	// command runs a memory command and reads the function's slot on the
	// emulated GPU after it; false: the function freed its memory
	// meanwhile (the window was missed).
	command := func(name string, do func(context.Context) (shimctl.Result, error)) (shimctl.Result, emugpu.Proc, bool) {
		t.Helper()
		r, err := do(ctx)
		if err != nil || r.Err() != nil {
			t.Fatalf("%s: %+v %v", name, r, err)
		}
		cmds.add(r)
		slot, err := emuProcOf(devFile, sess.ClaimedPID)
		if err != nil {
			t.Fatal(err)
		}
		if u, _ := sess.Usage(); u.LiveBytes() != want {
			wait()
			t.Logf("missed the window: %s moved %d bytes, then the function freed its memory", name, r.Bytes)
			return r, slot, false
		}
		return r, slot, true
	}

	// Evict: everything leaves the emulated device.
	r, evicted, ok := command("evict", sess.EvictToHost)
	if !ok {
		return false
	}
	if d := evicted.D2HBytes - before.D2HBytes; d != want || evicted.ResidentBytes != 0 || r.Bytes != want || r.Usage[shimctl.KindManaged] != want {
		t.Errorf("evict: result %+v; emulated GPU moved %d bytes to the host and %d stay resident; want %d moved, 0 resident",
			r, d, evicted.ResidentBytes, want)
	}

	// Prefetch: everything comes back.
	r, back, ok := command("prefetch", sess.PrefetchToDevice)
	if !ok {
		return false
	}
	if d := back.H2DBytes - evicted.H2DBytes; d != want || r.Bytes != want || back.ResidentBytes != want || back.FaultBytes != evicted.FaultBytes {
		t.Errorf("prefetch: result %+v; emulated GPU moved %d bytes to the device, %d resident, %d faulted; want %d, %d, 0",
			r, d, back.ResidentBytes, back.FaultBytes-evicted.FaultBytes, want, want)
	}
	// The invocation, which had its memory moved twice, still answers right.
	wait()
	return true
}

// identityCheck checks a session's kernel-given identity against the
// instance the backend runs.
type identityCheck func(t *testing.T, s *shimctl.Session, id runtime.ID)

// testShimControl is the shim-control scenario on any backend: the test is
// the daemon, listening on the instance's shim socket (shimRuntime), and
// the function is gpu-matmul on the emulated GPU with the real shim.
func testShimControl(t *testing.T, srt *shimRuntime, s pool.Spec, devFile string, identity identityCheck) {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	p := pool.New(srt, pool.Config{Logger: testLogger(t)})
	t.Cleanup(func() { p.Close(context.Background()) })

	id, err := p.Start(ctx, s)
	if err != nil {
		t.Fatalf("start %s: %v", s.Function, err)
	}
	// gpu-matmul calls cuInit before it answers /ready: the shim registers
	// at its first CUDA call.
	sess := srt.session(t, id, 10*time.Second)

	// Registration: what the shim says, and what the kernel says.
	if sess.FunctionID != s.Function {
		t.Errorf("function id %q, want %q (SLUICE_FUNCTION)", sess.FunctionID, s.Function)
	}
	if !sess.Converting {
		t.Errorf("shim registered without converting device allocations")
	}
	if len(sess.Devices) == 0 || !bytes.HasPrefix(sess.Devices[0][:], []byte("SLUICE-EMU")) {
		t.Errorf("devices %q, want the emulated GPU (UUID SLUICE-EMU...)", sess.Devices)
	}
	if sess.Forked || sess.Again {
		t.Errorf("first registration flagged forked=%v again=%v", sess.Forked, sess.Again)
	}
	if got := srt.server(t, id).srv.Session(sess.Peer.PID); got != sess {
		t.Errorf("Server.Session(%d) = %v, want the registered session", sess.Peer.PID, got)
	}
	identity(t, sess, id)
	// The function runs as 65534: the socket must be connectable by others.
	if st, err := os.Stat(srt.server(t, id).path); err != nil || st.Mode().Perm()&0o006 != 0o006 {
		t.Errorf("shim socket mode: %v %v, want connectable by any uid", st.Mode(), err)
	}
	if u, ok := sess.Usage(); !ok || u.LiveBytes() != 0 {
		t.Errorf("usage page before any invocation: %+v ok=%v, want mapped and empty", u, ok)
	}
	slot, err := emuProcOf(devFile, sess.ClaimedPID)
	if err != nil {
		t.Fatalf("the function is not attached to the emulated GPU as pid %d: %v", sess.ClaimedPID, err)
	}
	if slot.Comm != "gpu-matmul" {
		t.Errorf("emulated GPU slot of pid %d is %q, want gpu-matmul", slot.PID, slot.Comm)
	}

	// A quick invocation: the page accounts for exactly what it allocated.
	if _, err := invokeMatmul(ctx, p, id, quickArgs); err != nil {
		t.Fatal(err)
	}
	u, _ := sess.Usage()
	want := quickArgs.bytes()
	if u.LiveBytes() != 0 || u.Allocs[shimctl.KindManaged] != 4 || u.Frees != 4 || u.Peak != want {
		t.Errorf("usage after one invocation: %+v, want 4 managed allocations, 4 frees, peak %d, nothing live", u, want)
	}
	for k := shimctl.KindAsyncManaged; k < shimctl.KindCount; k++ {
		if u.Allocs[k] != 0 {
			t.Errorf("usage: %d allocations of kind %d, want all converted to managed", u.Allocs[k], k)
		}
	}

	// A long invocation: evict and prefetch its memory while it holds it.
	cmds, attempts := evictPrefetchRetrying(ctx, t, p, sess, id, devFile)
	invocations := 1 + attempts
	if u, _ := sess.Usage(); u.Evictions != cmds.evictions || u.Prefetches != cmds.prefetches || u.PrefetchInFlight {
		t.Errorf("usage page commands: %+v, want %d evictions, %d prefetches, none in flight", u, cmds.evictions, cmds.prefetches)
	}

	// Afterwards: the function still computes, the page still adds up.
	if _, err := invokeMatmul(ctx, p, id, quickArgs); err != nil {
		t.Fatalf("invocation after evict and prefetch: %v", err)
	}
	invocations++
	u, _ = sess.Usage()
	if n := uint64(4 * invocations); u.LiveBytes() != 0 || u.Allocs[shimctl.KindManaged] != n || u.Frees != n || u.Peak != longArgs.bytes() {
		t.Errorf("usage after %d invocations: %+v, want %d allocations and frees, peak %d", invocations, u, n, longArgs.bytes())
	}
	// Commands on an idle function move nothing and succeed.
	if r, err := sess.EvictToHost(ctx); err != nil || r.Err() != nil || r.Bytes != 0 {
		t.Errorf("evict while idle: %+v %v, want 0 bytes", r, err)
	}

	// Budget: an allocation past it fails fast with OUT_OF_MEMORY, the
	// function answers 500 and stays warm; without the budget it works.
	const budget = 1 << 20 // A, B and C fit, the 4 MiB buffer does not
	if r, err := sess.SetBudget(ctx, budget); err != nil || r.Err() != nil {
		t.Fatalf("set budget: %+v %v", r, err)
	}
	u0, _ := sess.Usage()
	_, err = invokeMatmul(ctx, p, id, quickArgs)
	var fe *protocol.Error
	if !errors.As(err, &fe) || fe.Status != 500 || !strings.Contains(fe.Message, "CUDA_ERROR_OUT_OF_MEMORY") {
		t.Errorf("invocation over the budget: %v, want a 500 naming CUDA_ERROR_OUT_OF_MEMORY", err)
	}
	u1, _ := sess.Usage()
	if u1.Budget != budget || u1.OOMRefused != u0.OOMRefused+1 || u1.LiveBytes() != 0 || u1.Frees-u0.Frees != 3 {
		t.Errorf("usage after the refused allocation: %+v (before %+v), want budget %d, one refusal, the 3 allocations made freed", u1, u0, budget)
	}
	if r, err := sess.SetBudget(ctx, 0); err != nil || r.Err() != nil {
		t.Fatalf("remove budget: %+v %v", r, err)
	}
	if _, err := invokeMatmul(ctx, p, id, quickArgs); err != nil {
		t.Errorf("invocation after the budget was removed: %v", err)
	}
	select {
	case <-sess.Done():
		t.Errorf("session ended while the function lives: %v", sess.Err())
	default:
	}
}

// checkDockerIdentity: the peer is a host pid in the container's cgroup,
// running as the image's user, in its own pid namespace.
func checkDockerIdentity(t *testing.T, s *shimctl.Session, id runtime.ID) {
	t.Helper()
	cg, err := procCgroup(s.Peer.PID)
	if err != nil {
		t.Fatalf("host pid %d of the session: %v", s.Peer.PID, err)
	}
	if !strings.Contains(cg, string(id)) {
		t.Errorf("host pid %d is not in container %s's cgroup:\n%s", s.Peer.PID, shortID(id), cg)
	}
	if s.Peer.UID != 65534 {
		t.Errorf("peer uid %d, want 65534 (the image's user)", s.Peer.UID)
	}
	if s.ClaimedPID == s.Peer.PID {
		t.Errorf("claimed pid %d equals the host pid: the container has no pid namespace of its own?", s.ClaimedPID)
	}
}

// processIdentity: the peer is the process the backend started (its
// instance record), in no container.
func processIdentity(srt *shimRuntime, uid uint32) identityCheck {
	return func(t *testing.T, s *shimctl.Session, id runtime.ID) {
		t.Helper()
		dir, err := srt.Dir(id)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			PID int32 `json:"pid"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "instance.json"))
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.PID != s.Peer.PID {
			t.Errorf("peer pid %d, instance record %q (%v): want the process the backend started", s.Peer.PID, b, err)
		}
		if s.ClaimedPID != s.Peer.PID {
			t.Errorf("claimed pid %d, kernel says %d: same namespace, want equal", s.ClaimedPID, s.Peer.PID)
		}
		if s.Peer.UID != uid {
			t.Errorf("peer uid %d, want %d", s.Peer.UID, uid)
		}
		exe, err := os.Readlink("/proc/" + strconv.Itoa(int(s.Peer.PID)) + "/exe")
		if err != nil || filepath.Base(exe) != "gpu-matmul" {
			t.Errorf("peer %d runs %q (%v), want gpu-matmul", s.Peer.PID, exe, err)
		}
		cg, err := procCgroup(s.Peer.PID)
		if err != nil || strings.Contains(cg, "docker") {
			t.Errorf("process instance cgroup %q (%v)", cg, err)
		}
	}
}
