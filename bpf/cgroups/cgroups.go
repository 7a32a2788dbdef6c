package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Info describes one cgroup.
type Info struct {
	ID        uint64
	Path      string // relative to the cgroup-v2 root, starting with "/"
	Runtime   string // "docker", "containerd", "crio", "podman"; "" outside containers
	Container string // the full container id; "" outside containers
}

var patterns = []struct {
	runtime string
	re      *regexp.Regexp
}{
	{"docker", regexp.MustCompile(`^docker-([0-9a-f]{64})\.scope$`)},
	{"containerd", regexp.MustCompile(`^cri-containerd-([0-9a-f]{64})\.scope$`)},
	{"crio", regexp.MustCompile(`^crio-([0-9a-f]{64})\.scope$`)},
	{"podman", regexp.MustCompile(`^libpod-([0-9a-f]{64})\.scope$`)},
}

var bareID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParsePath finds the container a cgroup path belongs to: the innermost
// path element named like a runtime's container cgroup. A bare 64-hex
// element counts only under a "docker" parent (cgroupfs driver) or a
// kubepods tree.
func ParsePath(path string) (runtime, container string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		for _, pat := range patterns {
			if m := pat.re.FindStringSubmatch(p); m != nil {
				return pat.runtime, m[1]
			}
		}
		if bareID.MatchString(p) && i > 0 {
			switch {
			case parts[i-1] == "docker":
				return "docker", p
			case strings.HasPrefix(parts[0], "kubepods"):
				return "kubernetes", p
			}
		}
	}
	return "", ""
}

// Root finds the cgroup-v2 mount: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one.
func Root() (string, error) {
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil && st.Type == cgroup2Magic {
			return d, nil
		}
	}
	return "", errors.New("find cgroup-v2 hierarchy: none at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

const cgroup2Magic = 0x63677270

// Resolver maps cgroup ids to [Info]. It rescans the hierarchy when asked
// about an unknown id, at most once per MinRescan. Safe for concurrent use.
type Resolver struct {
	root      string
	proc      string // procfs mount, /proc
	minRescan time.Duration
	now       func() time.Time

	mu   sync.Mutex
	byID map[uint64]Info
	// asked holds the ids a caller resolved: only those outlive their
	// directory (until Forget); the rest of the host's cgroups are dropped
	// by the next scan once gone, so churn does not grow byID for good.
	asked    map[uint64]struct{}
	lastScan time.Time
}

// NewResolver returns a resolver for the hierarchy mounted at root (see
// [Root]). minRescan bounds how often a miss rescans; 0 rescans on every miss.
func NewResolver(root string, minRescan time.Duration) *Resolver {
	return &Resolver{root: root, proc: "/proc", minRescan: minRescan, now: time.Now,
		byID: map[uint64]Info{}, asked: map[uint64]struct{}{}}
}

// Lookup returns what is known of cgroup id. ok is false if no directory
// with that id exists (any more, or yet, as of the last scan).
func (r *Resolver) Lookup(id uint64) (info Info, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if info, ok := r.byID[id]; ok {
		r.asked[id] = struct{}{}
		return info, true
	}
	if !r.lastScan.IsZero() && r.now().Sub(r.lastScan) < r.minRescan {
		return Info{ID: id}, false
	}
	if err := r.scanLocked(); err != nil {
		return Info{ID: id}, false
	}
	info, ok = r.byID[id]
	if !ok {
		info.ID = id
	} else {
		r.asked[id] = struct{}{}
	}
	return info, ok
}

// Rescan rereads the hierarchy now. Cgroups that disappeared stay known
// (their counters outlive them) until [Resolver.Forget] if they were looked
// up; others are dropped.
func (r *Resolver) Rescan() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scanLocked()
}

func (r *Resolver) scanLocked() error {
	r.lastScan = r.now()
	byID := make(map[uint64]Info, len(r.byID))
	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == r.root {
				return err
			}
			return nil // a cgroup removed while walking
		}
		if !d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, r.root), "/")
		rt, ctr := ParsePath(rel)
		byID[st.Ino] = Info{ID: st.Ino, Path: rel, Runtime: rt, Container: ctr}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cgroups under %s: %w", r.root, err)
	}
	for id := range r.asked {
		if _, ok := byID[id]; !ok {
			if info, ok := r.byID[id]; ok {
				byID[id] = info
			}
		}
	}
	r.byID = byID
	return nil
}

// Exists reports whether the cgroup's directory is still there (by the
// path last seen for it). A gone cgroup is still known to Lookup.
func (r *Resolver) Exists(id uint64) bool {
	r.mu.Lock()
	info, ok := r.byID[id]
	r.mu.Unlock()
	if !ok {
		return false
	}
	var st syscall.Stat_t
	err := syscall.Stat(filepath.Join(r.root, info.Path), &st)
	return err == nil && st.Ino == id
}

// Forget drops what is known of cgroup id.
func (r *Resolver) Forget(id uint64) {
	r.mu.Lock()
	delete(r.byID, id)
	delete(r.asked, id)
	r.mu.Unlock()
}

// LookupPID resolves cgroup id through a process known to be in it, by
// reading /proc/PID/cgroup: no tree walk and no rate limit, for the moment
// a process is seen (a short-lived container's cgroup may be gone by the
// next scan). It falls back to [Resolver.Lookup].
func (r *Resolver) LookupPID(id uint64, pid uint32) (Info, bool) {
	if info, ok := r.fromPID(id, pid); ok {
		return info, true
	}
	return r.Lookup(id)
}

func (r *Resolver) fromPID(id uint64, pid uint32) (Info, bool) {
	r.mu.Lock()
	info, ok := r.byID[id]
	if ok {
		r.asked[id] = struct{}{}
	}
	r.mu.Unlock()
	if ok {
		return info, true
	}
	b, err := os.ReadFile(filepath.Join(r.proc, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return Info{}, false
	}
	rel, ok := unifiedPath(string(b))
	if !ok {
		return Info{}, false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(r.root, rel), &st); err != nil || st.Ino != id {
		return Info{}, false // moved since, or a cgroup namespace hides the path
	}
	rt, ctr := ParsePath(rel)
	info = Info{ID: id, Path: rel, Runtime: rt, Container: ctr}
	r.mu.Lock()
	r.byID[id] = info
	r.asked[id] = struct{}{}
	r.mu.Unlock()
	return info, true
}

// unifiedPath returns the cgroup-v2 path ("0::/path") of a /proc/PID/cgroup file.
func unifiedPath(procCgroup string) (string, bool) {
	for _, line := range strings.Split(procCgroup, "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return "/" + strings.TrimPrefix(rest, "/"), true
		}
	}
	return "", false
}

// ID returns the cgroup id of a path relative to root (for tests and tools).
func ID(root, path string) (uint64, error) {
	fi, err := os.Stat(filepath.Join(root, path))
	if err != nil {
		return 0, fmt.Errorf("stat cgroup: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat cgroup %s: no inode", path)
	}
	return st.Ino, nil
}
