// Command ow-echo is an example of an image that follows Apache OpenWhisk's
// action protocol, unchanged, as Sluice runs it with "protocol": "openwhisk":
// an HTTP server on port 8080 with POST /init (once, before the first run)
// and POST /run, whose body is {"value": ARGS, ...} and whose answer is the
// action's JSON result. Errors are {"error": "..."} with a non-2xx status.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type action struct {
	mu          sync.Mutex
	initialized bool
	main        string
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *action) init(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Value struct {
			Main string `json:"main"`
			Name string `json:"name"`
		} `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 48<<20)).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "decode init: " + err.Error()})
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.initialized {
		reply(w, http.StatusForbidden, map[string]string{"error": "cannot initialize the action more than once"})
		return
	}
	a.initialized, a.main = true, req.Value.Main
	reply(w, http.StatusOK, map[string]bool{"ok": true})
}

func (a *action) run(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ok := a.initialized
	a.mu.Unlock()
	if !ok {
		reply(w, http.StatusInternalServerError, map[string]string{"error": "the action was not initialized"})
		return
	}
	var req struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 48<<20)).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "decode run: " + err.Error()})
		return
	}
	var args map[string]any
	if len(req.Value) > 0 && string(req.Value) != "null" {
		if err := json.Unmarshal(req.Value, &args); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": "value must be a JSON object"})
			return
		}
	}
	name, _ := args["name"].(string)
	if name == "" {
		name = "stranger"
	}
	reply(w, http.StatusOK, map[string]any{"greeting": "hello, " + name, "args": args})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &action{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /init", a.init)
	mux.HandleFunc("POST /run", a.run)
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("ow-echo: %v", err)
	}
}
