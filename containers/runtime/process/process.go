package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
)

// Config configures the process backend.
type Config struct {
	// Instance is the daemon instance label. Required.
	Instance string
	// StateDir holds one directory per instance. Required. Keep it short:
	// Unix socket paths are limited to 107 bytes.
	StateDir string
	// GPU says how GPU functions get the shim (and the emulated GPU).
	GPU runtime.GPUConfig
	// Logger receives lifecycle messages. Default: discard.
	Logger *slog.Logger
}

// record is written to <dir>/instance.json so a later daemon can find and
// kill what this one left running.
type record struct {
	Instance   string `json:"instance"`
	Function   string `json:"function"`
	Generation uint64 `json:"generation"`
	PID        int    `json:"pid,omitempty"`
	// StartTicks is the process's start time (field 22 of /proc/PID/stat),
	// so a recycled PID is never killed.
	StartTicks uint64 `json:"start_ticks,omitempty"`
}

type proc struct {
	id   runtime.ID
	dir  string
	spec runtime.Spec
	rec  record

	mu      sync.Mutex
	cmd     *exec.Cmd
	started bool
	// dead is set (under mu) once the main process has exited and its group
	// has been killed, before it is reaped: from then on its pid may be
	// reused, so nothing signals it any more.
	dead   bool
	exited chan struct{}
}

// Runtime is the process backend.
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	procs map[runtime.ID]*proc

	// kill sends signals (unix.Kill; tests observe it).
	kill func(pid int, sig unix.Signal) error
}

var _ runtime.Runtime = (*Runtime)(nil)

// New validates cfg and returns the backend.
func New(cfg Config) (*Runtime, error) {
	if cfg.Instance == "" {
		return nil, fmt.Errorf("process runtime: %w: Instance is empty", runtime.ErrInvalid)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("process runtime: %w: StateDir is empty", runtime.ErrInvalid)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Runtime{cfg: cfg, log: lg.With("runtime", "process"), procs: map[runtime.ID]*proc{}, kill: unix.Kill}, nil
}

// Name returns "process".
func (r *Runtime) Name() string { return "process" }

// Create prepares an instance directory for spec.
func (r *Runtime) Create(_ context.Context, s runtime.Spec) (runtime.ID, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	if s.Protocol == protocol.KindOpenWhisk {
		return "", fmt.Errorf("create %s: the OpenWhisk protocol needs the Docker backend: %w", s.Function, runtime.ErrNotSupported)
	}
	if len(s.Command) == 0 {
		return "", fmt.Errorf("create %s: %w: the process backend needs a command", s.Function, runtime.ErrInvalid)
	}
	if _, err := exec.LookPath(s.Command[0]); err != nil {
		// Missing is ErrNotFound; there but not runnable (a directory, no
		// execute permission) is a bad spec.
		kind := runtime.ErrInvalid
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			kind = runtime.ErrNotFound
		}
		return "", fmt.Errorf("create %s: command %s: %w: %v", s.Function, s.Command[0], kind, err)
	}
	if s.GPU {
		if err := r.cfg.GPU.Check(); err != nil {
			return "", fmt.Errorf("create %s: %w", s.Function, err)
		}
	}
	id := runtime.ID("p" + runtime.RandomSuffix(6))
	dir := filepath.Join(r.cfg.StateDir, string(id))
	if err := os.Mkdir(dir, 0o777); err != nil {
		return "", fmt.Errorf("create instance dir: %w", err)
	}
	// The function may run as another user and writes here: world-writable,
	// but sticky, so it cannot replace the daemon's instance.json (which a
	// later daemon trusts to find the process it kills) or its output.log.
	_ = os.Chmod(dir, 0o777|os.ModeSticky)
	p := &proc{id: id, dir: dir, spec: s, exited: make(chan struct{}),
		rec: record{Instance: r.cfg.Instance, Function: s.Function, Generation: s.Generation}}
	if err := writeRecord(dir, p.rec); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	r.mu.Lock()
	r.procs[id] = p
	r.mu.Unlock()
	return id, nil
}

// writeRecord writes dir/instance.json through a temporary file. The
// directory is writable by the function, so the temporary file is created
// exclusively and never followed through a link the function planted.
func writeRecord(dir string, rec record) error {
	b, _ := json.Marshal(rec)
	tmp := filepath.Join(dir, ".instance.json")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write instance record: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write instance record: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "instance.json"))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write instance record: %w", err)
	}
	return nil
}

func (r *Runtime) get(id runtime.ID) (*proc, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.procs[id]
	if !ok {
		return nil, fmt.Errorf("instance %s: %w", id, runtime.ErrNotFound)
	}
	return p, nil
}

