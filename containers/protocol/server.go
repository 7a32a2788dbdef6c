package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// SocketPath is where a function's server listens inside its container; the
// SocketEnv variable overrides it (the process backend sets it).
const (
	SocketPath = "/run/sluice/fn.sock"
	SocketEnv  = "SLUICE_FN_SOCKET"
	// FunctionEnv names the function (set by Sluice for every instance).
	FunctionEnv = "SLUICE_FUNCTION"
)

// MaxBodyBytes bounds request and response bodies: 64 MiB.
const MaxBodyBytes = 64 << 20

// Handler answers one invocation: req is the invocation's JSON body; the
// result is encoded as JSON. An *Error result sets the status; any other
// error answers 500.
type Handler func(ctx context.Context, req json.RawMessage) (any, error)

// Error is an invocation error with an HTTP status: 4xx for bad input, 5xx
// for a failing function. Clients get it back from Invoke.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("function error (status %d): %s", e.Status, e.Message)
}

// Errorf returns an *Error with status and a formatted message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// NewHandler returns the HTTP side of the protocol for h.
func NewHandler(h Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ready":true}`)
	})
	mux.HandleFunc("POST /invoke", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			writeError(w, Errorf(http.StatusRequestEntityTooLarge, "read request: %v", err))
			return
		}
		if len(body) == 0 {
			body = []byte("null")
		}
		if !json.Valid(body) {
			writeError(w, Errorf(http.StatusBadRequest, "request body is not valid JSON"))
			return
		}
		res, err := callHandler(r.Context(), h, body)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				pe = Errorf(http.StatusInternalServerError, "%v", err)
			}
			writeError(w, pe)
			return
		}
		out, err := json.Marshal(res)
		if err != nil {
			writeError(w, Errorf(http.StatusInternalServerError, "encode result: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	return mux
}

// callHandler runs h, turning a panic into a 500 so one bad request does not
// kill a warm instance.
func callHandler(ctx context.Context, h Handler, body []byte) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = Errorf(http.StatusInternalServerError, "function panicked: %v", p)
		}
	}()
	return h(ctx, body)
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.Status < 400 || e.Status > 599 {
		e = &Error{Status: http.StatusInternalServerError, Message: e.Message}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// Listen opens the function socket at path (SocketEnv's value, else
// SocketPath when path is empty), replacing a stale socket file.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		path = os.Getenv(SocketEnv)
	}
	if path == "" {
		path = SocketPath
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on function socket: %w", err)
	}
	return l, nil
}

// Serve serves h on the function socket until ctx is cancelled. It is what a
// function's main does:
//
//	func main() { log.Fatal(protocol.Serve(ctx, handle)) }
func Serve(ctx context.Context, h Handler) error {
	l, err := Listen("")
	if err != nil {
		return err
	}
	return ServeListener(ctx, l, h)
}

// ServeListener serves h on l until ctx is cancelled, then shuts down,
// letting running invocations finish for up to 5 seconds.
func ServeListener(ctx context.Context, l net.Listener, h Handler) error {
	srv := &http.Server{Handler: NewHandler(h), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve function socket: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}
