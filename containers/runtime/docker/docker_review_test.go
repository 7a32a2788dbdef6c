package docker

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// reviewSleepImage imports a one-binary image that runs sleep; it is removed
// when the test ends.
func reviewSleepImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	rfs := image.NewRootfs()
	if err := rfs.AddELF("/bin/sleep", sleep); err != nil {
		t.Fatal(err)
	}
	ref := "sluice-test/review-sleep:" + runtime.RandomSuffix(6)
	if _, err := image.Import(context.Background(), cli, rfs, ref, image.Config{
		Cmd: []string{"/bin/sleep", "60"}, Labels: map[string]string{runtime.LabelManaged: "1"}}); err != nil {
		t.Fatalf("import test image: %v", err)
	}
	t.Cleanup(func() { _ = image.Remove(context.Background(), cli, ref) })
	return ref
}

func reviewClient(t *testing.T) *client.Client {
	t.Helper()
	testenv.RequireDocker(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func reviewRuntime(t *testing.T, cli *client.Client) *Runtime {
	t.Helper()
	d, err := os.MkdirTemp("", "sldr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	rt, err := New(context.Background(), Config{Instance: "rv" + runtime.RandomSuffix(4), StateDir: d, Client: cli})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = runtime.Recover(context.Background(), rt)
		rt.Close()
	})
	return rt
}

// Stop, like Remove, must refuse containers Sluice did not create.
func TestStopRefusesForeignContainer(t *testing.T) {
	cli := reviewClient(t)
	ref := reviewSleepImage(t, cli)
	rt := reviewRuntime(t, cli)
	ctx := context.Background()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: ref, Cmd: []string{"/bin/sleep", "60"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	err = rt.Stop(ctx, runtime.ID(res.ID), time.Second)
	if err == nil || !strings.Contains(err.Error(), "not created by daemon instance") {
		t.Errorf("Stop of a foreign container: %v, want a refusal", err)
	}
	in, err := cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Container.State == nil || !in.Container.State.Running {
		t.Fatal("Stop stopped a container Sluice does not own")
	}
	// A missing container is still not an error.
	if err := rt.Stop(ctx, "0123456789abcdef", time.Second); err != nil {
		t.Errorf("Stop of a missing container: %v", err)
	}
}

// Once an OpenWhisk container has exited, its pid may belong to another
// process: Endpoint must not hand out /proc/PID/ns/net for it any more.
func TestEndpointAfterExitIsRefused(t *testing.T) {
	cli := reviewClient(t)
	ref := reviewSleepImage(t, cli)
	rt := reviewRuntime(t, cli)
	ctx := context.Background()
	id, err := rt.Create(ctx, runtime.Spec{Function: "rvsleep", Image: ref, Command: []string{"/bin/sleep", "60"},
		Protocol: protocol.KindOpenWhisk})
	if err != nil {
		t.Fatal(err)
	}
	exit, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := rt.Endpoint(ctx, id)
	if err != nil {
		t.Fatalf("Endpoint of a running container: %v", err)
	}
	if ep.NetNS == "" {
		t.Fatalf("no network namespace in %+v", ep)
	}
	if _, err := cli.ContainerKill(ctx, string(id), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exit:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit reported")
	}
	if ep, err := rt.Endpoint(ctx, id); err == nil {
		t.Fatalf("Endpoint of an exited container: %+v (its pid may be reused)", ep)
	}
}
