package shimctl

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// startServer runs a Server on a temporary socket until the test ends.
func startServer(t testing.TB, cfg Config) (*Server, chan *Session, chan *Session) {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "shim.sock")
	opened := make(chan *Session, 16)
	closed := make(chan *Session, 16)
	cfg.OnSession = func(s *Session) { opened <- s }
	cfg.OnClose = func(s *Session, _ error) { closed <- s }
	srv, err := Listen(cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return srv, opened, closed
}

// fakeShim is a scripted client speaking the shim's side of the protocol.
type fakeShim struct {
	c    *net.UnixConn
	page []byte
}

func dialShim(t *testing.T, path string) *fakeShim {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeShim{c: c}
}

// usageFD makes a usage page like the shim's: sealed memfd unless unsealed.
func (f *fakeShim) usageFD(t *testing.T, sealed bool) int {
	t.Helper()
	fd, err := unix.MemfdCreate("test-usage", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatalf("memfd: %v", err)
	}
	if err := unix.Ftruncate(fd, usagePageSize); err != nil {
		t.Fatal(err)
	}
	if sealed {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
			t.Fatal(err)
		}
	}
	mem, err := unix.Mmap(fd, 0, usagePageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	le.PutUint32(mem[0:], usageMagic)
	le.PutUint32(mem[4:], protoVersion)
	f.page = mem
	return fd
}

func (f *fakeShim) setLive(k Kind, v uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&f.page[offLive+8*int(k)])), v)
}

func (f *fakeShim) register(t *testing.T, fn string, fd int) {
	t.Helper()
	flags := uint32(regConverting)
	var oob []byte
	if fd >= 0 {
		flags |= regUsagePage
		oob = unix.UnixRights(fd)
	}
	if _, _, err := f.c.WriteMsgUnix(registerPacket(fn, 1, flags), oob, nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	b := make([]byte, maxMsg)
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := f.c.Read(b)
	if err != nil {
		t.Fatalf("read welcome: %v", err)
	}
	if typ, err := checkHeader(b[:n]); err != nil || typ != msgWelcome {
		t.Fatalf("welcome: type %d err %v", typ, err)
	}
}

// serve answers commands like a shim would, until the connection ends.
func (f *fakeShim) serve(answer func(id uint64, op Op, arg uint64) []byte) {
	b := make([]byte, maxMsg)
	f.c.SetReadDeadline(time.Time{})
	for {
		n, err := f.c.Read(b)
		if err != nil {
			return
		}
		if typ, err := checkHeader(b[:n]); err != nil || typ != msgCommand {
			continue
		}
		out := answer(le.Uint64(b[16:]), Op(le.Uint32(b[24:])), le.Uint64(b[32:]))
		if out != nil {
			f.c.Write(out)
		}
	}
}

func resultPacket(id uint64, op Op, status int32, bytes uint64) []byte {
	b := make([]byte, resultSize)
	putHeader(b, msgResult)
	le.PutUint64(b[16:], id)
	le.PutUint32(b[24:], uint32(op))
	le.PutUint32(b[28:], uint32(status))
	le.PutUint64(b[32:], bytes)
	return b
}

func waitSession(t testing.TB, ch chan *Session) *Session {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no session event")
	}
	return nil
}

