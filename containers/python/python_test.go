package python_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/python"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

const module = `
import json
state = {"n": 0}
def main(args):
    state["n"] += 1
    if isinstance(args, dict) and args.get("raise"):
        raise ValueError("asked to raise")
    if isinstance(args, dict) and args.get("set"):
        return {1, 2}
    return {"n": state["n"], "args": args}
`

// start runs the runtime on src and returns a client and the process.
func start(t *testing.T, src string) (*protocol.Client, *exec.Cmd) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		testenv.Skip(t, "skipping: no python3 in PATH")
	}
	dir := testenv.ShortDir(t, "slpy")
	rt, err := python.WriteTo(dir)
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "fn.py")
	os.WriteFile(mod, []byte(src), 0o644)
	sock := filepath.Join(dir, "fn.sock")
	cmd := exec.Command("python3", rt, mod)
	cmd.Env = append(os.Environ(), protocol.SocketEnv+"="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := protocol.NewClient(protocol.Endpoint{Kind: protocol.KindSluice, Network: "unix", Address: sock})
	t.Cleanup(c.Close)
	return c, cmd
}

func TestRuntime(t *testing.T) {
	c, _ := start(t, module)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"first call", `{"a":1}`, 0, `{"n": 1, "args": {"a": 1}}`},
		{"module stays warm", `[1]`, 0, `{"n": 2, "args": [1]}`},
		{"main raises", `{"raise":true}`, 500, "ValueError: asked to raise"},
		{"unencodable result", `{"set":true}`, 500, "encode result"},
		{"not json", `{nope`, 400, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.Invoke(ctx, []byte(tc.body))
			var pe *protocol.Error
			switch {
			case tc.status == 0 && (err != nil || string(out) != tc.want):
				t.Errorf("got %s %v, want %s", out, err, tc.want)
			case tc.status != 0 && (!errors.As(err, &pe) || pe.Status != tc.status || !strings.Contains(pe.Message, tc.want)):
				t.Errorf("got %v, want status %d mentioning %q", err, tc.status, tc.want)
			}
		})
	}
}

func TestRuntimeNoMain(t *testing.T) {
	_, cmd := start(t, "x = 1\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("module without main: exit %v, want status 1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runtime kept running without main")
	}
}
