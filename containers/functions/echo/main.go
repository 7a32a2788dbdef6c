// Command echo is Sluice's simplest example function: it serves the Sluice
// function protocol and returns each invocation's JSON body unchanged.
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gpu/sluice/containers/protocol"
)

func echo(_ context.Context, req json.RawMessage) (any, error) { return req, nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := protocol.Serve(ctx, echo); err != nil {
		log.Fatalf("echo: %v", err)
	}
}
