package shimctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Identity is what the kernel says about the peer process (SO_PEERCRED),
// in the daemon's pid namespace.
type Identity struct {
	PID int32
	UID uint32
	GID uint32
}

// Session is one registered shim process.
type Session struct {
	ID            uint64
	Peer          Identity // trusted: from the kernel
	FunctionID    string   // from SLUICE_FUNCTION, as the shim sent it
	ClaimedPID    int32    // what the shim said its pid is: informational
	DriverVersion int
	Devices       [][16]byte // GPU UUIDs the process sees
	Converting    bool       // the shim turns device allocations into managed memory
	Forked        bool       // registered from a fork()ed child
	Again         bool       // registered again after losing a daemon (restart): holds older memory

	registered [KindCount]uint64
	conn       *net.UnixConn
	log        *slog.Logger
	wmu        sync.Mutex
	nextCmd    atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan Result
	page    *usagePage
	closed  bool
	err     error
	done    chan struct{}
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended (nil while it is live).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Usage reads the shared usage page without a message. ok is false when
// the shim passed no (valid) page or the session has ended.
func (s *Session) Usage() (u Usage, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.page == nil || s.closed {
		return Usage{}, false
	}
	return s.page.snapshot(), true
}

// RegisteredBytes is the usage the shim reported when it registered.
func (s *Session) RegisteredBytes() [KindCount]uint64 { return s.registered }

// Do sends a command and waits for its result, ctx's end or the session's.
func (s *Session) Do(ctx context.Context, op Op, arg uint64) (Result, error) {
	id := s.nextCmd.Add(1)
	ch := make(chan Result, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Result{}, fmt.Errorf("%v: %w", op, ErrSessionClosed)
	}
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if err := s.writeCtx(ctx, encodeCommand(id, op, arg)); err != nil {
		return Result{}, fmt.Errorf("send %v: %w", op, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%v: %w", op, ctx.Err())
	case <-s.done:
		return Result{}, fmt.Errorf("%v: %w", op, ErrSessionClosed)
	}
}

// PrefetchToDevice moves the process's evictable memory to its GPU.
func (s *Session) PrefetchToDevice(ctx context.Context) (Result, error) {
	return s.Do(ctx, OpPrefetchDevice, 0)
}

// EvictToHost moves the process's evictable memory to host memory.
func (s *Session) EvictToHost(ctx context.Context) (Result, error) {
	return s.Do(ctx, OpEvictHost, 0)
}

// EvictBytes moves the next n bytes of the process's evictable memory to
// host memory (a partial eviction; docs/SHIM.md). The result's Bytes says
// how much moved: a little more than n where a cut was rounded up to 2 MiB,
// less where less was left on the GPU. n = 0 moves everything.
func (s *Session) EvictBytes(ctx context.Context, n uint64) (Result, error) {
	return s.Do(ctx, OpEvictHost, n)
}

// SetBudget sets the process's memory budget in bytes (0 = none).
func (s *Session) SetBudget(ctx context.Context, bytes uint64) (Result, error) {
	return s.Do(ctx, OpSetBudget, bytes)
}

// ReportUsage asks the shim for its counters.
func (s *Session) ReportUsage(ctx context.Context) (Result, error) {
	return s.Do(ctx, OpReportUsage, 0)
}

// Close ends the session from the daemon's side.
func (s *Session) Close() { s.close(errors.New("closed by the daemon")) }

// write sends one packet, however long it takes.
func (s *Session) write(b []byte) error { return s.writeCtx(context.Background(), b) }

// longAgo is a deadline in the past: it makes a blocked write return.
var longAgo = time.Unix(1, 0)

// writeCtx sends one packet. A shim that stops reading fills its socket and
// would block the write (and every later one) for good: the write gives up
// when ctx ends. Packets are atomic, so an abandoned write sends nothing.
func (s *Session) writeCtx(ctx context.Context, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.conn.SetWriteDeadline(longAgo)
		close(fired)
	})
	_, err := s.conn.Write(b)
	if !stop() {
		<-fired
		s.conn.SetWriteDeadline(time.Time{})
		if err != nil {
			err = ctx.Err()
		}
	}
	return err
}

func (s *Session) close(reason error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.err = reason
	s.page.close()
	s.page = nil
	close(s.done)
	s.mu.Unlock()
	s.conn.Close()
}

// readLoop dispatches RESULT messages until the connection ends or the shim
// breaks the protocol, and returns why.
func (s *Session) readLoop(buf, oob []byte) error {
	for {
		pkt, fds, err := readPacket(s.conn, buf, oob)
		closeFDs(fds) // nothing after REGISTER carries descriptors
		if err != nil {
			if errors.Is(err, errEOF) || errors.Is(err, net.ErrClosed) {
				return errEOF
			}
			return err
		}
		id, r, err := decodeResult(pkt)
		if err != nil {
			s.log.Warn("malformed message from shim; ending session", "err", err)
			return err
		}
		s.mu.Lock()
		ch := s.pending[id]
		s.mu.Unlock()
		if ch == nil {
			s.log.Debug("result for no pending command", "id", id, "op", r.Op)
			continue
		}
		select {
		case ch <- r:
		default:
		}
	}
}

// errProcessExited ends a session whose process is gone even though its
// socket is still open (a descendant kept it).
var errProcessExited = errors.New("shim process exited")

// watchProcess ends the session when the peer process exits (pidfd).
func (s *Session) watchProcess() {
	fd, err := peerPidfd(s.conn, s.Peer.PID)
	if errors.Is(err, unix.ESRCH) {
		// Gone before we looked: a descendant may hold the socket open.
		s.close(errProcessExited)
		return
	}
	if err != nil {
		s.log.Debug("no pidfd; relying on socket close", "err", err)
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.log.Debug("no pidfd; relying on socket close", "err", err)
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	go func() {
		<-s.done
		f.Close()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(fds, 0)
		exited = perr == nil && n > 0
		return exited
	})
	if err == nil && exited {
		s.close(errProcessExited)
	}
}

// peerPidfd returns a pidfd for the process that connected c: from the
// socket (SO_PEERPIDFD, Linux 6.5: the very process, even if its pid has
// been reused since), else by pid. ESRCH means the process is gone.
func peerPidfd(c *net.UnixConn, pid int32) (int, error) {
	fd, serr := -1, error(nil)
	if rc, err := c.SyscallConn(); err == nil {
		if err := rc.Control(func(sfd uintptr) {
			fd, serr = unix.GetsockoptInt(int(sfd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		}); err == nil && serr == nil && fd >= 0 {
			return fd, nil
		} else if err == nil && errors.Is(serr, unix.ESRCH) {
			return -1, serr
		}
	}
	return unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
}
