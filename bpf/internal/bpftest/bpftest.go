//go:build linux

package bpftest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sluice-gpu/sluice/internal/testenv"
)

// Build compiles bpf/testdata/drvdouble.c into DIR/libcuda.so.1 and
// bpf/testdata/caller.c into DIR/caller, and returns their paths. Only root
// can attach probes, so it skips (fails in CI) first unless root.
func Build(t testing.TB) (lib, caller string) {
	t.Helper()
	testenv.RequireRoot(t)
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		testenv.Skip(t, "skipping: no C compiler "+cc)
	}
	src := filepath.Join(testenv.RepoRoot(t), "bpf", "testdata")
	dir := t.TempDir()
	lib = filepath.Join(dir, "libcuda.so.1")
	caller = filepath.Join(dir, "caller")
	for _, args := range [][]string{
		{"-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", lib, filepath.Join(src, "drvdouble.c")},
		{"-O2", "-Wall", "-Wextra", "-Werror", "-o", caller, filepath.Join(src, "caller.c"), "-ldl"},
	} {
		out, err := exec.Command(cc, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
		}
	}
	return lib, caller
}

// UnifiedRoot is the mount point of the cgroup-v2 hierarchy: /sys/fs/cgroup
// on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
func UnifiedRoot() (string, error) {
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil && st.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
			return d, nil
		}
	}
	return "", fmt.Errorf("no cgroup-v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

// Cgroup is a cgroup-v2 directory a test created.
type Cgroup struct {
	Path string
	ID   uint64 // the directory's inode number: what bpf_get_current_cgroup_id returns
}

// NewCgroup creates a fresh cgroup-v2 directory, removed at the end of the
// test. It needs root.
func NewCgroup(t testing.TB) Cgroup {
	t.Helper()
	testenv.RequireRoot(t)
	root, err := UnifiedRoot()
	if err != nil {
		testenv.Skip(t, "skipping: "+err.Error())
	}
	dir, err := os.MkdirTemp(root, "sluice-bpftest-")
	if err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	return adopt(t, dir)
}

// Command returns cmd set to start inside cg (clone3 CLONE_INTO_CGROUP).
// The returned function closes the cgroup descriptor; call it after Start.
func (cg Cgroup) Command(t testing.TB, name string, args ...string) (*exec.Cmd, func()) {
	t.Helper()
	fd, err := syscall.Open(cg.Path, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", cg.Path, err)
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd, func() { syscall.Close(fd) }
}

// Run runs name with args inside cg and fails the test if it fails.
func (cg Cgroup) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd, done := cg.Command(t, name, args...)
	defer done()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Paused is a process stopped at a "wait" op.
type Paused struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// StartPaused starts name inside cg and returns once it printed "ready"
// (its args must contain the op "wait").
func (cg Cgroup) StartPaused(t testing.TB, name string, args ...string) *Paused {
	t.Helper()
	cmd, done := cg.Command(t, name, args...)
	defer done()
	stdin, stdout := testenv.Pipes(t, cmd)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Paused{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("%s: want ready, got %q, %v", name, line, err)
	}
	return p
}

// PID is the paused process's id.
func (p *Paused) PID() int { return p.cmd.Process.Pid }

// Continue lets the process go on and returns its remaining stdout once it
// exited; it fails the test if the process failed.
func (p *Paused) Continue(t testing.TB) string {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	rest, _ := io.ReadAll(p.out)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("paused process: %v", err)
	}
	return string(rest)
}

// Child creates a cgroup named name under cg, removed at the end of the
// test (before cg, since cleanups run last-in first-out).
func (cg Cgroup) Child(t testing.TB, name string) Cgroup {
	t.Helper()
	dir := filepath.Join(cg.Path, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	return adopt(t, dir)
}

// adopt returns the cgroup the test just created at dir, which is removed
// at the end of the test.
func adopt(t testing.TB, dir string) Cgroup {
	t.Helper()
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Logf("remove cgroup %s: %v", dir, err)
		}
	})
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatalf("stat %s: %v", dir, err)
	}
	return Cgroup{Path: dir, ID: st.Ino}
}
