package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

func TestImageUsage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "function.json"), []byte(`{"name":"x","image":"some/image:1"}`), 0o644)
	for _, tc := range []struct {
		name    string
		args    []string
		usage   bool
		wantErr string
	}{
		{"no subcommand", nil, true, ""},
		{"unknown subcommand", []string{"frobnicate"}, true, ""},
		{"build without dir", []string{"build"}, true, ""},
		{"build two dirs", []string{"build", "a", "b"}, true, ""},
		{"rm without refs", []string{"rm"}, true, ""},
		{"list with args", []string{"list", "x"}, true, ""},
		{"build missing dir", []string{"build", filepath.Join(dir, "nope")}, false, "read function spec"},
		{"build without build section", []string{"build", dir}, false, `no "build" section`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runImage(context.Background(), tc.args, &stdout, &stderr)
			if tc.usage {
				if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "sluice image") {
					t.Errorf("got %v, stderr %q; want errUsage with usage printed", err, stderr.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestImageBuildListRemove(t *testing.T) {
	testenv.RequireDocker(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "function.json"), []byte(`{"name":"clitest","build":{"binary":"/bin/true"}}`), 0o644)
	ref := "sluice-test/clitest:" + runtime.RandomSuffix(6)
	ctx := context.Background()
	var out, errb bytes.Buffer
	if err := runImage(ctx, []string{"build", "--tag", ref, dir}, &out, &errb); err != nil {
		t.Fatalf("build: %v (%s)", err, errb.String())
	}
	if !strings.Contains(out.String(), "built "+ref) {
		t.Errorf("build output %q", out.String())
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			runImage(ctx, []string{"rm", ref}, &out, &errb)
		}
	})
	out.Reset()
	if err := runImage(ctx, []string{"list"}, &out, &errb); err != nil {
		t.Fatalf("list: %v", err)
	}
	if !strings.Contains(out.String(), ref) || !strings.Contains(out.String(), "clitest") {
		t.Errorf("list lacks %s:\n%s", ref, out.String())
	}
	out.Reset()
	if err := runImage(ctx, []string{"rm", ref}, &out, &errb); err != nil {
		t.Fatalf("rm: %v", err)
	}
	removed = true
	out.Reset()
	runImage(ctx, []string{"list"}, &out, &errb)
	if strings.Contains(out.String(), ref) {
		t.Errorf("image still listed after rm:\n%s", out.String())
	}
}
