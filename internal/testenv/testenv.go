// Package testenv tells tests what the machine offers (root, a Docker engine,
// built artifacts) and applies the project's skip rule: a test that needs
// something missing skips with one clear line, except under SLUICE_CI=1, where
// the same test fails instead, because CI provisions everything.
package testenv

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
