package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid function spec")

// FileName is the spec's file name inside a function directory.
const FileName = "function.json"

// Protocol is how Sluice talks to a function's main process.
type Protocol string

const (
	// ProtocolSluice is Sluice's own protocol: HTTP on a Unix socket that
	// Sluice bind-mounts (GET /ready, POST /invoke). See docs/FUNCTIONS.md.
	ProtocolSluice Protocol = "sluice"
	// ProtocolOpenWhisk is Apache OpenWhisk's action protocol: HTTP on TCP
	// port 8080 (POST /init, POST /run).
	ProtocolOpenWhisk Protocol = "openwhisk"
)

// Duration is a time.Duration written as a Go duration string ("250ms", "10s").
type Duration time.Duration

// UnmarshalJSON accepts a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"10s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Function is one function.json.
type Function struct {
	// Name identifies the function: lower-case letters, digits, '-' and '_',
	// starting with a letter, at most 63 characters. Required.
	Name string `json:"name"`
	// Image is the Docker image reference the function runs in. Default
	// "sluice-fn/<name>:latest", the tag `sluice image build` gives it.
	Image string `json:"image,omitempty"`
	// Build says how `sluice image build` assembles the image. Optional for
	// functions whose image exists already.
	Build *Build `json:"build,omitempty"`
	// Command is the main process inside the image, as an argument vector.
	// Default: derived from Build (the binary, or the Python runtime), else the
	// image's own command.
	Command []string `json:"command,omitempty"`
	// Protocol is "sluice" (default) or "openwhisk".
	Protocol Protocol `json:"protocol,omitempty"`
	// GPU asks for a GPU (the shim is injected). Default false.
	GPU bool `json:"gpu,omitempty"`
	// Limits are resource limits. Zero values take the defaults below.
	Limits Limits `json:"limits,omitzero"`
	// Network gives the container a network (Docker's default bridge).
	// Default false: no network at all.
	Network bool `json:"network,omitempty"`
	// Env is extra environment for the main process. Names starting with
	// SLUICE_ are reserved.
	Env map[string]string `json:"env,omitempty"`
	// User is the user the main process runs as (uid[:gid] or a name the
	// image knows). Default: the image's user (65534 for built images).
	User string `json:"user,omitempty"`
	// Timeouts bound readiness and invocations.
	Timeouts Timeouts `json:"timeouts,omitzero"`
	// KeepAlive is how long an idle warm instance is kept. Default 10m.
	KeepAlive Duration `json:"keep_alive,omitempty"`
	// OpenWhisk is the /init payload for openwhisk-protocol functions.
	OpenWhisk *OpenWhiskInit `json:"openwhisk,omitempty"`

	// Dir is the directory the spec was loaded from (not part of the JSON).
	Dir string `json:"-"`
}

// Build describes how to assemble a function's image. Exactly one of Binary
// and Python is set.
type Build struct {
	// Binary is the path of an ELF executable (relative to the spec's
	// directory, or absolute). It is copied to /fn/<base name> with the
	// shared libraries it needs.
	Binary string `json:"binary,omitempty"`
	// Python is a Python 3 source file (relative to the spec's directory)
	// defining main(args). It runs under Sluice's Python runtime with the
	// host's python3 and its standard library.
	Python string `json:"python,omitempty"`
	// Files are extra files or directories (relative to the spec's
	// directory) copied under /fn.
	Files []string `json:"files,omitempty"`
	// Adapter is "exec" for a Binary that does not serve the protocol but
	// runs once per request (stdin: the request; stdout: the result): it is
	// run by Sluice's exec adapter (sluice-exec). Default "": the binary
	// serves the protocol itself.
	Adapter string `json:"adapter,omitempty"`
}

// AdapterExec is Build.Adapter's one value.
const AdapterExec = "exec"

// Limits are per-instance resource limits.
type Limits struct {
	// MemoryMB is the memory limit in MiB. Default 512.
	MemoryMB int64 `json:"memory_mb,omitempty"`
	// CPUs is the CPU limit in cores (fractions allowed). Default 1.
	CPUs float64 `json:"cpus,omitempty"`
	// Pids is the maximum number of processes and threads. Default 256.
	Pids int64 `json:"pids,omitempty"`
}

// Timeouts bound an instance's readiness and each invocation.
type Timeouts struct {
	// Ready bounds create-to-ready. Default 30s.
	Ready Duration `json:"ready,omitempty"`
	// Invoke bounds one invocation; past it the instance is killed and
	// replaced. Default 60s.
	Invoke Duration `json:"invoke,omitempty"`
}

// OpenWhiskInit is the "value" of the OpenWhisk /init request.
type OpenWhiskInit struct {
	// Main is the entry point name. Default "main".
	Main string `json:"main,omitempty"`
	// Code is a file (relative to the spec's directory) whose content is sent
	// as the action's code. Optional: images with the action built in need none.
	Code string `json:"code,omitempty"`
	// Binary says Code is base64-encoded binary (a zip). Default false.
	Binary bool `json:"binary,omitempty"`
}

