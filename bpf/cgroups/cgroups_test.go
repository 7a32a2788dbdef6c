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
