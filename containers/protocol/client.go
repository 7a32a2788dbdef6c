package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Kind is the wire protocol an endpoint speaks.
type Kind string

const (
	// KindSluice is Sluice's protocol (GET /ready, POST /invoke).
	KindSluice Kind = "sluice"
	// KindOpenWhisk is OpenWhisk's action protocol (POST /init, POST /run).
	KindOpenWhisk Kind = "openwhisk"
)

// Endpoint says how to reach one instance's function server.
type Endpoint struct {
	Kind Kind
	// Network is "unix" or "tcp"; Address is a socket path or host:port.
	Network, Address string
	// NetNS, when set, is a network namespace file (/proc/PID/ns/net): TCP
	// connections are dialled inside it (needs CAP_SYS_ADMIN).
	NetNS string
}

// ErrNotReady is returned by Ready while the server does not answer yet.
var ErrNotReady = errors.New("function not ready")

// Client talks to one instance. It is safe for concurrent use and keeps
// connections open between invocations.
type Client struct {
	ep   Endpoint
	hc   *http.Client
	tr   *http.Transport
	base string
	// conns carries the Sluice protocol; hc (OpenWhisk) goes through
	// net/http's Transport.
	conns *connPool
}

// NewClient returns a client for ep.
func NewClient(ep Endpoint) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		if ep.NetNS != "" {
			return dialInNetNS(ctx, ep.NetNS, ep.Network, ep.Address)
		}
		return d.DialContext(ctx, ep.Network, ep.Address)
	}
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
	c := &Client{ep: ep, tr: tr, hc: &http.Client{Transport: tr}, base: "http://fn"}
	if ep.Kind != KindOpenWhisk {
		c.conns = &connPool{dial: func(ctx context.Context) (net.Conn, error) { return dial(ctx, "", "") }}
	}
	return c
}

// Endpoint returns the endpoint the client talks to.
func (c *Client) Endpoint() Endpoint { return c.ep }

// Close drops idle connections.
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
	if c.conns != nil {
		c.conns.close()
	}
}

// Ready checks once whether the function can take work. For the Sluice
// protocol that is GET /ready answering 200; for OpenWhisk, a TCP connection
// to the action's port. It wraps ErrNotReady when not.
func (c *Client) Ready(ctx context.Context) error {
	if c.ep.Kind == KindOpenWhisk {
		conn, err := c.tr.DialContext(ctx, c.ep.Network, c.ep.Address)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotReady, err)
		}
		return conn.Close()
	}
	status, _, err := c.conns.do(ctx, http.MethodGet, "/ready", nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("%w: /ready answered %d", ErrNotReady, status)
	}
	return nil
}

// OpenWhiskInit is the value of an OpenWhisk /init request.
type OpenWhiskInit struct {
	Name   string            `json:"name"`
	Main   string            `json:"main"`
	Code   string            `json:"code"`
	Binary bool              `json:"binary"`
	Env    map[string]string `json:"env,omitempty"`
}

// Init sends OpenWhisk's /init (once per instance, before the first Invoke).
// It is a no-op for the Sluice protocol.
func (c *Client) Init(ctx context.Context, v OpenWhiskInit) error {
	if c.ep.Kind != KindOpenWhisk {
		return nil
	}
	body, err := json.Marshal(struct {
		Value OpenWhiskInit `json:"value"`
	}{v})
	if err != nil {
		return fmt.Errorf("encode init: %w", err)
	}
	if _, err := c.post(ctx, "/init", body); err != nil {
		return fmt.Errorf("init action: %w", err)
	}
	return nil
}

// Invoke sends one invocation with a JSON body and returns the JSON result.
// A function error comes back as *Error (with its status); transport errors
// are returned as they are.
func (c *Client) Invoke(ctx context.Context, body []byte) ([]byte, error) {
	if len(body) == 0 {
		body = []byte("null")
	}
	if c.ep.Kind == KindOpenWhisk {
		if !json.Valid(body) {
			return nil, Errorf(http.StatusBadRequest, "request body is not valid JSON")
		}
		wrapped := make([]byte, 0, len(body)+10)
		wrapped = append(append(append(wrapped, `{"value":`...), body...), '}')
		return c.post(ctx, "/run", wrapped)
	}
	return c.post(ctx, "/invoke", body)
}

func (c *Client) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	var status int
	var out []byte
	var err error
	if c.conns != nil {
		status, out, err = c.conns.do(ctx, http.MethodPost, path, body)
	} else {
		status, out, err = c.postHTTP(ctx, path, body)
	}
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, decodeError(status, out)
	}
	return out, nil
}

func (c *Client) postHTTP(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	if len(out) > MaxBodyBytes {
		return 0, nil, fmt.Errorf("read response: larger than %d bytes", MaxBodyBytes)
	}
	return resp.StatusCode, out, nil
}

// decodeError turns a non-2xx answer into an *Error: the "error" member of
// a JSON object (a string, or the raw JSON of anything else), else the body.
func decodeError(status int, out []byte) *Error {
	e := &Error{Status: status}
	var m struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(out, &m) == nil && len(m.Error) > 0 {
		var s string
		if json.Unmarshal(m.Error, &s) == nil {
			e.Message = s
		} else {
			e.Message = string(m.Error)
		}
	} else {
		e.Message = string(bytes.TrimSpace(out))
	}
	return e
}

// WaitReady polls Ready every poll interval until it succeeds or ctx ends;
// it returns ctx's error wrapped with the last readiness failure.
func (c *Client) WaitReady(ctx context.Context, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for readiness: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
