//go:build linux && (amd64 || arm64)

package observer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/internal/bpftest"
	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// TestDockerContainer runs the caller inside a Docker container, with the
// driver library bind-mounted from the host as the NVIDIA container
// toolkit does, and checks the observer's exact per-container counts: with
// the bpf tests' driver double, and with the fake driver (the emulated GPU,
// its device file in a bind-mounted directory) once it is built.
func TestDockerContainer(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	double, caller := bpftest.Build(t)
	t.Run("double", func(t *testing.T) { testDocker(t, double, caller, false) })
	t.Run("fakecuda", func(t *testing.T) {
		testDocker(t, testenv.Artifact(t, "fakecuda/libcuda.so.1"), caller, true)
	})
}

func testDocker(t *testing.T, lib, caller string, fake bool) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	ref := "sluice-bpftest:" + hex.EncodeToString(suffix)
	rootfs := image.NewRootfs()
	if err := rootfs.AddELF("/caller", caller); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{runtime.LabelManaged: "1", runtime.LabelFunction: "bpftest-fn", runtime.LabelInstance: "bpftest"}
	if _, err := image.Import(ctx, cli, rootfs, ref, image.Config{User: "0:0", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := image.Remove(context.Background(), cli, ref); err != nil {
			t.Logf("remove image: %v", err)
		}
	})

	functions := map[string]string{}
	o := openObserver(t, lib, nil, func(id string) string { return functions[id] })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- o.Run(runCtx) }()
	defer func() { stop(); <-done }()

	const drvDir, emuDir = "/usr/lib/sluice-drv", "/run/sluice-emu"
	cmd := []string{"/caller", drvDir + "/libcuda.so.1"}
	launches := [bpf.LaunchKinds]uint64{1234, 5, 0, 0}
	mounts := []mount.Mount{{Type: mount.TypeBind, Source: filepath.Dir(lib), Target: drvDir, ReadOnly: true}}
	var env []string
	if fake {
		// The fake driver needs a context and rejects a NULL function:
		// "bench" ignores the results, the probes count the calls.
		cmd = append(cmd, "init", "bench=1234")
		launches = [bpf.LaunchKinds]uint64{1234, 0, 0, 0}
		emu := t.TempDir()
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: emu, Target: emuDir})
		env = []string{"FAKECUDA_DEVICE_FILE=" + emuDir + "/gpu"}
	} else {
		cmd = append(cmd, "launch=1234", "ptsz=5")
	}
	cmd = append(cmd, "alloc=8388608", "managed=4096", "free", "htod=1000", "dtoh=2000", "ctxsync", "sleep=300")
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: ref, Cmd: cmd, Env: env, Labels: labels},
		HostConfig: &container.HostConfig{Mounts: mounts},
		Name:       "sluice-bpftest-" + hex.EncodeToString(suffix),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	functions[id] = "bpftest-fn" // what the daemon knows from its own labels
	t.Cleanup(func() {
		if _, err := cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Logf("remove container: %v", err)
		}
	})
	wait := cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 0 {
			logs, _ := cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
			var out bytes.Buffer
			if logs != nil {
				_, _ = io.Copy(&out, logs)
				logs.Close()
			}
			t.Fatalf("container exited %d: %q", r.StatusCode, out.String())
		}
	case err := <-wait.Error:
		t.Fatal(err)
	}

	o.Poll()
	s := o.Snapshot()
	c, ok := s.Container(id)
	if !ok {
		t.Fatalf("container %s not in the snapshot: %+v", id[:12], s.Containers)
	}
	tot := c.Totals
	if tot.Launches != launches || tot.AllocBytes != [bpf.AllocKinds]uint64{8388608, 4096, 0} ||
		tot.FreedBytes != 4096 || tot.ExitReleasedBytes != 8388608 || c.LiveBytes != 0 ||
		tot.MemcpyBytes != [bpf.MemcpyKinds]uint64{1000, 2000, 0, 0} || tot.Syncs != [bpf.SyncKinds]uint64{1, 0, 0} {
		t.Errorf("container %s totals: %+v", id[:12], tot)
	}
	if f, ok := s.Function("bpftest-fn"); !ok || f.Totals.Launches[bpf.LaunchKernel] != 1234 {
		t.Errorf("function bpftest-fn: %+v, %v", f, ok)
	}
}
