package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/internal/config"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

func TestServeHealthAndMetricsThenShutDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	// A driver library that does not exist: eBPF cannot run, the daemon logs
	// one line and serves without it, root or not.
	noLib := filepath.Join(t.TempDir(), "libcuda.so.1")
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-log-format", "json", "-ebpf-library", noLib}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run returned before serving: %v", err)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `sluice_build_info{version=`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, missing sluice_build_info or go collector:\n%.400s", code, body)
	}
	if code, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not shut down within 15s of cancel")
	}
	if n := strings.Count(logs.String(), "nvml unavailable"); n != 1 {
		t.Errorf("want exactly one line saying NVML is not available (no GPU here), got %d:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "ebpf observability disabled"); n != 1 {
		t.Errorf("want exactly one line saying eBPF is disabled, got %d:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("logs lack the stop line:\n%s", logs.String())
	}
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"version":1,"listen":"127.0.0.1:9999","log_level":"debug"}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\"version\":1,\n\"log_level\":7}"), 0o644)

	tests := []struct {
		name    string
		args    []string
		wantErr error
		check   func(config.Config) bool
	}{
		{"defaults", nil, nil, func(c config.Config) bool { return c == config.Default() }},
		{"file", []string{"-config", good}, nil, func(c config.Config) bool { return c.Listen == "127.0.0.1:9999" && c.LogLevel == "debug" }},
		{"flag overrides file", []string{"-config", good, "-listen", "127.0.0.1:1"}, nil, func(c config.Config) bool { return c.Listen == "127.0.0.1:1" && c.LogLevel == "debug" }},
		{"bad file", []string{"-config", bad}, config.ErrInvalid, nil},
		{"bad flag value", []string{"-log-format", "xml"}, config.ErrInvalid, nil},
		{"unknown flag", []string{"-frobnicate"}, errUsage, nil},
		{"stray argument", []string{"extra"}, errUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, io.Discard)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseConfig(%q) = %v, want %v", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("parseConfig(%q) = %+v, %v", tt.args, c, err)
			}
		})
	}
}

// TestEBPFAttachedToFakeDriver starts the daemon with eBPF on the fake CUDA
// driver (root only) and checks that the observer's metrics are served.
func TestEBPFAttachedToFakeDriver(t *testing.T) {
	testenv.RequireRoot(t)
	lib := testenv.Artifact(t, "fakecuda/libcuda.so.1")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-ebpf-library", lib}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run returned before serving: %v\n%s", err, logs.String())
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sluice_ebpf_") {
		t.Errorf("/metrics lacks the eBPF observer's sluice_ebpf_* metrics:\n%.600s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	if !strings.Contains(logs.String(), "ebpf observability attached") {
		t.Errorf("logs lack the attach line:\n%s", logs.String())
	}
}
