package protocol

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// connPool is the Sluice protocol's HTTP/1.1 client: kept-alive connections,
// each request written and its response read by the calling goroutine
// (http.Transport hands every request to two more goroutines, which costs a
// third of a warm round trip). Responses are parsed by http.ReadResponse, so
// any conforming server works (Content-Length, chunked, Connection: close).
type connPool struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu     sync.Mutex
	idle   []*pconn
	closed bool
}

type pconn struct {
	c   net.Conn
	lr  limitReader // between c and br: bounds what one response may send
	br  *bufio.Reader
	buf bytes.Buffer
}

// maxHeaderBytes bounds a response's status line and header: the function
// is untrusted, and http.ReadResponse reads them without a limit.
const maxHeaderBytes = 1 << 20

var errResponseTooLarge = errors.New("response larger than allowed")

// limitReader reads from r until n bytes are used up, then fails.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// maxIdle bounds the kept-alive connections per instance.
const maxIdle = 64

var errNothingWritten = errors.New("request not written")

func (p *connPool) get(ctx context.Context) (pc *pconn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		pc = p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return pc, true, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	pc = &pconn{c: c, lr: limitReader{r: c}}
	pc.br = bufio.NewReaderSize(&pc.lr, 16<<10)
	return pc, false, nil
}

func (p *connPool) put(pc *pconn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdle {
		p.mu.Unlock()
		pc.c.Close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
}

// do sends one request and returns the status and body. A request that
// could not be written on a kept-alive connection (the server closed it) is
// retried once on a new one; nothing else is retried.
func (p *connPool) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(ctx)
		if err != nil {
			return 0, nil, err
		}
		status, out, err := p.roundTrip(ctx, pc, method, path, body)
		if errors.Is(err, errNothingWritten) && reused && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return status, out, err
	}
}

var longAgo = time.Unix(1, 0)

func (p *connPool) roundTrip(ctx context.Context, pc *pconn, method, path string, body []byte) (status int, out []byte, err error) {
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(longAgo) })
	keep := false
	defer func() {
		if !stop() {
			// The deadline may be poisoned: the connection is done.
			keep = false
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
		if keep {
			p.put(pc)
		} else {
			pc.c.Close()
		}
	}()
	b := &pc.buf
	b.Reset()
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: fn\r\n")
	if method == http.MethodPost {
		b.WriteString("Content-Type: application/json\r\nContent-Length: ")
		b.WriteString(strconv.Itoa(len(body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := pc.c.Write(b.Bytes()); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errNothingWritten, err)
	}
	pc.lr.n = maxHeaderBytes
	resp, err := http.ReadResponse(pc.br, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	// The body is limited below; this bounds chunk framing and trailers.
	pc.lr.n = MaxBodyBytes + maxHeaderBytes
	out, err = io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	resp.Body.Close()
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	if len(out) > MaxBodyBytes {
		return 0, nil, fmt.Errorf("read response: larger than %d bytes", MaxBodyBytes)
	}
	keep = !resp.Close
	return resp.StatusCode, out, nil
}
