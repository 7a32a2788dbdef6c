// Command testfn is the conformance suite's function: a Sluice-protocol
// server whose requests select a behaviour (echo, sleep, crash, report its
// environment and identity, probe its sandbox), so the suite can check each
// backend's contract. Test infrastructure, not an example.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
)

type request struct {
	Op   string `json:"op"`
	MS   int    `json:"ms"`
	Code int    `json:"code"`
	Name string `json:"name"`
	Path string `json:"path"`
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var r request
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, protocol.Errorf(http.StatusBadRequest, "decode request: %v", err)
	}
	switch r.Op {
	case "", "echo":
		return raw, nil
	case "sleep":
		select {
		case <-time.After(time.Duration(r.MS) * time.Millisecond):
			return map[string]int{"slept_ms": r.MS}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "exit":
		os.Exit(r.Code)
	case "env":
		v, ok := os.LookupEnv(r.Name)
		return map[string]any{"value": v, "set": ok}, nil
	case "id":
		h, _ := os.Hostname()
		return map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "pid": os.Getpid(), "hostname": h}, nil
	case "write":
		err := os.WriteFile(r.Path, []byte("x"), 0o644)
		if err != nil {
			return map[string]any{"ok": false, "error": err.Error()}, nil
		}
		_ = os.Remove(r.Path)
		return map[string]any{"ok": true}, nil
	case "net":
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, err
		}
		names := []string{}
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return map[string]any{"interfaces": names}, nil
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		return map[string]bool{"ignoring": true}, nil
	case "alloc":
		// Touch MS mebibytes, to trip a memory limit.
		buf := make([][]byte, 0, r.MS)
		for range r.MS {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			buf = append(buf, b)
		}
		return map[string]int{"allocated_mb": len(buf)}, nil
	case "fail":
		return nil, protocol.Errorf(http.StatusUnprocessableEntity, "asked to fail")
	}
	return nil, protocol.Errorf(http.StatusBadRequest, "unknown op %q", r.Op)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := protocol.Serve(ctx, handle); err != nil {
		log.Fatal(fmt.Errorf("testfn: %w", err))
	}
}
