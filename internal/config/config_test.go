package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; empty means success
		check   func(Config) bool
	}{
		{"full", `{"version":1,"listen":"0.0.0.0:9000","log_level":"debug","log_format":"json","shutdown_timeout":"3s"}`, "",
			func(c Config) bool {
				return c.Listen == "0.0.0.0:9000" && c.LogFormat == "json" && time.Duration(c.ShutdownTimeout) == 3*time.Second
			}},
		{"partial keeps defaults", `{"version":1,"log_level":"warn"}`, "",
			func(c Config) bool { return c.Listen == Default().Listen && c.LogLevel == "warn" }},
		{"nested ebpf", `{"version":1,"ebpf":{"enabled":false,"library":"/x/libcuda.so.1","interval":"250ms"}}`, "",
			func(c Config) bool {
				return !c.EBPF.Enabled && c.EBPF.Library == "/x/libcuda.so.1" && time.Duration(c.EBPF.Interval) == 250*time.Millisecond
			}},
		{"nested unknown field", `{"version":1,"ebpf":{"enable":true}}`, `unknown field "enable"`, nil},
		{"missing version", `{"listen":"a:1"}`, "field version: got 0", nil},
		{"unknown field", `{"version":1,"lisen":"a:1"}`, `unknown field "lisen"`, nil},
		{"syntax error line", "{\n\"version\":1,\n\"listen\": }", "c.json:3", nil},
		{"bad duration", `{"version":1,"shutdown_timeout":"soon"}`, "invalid duration", nil},
		{"trailing data", `{"version":1} {}`, "trailing data", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.json", []byte(tt.in), Default())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%s) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", tt.in, err)
			}
			if !tt.check(c) {
				t.Errorf("Parse(%s) = %+v", tt.in, c)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"listen", func(c *Config) { c.Listen = "nohostport" }, "field listen"},
		{"level", func(c *Config) { c.LogLevel = "loud" }, "field log_level"},
		{"format", func(c *Config) { c.LogFormat = "xml" }, "field log_format"},
		{"timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "field shutdown_timeout"},
		{"monitor interval", func(c *Config) { c.MonitorInterval = 0 }, "field monitor_interval"},
		{"ebpf interval", func(c *Config) { c.EBPF.Interval = -1 }, "field ebpf.interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want ErrInvalid naming %q", err, tt.field)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"), Default())
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want ErrNotExist", err)
	}
}
