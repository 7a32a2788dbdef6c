// Package config is sluiced's configuration: one struct, documented
// defaults, a strict JSON file format and validation that names the field.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// FileVersion is the only config file version this build understands.
const FileVersion = 1

// MinInterval is the shortest accepted sampling interval (monitor_interval,
// ebpf.interval).
const MinInterval = 10 * time.Millisecond

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid config")

// Config is sluiced's configuration. The zero value is not valid; start from
// Default and overlay a file and flags.
type Config struct {
	// Version of the file format. Must be 1 when set in a file.
	Version int `json:"version"`
	// Listen is the HTTP address for the API, /healthz and /metrics.
	// Default "127.0.0.1:7690".
	Listen string `json:"listen"`
	// LogLevel is one of debug, info, warn, error. Default "info".
	LogLevel string `json:"log_level"`
	// LogFormat is text or json. Default "text".
	LogFormat string `json:"log_format"`
	// ShutdownTimeout bounds graceful shutdown after SIGTERM/SIGINT.
	// Default "10s" (a Go duration string in the file).
	ShutdownTimeout Duration `json:"shutdown_timeout"`
	// EBPF configures the eBPF observer (uprobes on the CUDA driver).
	EBPF EBPF `json:"ebpf"`
	// NVML reads GPU utilization and memory through NVML. Default true;
	// without libnvidia-ml (no GPU) the daemon logs one line and goes on.
	NVML bool `json:"nvml"`
	// MonitorInterval is how often GPU state is sampled. Default "500ms".
	MonitorInterval Duration `json:"monitor_interval"`
}

// EBPF configures the eBPF observer. Where eBPF cannot run (not root, no BTF,
// no uprobes, no driver library) the daemon logs one line and runs without it.
type EBPF struct {
	// Enabled attaches the probes at start. Default true.
	Enabled bool `json:"enabled"`
	// Library is the CUDA driver library to probe: the host's libcuda.so.1
	// that the NVIDIA container toolkit bind-mounts into containers, or the
	// fake driver on hosts without a GPU. Default "": the first of the usual
	// host paths that exists.
	Library string `json:"library"`
	// Launches probes kernel launches too. Default false: a uprobe costs
	// about 1 us, more than 5% of a native launch (docs/OBSERVABILITY.md).
	Launches bool `json:"launches"`
	// Interval between two reads of the BPF maps. Default "1s".
	Interval Duration `json:"interval"`
}

// Default returns the configuration used when no file or flag says otherwise.
func Default() Config {
	return Config{
		Version:         FileVersion,
		Listen:          "127.0.0.1:7690",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: Duration(10 * time.Second),
		EBPF:            EBPF{Enabled: true, Interval: Duration(time.Second)},
		NVML:            true,
		MonitorInterval: Duration(500 * time.Millisecond),
	}
}

// Duration is a time.Duration written as a Go duration string ("1.5s") in JSON.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "500ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Load overlays the JSON file at path onto base. Unknown fields, trailing
// data and a wrong version are errors; the error names the file and, for
// syntax errors, the line.
func Load(path string, base Config) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, base)
}

// Parse is Load on data already read; name is used in errors.
func Parse(name string, data []byte, base Config) (Config, error) {
	cfg := base
	cfg.Version = 0
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return base, fmt.Errorf("%s: %w: %w", position(name, data, dec.InputOffset(), err), ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("%s: %w: trailing data after the JSON object", name, ErrInvalid)
	}
	if cfg.Version != FileVersion {
		return base, fmt.Errorf("%s: %w: field version: got %d, want %d", name, ErrInvalid, cfg.Version, FileVersion)
	}
	return cfg, nil
}

// position renders "file:line" for err, using the syntax error's offset when
// there is one and the decoder's offset otherwise.
func position(name string, data []byte, off int64, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		off = te.Offset
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return fmt.Sprintf("%s:%d", name, 1+bytes.Count(data[:off], []byte("\n")))
}

// Validate reports the first invalid field, wrapping ErrInvalid.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: field listen %q: %w", ErrInvalid, c.Listen, err)
	}
	if _, err := c.SlogLevel(); err != nil {
		return err
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("%w: field log_format %q: want text or json", ErrInvalid, c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("%w: field shutdown_timeout %s: must be positive", ErrInvalid, time.Duration(c.ShutdownTimeout))
	}
	// A sampling interval near zero makes its ticker spin a core.
	if time.Duration(c.MonitorInterval) < MinInterval {
		return fmt.Errorf("%w: field monitor_interval %s: must be at least %s", ErrInvalid, time.Duration(c.MonitorInterval), MinInterval)
	}
	if time.Duration(c.EBPF.Interval) < MinInterval {
		return fmt.Errorf("%w: field ebpf.interval %s: must be at least %s", ErrInvalid, time.Duration(c.EBPF.Interval), MinInterval)
	}
	return nil
}

// SlogLevel parses LogLevel.
func (c Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(c.LogLevel))); err != nil {
		return 0, fmt.Errorf("%w: field log_level %q: want debug, info, warn or error", ErrInvalid, c.LogLevel)
	}
	return l, nil
}
