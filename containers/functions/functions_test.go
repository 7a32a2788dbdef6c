package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/pool"
	"github.com/sluice-gpu/sluice/containers/python"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/runtime/docker"
	"github.com/sluice-gpu/sluice/containers/runtime/process"
	"github.com/sluice-gpu/sluice/containers/spec"
	"github.com/sluice-gpu/sluice/internal/dockertest"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// load reads an example's spec; Go examples are compiled into a temporary
// directory so the test does not depend on `make build`.
func load(t *testing.T, name string) *spec.Function {
	t.Helper()
	f, err := spec.Load(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if _, err := os.Stat(filepath.Join(name, "main.go")); err == nil {
		f.Build.Binary = testenv.GoBuild(t, name, ".", filepath.Join(t.TempDir(), "fn-"+name))
	}
	return f
}

func shortDir(t *testing.T) string { return testenv.ShortDir(t, "slf") }

// buildImage builds f's image as sluice-test/NAME:LABEL, labelled with the
// instance label, and removes it at the end of the test.
func buildImage(t *testing.T, cli *client.Client, f *spec.Function, name, label string) {
	t.Helper()
	f.Image = "sluice-test/" + name + ":" + label
	if _, err := image.Build(context.Background(), cli, f, map[string]string{runtime.LabelInstance: label}); err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Cleanup(func() {
		if err := image.Remove(context.Background(), cli, f.Image); err != nil {
			t.Errorf("remove image: %v", err)
		}
	})
}

// dockerPool is a pool on the Docker backend for instance label, closed at
// the end of the test, when everything the instance left is recovered.
func dockerPool(t *testing.T, cli *client.Client, label string, gpu runtime.GPUConfig) *pool.Pool {
	t.Helper()
	rt, err := docker.New(context.Background(), docker.Config{Instance: label, StateDir: shortDir(t), Client: cli, GPU: gpu})
	if err != nil {
		t.Fatal(err)
	}
	p := pool.New(rt, pool.Config{})
	t.Cleanup(func() {
		p.Close(context.Background())
		runtime.Recover(context.Background(), rt)
	})
	return p
}

type call struct {
	body string
	want map[string]any // fields the result must have
}

var examples = []struct {
	name    string
	process bool // runs on the process backend too
	calls   []call
}{
	{"echo", true, []call{
		{`{"x":1,"s":"hi"}`, map[string]any{"x": 1.0, "s": "hi"}},
	}},
	{"python-hello", true, []call{
		{`{"name":"sluice"}`, map[string]any{"greeting": "hello, sluice", "calls": 1.0}},
		{`{}`, map[string]any{"greeting": "hello, world", "calls": 2.0}}, // stays warm
	}},
	{"ow-echo", false, []call{
		{`{"name":"whisk"}`, map[string]any{"greeting": "hello, whisk"}},
	}},
}

func check(t *testing.T, p *pool.Pool, id runtime.ID, calls []call) {
	t.Helper()
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := p.Invoke(ctx, id, []byte(c.body))
		cancel()
		if err != nil {
			t.Fatalf("invoke %s: %v", c.body, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("result %s: %v", out, err)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("invoke %s: %s=%v, want %v (result %s)", c.body, k, got[k], v, out)
			}
		}
	}
}

func TestExamplesDocker(t *testing.T) {
	cli := dockertest.Client(t)
	label := "t" + runtime.RandomSuffix(6)
	ctx := context.Background()
	p := dockerPool(t, cli, label, runtime.GPUConfig{})
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			f := load(t, ex.name)
			buildImage(t, cli, f, ex.name, label)
			id, err := p.Start(ctx, pool.FromFunction(f, runtime.FromFunction(f, 1)))
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			check(t, p, id, ex.calls)
			if err := p.Stop(ctx, id); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
}

func TestExamplesProcess(t *testing.T) {
	dir := shortDir(t)
	rt, err := process.New(process.Config{Instance: "examples", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pyRuntime, err := python.WriteTo(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := pool.New(rt, pool.Config{})
	t.Cleanup(func() { p.Close(context.Background()) })
	for _, ex := range examples {
		if !ex.process {
			continue
		}
		t.Run(ex.name, func(t *testing.T) {
			f := load(t, ex.name)
			rs, err := runtime.FromFunctionHost(f, 1, spec.HostRuntimes{Python: pyRuntime})
			if err != nil {
				t.Fatal(err)
			}
			id, err := p.Start(context.Background(), pool.FromFunction(f, rs))
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			check(t, p, id, ex.calls)
		})
	}
}

// TestSpecs checks every example's function.json loads and validates.
func TestSpecs(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		f, err := spec.Load(e.Name())
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if f.Name != e.Name() {
			t.Errorf("%s: name %q differs from its directory", e.Name(), f.Name)
		}
		n++
	}
	if n < 4 {
		t.Errorf("found %d examples, want at least 4", n)
	}
}

// TestExecAdapter runs a run-once program (/bin/cat) behind sluice-exec on
// both backends.
func TestExecAdapter(t *testing.T) {
	adapter := testenv.GoBuild(t, "", "../execadapter", filepath.Join(t.TempDir(), "sluice-exec"))
	t.Setenv("SLUICE_EXEC_ADAPTER", adapter)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, spec.FileName), []byte(`{"name":"catfn","build":{"binary":"/bin/cat","adapter":"exec"}}`), 0o644)
	f, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	calls := []call{{`{"k":"v"}`, map[string]any{"k": "v"}}}
	t.Run("process", func(t *testing.T) {
		rt, err := process.New(process.Config{Instance: "exec", StateDir: shortDir(t)})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := runtime.FromFunctionHost(f, 1, spec.HostRuntimes{Exec: adapter})
		if err != nil {
			t.Fatal(err)
		}
		p := pool.New(rt, pool.Config{})
		defer p.Close(context.Background())
		id, err := p.Start(context.Background(), pool.FromFunction(f, rs))
		if err != nil {
			t.Fatal(err)
		}
		check(t, p, id, calls)
	})
	t.Run("docker", func(t *testing.T) {
		cli := dockertest.Client(t)
		label := "t" + runtime.RandomSuffix(6)
		buildImage(t, cli, f, "catfn", label)
		p := dockerPool(t, cli, label, runtime.GPUConfig{})
		id, err := p.Start(context.Background(), pool.FromFunction(f, runtime.FromFunction(f, 1)))
		if err != nil {
			t.Fatal(err)
		}
		check(t, p, id, calls)
	})
}
