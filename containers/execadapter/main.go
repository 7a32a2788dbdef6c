// Command sluice-exec serves Sluice's function protocol for a program that
// runs once per request and exits (protocol.ExecHandler): usage
// `sluice-exec PROGRAM [ARG...]`. Image builds put it at /sluice/exec for
// functions whose build section says "adapter": "exec".
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gpu/sluice/containers/protocol"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sluice-exec PROGRAM [ARG...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := protocol.Serve(ctx, protocol.ExecHandler(os.Args[1:])); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-exec: %v\n", err)
		os.Exit(1)
	}
}
