// Package testenv tells tests what the machine offers (root, a Docker engine,
// built artifacts) and applies the project's skip rule: a test that needs
// something missing skips with one clear line, except under SLUICE_CI=1, where
// the same test fails instead, because CI provisions everything.
package testenv

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// InCI reports whether SLUICE_CI=1, set by .ci/run: missing prerequisites fail there.
func InCI() bool { return os.Getenv("SLUICE_CI") == "1" }

// Skip skips t with reason, or fails it in CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (fails in CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "skipping: needs root")
	}
}

// DockerHost is the Unix socket of the Docker engine: DOCKER_HOST's unix://
// path if set, else /var/run/docker.sock.
func DockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); len(h) > len("unix://") && h[:7] == "unix://" {
		return h[7:]
	}
	return "/var/run/docker.sock"
}

// RequireDocker skips (fails in CI) unless a Docker engine answers /_ping.
func RequireDocker(t testing.TB) {
	t.Helper()
	sock := DockerHost()
	c := http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		Skip(t, "skipping: no Docker engine answers at "+sock)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		Skip(t, "skipping: Docker engine at "+sock+" answered "+resp.Status)
	}
}

// RepoRoot returns the repository root: the nearest parent holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// BuildDir is where `make build` puts artifacts: $SLUICE_BUILD if set, else <repo>/build.
func BuildDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SLUICE_BUILD"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "build")
}

// Artifact returns the path of a built artifact (relative to BuildDir), or
// skips (fails in CI) with a line saying to run `make build` if it is missing.
func Artifact(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(BuildDir(t), rel)
	if _, err := os.Stat(p); err != nil {
		Skip(t, "skipping: "+p+" not built (run make build)")
	}
	return p
}

// ShortDir returns a fresh directory directly under the system's temporary
// directory, named prefix plus a random suffix, removed with its contents at
// the end of the test. Its path stays short: Unix socket paths are limited
// to 107 bytes, which t.TempDir's paths (they hold the test's name) can
// exceed. The directory has mode 0700.
func ShortDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("create temporary directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// GoBuild compiles the Go package pkg (as `go build` names it, relative to
// dir; dir "" is the test's directory) into a static binary (CGO_ENABLED=0)
// at out and returns out. It fails the test with the compiler's output if
// the build fails.
func GoBuild(t testing.TB, dir, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", filepath.Join(dir, pkg), err, b)
	}
	return out
}

// Pipes connects the standard input and output of cmd (not yet started) to
// the test, for programs driven line by line, and fails the test if it
// cannot.
func Pipes(t testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("stdin of %s: %v", cmd.Path, err)
	}
	stdout, err = cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout of %s: %v", cmd.Path, err)
	}
	return stdin, stdout
}

// Binaries builds test programs once per test binary, into one temporary
// directory that Remove deletes: declare one in a test package, call Remove
// from TestMain after m.Run. The zero value is ready to use and safe for
// concurrent tests.
type Binaries struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
}

// Get returns the program called name, building it on first use with build,
// which writes it into the directory it is given (shared by all the
// programs, mode 0700) and returns its path. A build that fails the test is
// tried again by the next test that asks.
func (b *Binaries) Get(t testing.TB, name string, build func(dir string) string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.paths[name]; ok {
		return p
	}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "sluice-bin")
		if err != nil {
			t.Fatalf("create directory for test programs: %v", err)
		}
		b.dir = d
	}
	p := build(b.dir)
	if b.paths == nil {
		b.paths = make(map[string]string)
	}
	b.paths[name] = p
	return p
}

// Remove deletes every program built so far.
func (b *Binaries) Remove() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	b.dir, b.paths = "", nil
}
