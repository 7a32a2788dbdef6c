// Command sluice is Sluice's command-line tool: it talks to the sluiced
// daemon, runs the trace-driven simulator and builds function images.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gpu/sluice/internal/version"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns an error to print; errUsage means the usage was printed.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage reports bad usage after the usage text was already printed.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"version", "print the version", runVersion},
		{"sim", "run the trace-driven scheduler simulator", runSim},
		{"image", "build function images locally (sluice image build DIR)", runImage},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "sluice: serverless GPU functions, fairly and fast.\n\nUsage:\n  sluice <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'sluice <command> --help' for a command's flags.\n")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "sluice %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: sluice version")
		return errUsage
	}
	fmt.Fprintf(stdout, "sluice %s\n", version.Version)
	return nil
}
