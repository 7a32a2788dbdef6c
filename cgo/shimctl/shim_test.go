package shimctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/internal/emugpu"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// shimProc is shim/tests/commands.c running under the real shim and the
// fake driver, driven line by line.
type shimProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	in     *bufio.Writer
	lines  chan string
	stderr *strings.Builder
}

func startShimProc(t testing.TB, sock, function string) *shimProc {
	t.Helper()
	return startShimProcOn(t, sock, function, filepath.Join(t.TempDir(), "emugpu"))
}

// privateCopy copies a file into a fresh temporary directory and returns
// the copy's path.
func privateCopy(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatalf("copy %s: %v", path, err)
	}
	return dst
}

// startShimProcOn runs the program on the emulated GPU in devFile.
func startShimProcOn(t testing.TB, sock, function, devFile string, env ...string) *shimProc {
	t.Helper()
	shim := testenv.Artifact(t, "libsluice.so")
	driver := testenv.Artifact(t, "fakecuda/libcuda.so.1")
	prog := testenv.Artifact(t, "shim-tests/commands")
	cmd := exec.Command(prog)
	// SLUICE_SHIM_VALGRIND=memcheck|helgrind runs the program under
	// valgrind (shim/tests/run.sh does, for the control-channel tests).
	if tool := os.Getenv("SLUICE_SHIM_VALGRIND"); tool != "" {
		supp := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(shim))), "shim", "tests", "valgrind.supp")
		if _, err := os.Stat(supp); err != nil {
			supp = "../../shim/tests/valgrind.supp" // the package directory
		}
		cmd = exec.Command("valgrind", "-q", "--tool="+tool, "--error-exitcode=3",
			"--suppressions="+supp, prog)
		// A private copy of the driver: uprobes that other tests (bpf/)
		// attach to build/fakecuda/libcuda.so.1 put int3 into every
		// mapping of that file, which valgrind reports as SIGTRAP.
		driver = privateCopy(t, driver)
	}
	cmd.Env = append(os.Environ(),
		"LD_PRELOAD="+shim,
		"LD_LIBRARY_PATH="+filepath.Dir(driver),
		"SLUICE_SOCKET="+sock,
		"SLUICE_FUNCTION="+function,
		"SLUICE_LOG=1",
		"FAKECUDA_DEVICE_FILE="+devFile,
	)
	cmd.Env = append(cmd.Env, env...)
	stdin, stdout := testenv.Pipes(t, cmd)
	p := &shimProc{t: t, cmd: cmd, in: bufio.NewWriter(stdin), lines: make(chan string, 64), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", prog, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !t.Failed() {
				t.Errorf("shim test program: %v\n%s", err, p.stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("shim test program did not exit")
		}
		if t.Failed() {
			t.Logf("program stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *shimProc) expect(prefix string) []string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("program exited waiting for %q", prefix)
		}
		if !strings.HasPrefix(l, prefix) {
			p.t.Fatalf("program said %q, want %q...", l, prefix)
		}
		return strings.Fields(l)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("no %q from the program", prefix)
	}
	return nil
}

func (p *shimProc) do(line, prefix string) []string {
	p.t.Helper()
	fmt.Fprintln(p.in, line)
	p.in.Flush()
	return p.expect(prefix)
}

func num(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return v
}

// cpuTicks is utime+stime of a process (clock ticks), from /proc.
func cpuTicks(t testing.TB, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read stat: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	return num(t, f[11]) + num(t, f[12])
}

const mib = 1 << 20