func TestSessionIdentityUsageAndCommands(t *testing.T) {
	srv, opened, closed := startServer(t, Config{Budget: func(fn string) uint64 {
		if fn == "fn-budget" {
			return 1 << 30
		}
		return 0
	}})
	f := dialShim(t, srv.Addr())
	f.register(t, "fn-budget", f.usageFD(t, true))
	s := waitSession(t, opened)
	// Identity comes from the kernel; the claimed pid (4242) is ignored.
	if s.Peer.PID != int32(os.Getpid()) || s.Peer.UID != uint32(os.Getuid()) {
		t.Errorf("peer %+v, want pid %d uid %d", s.Peer, os.Getpid(), os.Getuid())
	}
	if s.ClaimedPID != 4242 || s.FunctionID != "fn-budget" || len(s.Devices) != 1 || !s.Converting {
		t.Errorf("session %+v", s)
	}
	if got := srv.Session(int32(os.Getpid())); got != s {
		t.Errorf("Session(pid) = %v", got)
	}
	// Usage without a message: the page is shared.
	f.setLive(KindManaged, 123)
	f.setLive(KindVMM, 7)
	u, ok := s.Usage()
	if !ok || u.Live[KindManaged] != 123 || u.LiveBytes() != 130 || u.EvictableBytes() != 123 {
		t.Errorf("usage %+v ok %v", u, ok)
	}

	go f.serve(func(id uint64, op Op, arg uint64) []byte {
		switch op {
		case OpSetBudget:
			return resultPacket(id, op, 0, arg)
		case OpPrefetchDevice:
			return resultPacket(id, op, 0, 123)
		case OpEvictHost:
			return resultPacket(id, op, 2, 0) // CUDA_ERROR_OUT_OF_MEMORY
		}
		return resultPacket(id, op, StatusUnknownOp, 0)
	})
	ctx := context.Background()
	tests := []struct {
		op      Op
		arg     uint64
		bytes   uint64
		wantErr bool
	}{
		{OpSetBudget, 5 << 20, 5 << 20, false},
		{OpPrefetchDevice, 0, 123, false},
		{OpEvictHost, 0, 0, true},
		{Op(99), 0, 0, true},
	}
	for _, tc := range tests {
		r, err := s.Do(ctx, tc.op, tc.arg)
		if err != nil {
			t.Fatalf("%v: %v", tc.op, err)
		}
		if r.Bytes != tc.bytes || (r.Err() != nil) != tc.wantErr {
			t.Errorf("%v: result %+v err %v", tc.op, r, r.Err())
		}
	}
	f.c.Close()
	if got := waitSession(t, closed); got != s {
		t.Errorf("closed session %v", got)
	}
	if _, err := s.ReportUsage(ctx); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("command after close: %v", err)
	}
	if _, ok := s.Usage(); ok {
		t.Error("usage readable after close")
	}
}

func TestCommandCanceledByContext(t *testing.T) {
	srv, opened, _ := startServer(t, Config{})
	f := dialShim(t, srv.Addr())
	f.register(t, "silent", -1)
	s := waitSession(t, opened)
	if _, ok := s.Usage(); ok {
		t.Error("usage without a page")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.PrefetchToDevice(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered command: %v", err)
	}
}

func TestHostileClientsDoNotHurtServer(t *testing.T) {
	srv, opened, closed := startServer(t, Config{RegisterTimeout: 200 * time.Millisecond})
	cases := []struct {
		name string
		send func(f *fakeShim)
	}{
		{"garbage", func(f *fakeShim) { f.c.Write([]byte("hello, daemon")) }},
		{"oversized", func(f *fakeShim) { f.c.Write(make([]byte, 4*maxMsg)) }},
		{"silent", func(f *fakeShim) {}},
		{"result before register", func(f *fakeShim) { f.c.Write(resultPacket(1, OpEvictHost, 0, 0)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := dialShim(t, srv.Addr())
			tc.send(f)
			f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := f.c.Read(make([]byte, maxMsg)); err == nil {
				t.Error("server answered a bad registration")
			}
		})
	}
	// An unsealed page is refused (the shim could shrink it and fault us),
	// but the session itself is fine.
	f := dialShim(t, srv.Addr())
	f.register(t, "unsealed", f.usageFD(t, false))
	s := waitSession(t, opened)
	if _, ok := s.Usage(); ok {
		t.Error("unsealed usage page accepted")
	}
	// A registered shim that breaks the protocol loses its session only.
	f.c.Write([]byte("not a result"))
	if got := waitSession(t, closed); got != s || s.Err() == nil {
		t.Errorf("session after garbage: %v err %v", got, s.Err())
	}
	g := dialShim(t, srv.Addr())
	g.register(t, "after", -1)
	waitSession(t, opened)
}
