package shimctl

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes this test binary act as a short-lived shim client.
const helperEnv = "SHIMCTL_TEST_HELPER_SOCKET"

// TestMain lets the test binary double as the helper process of
// TestSessionEndsWhenProcessDiesWithSocketOpen.
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperClient(path))
	}
	os.Exit(m.Run())
}

// helperClient registers, hands a copy of its socket to a sleeping child
// (which outlives it), prints the child's pid and exits.
func helperClient(path string) int {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := c.Write(registerPacket("fn-orphan", 0, 0)); err != nil {
		return 1
	}
	if _, err := c.Read(make([]byte, maxMsg)); err != nil {
		return 1
	}
	f, err := c.File()
	if err != nil {
		return 1
	}
	child := exec.Command("sleep", "60")
	child.ExtraFiles = []*os.File{f}
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := child.Start(); err != nil {
		return 1
	}
	fmt.Println(child.Process.Pid)
	return 0
}

// A process that dies while a descendant still holds its socket: the socket
// never reaches EOF, the pidfd ends the session anyway.
func TestSessionEndsWhenProcessDiesWithSocketOpen(t *testing.T) {
	srv, opened, closed := startServer(t, Config{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+srv.Addr())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	sleeper, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	t.Cleanup(func() { syscall.Kill(sleeper, syscall.SIGKILL) })
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	s := waitSession(t, opened)
	if s.Peer.PID != int32(cmd.Process.Pid) {
		t.Fatalf("session pid %d, helper %d", s.Peer.PID, cmd.Process.Pid)
	}
	select {
	case got := <-closed:
		if got != s || !errors.Is(s.Err(), errProcessExited) {
			t.Errorf("ended %v with %v, want process exit", got, s.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session of a dead process still open")
	}
}