// TestShimCommands is test 6 of the shim: the real shim in a CUDA process
// (fake driver) registers with this package's server and carries out every
// command; usage arrives on the shared page; when the daemon goes away the
// process carries on standalone.
func TestShimCommands(t *testing.T) {
	srv, opened, closed := startServer(t, Config{})
	p := startShimProc(t, srv.Addr(), "fn-commands")
	pid := int(num(t, p.expect("ready")[1]))
	s := waitSession(t, opened)
	if int(s.Peer.PID) != pid || s.FunctionID != "fn-commands" || !s.Converting || s.DriverVersion <= 0 || len(s.Devices) == 0 {
		t.Fatalf("session %+v (program pid %d)", s, pid)
	}

	p.do("alloc 4194304", "ok")
	p.do("alloc 4194304", "ok")
	p.do("async 1048576", "ok")
	u, ok := s.Usage()
	if !ok || u.Live[KindManaged] != 8*mib || u.Live[KindAsyncManaged] != mib || u.Allocs[KindManaged] != 2 {
		t.Fatalf("usage page %+v ok %v", u, ok)
	}
	ctx := context.Background()

	// Budget: the capacity view shrinks to it and allocations beyond fail.
	if r, err := s.SetBudget(ctx, 16*mib); err != nil || r.Err() != nil {
		t.Fatalf("set budget: %v %v", err, r.Err())
	}
	info := p.do("info", "info")
	if num(t, info[2]) != 16*mib || num(t, info[1]) != 16*mib-9*mib {
		t.Errorf("info under a 16 MiB budget: %v", info)
	}
	p.do("alloc 16777216", "err 2")
	if u, _ := s.Usage(); u.OOMRefused != 1 || u.Budget != 16*mib {
		t.Errorf("usage after refusal %+v", u)
	}

	// Evict to host, then prefetch back: every tracked byte moves.
	r, err := s.EvictToHost(ctx)
	if err != nil || r.Err() != nil || r.Bytes != 9*mib {
		t.Fatalf("evict: %+v %v %v", r, err, r.Err())
	}
	if res := p.do("resident", "resident"); num(t, res[1]) != 0 {
		t.Errorf("resident after eviction: %v", res)
	}
	r, err = s.PrefetchToDevice(ctx)
	if err != nil || r.Err() != nil || r.Bytes != 9*mib {
		t.Fatalf("prefetch: %+v %v %v", r, err, r.Err())
	}
	if res := p.do("resident", "resident"); num(t, res[1]) != 9*mib {
		t.Errorf("resident after prefetch: %v", res)
	}
	p.do("launch", "ok")
	r, err = s.ReportUsage(ctx)
	if err != nil || r.Usage[KindManaged] != 8*mib || r.Bytes != 9*mib {
		t.Errorf("report usage: %+v %v", r, err)
	}
	if u, _ := s.Usage(); u.Prefetches != 1 || u.Evictions != 1 {
		t.Errorf("command counters %+v", u)
	}

	// Partial evictions move the next bytes each time, never the same ones;
	// a cut inside a range is rounded up to 2 MiB of it.
	var out uint64
	for i, want := range []struct{ n, min, max uint64 }{
		{3 * mib, 3 * mib, 5 * mib},
		{3 * mib, 3 * mib, 5 * mib},
		{100 * mib, 0, 9 * mib}, // the rest
		{mib, 0, 0},             // nothing left
	} {
		r, err := s.EvictBytes(ctx, want.n)
		if err != nil || r.Err() != nil || r.Bytes < want.min || r.Bytes > want.max || out+r.Bytes > 9*mib {
			t.Fatalf("partial eviction %d of %d bytes: %+v %v (moved %d before)", i, want.n, r, err, out)
		}
		t.Logf("partial eviction %d of %d bytes moved %d", i, want.n, r.Bytes)
		out += r.Bytes
		if res := p.do("resident", "resident"); num(t, res[1]) != 9*mib-out {
			t.Errorf("resident after partial eviction %d: %v, want %d", i, res, 9*mib-out)
		}
	}
	if out != 9*mib {
		t.Errorf("partial evictions moved %d bytes in all, want %d", out, 9*mib)
	}
	r, err = s.PrefetchToDevice(ctx)
	if err != nil || r.Err() != nil || r.Bytes != 9*mib {
		t.Fatalf("prefetch after partial evictions: %+v %v %v", r, err, r.Err())
	}
	if res := p.do("resident", "resident"); num(t, res[1]) != 9*mib {
		t.Errorf("resident after prefetch: %v", res)
	}
	// After a prefetch the sequence starts again.
	if r, err := s.EvictBytes(ctx, 2*mib); err != nil || r.Err() != nil || r.Bytes < 2*mib || r.Bytes > 4*mib {
		t.Fatalf("partial eviction after prefetch: %+v %v", r, err)
	}
	if _, err := s.PrefetchToDevice(ctx); err != nil {
		t.Fatal(err)
	}

	// Hostile daemon messages are dropped; the process and the channel live on.
	for _, bad := range [][]byte{
		[]byte("garbage"),
		make([]byte, maxMsg+100),
		encodeCommand(1, OpEvictHost, 0)[:commandSize-1],
		func() []byte { b := encodeCommand(2, OpEvictHost, 0); le.PutUint32(b[0:], 0xdeadbeef); return b }(),
		func() []byte { b := encodeCommand(3, OpEvictHost, 0); le.PutUint16(b[6:], msgRegister); return b }(),
	} {
		if err := s.write(bad); err != nil {
			t.Fatalf("write bad message: %v", err)
		}
	}
	if r, err := s.Do(ctx, Op(77), 0); err != nil || r.Status != StatusUnknownOp {
		t.Errorf("unknown op: %+v %v", r, err)
	}
	p.do("info", "info")

	// Idle: the control thread blocks in recv, the process uses no CPU.
	before := cpuTicks(t, pid)
	time.Sleep(time.Second)
	idle := cpuTicks(t, pid) - before
	t.Logf("idle CPU over 1 s: %d ticks", idle)
	if idle > 2 {
		t.Errorf("idle process used %d ticks of CPU in 1 s", idle)
	}

	// Daemon side goes away: standalone, no budget, allocations go on.
	s.Close()
	waitSession(t, closed)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info = p.do("info", "info")
		if num(t, info[2]) > 16*mib || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if num(t, info[2]) <= 16*mib {
		t.Errorf("budget still applied after the daemon left: %v", info)
	}
	p.do("alloc 1048576", "ok")
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()
}

