package process

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// killRecorder records the signals a Runtime sends and passes them on.
type killRecorder struct {
	mu    sync.Mutex
	calls [][2]int
}

func (k *killRecorder) kill(pid int, sig unix.Signal) error {
	k.mu.Lock()
	k.calls = append(k.calls, [2]int{pid, int(sig)})
	k.mu.Unlock()
	return unix.Kill(pid, sig)
}

func (k *killRecorder) take() [][2]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.calls
	k.calls = nil
	return c
}

func reviewRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "slpr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt, err := New(Config{Instance: "review", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return rt, dir
}

// startVictim starts a process-group leader that is not a Sluice instance.
func startVictim(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func alive(pid int) bool { return unix.Kill(pid, 0) == nil }

func writeLeftover(t *testing.T, stateDir, id string, rec record, uid int) {
	t.Helper()
	d := filepath.Join(stateDir, id)
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	f := filepath.Join(d, "instance.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		if err := os.Chown(f, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

// A function writes into its own instance directory: a record it forged
// (not owned by the daemon's user) must not make Remove kill anything.
func TestRemoveLeftoverIgnoresForgedRecord(t *testing.T) {
	testenv.RequireRoot(t)
	rt, dir := reviewRuntime(t)
	victim := startVictim(t)
	pid := victim.Process.Pid
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		uid     int
		rec     record
		killed  bool
		removed bool // Remove must succeed
	}{
		{"forged by the function's user", 65534, record{Instance: "review", Function: "f", PID: pid, StartTicks: ticks}, false, false},
		{"other daemon instance", os.Geteuid(), record{Instance: "other", Function: "f", PID: pid, StartTicks: ticks}, false, false},
		{"no start time", os.Geteuid(), record{Instance: "review", Function: "f", PID: pid}, false, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "pforged" + string(rune('a'+i))
			writeLeftover(t, dir, id, tc.rec, tc.uid)
			if err := rt.Remove(context.Background(), runtime.ID(id)); err != nil && tc.removed {
				t.Fatalf("Remove: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			if alive(pid) == tc.killed {
				t.Fatalf("victim alive=%v after Remove, want killed=%v", alive(pid), tc.killed)
			}
		})
	}
	// A genuine leftover (owned by the daemon's user) is still killed.
	writeLeftover(t, dir, "pgenuine", record{Instance: "review", Function: "f", PID: pid, StartTicks: ticks}, os.Geteuid())
	if err := rt.Remove(context.Background(), "pgenuine"); err != nil {
		t.Fatal(err)
	}
	victim.Wait()
	if _, err := os.Stat(filepath.Join(dir, "pgenuine")); !os.IsNotExist(err) {
		t.Fatalf("leftover dir not removed: %v", err)
	}
}

// A record naming pid 1 must never be signalled: kill(-1) reaches every
// process on the host.
func TestRemoveLeftoverNeverSignalsInit(t *testing.T) {
	rt, dir := reviewRuntime(t)
	rec := &killRecorder{}
	rt.kill = func(pid int, sig unix.Signal) error {
		rec.mu.Lock()
		rec.calls = append(rec.calls, [2]int{pid, int(sig)})
		rec.mu.Unlock()
		return nil // never actually signal here
	}
	ticks, err := startTicks(1)
	if err != nil {
		t.Skipf("no /proc/1/stat: %v", err)
	}
	writeLeftover(t, dir, "pinit", record{Instance: "review", Function: "f", PID: 1, StartTicks: ticks}, os.Geteuid())
	if err := rt.Remove(context.Background(), "pinit"); err != nil {
		t.Fatal(err)
	}
	if c := rec.take(); len(c) != 0 {
		t.Fatalf("signals sent for a pid-1 record: %v", c)
	}
}

// writeRecord must not follow a link the function planted at its temporary
// file name (the daemon is root; the link could name any file).
func TestWriteRecordDoesNotFollowLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, ".instance.json")); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, record{Instance: "i", Function: "f"}); err != nil {
		t.Fatalf("writeRecord: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("link target overwritten: %q", b)
	}
	got, err := readRecord(dir)
	if err != nil || got.Function != "f" {
		t.Fatalf("readRecord = %+v, %v", got, err)
	}
}

func TestInstanceDirIsSticky(t *testing.T) {
	rt, _ := reviewRuntime(t)
	id, err := rt.Create(context.Background(), runtime.Spec{Function: "f", Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(context.Background(), id)
	d, _ := rt.Dir(id)
	fi, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("instance dir mode %v, want sticky and 0777", fi.Mode())
	}
}

// Once the main process has exited (and been reaped) its pid may be reused:
// Stop and Remove must not signal its process group any more.
func TestNoSignalsAfterExit(t *testing.T) {
	rt, _ := reviewRuntime(t)
	rec := &killRecorder{}
	rt.kill = rec.kill
	ctx := context.Background()
	id, err := rt.Create(ctx, runtime.Spec{Function: "f", Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	exit, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		t.Fatal("instance did not exit")
	}
	rec.take()
	if err := rt.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c := rec.take(); len(c) != 0 {
		t.Fatalf("signals sent after the instance exited: %v", c)
	}
}

// A command that exists but cannot run is a bad spec, not a missing one.
func TestCreateCommandErrors(t *testing.T) {
	rt, _ := reviewRuntime(t)
	noexec := filepath.Join(t.TempDir(), "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cmd  string
		want error
	}{
		{"missing", filepath.Join(t.TempDir(), "absent"), runtime.ErrNotFound},
		{"missing on PATH", "sluice-no-such-command", runtime.ErrNotFound},
		{"not executable", noexec, runtime.ErrInvalid},
		{"directory", t.TempDir(), runtime.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rt.Create(context.Background(), runtime.Spec{Function: "f", Command: []string{tc.cmd}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Create(%s) = %v, want %v", tc.cmd, err, tc.want)
			}
		})
	}
}