func (r *Runtime) env(p *proc) []string {
	env := map[string]string{
		"PATH": "/usr/local/bin:/usr/bin:/bin",
		"HOME": p.dir,
		"LANG": "C.UTF-8",
	}
	if s, ok := os.LookupEnv("PATH"); ok && s != "" {
		env["PATH"] = s
	}
	for k, v := range p.spec.Env {
		env[k] = v
	}
	env[protocol.SocketEnv] = filepath.Join(p.dir, runtime.FnSocketName)
	env[runtime.EnvFunction] = p.spec.Function
	if p.spec.GPU {
		for k, v := range runtime.FrameworkEnv() {
			env[k] = v
		}
		env["LD_PRELOAD"] = r.cfg.GPU.Shim
		env[runtime.EnvShimSocket] = filepath.Join(p.dir, runtime.ShimSocketName)
		if r.cfg.GPU.Emulated() {
			// Test/demo infrastructure: the fake driver stands in for libcuda.
			libDir := filepath.Dir(r.cfg.GPU.FakeCUDA)
			if old := env["LD_LIBRARY_PATH"]; old != "" {
				libDir += ":" + old
			}
			env["LD_LIBRARY_PATH"] = libDir
			env[runtime.EnvFakeCUDADevice] = r.cfg.GPU.DeviceFile()
		} else if len(p.spec.GPUUUIDs) > 0 {
			env["CUDA_VISIBLE_DEVICES"] = strings.Join(p.spec.GPUUUIDs, ",")
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func credential(user string) (*syscall.Credential, error) {
	if user == "" || os.Geteuid() != 0 {
		return nil, nil
	}
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: the process backend takes a numeric uid[:gid]: %w", user, runtime.ErrInvalid)
	}
	gid := uid
	if g != "" {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			return nil, fmt.Errorf("user %q: %w", user, runtime.ErrInvalid)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// Start runs the instance's command in its own process group.
func (r *Runtime) Start(_ context.Context, id runtime.ID) (<-chan runtime.Exit, error) {
	p, err := r.get(id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return nil, fmt.Errorf("start %s: already started", id)
	}
	cred, err := credential(p.spec.User)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	logf, err := os.OpenFile(filepath.Join(p.dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", id, err)
	}
	defer logf.Close()
	argv, err := withLimits(p.spec)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = r.env(p)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	pid := cmd.Process.Pid
	p.cmd, p.started = cmd, true
	p.rec.PID = pid
	p.rec.StartTicks, _ = startTicks(pid)
	if err := writeRecord(p.dir, p.rec); err != nil {
		r.log.Warn("instance record not updated", "id", id, "err", err)
	}
	ch := make(chan runtime.Exit, 1)
	go func() {
		// Wait for the exit without reaping: while the main process is a
		// zombie its pid (the group id) cannot be reused, so the group kill
		// below and Stop/Remove, which check dead, never hit another process.
		for {
			var si unix.Siginfo
			if err := unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				break
			}
		}
		p.mu.Lock()
		p.dead = true
		// Kill anything the main process left in its group.
		_ = r.kill(-pid, unix.SIGKILL)
		p.mu.Unlock()
		err := cmd.Wait()
		ex := runtime.Exit{At: time.Now()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				ex.Code = 128 + int(ws.Signal())
			} else {
				ex.Code = ee.ExitCode()
			}
		default:
			ex.Err = err
		}
		close(p.exited)
		ch <- ex
		close(ch)
	}()
	return ch, nil
}

// signalGroup sends sig to p's process group unless its main process has
// exited (its pid may then belong to someone else). It reports whether it
// sent the signal.
func (r *Runtime) signalGroup(p *proc, sig unix.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.dead {
		return false
	}
	_ = r.kill(-p.cmd.Process.Pid, sig)
	return true
}

// withLimits returns the command line that runs the function under the
// spec's resource limits, set before the function's first instruction: the
// function's command behind util-linux's prlimit, which lowers its own soft
// and hard limits and then execs the function (same pid). The limits cannot
// be applied from the daemon after the start: prlimit(2) on a process that
// already runs as another user needs CAP_SYS_RESOURCE, and the function
// would run unlimited until then.
//
// Limits: no core dumps; memory as an address-space limit (4 x the memory
// limit + 4 GiB of headroom, since Go and Python reserve address space
// well beyond what they touch), skipped for GPU functions because unified
// memory reserves large address ranges. No CPU or pid limit: rlimits have
// no equivalent (see docs/FUNCTIONS.md).
func withLimits(s runtime.Spec) ([]string, error) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, fmt.Errorf("the process backend applies limits with util-linux's prlimit: %w", err)
	}
	argv := []string{prlimit, "--core=0:0"}
	if s.MemoryBytes > 0 && !s.GPU {
		as := uint64(s.MemoryBytes)*4 + 4<<30 // an idle Go 1.26 server reserves ~1.6 GB
		argv = append(argv, fmt.Sprintf("--as=%d:%d", as, as))
	}
	return append(append(argv, "--"), s.Command...), nil
}

// startTicks reads a process's start time in clock ticks since boot.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Endpoint returns the instance's function socket.
func (r *Runtime) Endpoint(_ context.Context, id runtime.ID) (protocol.Endpoint, error) {
	p, err := r.get(id)
	if err != nil {
		return protocol.Endpoint{}, err
	}
	return protocol.Endpoint{Kind: protocol.KindSluice, Network: "unix", Address: filepath.Join(p.dir, runtime.FnSocketName)}, nil
}

// Dir returns the instance's host directory.
func (r *Runtime) Dir(id runtime.ID) (string, error) {
	p, err := r.get(id)
	if err != nil {
		return "", err
	}
	return p.dir, nil
}

// Stop sends SIGTERM to the instance's process group and SIGKILL after grace.
func (r *Runtime) Stop(ctx context.Context, id runtime.ID, grace time.Duration) error {
	r.mu.Lock()
	p, ok := r.procs[id]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if !r.signalGroup(p, unix.SIGTERM) {
		// Not started, or already exited.
		p.mu.Lock()
		started := p.cmd != nil
		p.mu.Unlock()
		if started {
			select {
			case <-p.exited:
			case <-ctx.Done():
				return fmt.Errorf("stop %s: %w", id, ctx.Err())
			}
		}
		return nil
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	r.signalGroup(p, unix.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", id, ctx.Err())
	}
}

// Remove kills the instance's process group and deletes its directory. It
// also removes instances a previous daemon left (found by List).
func (r *Runtime) Remove(ctx context.Context, id runtime.ID) error {
	r.mu.Lock()
	p, ok := r.procs[id]
	delete(r.procs, id)
	r.mu.Unlock()
	if !ok {
		return r.removeLeftover(id)
	}
	p.mu.Lock()
	started := p.cmd != nil
	p.mu.Unlock()
	if started {
		r.signalGroup(p, unix.SIGKILL)
		select {
		case <-p.exited:
		case <-ctx.Done():
			return fmt.Errorf("remove %s: %w", id, ctx.Err())
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) removeLeftover(id runtime.ID) error {
	if strings.ContainsAny(string(id), "/.") || id == "" {
		return nil
	}
	dir := filepath.Join(r.cfg.StateDir, string(id))
	rec, err := readRecord(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if rec.Instance != r.cfg.Instance {
		return nil // not ours
	}
	// Only a process whose start time matches the record is signalled (a
	// recycled pid is not), never pid 1 or below (kill(-1) signals every
	// process), and its group only if it leads one.
	if rec.PID > 1 && rec.StartTicks != 0 {
		if t, err := startTicks(rec.PID); err == nil && t == rec.StartTicks {
			if pg, err := unix.Getpgid(rec.PID); err == nil && pg == rec.PID {
				_ = r.kill(-rec.PID, unix.SIGKILL)
			}
			_ = r.kill(rec.PID, unix.SIGKILL)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// readRecord reads dir/instance.json. It must be a regular file the daemon's
// user owns: the directory is the function's, and a record it forged could
// name any process for Remove to kill.
func readRecord(dir string) (record, error) {
	var rec record
	name := filepath.Join(dir, "instance.json")
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return rec, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return rec, fmt.Errorf("%s: not a regular file owned by uid %d", name, os.Geteuid())
	}
	const maxRecord = 64 << 10
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return rec, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxRecord {
		return rec, fmt.Errorf("%s: larger than %d bytes", name, maxRecord)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("parse %s/instance.json: %w", dir, err)
	}
	return rec, nil
}

// List returns this daemon instance's instances: live ones and those a
// previous daemon with the same label left in StateDir.
func (r *Runtime) List(_ context.Context) ([]runtime.Info, error) {
	ents, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var out []runtime.Info
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		id := runtime.ID(e.Name())
		rec, err := readRecord(filepath.Join(r.cfg.StateDir, e.Name()))
		if err != nil || rec.Instance != r.cfg.Instance {
			continue
		}
		info := runtime.Info{ID: id, Function: rec.Function, Generation: rec.Generation, Instance: rec.Instance}
		r.mu.Lock()
		p, live := r.procs[id]
		r.mu.Unlock()
		if live {
			p.mu.Lock()
			info.Running = p.started
			p.mu.Unlock()
			if info.Running {
				select {
				case <-p.exited:
					info.Running = false
				default:
				}
			}
		} else if rec.PID > 0 {
			t, err := startTicks(rec.PID)
			info.Running = err == nil && t == rec.StartTicks
		}
		out = append(out, info)
	}
	return out, nil
}

// Close does nothing: instances outlive the backend until removed (a
// restarted daemon finds them with List).
func (r *Runtime) Close() error { return nil }