// TestShimFork is test 8: a forked child does not inherit the parent's
// connection and registers on its own at its first CUDA call.
func TestShimFork(t *testing.T) {
	srv, opened, closed := startServer(t, Config{})
	p := startShimProc(t, srv.Addr(), "fn-fork")
	pid := int(num(t, p.expect("ready")[1]))
	parent := waitSession(t, opened)
	if int(parent.Peer.PID) != pid || parent.Forked {
		t.Fatalf("parent session %+v", parent)
	}
	f := p.do("fork", "forked")
	child := int(num(t, f[1]))
	if f[2] != "0" {
		t.Errorf("child inherited %s sockets", f[2])
	}
	cs := waitSession(t, opened)
	if int(cs.Peer.PID) != child || !cs.Forked || cs.FunctionID != "fn-fork" {
		t.Errorf("child session %+v, want pid %d", cs, child)
	}
	if u, ok := cs.Usage(); !ok || u.Live[KindManaged] != 64<<10 {
		t.Errorf("child usage %+v ok %v (its own page, its own allocation)", u, ok)
	}
	if u, _ := parent.Usage(); u.Live[KindManaged] != 0 {
		t.Errorf("parent usage changed by the child: %+v", u)
	}
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()
	ended := map[*Session]bool{waitSession(t, closed): true, waitSession(t, closed): true}
	if !ended[parent] || !ended[cs] {
		t.Errorf("sessions did not both end")
	}
}

