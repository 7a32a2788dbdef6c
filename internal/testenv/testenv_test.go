package testenv

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestShortDir(t *testing.T) {
	var dir string
	t.Run("inner", func(t *testing.T) {
		dir = ShortDir(t, "sltenv")
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Fatalf("ShortDir %s: %v %v", dir, st, err)
		}
		if filepath.Dir(dir) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(dir), "sltenv") {
			t.Errorf("ShortDir %s: want sltenv* directly under %s", dir, os.TempDir())
		}
		// A socket path in it fits a sockaddr_un with room to spare.
		if p := filepath.Join(dir, "instance-0123456789", "shim.sock"); len(p) > 107 {
			t.Errorf("socket path %s is %d bytes", p, len(p))
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("ShortDir %s left behind after the test: %v", dir, err)
	}
}

func TestGoBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		Skip(t, "skipping: no go command in PATH")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"built\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := GoBuild(t, src, "main.go", filepath.Join(t.TempDir(), "prog"))
	b, err := exec.Command(out).CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "built" {
		t.Fatalf("built program: %q %v", b, err)
	}
}

func TestPipes(t *testing.T) {
	cmd := exec.Command("cat")
	stdin, stdout := Pipes(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "line\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	b, err := io.ReadAll(stdout)
	if err != nil || string(b) != "line\n" {
		t.Errorf("through cat: %q %v", b, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestBinaries(t *testing.T) {
	var b Binaries
	builds := 0
	build := func(dir string) string {
		builds++
		p := filepath.Join(dir, "prog")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := b.Get(t, "prog", build)
	p2 := b.Get(t, "prog", build)
	if p1 != p2 || builds != 1 {
		t.Errorf("two gets: %s and %s after %d builds, want one build", p1, p2, builds)
	}
	if _, err := os.Stat(p1); err != nil {
		t.Fatal(err)
	}
	b.Remove()
	if _, err := os.Stat(filepath.Dir(p1)); !os.IsNotExist(err) {
		t.Errorf("directory %s left after Remove: %v", filepath.Dir(p1), err)
	}
	if p3 := b.Get(t, "prog", build); builds != 2 {
		t.Errorf("get after Remove: %s after %d builds, want a rebuild", p3, builds)
	}
	b.Remove()
}
