package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePath(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		path, runtime, container string
	}{
		{"/docker/" + id, "docker", id},
		{"/system.slice/docker-" + id + ".scope", "docker", id},
		{"/system.slice/docker-" + id + ".scope/init.scope", "docker", id},
		{"/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope", "containerd", id},
		{"/machine.slice/libpod-" + id + ".scope", "podman", id},
		{"/kubepods/burstable/pod7/" + id, "kubernetes", id},
		{"/crio-" + id + ".scope", "crio", id},
		{"/", "", ""},
		{"", "", ""},
		{"/user.slice/user-0.slice/session-1.scope", "", ""},
		{"/" + id, "", ""},              // a bare id with no runtime parent
		{"/docker/" + id[:63], "", ""},  // too short
		{"/docker/" + id + "0", "", ""}, // too long
		{"/system.slice/docker-" + strings.ToUpper(id) + ".scope", "", ""},
		{"/sluice-bpftest-1/docker-" + id + ".scope", "docker", id},
	}
	for _, tt := range tests {
		rt, ctr := ParsePath(tt.path)
		if rt != tt.runtime || ctr != tt.container {
			t.Errorf("ParsePath(%q) = %q, %q; want %q, %q", tt.path, rt, ctr, tt.runtime, tt.container)
		}
	}
}

// TestResolverScan runs the resolver over an ordinary directory tree: it
// only needs directories and their inode numbers.
func TestResolverScan(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("ab", 32)
	ctrDir := filepath.Join("system.slice", "docker-"+id+".scope")
	if err := os.MkdirAll(filepath.Join(root, ctrDir), 0o755); err != nil {
		t.Fatal(err)
	}
	ctrID, err := ID(root, ctrDir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	r := NewResolver(root, time.Second)
	r.now = func() time.Time { return now }

	info, ok := r.Lookup(ctrID)
	want := Info{ID: ctrID, Path: "/" + ctrDir, Runtime: "docker", Container: id}
	if !ok || info != want {
		t.Fatalf("Lookup = %+v, %v; want %+v", info, ok, want)
	}

	// A cgroup created after the scan is found on a miss, but only once
	// MinRescan has passed.
	if err := os.Mkdir(filepath.Join(root, "late"), 0o755); err != nil {
		t.Fatal(err)
	}
	lateID, _ := ID(root, "late")
	if _, ok := r.Lookup(lateID); ok {
		t.Errorf("found a new cgroup before MinRescan passed")
	}
	now = now.Add(2 * time.Second)
	if info, ok := r.Lookup(lateID); !ok || info.Path != "/late" || info.Container != "" {
		t.Errorf("Lookup(late) = %+v, %v", info, ok)
	}

	if !r.Exists(ctrID) {
		t.Errorf("Exists = false for a present cgroup")
	}
	if err := os.Remove(filepath.Join(root, ctrDir)); err != nil {
		t.Fatal(err)
	}
	if r.Exists(ctrID) {
		t.Errorf("Exists = true after removal")
	}
	if info, ok := r.Lookup(ctrID); !ok || info.Container != id {
		t.Errorf("a removed cgroup was forgotten before Forget: %+v, %v", info, ok)
	}
	r.Forget(ctrID)
	now = now.Add(2 * time.Second)
	if _, ok := r.Lookup(ctrID); ok {
		t.Errorf("Lookup found a forgotten, removed cgroup")
	}
	if err := NewResolver(filepath.Join(root, "missing"), 0).Rescan(); err == nil {
		t.Errorf("Rescan of a missing root: no error")
	}
}

func TestUnifiedPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0::/docker/abc\n", "/docker/abc", true},
		{"12:pids:/x\n1:name=systemd:/y\n0::/system.slice/docker-1.scope\n", "/system.slice/docker-1.scope", true},
		{"0::/\n", "/", true},
		{"4:memory:/a\n", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := unifiedPath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("unifiedPath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestLookupPID resolves through a fake /proc/PID/cgroup, bypassing the
// rescan rate limit, and checks the inode against the claimed id.
func TestLookupPID(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	id := strings.Repeat("cd", 32)
	dir := filepath.Join("docker", id)
	if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cgID, _ := ID(root, dir)
	if err := os.MkdirAll(filepath.Join(proc, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "42", "cgroup"), []byte("3:cpu:/\n0::/"+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(root, time.Hour)
	r.proc = proc
	r.lastScan = time.Now() // a scan just happened: Lookup alone would not rescan
	info, ok := r.LookupPID(cgID, 42)
	if !ok || info.Container != id || info.Path != "/"+dir {
		t.Errorf("LookupPID = %+v, %v", info, ok)
	}
	if _, ok := r.LookupPID(cgID+1000, 42); ok {
		t.Errorf("LookupPID accepted a process whose cgroup has another id")
	}
	if _, ok := r.LookupPID(12345, 7); ok {
		t.Errorf("LookupPID found a process that does not exist")
	}
}