// emuRead reads the emulated GPU's device file (internal/emugpu: the
// emulator's own accounting, test infrastructure).
func emuRead(t testing.TB, path string) emugpu.Device {
	t.Helper()
	d, err := emugpu.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestShimGraphMemory: memory the driver allocates for a graph's
// allocation node when the graph runs reaches the daemon as the
// non-evictable graph kind (read from the driver's graph pool by the control
// thread for a usage report, no application call needed), stays while the
// pool keeps it after the graph freed it, matches the emulated GPU's
// accounting, and leaves with cuDeviceGraphMemTrim. Evictions do not move it.
func TestShimGraphMemory(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	dev := filepath.Join(t.TempDir(), "emugpu")
	p := startShimProcOn(t, srv.Addr(), "fn-graph", dev)
	pid := int32(num(t, p.expect("ready")[1]))
	s := waitSession(t, opened)
	ctx := context.Background()

	p.do("alloc 2097152", "ok")
	p.do("graph 6291456", "ok")
	r, err := s.ReportUsage(ctx)
	if err != nil || r.Err() != nil {
		t.Fatalf("report usage: %v %v", err, r.Err())
	}
	if r.Usage[KindGraph] != 6*mib || r.Usage[KindManaged] != 2*mib || r.Bytes != 8*mib {
		t.Fatalf("usage report after a graph ran: graph %d managed %d total %d", r.Usage[KindGraph],
			r.Usage[KindManaged], r.Bytes)
	}
	u, ok := s.Usage()
	if !ok || u.Live[KindGraph] != 6*mib || u.EvictableBytes() != 2*mib || u.Peak < 8*mib {
		t.Fatalf("usage page %+v ok %v", u, ok)
	}
	if e, _ := emuRead(t, dev).Proc(pid); e.DeviceBytes != 6*mib || e.ManagedBytes != 2*mib {
		t.Errorf("emulated GPU: managed %d device %d, want 2 MiB and 6 MiB of graph memory", e.ManagedBytes, e.DeviceBytes)
	}
	// Evict moves the managed memory only.
	if r, err := s.EvictToHost(ctx); err != nil || r.Err() != nil || r.Bytes != 2*mib || r.Usage[KindGraph] != 6*mib {
		t.Fatalf("evict: %+v %v", r, err)
	}
	// The capacity view counts it too.
	info := p.do("info", "info")
	total, free := num(t, info[2]), num(t, info[1])
	if total-free != 8*mib {
		t.Errorf("capacity view: total %d free %d, want 8 MiB in use", total, free)
	}
	// The budget counts it: 2 MiB managed + 6 MiB graph leave 2 MiB of 10.
	if r, err := s.SetBudget(ctx, 10*mib); err != nil || r.Err() != nil {
		t.Fatalf("set budget: %v %v", err, r.Err())
	}
	p.do("alloc 4194304", "err 2")
	p.do("alloc 1048576", "ok")
	p.do("trim", "ok")
	if u, _ := s.Usage(); u.Live[KindGraph] != 0 {
		t.Errorf("graph memory after trim: %d", u.Live[KindGraph])
	}
	p.do("alloc 4194304", "ok") // room again once the pool gave its memory back
	if r, err := s.ReportUsage(ctx); err != nil || r.Usage[KindGraph] != 0 || r.Bytes != 7*mib {
		t.Errorf("report after trim: %+v %v", r, err)
	}
	if e, _ := emuRead(t, dev).Proc(pid); e.DeviceBytes != 0 {
		t.Errorf("emulated GPU device bytes after trim: %d", e.DeviceBytes)
	}

	// Nodes made with the generic cuGraphAddNode_v2, in a process that
	// never asked for its capacity: the node's device is watched all the same.
	q := startShimProcOn(t, srv.Addr(), "fn-graph-generic", filepath.Join(t.TempDir(), "emugpu"))
	q.expect("ready")
	qs := waitSession(t, opened)
	q.do("gnode 3145728", "ok")
	if r, err := qs.ReportUsage(ctx); err != nil || r.Err() != nil || r.Usage[KindGraph] != 3*mib {
		t.Errorf("generic graph nodes: report %+v %v", r, err)
	}
}

// TestShimEmulatedGPUAccounting runs three shimmed processes on one emulated
// GPU: what each shim reports on its usage page must match what the emulated
// GPU accounts for that process, and daemon commands move exactly that
// process's memory.
func TestShimEmulatedGPUAccounting(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	dev := filepath.Join(t.TempDir(), "emugpu")
	sizes := [][]string{{"alloc 8388608"}, {"alloc 4194304", "async 2097152"}, {"alloc 1048576"}}
	procs := make([]*shimProc, len(sizes))
	sess := make(map[int32]*Session)
	for i := range sizes {
		procs[i] = startShimProcOn(t, srv.Addr(), fmt.Sprintf("fn-%d", i), dev)
		pid := int32(num(t, procs[i].expect("ready")[1]))
		s := waitSession(t, opened)
		if s.Peer.PID != pid {
			t.Fatalf("session pid %d, want %d", s.Peer.PID, pid)
		}
		for _, cmd := range sizes[i] {
			procs[i].do(cmd, "ok")
		}
		sess[pid] = s
	}
	ctx := context.Background()
	check := func(stage string) {
		t.Helper()
		emu := emuRead(t, dev)
		var sum uint64
		for pid, s := range sess {
			u, ok := s.Usage()
			e, found := emu.Proc(pid)
			if !ok || !found {
				t.Fatalf("%s: pid %d: usage ok %v, in emulator %v", stage, pid, ok, found)
			}
			if e.ManagedBytes != u.EvictableBytes() || e.DeviceBytes != u.Live[KindDevice]+u.Live[KindVMM]+u.Live[KindArray]+u.Live[KindGraph] {
				t.Errorf("%s: pid %d: emulator managed %d device %d, shim evictable %d non-evictable %d",
					stage, pid, e.ManagedBytes, e.DeviceBytes, u.EvictableBytes(), u.LiveBytes()-u.EvictableBytes())
			}
			sum += e.ResidentBytes
		}
		if sum != emu.UsedResident {
			t.Errorf("%s: per-process resident %d, device total %d", stage, sum, emu.UsedResident)
		}
	}
	check("after allocation")
	pids := make([]int32, 0, len(sess))
	for pid := range sess {
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if r, err := sess[pid].EvictToHost(ctx); err != nil || r.Err() != nil {
			t.Fatalf("evict %d: %v %v", pid, err, r.Err())
		}
	}
	check("after evicting all")
	if emu := emuRead(t, dev); emu.UsedResident != 0 {
		t.Errorf("resident after evicting everyone: %d (%+v)", emu.UsedResident, emu.Procs)
	}
	target := pids[0]
	r, err := sess[target].PrefetchToDevice(ctx)
	if err != nil || r.Err() != nil {
		t.Fatalf("prefetch: %v %v", err, r.Err())
	}
	check("after one prefetch")
	emu := emuRead(t, dev)
	t.Logf("emulated GPU after prefetching pid %d: processes %+v, device resident %d", target, emu.Procs, emu.UsedResident)
	u, _ := sess[target].Usage()
	if e, _ := emu.Proc(target); e.ResidentBytes != u.EvictableBytes() || emu.UsedResident != u.EvictableBytes() || r.Bytes != u.EvictableBytes() {
		t.Errorf("prefetched pid %d: resident %d, device %d, moved %d, want %d", target, e.ResidentBytes, emu.UsedResident, r.Bytes, u.EvictableBytes())
	}
	for _, p := range procs {
		fmt.Fprintln(p.in, "exit")
		p.in.Flush()
	}
}

// TestShimSurvivesRandomMessages sends the real shim a few hundred random
// packets (some with a valid header and random type and size): none may
// crash or hang the CUDA process, and the channel still works afterwards.
func TestShimSurvivesRandomMessages(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	p := startShimProc(t, srv.Addr(), "fn-fuzz")
	p.expect("ready")
	s := waitSession(t, opened)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		n := rng.IntN(2 * maxMsg)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if n >= hdrSize && i%2 == 0 {
			putHeader(b, uint16(rng.IntN(6)))
			if i%4 == 0 {
				le.PutUint32(b[8:], uint32(rng.IntN(2*maxMsg)))
			}
		}
		if err := s.write(b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := s.ReportUsage(ctx); err != nil || r.Err() != nil {
		t.Fatalf("channel after random input: %v %+v", err, r)
	}
	p.do("alloc 4096", "ok")
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()
}

// BenchmarkShimReportUsage is one command round trip to a real shimmed
// process (fake driver): daemon -> shim control thread -> daemon.
func BenchmarkShimReportUsage(b *testing.B) {
	s, done := benchSession(b)
	defer done()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.ReportUsage(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShimUsagePage is a read of the shared usage page: what the
// daemon pays to learn a process's usage without any message.
func BenchmarkShimUsagePage(b *testing.B) {
	s, done := benchSession(b)
	defer done()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Usage(); !ok {
			b.Fatal("no usage page")
		}
	}
}

// benchSession starts a shimmed program registered with a fresh server.
func benchSession(b *testing.B) (*Session, func()) {
	b.Helper()
	srv, opened, _ := startServer(b, Config{})
	p := startShimProc(b, srv.Addr(), "fn-bench")
	p.expect("ready")
	s := waitSession(b, opened)
	return s, func() {
		fmt.Fprintln(p.in, "exit")
		p.in.Flush()
	}
}

// TestShimSubmissionWaitsForPrefetch: while a daemon prefetch is in flight
// (slow emulated link), the application's next submission is ordered after
// it with a stream wait, not by blocking; once it is done, submissions are
// back on the one-load path (no more waits).
func TestShimSubmissionWaitsForPrefetch(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	// 16 MiB at 0.04 GB/s: about 0.4 s of modelled transfer.
	p := startShimProcOn(t, srv.Addr(), "fn-gate", filepath.Join(t.TempDir(), "emugpu"),
		"FAKECUDA_H2D_GBPS=0.04")
	p.expect("ready")
	s := waitSession(t, opened)
	p.do("alloc 16777216", "ok")
	ctx := context.Background()
	if r, err := s.EvictToHost(ctx); err != nil || r.Err() != nil {
		t.Fatalf("evict: %v %+v", err, r)
	}
	w0 := num(t, p.do("waits", "waits")[1])
	done := make(chan Result, 1)
	go func() {
		r, err := s.PrefetchToDevice(ctx)
		if err != nil {
			t.Errorf("prefetch: %v", err)
		}
		done <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, _ := s.Usage()
		if u.PrefetchInFlight {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("prefetch finished before it was seen in flight: %+v", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("prefetch never in flight")
		}
		time.Sleep(time.Millisecond)
	}
	p.do("launch", "ok") // the launch's stream waits; its sync returns after the prefetch
	w1 := num(t, p.do("waits", "waits")[1])
	if w1 != w0+1 {
		t.Errorf("stream waits during the prefetch: %d, want 1", w1-w0)
	}
	if res := p.do("resident", "resident"); num(t, res[1]) != 16*mib {
		t.Errorf("launch completed before the prefetch: %v resident", res)
	}
	r := <-done
	if r.Err() != nil || r.Bytes != 16*mib {
		t.Errorf("prefetch result %+v", r)
	}
	if u, _ := s.Usage(); u.PrefetchInFlight {
		t.Error("gate still marked after the prefetch")
	}
	p.do("launch", "ok")
	if w2 := num(t, p.do("waits", "waits")[1]); w2 != w1 {
		t.Errorf("launch after the prefetch waited (%d waits)", w2-w1)
	}
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()
}

// serveAt runs a server on path until stop is called or the test ends.
func serveAt(t testing.TB, path string, budget uint64) (opened, closed chan *Session, stop func()) {
	t.Helper()
	opened = make(chan *Session, 16)
	closed = make(chan *Session, 16)
	srv, err := Listen(Config{
		Path:      path,
		Budget:    func(string) uint64 { return budget },
		OnSession: func(s *Session) { opened <- s },
		OnClose:   func(s *Session, _ error) { closed <- s },
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Serve returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return opened, closed, stop
}

// TestShimReregistersAfterDaemonRestart: the daemon goes away (cleanly, or
// like a crash that leaves a dead socket file behind) and a new one starts
// on the same path. The CUDA process carries on alone meanwhile, without
// using CPU, then registers again by itself, with the memory it already
// has, and obeys the new daemon's commands and budget.
func TestShimReregistersAfterDaemonRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool // leave a socket file nobody listens on, as a crash does
		watch bool // SLUICE_RECONNECT_WATCH=1: inotify instead of the timer alone
	}{
		{"clean shutdown, timer", false, false},
		{"crash leaves stale socket, timer", true, false},
		{"clean shutdown, inotify", false, true},
		{"crash leaves stale socket, inotify", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sluice.sock")
			openedA, closedA, stopA := serveAt(t, path, 0)
			var env []string
			if tc.watch {
				env = append(env, "SLUICE_RECONNECT_WATCH=1")
			}
			p := startShimProcOn(t, path, "fn-restart", filepath.Join(t.TempDir(), "emugpu"), env...)
			pid := int32(num(t, p.expect("ready")[1]))
			s1 := waitSession(t, openedA)
			if s1.Peer.PID != pid || s1.Again {
				t.Fatalf("first session %+v", s1)
			}
			p.do("alloc 4194304", "ok")
			p.do("async 1048576", "ok")

			stopA()
			waitSession(t, closedA)
			if tc.stale {
				l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
				if err != nil {
					t.Fatalf("stale socket: %v", err)
				}
				l.SetUnlinkOnClose(false)
				l.Close()
			}
			// Alone: the process goes on, and waits for the daemon without CPU.
			p.do("alloc 1048576", "ok")
			p.do("launch", "ok")
			before := cpuTicks(t, int(pid))
			time.Sleep(time.Second)
			idle := cpuTicks(t, int(pid)) - before
			t.Logf("CPU over 1 s without a daemon: %d ticks", idle)
			if idle > 2 {
				t.Errorf("process waiting for the daemon used %d ticks in 1 s", idle)
			}

			start := time.Now()
			openedB, _, _ := serveAt(t, path, 32*mib)
			s2 := waitSession(t, openedB)
			t.Logf("registered again %v after the new daemon listened", time.Since(start))
			if s2.Peer.PID != pid || !s2.Again || s2.Forked || s2.FunctionID != "fn-restart" {
				t.Fatalf("session after restart %+v, want pid %d registered again", s2, pid)
			}
			// The shim applies the WELCOME's budget on its control thread.
			u, ok := s2.Usage()
			for deadline := time.Now().Add(5 * time.Second); ok && u.Budget != 32*mib && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
				u, ok = s2.Usage()
			}
			if !ok || u.Live[KindManaged] != 5*mib || u.Live[KindAsyncManaged] != mib || u.Budget != 32*mib {
				t.Fatalf("usage after restart %+v ok %v", u, ok)
			}
			ctx := context.Background()
			if r, err := s2.EvictToHost(ctx); err != nil || r.Err() != nil || r.Bytes != 6*mib {
				t.Fatalf("evict after restart: %+v %v", r, err)
			}
			if res := p.do("resident", "resident"); num(t, res[1]) != 0 {
				t.Errorf("resident after eviction: %v", res)
			}
			if r, err := s2.PrefetchToDevice(ctx); err != nil || r.Err() != nil || r.Bytes != 6*mib {
				t.Fatalf("prefetch after restart: %+v %v", r, err)
			}
			if res := p.do("resident", "resident"); num(t, res[1]) != 6*mib {
				t.Errorf("resident after prefetch: %v", res)
			}
			if info := p.do("info", "info"); num(t, info[2]) != 32*mib || num(t, info[1]) != 26*mib {
				t.Errorf("capacity view under the new daemon's budget: %v", info)
			}
			fmt.Fprintln(p.in, "exit")
			p.in.Flush()
		})
	}
}

// TestShimRegistersWhenDaemonAppearsLater: a process that starts before the
// daemon (even before the socket's directory exists) runs standalone and
// registers once the daemon is there.
func TestShimRegistersWhenDaemonAppearsLater(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mkdir  bool // the socket's directory appears only with the daemon
		budget uint64
	}{
		{"directory exists", false, 8 * mib},
		{"directory created later", true, 8 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.mkdir {
				dir = filepath.Join(dir, "run", "sluice")
			}
			path := filepath.Join(dir, "sluice.sock")
			p := startShimProc(t, path, "fn-later")
			pid := int32(num(t, p.expect("ready")[1]))
			p.do("alloc 2097152", "ok")
			if info := p.do("info", "info"); num(t, info[2]) <= tc.budget {
				t.Fatalf("standalone capacity view %v", info)
			}
			time.Sleep(300 * time.Millisecond)
			if tc.mkdir {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			opened, _, _ := serveAt(t, path, tc.budget)
			s := waitSession(t, opened)
			if s.Peer.PID != pid || s.Again {
				t.Fatalf("session %+v, want pid %d, first registration", s, pid)
			}
			if r, err := s.EvictToHost(context.Background()); err != nil || r.Err() != nil || r.Bytes != 2*mib {
				t.Fatalf("evict: %+v %v", r, err)
			}
			fmt.Fprintln(p.in, "exit")
			p.in.Flush()
		})
	}
}

// threads is the number of threads of a process, from /proc.
func threads(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			return int(num(t, strings.TrimSpace(v)))
		}
	}
	t.Fatal("no Threads line")
	return 0
}