// Defaults.
const (
	DefaultMemoryMB  = 512
	DefaultCPUs      = 1.0
	DefaultPids      = 256
	DefaultReady     = 30 * time.Second
	DefaultInvoke    = 60 * time.Second
	DefaultKeepAlive = 10 * time.Minute
	// ImagePrefix prefixes the default image reference.
	ImagePrefix = "sluice-fn/"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Load reads and validates the spec at path, or at path/function.json when
// path is a directory.
func Load(path string) (*Function, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read function spec: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	f.Dir = abs
	return f, nil
}

// Parse decodes and validates one spec, filling in defaults. Errors name the
// offending field (and the line for JSON syntax errors) and wrap ErrInvalid.
func Parse(data []byte) (*Function, error) {
	if err := checkDurations(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Function
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f.applyDefaults()
	return &f, nil
}

// checkDurations parses the duration fields first, so their errors name the
// field (the decoder does not add it to errors from UnmarshalJSON).
func checkDurations(data []byte) error {
	var d struct {
		KeepAlive json.RawMessage `json:"keep_alive"`
		Timeouts  struct {
			Ready  json.RawMessage `json:"ready"`
			Invoke json.RawMessage `json:"invoke"`
		} `json:"timeouts"`
	}
	if json.Unmarshal(data, &d) != nil {
		return nil // the strict decode reports it
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"keep_alive", d.KeepAlive}, {"timeouts.ready", d.Timeouts.Ready}, {"timeouts.invoke", d.Timeouts.Invoke}} {
		if len(f.raw) == 0 {
			continue
		}
		var v Duration
		if err := v.UnmarshalJSON(f.raw); err != nil {
			return invalid(f.name, "%v", err)
		}
	}
	return nil
}

func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: %v", lineOf(data, syn.Offset), syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("line %d: field %q: want %s, got JSON %s", lineOf(data, typ.Offset), typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return err.Error()
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: field %q: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks every field; it does not fill in defaults.
func (f *Function) Validate() error {
	if f.Name == "" {
		return invalid("name", "required")
	}
	if !nameRE.MatchString(f.Name) {
		return invalid("name", "%q: use lower-case letters, digits, '-' and '_', starting with a letter, at most 63 characters", f.Name)
	}
	switch f.Protocol {
	case "", ProtocolSluice, ProtocolOpenWhisk:
	default:
		return invalid("protocol", "%q: want \"sluice\" or \"openwhisk\"", f.Protocol)
	}
	if f.OpenWhisk != nil && f.Protocol != ProtocolOpenWhisk {
		return invalid("openwhisk", "only for protocol \"openwhisk\"")
	}
	if f.Image != "" && strings.ContainsAny(f.Image, " \t\n") {
		return invalid("image", "%q: contains white space", f.Image)
	}
	if b := f.Build; b != nil {
		switch {
		case b.Binary == "" && b.Python == "":
			return invalid("build", "set one of \"binary\" and \"python\"")
		case b.Binary != "" && b.Python != "":
			return invalid("build", "set only one of \"binary\" and \"python\"")
		}
		switch {
		case b.Adapter != "" && b.Adapter != AdapterExec:
			return invalid("build.adapter", "%q: want \"exec\" or nothing", b.Adapter)
		case b.Adapter != "" && b.Binary == "":
			return invalid("build.adapter", "only for a \"binary\"")
		}
		if b.Python != "" && filepath.IsAbs(b.Python) {
			return invalid("build.python", "%q: must be relative to the spec's directory", b.Python)
		}
		for i, p := range b.Files {
			if p == "" || filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") {
				return invalid(fmt.Sprintf("build.files[%d]", i), "%q: must be a relative path inside the spec's directory", p)
			}
		}
	}
	if f.Image == "" && f.Build == nil {
		return invalid("image", "set \"image\" or \"build\"")
	}
	for i, a := range f.Command {
		if a == "" && i == 0 {
			return invalid("command", "first element is empty")
		}
	}
	if f.Limits.MemoryMB < 0 || (f.Limits.MemoryMB > 0 && f.Limits.MemoryMB < 6) {
		return invalid("limits.memory_mb", "%d: want at least 6 (MiB), or 0 for the default %d", f.Limits.MemoryMB, DefaultMemoryMB)
	}
	if f.Limits.CPUs < 0 || f.Limits.CPUs > 1024 {
		return invalid("limits.cpus", "%g: want a value in (0, 1024], or 0 for the default %g", f.Limits.CPUs, DefaultCPUs)
	}
	if f.Limits.Pids < 0 || (f.Limits.Pids > 0 && f.Limits.Pids < 4) {
		return invalid("limits.pids", "%d: want at least 4, or 0 for the default %d", f.Limits.Pids, DefaultPids)
	}
	for k := range f.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return invalid("env", "%q: not a valid variable name", k)
		case strings.HasPrefix(k, "SLUICE_"):
			return invalid("env", "%q: SLUICE_ variables are set by Sluice", k)
		case k == "LD_PRELOAD" && f.GPU:
			return invalid("env", "LD_PRELOAD is set by Sluice for GPU functions")
		}
	}
	if f.Timeouts.Ready < 0 {
		return invalid("timeouts.ready", "negative")
	}
	if f.Timeouts.Invoke < 0 {
		return invalid("timeouts.invoke", "negative")
	}
	if f.KeepAlive < 0 {
		return invalid("keep_alive", "negative")
	}
	return nil
}

