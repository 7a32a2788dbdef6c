package cgroups

import (
	"os"
	"path/filepath"
	"testing"
)

// Every scan walks the whole host hierarchy: cgroups nobody asked about
// must not stay in memory once gone, or container churn grows the
// resolver without bound. Ones that were looked up still outlive their
// directory until Forget (their counters do).
func TestScanDropsGoneCgroupsNobodyAsked(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) uint64 {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
		id, err := ID(root, p)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	r := NewResolver(root, 0)
	asked := mk("system.slice/docker-1111111111111111111111111111111111111111111111111111111111111111.scope")
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(asked); !ok {
		t.Fatal("lookup of an existing cgroup failed")
	}
	for round := range 50 {
		p := filepath.Join("churn", "c"+string(rune('a'+round%26))+string(rune('a'+round/26)))
		mk(p)
		if err := r.Rescan(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(root, "system.slice")); err != nil {
		t.Fatal(err)
	}
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	n := len(r.byID)
	r.mu.Unlock()
	// Left: the root, "churn" and the asked-about cgroup.
	if n > 3 {
		t.Fatalf("resolver holds %d cgroups after churn, want at most 3", n)
	}
	if _, ok := r.Lookup(asked); !ok {
		t.Fatal("a looked-up cgroup was dropped before Forget")
	}
	r.Forget(asked)
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(asked); ok {
		t.Fatal("a forgotten, gone cgroup is still known")
	}
}