// TestShimLazyRegistrationWithoutContext: loading the shim does nothing (no
// thread, no connection) until the first CUDA call; registration after a
// bare cuInit reports the driver and devices without the shim creating or
// setting any context. A process that makes its own context is the control
// that the count can see context calls.
func TestShimLazyRegistrationWithoutContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.sock")
	opened, _, _ := serveAt(t, path, 0)
	p := startShimProcOn(t, path, "fn-lazy", filepath.Join(t.TempDir(), "emugpu"), "SLUICE_TEST_LAZY=1")
	pid := int(num(t, p.expect("ready")[1]))
	select {
	case s := <-opened:
		t.Fatalf("registered before any CUDA call: %+v", s)
	case <-time.After(300 * time.Millisecond):
	}
	if n := threads(t, pid); n != 1 {
		t.Errorf("%d threads before any CUDA call, want 1", n)
	}
	p.do("init", "ok")
	s := waitSession(t, opened)
	if int(s.Peer.PID) != pid || s.DriverVersion <= 0 || len(s.Devices) == 0 {
		t.Errorf("session after cuInit %+v", s)
	}
	if n := num(t, p.do("ctxcalls", "ctxcalls")[1]); n != 0 {
		t.Errorf("%d context calls in a process that made none", n)
	}
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()

	ctl := startShimProcOn(t, path, "fn-ctx", filepath.Join(t.TempDir(), "emugpu"))
	ctl.expect("ready")
	if n := num(t, ctl.do("ctxcalls", "ctxcalls")[1]); n == 0 {
		t.Errorf("context calls not counted in a process that made a context")
	}
	fmt.Fprintln(ctl.in, "exit")
	ctl.in.Flush()
}

