package emugpu

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gpu/sluice/internal/testenv"
)

// TestReadDriverFile reads a device file that the fake driver itself made:
// shim/tests/commands (without the shim) allocates device memory and
// launches a kernel on a fresh emulated GPU, driven line by line; the
// snapshot must show its slot with exactly that, and no live process once
// it has exited.
func TestReadDriverFile(t *testing.T) {
	driver := testenv.Artifact(t, "fakecuda/libcuda.so.1")
	prog := testenv.Artifact(t, "shim-tests/commands")
	dev := filepath.Join(t.TempDir(), "gpu0")
	cmd := exec.Command(prog)
	cmd.Env = append(os.Environ(),
		"LD_LIBRARY_PATH="+filepath.Dir(driver),
		"FAKECUDA_DEVICE_FILE="+dev,
		"FAKECUDA_CAPACITY=64M",
		"FAKECUDA_SCHED=share",
		"FAKECUDA_QUEUE_DEPTH=0",
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, stdout := testenv.Pipes(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", prog, err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("program stderr:\n%s", stderr.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	say := func(cmdline string) string {
		t.Helper()
		if cmdline != "" {
			if _, err := fmt.Fprintln(stdin, cmdline); err != nil {
				t.Fatalf("send %q: %v", cmdline, err)
			}
		}
		if !lines.Scan() {
			t.Fatalf("no answer to %q: %v", cmdline, lines.Err())
		}
		return lines.Text()
	}
	if l := say(""); !strings.HasPrefix(l, "ready ") {
		t.Fatalf("first line %q, want ready", l)
	}
	const mib = 1 << 20
	for _, c := range []string{"alloc 3145728", "alloc 1048576", "launch"} {
		if l := say(c); !strings.HasPrefix(l, "ok") {
			t.Fatalf("%s: %q", c, l)
		}
	}
	var free, total uint64
	if l := say("info"); func() bool { _, err := fmt.Sscanf(l, "info %d %d", &free, &total); return err != nil }() {
		t.Fatalf("info: %q", l)
	}

	d, err := Read(dev)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != Version || d.FileBytes != 2142208 || d.MaxProcs != 128 || d.SchedMode != SchedShare {
		t.Errorf("header: version %d, %d bytes, %d slots, %v; want 1, 2142208, 128, share", d.Version, d.FileBytes, d.MaxProcs, d.SchedMode)
	}
	if d.Capacity != 64*mib || d.UsedDevice != 4*mib || d.UsedResident != 0 || d.NProcs != 1 || len(d.Procs) != 1 {
		t.Fatalf("device: capacity %d, device %d, resident %d, %d live (%+v); want 64 MiB, 4 MiB, 0, 1",
			d.Capacity, d.UsedDevice, d.UsedResident, d.NProcs, d.Procs)
	}
	if d.Capacity != total || d.Free() != free {
		t.Errorf("cuMemGetInfo says free %d of %d, the file %d of %d", free, total, d.Free(), d.Capacity)
	}
	p, ok := d.Proc(int32(cmd.Process.Pid))
	if !ok {
		t.Fatalf("pid %d not among %+v", cmd.Process.Pid, d.Procs)
	}
	if p.Comm != "commands" || p.DeviceBytes != 4*mib || p.ManagedBytes != 0 || p.Kernels != 1 {
		t.Errorf("slot: %+v; want comm commands, 4 MiB device, no managed, 1 kernel", p)
	}

	fmt.Fprintln(stdin, "exit")
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("program: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("program did not exit")
	}
	d, err = Read(dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Procs) != 0 || d.NProcs != 0 || d.UsedDevice != 0 {
		t.Errorf("after exit: %d live (%+v), header %d, device %d; want none", len(d.Procs), d.Procs, d.NProcs, d.UsedDevice)
	}
}