func (f *Function) applyDefaults() {
	if f.Protocol == "" {
		f.Protocol = ProtocolSluice
	}
	if f.Image == "" {
		f.Image = ImagePrefix + f.Name + ":latest"
	}
	if f.Limits.MemoryMB == 0 {
		f.Limits.MemoryMB = DefaultMemoryMB
	}
	if f.Limits.CPUs == 0 {
		f.Limits.CPUs = DefaultCPUs
	}
	if f.Limits.Pids == 0 {
		f.Limits.Pids = DefaultPids
	}
	if f.Timeouts.Ready == 0 {
		f.Timeouts.Ready = Duration(DefaultReady)
	}
	if f.Timeouts.Invoke == 0 {
		f.Timeouts.Invoke = Duration(DefaultInvoke)
	}
	if f.KeepAlive == 0 {
		f.KeepAlive = Duration(DefaultKeepAlive)
	}
	if f.Protocol == ProtocolOpenWhisk && f.OpenWhisk == nil {
		f.OpenWhisk = &OpenWhiskInit{}
	}
	if f.OpenWhisk != nil && f.OpenWhisk.Main == "" {
		f.OpenWhisk.Main = "main"
	}
}

// Path resolves p (from Build or OpenWhisk) against the spec's directory.
func (f *Function) Path(p string) string {
	if filepath.IsAbs(p) || f.Dir == "" {
		return p
	}
	return filepath.Join(f.Dir, p)
}

// In-image locations used by built images and the default command.
const (
	// FnDir holds the function's files inside a built image.
	FnDir = "/fn"
	// PythonRuntimePath is the Python runtime inside a built image.
	PythonRuntimePath = "/sluice/runtime.py"
	// PythonPath is the interpreter inside a built Python image.
	PythonPath = "/usr/bin/python3"
	// ExecAdapterPath is sluice-exec inside a built image.
	ExecAdapterPath = "/sluice/exec"
)

// ImageCommand is the main process's argument vector inside the image:
// Command if set, else derived from Build, else nil (the image's own).
func (f *Function) ImageCommand() []string {
	switch {
	case len(f.Command) > 0:
		return f.Command
	case f.Build == nil:
		return nil
	case f.Build.Binary != "" && f.Build.Adapter == AdapterExec:
		return []string{ExecAdapterPath, FnDir + "/" + filepath.Base(f.Build.Binary)}
	case f.Build.Binary != "":
		return []string{FnDir + "/" + filepath.Base(f.Build.Binary)}
	default:
		return []string{PythonPath, "-B", PythonRuntimePath, FnDir + "/" + filepath.Base(f.Build.Python)}
	}
}

// HostRuntimes locates Sluice's runtimes on the host, for HostCommand.
type HostRuntimes struct {
	// Python is the path of the Python runtime (python.WriteTo writes it).
	Python string
	// Exec is the path of sluice-exec (build/sluice-exec).
	Exec string
}

// HostCommand is the argument vector for running the function as a host
// process (the process backend): the built binary (behind sluice-exec for
// the exec adapter), or python3 with the Python runtime. Command is used
// only when there is no build section.
func (f *Function) HostCommand(rt HostRuntimes) ([]string, error) {
	b := f.Build
	switch {
	case b != nil && b.Binary != "" && b.Adapter == AdapterExec:
		if rt.Exec == "" {
			return nil, fmt.Errorf("function %q: the exec adapter (sluice-exec) is not available", f.Name)
		}
		return []string{rt.Exec, f.Path(b.Binary)}, nil
	case b != nil && b.Binary != "":
		return []string{f.Path(b.Binary)}, nil
	case b != nil:
		if rt.Python == "" {
			return nil, fmt.Errorf("function %q: the Python runtime is not available", f.Name)
		}
		return []string{"python3", "-B", rt.Python, f.Path(b.Python)}, nil
	case len(f.Command) > 0:
		return f.Command, nil
	}
	return nil, fmt.Errorf("function %q: no build section or command to run as a process", f.Name)
}