// TestShimPrefetchOnPrivateStreamInAppContext reads the fake driver's call
// log: the daemon's prefetch runs on the shim's control thread, in the
// application's own context (pushed, not created), on a stream the shim
// created non-blocking, and every prefetch goes to that stream.
func TestShimPrefetchOnPrivateStreamInAppContext(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	logPath := filepath.Join(t.TempDir(), "fakecuda.log")
	p := startShimProcOn(t, srv.Addr(), "fn-stream", filepath.Join(t.TempDir(), "emugpu"),
		"FAKECUDA_LOG="+logPath)
	ready := p.expect("ready")
	pid, appCtx := ready[1], ready[2]
	s := waitSession(t, opened)
	p.do("alloc 1048576", "ok")
	p.do("alloc 2097152", "ok")
	if r, err := s.EvictToHost(context.Background()); err != nil || r.Err() != nil {
		t.Fatalf("evict: %v %+v", err, r)
	}
	if r, err := s.PrefetchToDevice(context.Background()); err != nil || r.Err() != nil || r.Bytes != 3*mib {
		t.Fatalf("prefetch: %v %+v", err, r)
	}
	fmt.Fprintln(p.in, "exit")
	p.in.Flush()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("read fake driver log: %v", err)
	}
	field := func(line, key string) string {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
		return ""
	}
	var pushed []string
	private := map[string]bool{}
	prefetches := 0
	for _, l := range strings.Split(string(b), "\n") {
		if field(l, "pid") != pid || field(l, "tid") == pid || field(l, "rc") != "0" {
			continue // not the shim's control thread (the main thread's tid is the pid)
		}
		switch name := strings.Fields(l)[0]; {
		case name == "cuCtxPushCurrent_v2":
			pushed = append(pushed, field(l, "ctx"))
		case name == "cuStreamCreate":
			if field(l, "flags") != "0x1" {
				t.Errorf("control thread created a blocking stream: %s", l)
			}
			private[field(l, "stream")] = true
		case strings.HasPrefix(name, "cuMemPrefetchAsync"):
			prefetches++
			if !private[field(l, "stream")] {
				t.Errorf("prefetch not on the shim's private stream: %s", l)
			}
		case strings.HasPrefix(name, "cuCtxCreate"), strings.HasPrefix(name, "cuDevicePrimaryCtxRetain"),
			name == "cuCtxSetCurrent":
			t.Errorf("control thread created or set a context: %s", l)
		}
	}
	if len(private) != 1 || prefetches < 4 || len(pushed) == 0 {
		t.Fatalf("control thread: %d private streams, %d prefetches, pushed %v\n%s", len(private), prefetches, pushed, b)
	}
	t.Logf("control thread: private streams %v, %d prefetches, contexts pushed %v (application's %s)",
		private, prefetches, pushed, appCtx)
	for _, c := range pushed {
		if c != appCtx {
			t.Errorf("control thread pushed context %s, the application's is %s", c, appCtx)
		}
	}
}
