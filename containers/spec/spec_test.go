package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	f, err := Parse([]byte(`{"name":"echo","build":{"binary":"fn"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Image != "sluice-fn/echo:latest" || f.Protocol != ProtocolSluice || f.Limits.MemoryMB != DefaultMemoryMB ||
		f.Limits.CPUs != DefaultCPUs || f.Limits.Pids != DefaultPids || time.Duration(f.Timeouts.Ready) != DefaultReady ||
		time.Duration(f.Timeouts.Invoke) != DefaultInvoke || time.Duration(f.KeepAlive) != DefaultKeepAlive || f.Network || f.GPU {
		t.Errorf("defaults not applied: %+v", f)
	}
	if got := f.ImageCommand(); len(got) != 1 || got[0] != "/fn/fn" {
		t.Errorf("image command %v", got)
	}
}

func TestParseFull(t *testing.T) {
	f, err := Parse([]byte(`{
  "name": "ow",
  "image": "registry.local/ow:1",
  "protocol": "openwhisk",
  "gpu": true,
  "network": true,
  "limits": {"memory_mb": 256, "cpus": 1.5, "pids": 10},
  "env": {"A": "b"},
  "user": "1000:1000",
  "timeouts": {"ready": "2s", "invoke": "250ms"},
  "keep_alive": "1h",
  "openwhisk": {"code": "action.py"}
}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Limits.CPUs != 1.5 || time.Duration(f.Timeouts.Invoke) != 250*time.Millisecond || time.Duration(f.KeepAlive) != time.Hour ||
		f.OpenWhisk.Main != "main" || f.OpenWhisk.Code != "action.py" || f.User != "1000:1000" || f.ImageCommand() != nil {
		t.Errorf("parsed %+v", f)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"syntax", "{\n\"name\": \"x\",\n}", "line 3"},
		{"unknown field", `{"name":"x","image":"i","colour":1}`, `unknown field "colour"`},
		{"wrong type", `{"name":"x","image":"i","gpu":"yes"}`, `"gpu"`},
		{"no name", `{"image":"i"}`, `field "name": required`},
		{"bad name", `{"name":"Bad Name","image":"i"}`, `field "name"`},
		{"no image or build", `{"name":"x"}`, `field "image"`},
		{"protocol", `{"name":"x","image":"i","protocol":"grpc"}`, `field "protocol"`},
		{"both builds", `{"name":"x","build":{"binary":"a","python":"b.py"}}`, `field "build"`},
		{"empty build", `{"name":"x","build":{}}`, `field "build"`},
		{"escaping file", `{"name":"x","build":{"binary":"a","files":["../etc"]}}`, `build.files[0]`},
		{"memory", `{"name":"x","image":"i","limits":{"memory_mb":1}}`, `limits.memory_mb`},
		{"cpus", `{"name":"x","image":"i","limits":{"cpus":-1}}`, `limits.cpus`},
		{"pids", `{"name":"x","image":"i","limits":{"pids":2}}`, `limits.pids`},
		{"reserved env", `{"name":"x","image":"i","env":{"SLUICE_SOCKET":"x"}}`, `field "env"`},
		{"preload on gpu", `{"name":"x","image":"i","gpu":true,"env":{"LD_PRELOAD":"x"}}`, `LD_PRELOAD`},
		{"bad duration", `{"name":"x","image":"i","keep_alive":"forever"}`, `field "keep_alive": time: invalid duration "forever"`},
		{"number duration", `{"name":"x","image":"i","timeouts":{"ready":5}}`, `field "timeouts.ready": want a duration string`},
		{"negative timeout", `{"name":"x","image":"i","timeouts":{"invoke":"-1s"}}`, `timeouts.invoke`},
		{"openwhisk section on sluice", `{"name":"x","image":"i","openwhisk":{}}`, `field "openwhisk"`},
		{"trailing", `{"name":"x","image":"i"} {}`, `trailing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte(`{"name":"py","build":{"python":"main.py"}}`), 0o644)
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Dir != dir {
		t.Errorf("dir %q, want %q", f.Dir, dir)
	}
	cmd, err := f.HostCommand(HostRuntimes{Python: "/rt.py"})
	if err != nil || len(cmd) != 4 || cmd[0] != "python3" || cmd[1] != "-B" || cmd[3] != filepath.Join(dir, "main.py") {
		t.Errorf("host command %v %v", cmd, err)
	}
	if got := f.ImageCommand(); strings.Join(got, " ") != "/usr/bin/python3 -B /sluice/runtime.py /fn/main.py" {
		t.Errorf("image command %v", got)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("load of a missing file succeeded")
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"name":1}`), 0o644)
	if _, err := Load(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("error does not name the file: %v", err)
	}
}
