package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gpu/sluice/containers/spec"
)

func tarEntries(t *testing.T, r *Rootfs) map[string]*tar.Header {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteTar(&buf); err != nil {
		t.Fatalf("write tar: %v", err)
	}
	out := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		out["/"+strings.TrimSuffix(h.Name, "/")] = h
	}
	return out
}

func TestSkeleton(t *testing.T) {
	ents := tarEntries(t, NewRootfs())
	for _, p := range []string{"/etc/passwd", "/etc/group", "/tmp", "/fn", "/run/sluice"} {
		if ents[p] == nil {
			t.Errorf("skeleton lacks %s", p)
		}
	}
	if h := ents["/tmp"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
}

func TestAddELFDynamic(t *testing.T) {
	r := NewRootfs()
	if err := r.AddELF("/fn/ls", "/bin/ls"); err != nil {
		t.Fatalf("add /bin/ls: %v", err)
	}
	ents := tarEntries(t, r)
	var haveLibc, haveLoader bool
	for p, h := range ents {
		if strings.Contains(p, "libc.so.6") && h.Typeflag == tar.TypeReg {
			haveLibc = true
		}
		if strings.Contains(p, "ld-linux") && h.Size > 0 {
			haveLoader = true
		}
	}
	if ents["/fn/ls"] == nil || !haveLibc || !haveLoader {
		t.Errorf("rootfs of /bin/ls lacks the binary, libc or the loader: %v", keys(ents))
	}
}

func TestAddELFRejects(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	if err := NewRootfs().AddELF("/fn/script", script); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("shell script: got %v, want a not-an-ELF error", err)
	}
	if err := NewRootfs().AddELF("/fn/x", filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing file accepted")
	}
}

func TestFunctionPython(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.py"), []byte("def main(args):\n    return args\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "w.txt"), []byte("w"), 0o644)
	os.WriteFile(filepath.Join(dir, spec.FileName), []byte(`{"name":"py","build":{"python":"main.py","files":["data"]}}`), 0o644)
	f, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRootfs()
	if err := r.Function(f); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	ents := tarEntries(t, r)
	for _, p := range []string{spec.PythonPath, spec.PythonRuntimePath, "/fn/main.py", "/fn/data/w.txt"} {
		if ents[p] == nil {
			t.Errorf("python rootfs lacks %s", p)
		}
	}
	var stdlib, sitePackages, tests bool
	for p := range ents {
		switch {
		case strings.HasPrefix(p, "/usr/lib/python3.") && strings.HasSuffix(p, "/json/__init__.py"):
			stdlib = true
		case strings.Contains(p, "site-packages/") || strings.Contains(p, "dist-packages/"):
			sitePackages = true
		case strings.Contains(p, "/python3.") && strings.Contains(p, "/test/"):
			tests = true
		}
	}
	if !stdlib || sitePackages || tests {
		t.Errorf("stdlib %v (want true), site-packages %v, tests %v (want false)", stdlib, sitePackages, tests)
	}
}

func TestConfigChanges(t *testing.T) {
	ch, err := Config{Cmd: []string{"/fn/x", "a b"}, Labels: map[string]string{"sluice.function": "x"}}.changes()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ch, "\n")
	for _, want := range []string{`CMD ["/fn/x","a b"]`, "USER 65534:65534", `LABEL sluice.managed="1"`, `LABEL sluice.function="x"`, "WORKDIR /fn"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	if _, err := (Config{Labels: map[string]string{"a": "b\"c"}}).changes(); err == nil {
		t.Errorf("label with a quote accepted")
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
