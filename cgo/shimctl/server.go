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

// Config configures a Server.
type Config struct {
	// Path of the Unix socket to create; an existing socket file there is
	// replaced.
	Path string
	// Logger receives session and protocol events; nil discards them.
	Logger *slog.Logger
	// Budget, if set, gives a new session's initial memory budget in bytes
	// (0 = none), sent in the WELCOME message.
	Budget func(functionID string) uint64
	// OnSession, if set, is called once a process has registered.
	OnSession func(*Session)
	// OnClose, if set, is called once a session has ended, with the reason.
	OnClose func(*Session, error)
	// RegisterTimeout bounds the wait for REGISTER after accept (default 5s).
	RegisterTimeout time.Duration
	// MaxConnections bounds the connections (registered or not) served at
	// once; more are closed at accept. Anyone who can reach the socket can
	// connect, and each connection costs goroutines, buffers and a pidfd.
	// Default 1024.
	MaxConnections int
}

// Server accepts shim connections. Create one with Listen, run it with Serve.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     *net.UnixListener
	nextID atomic.Uint64
	conns  atomic.Int64 // connections being served

	mu       sync.Mutex
	sessions map[uint64]*Session
	closing  bool // set by closeAll: no session is added after it
	wg       sync.WaitGroup
}

// ErrSessionClosed is returned by commands on a session that has ended.
var ErrSessionClosed = errors.New("shim session closed")

// Listen creates the socket. The caller runs Serve.
func Listen(cfg Config) (*Server, error) {
	if cfg.Path == "" {
		return nil, errors.New("listen shim socket: empty path")
	}
	if cfg.RegisterTimeout <= 0 {
		cfg.RegisterTimeout = 5 * time.Second
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 1024
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Lstat(cfg.Path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(cfg.Path); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: cfg.Path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen shim socket: %w", err)
	}
	// Containers run as any user: the socket is the access boundary, the
	// identity comes from the kernel.
	if err := chmodSocket(cfg.Path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod shim socket: %w", err)
	}
	return &Server{cfg: cfg, log: log, ln: ln, sessions: make(map[uint64]*Session)}, nil
}

// chmodSocket sets the mode of the socket file at path without following a
// link: the socket usually lives in a function's instance directory, where
// the function could swap it for a link to any host file between the bind
// and a chmod by name.
func chmodSocket(path string, mode uint32) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s: not a socket (mode %#o)", path, st.Mode)
	}
	// chmod through the descriptor's /proc link reaches exactly that inode.
	return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
}

// Addr is the socket path.
func (s *Server) Addr() string { return s.cfg.Path }

// Serve accepts connections until ctx is canceled, then closes the listener
// and every session and returns ctx.Err().
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	refusing := false
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				s.wg.Wait()
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.closeAll()
			s.wg.Wait()
			return fmt.Errorf("accept shim connection: %w", err)
		}
		if s.conns.Add(1) > int64(s.cfg.MaxConnections) {
			s.conns.Add(-1)
			if !refusing { // once per episode, not per connection
				s.log.Warn("refusing shim connections: too many", "max", s.cfg.MaxConnections)
			}
			refusing = true
			c.Close()
			continue
		}
		refusing = false
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Add(-1)
			s.handle(c)
		}()
	}
}

// Sessions returns the live sessions.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// Session returns the live session of a host pid, if any.
func (s *Server) Session(pid int32) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if ss.Peer.PID == pid {
			return ss
		}
	}
	return nil
}

func (s *Server) closeAll() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	for _, ss := range s.Sessions() {
		ss.close(context.Canceled)
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}

// readPacket reads one packet; fds passed with it are returned (the caller
// owns them). A truncated packet is an error.
func readPacket(c *net.UnixConn, buf, oob []byte) ([]byte, []int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if rights, rerr := unix.ParseUnixRights(&m); rerr == nil {
					fds = append(fds, rights...)
				}
			}
		}
	}
	if err != nil {
		return nil, fds, err
	}
	if n == 0 {
		return nil, fds, errEOF
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, fds, fmt.Errorf("%w: packet larger than %d bytes", errMalformed, len(buf))
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return nil, fds, fmt.Errorf("%w: too much ancillary data", errMalformed)
	}
	return buf[:n], fds, nil
}

var errEOF = errors.New("shim closed the connection")

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (s *Server) handle(c *net.UnixConn) {
	cred, err := peerCred(c)
	if err != nil {
		s.log.Warn("shim connection without credentials", "err", err)
		c.Close()
		return
	}
	log := s.log.With("pid", cred.Pid, "uid", cred.Uid)
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(4*4))
	c.SetReadDeadline(time.Now().Add(s.cfg.RegisterTimeout))
	pkt, fds, err := readPacket(c, buf, oob)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		closeFDs(fds)
		log.Warn("shim registration failed", "err", err)
		c.Close()
		return
	}
	reg, err := decodeRegister(pkt)
	if err != nil {
		closeFDs(fds)
		log.Warn("shim registration rejected", "err", err)
		c.Close()
		return
	}
	var page *usagePage
	if reg.Flags&regUsagePage != 0 && len(fds) > 0 {
		page, err = mapUsagePage(fds[0])
		if err != nil {
			log.Warn("shim usage page rejected; usage only through commands", "err", err)
		}
	}
	closeFDs(fds)

	id := s.nextID.Add(1)
	ss := &Session{
		ID:            id,
		Peer:          Identity{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid},
		FunctionID:    reg.FunctionID,
		ClaimedPID:    reg.ClaimedPID,
		DriverVersion: int(reg.DriverVersion),
		Devices:       reg.Devices,
		Converting:    reg.Flags&regConverting != 0,
		Forked:        reg.Flags&regForked != 0,
		Again:         reg.Flags&regAgain != 0,
		conn:          c,
		page:          page,
		pending:       make(map[uint64]chan Result),
		done:          make(chan struct{}),
		log:           log.With("session", id, "function", reg.FunctionID),
	}
	ss.registered = reg.Bytes
	budget := uint64(0)
	if s.cfg.Budget != nil {
		budget = s.cfg.Budget(reg.FunctionID)
	}
	// The session is listed before the WELCOME goes out: once the shim
	// knows it is registered, Sessions() knows it too.
	s.mu.Lock()
	if s.closing {
		// Serve is shutting down and has closed the sessions it knew of.
		s.mu.Unlock()
		ss.close(context.Canceled)
		return
	}
	s.sessions[ss.ID] = ss
	s.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.Background(), s.cfg.RegisterTimeout)
	err = ss.writeCtx(wctx, encodeWelcome(ss.ID, budget))
	cancel()
	if err != nil {
		ss.close(fmt.Errorf("send welcome: %w", err))
		s.mu.Lock()
		delete(s.sessions, ss.ID)
		s.mu.Unlock()
		return
	}
	ss.log.Info("shim registered", "claimed_pid", reg.ClaimedPID, "driver", reg.DriverVersion,
		"devices", len(reg.Devices), "usage_page", page != nil, "forked", ss.Forked, "again", ss.Again)
	if s.cfg.OnSession != nil {
		s.cfg.OnSession(ss)
	}
	go ss.watchProcess()
	reason := ss.readLoop(buf, oob)
	ss.close(reason)
	s.mu.Lock()
	delete(s.sessions, ss.ID)
	s.mu.Unlock()
	ss.log.Info("shim session ended", "reason", ss.Err())
	if s.cfg.OnClose != nil {
		s.cfg.OnClose(ss, ss.Err())
	}
}
