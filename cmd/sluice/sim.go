package main

// Placeholder until the simulator lands (issue 3): owned by the scheduling-core work.

import (
	"context"
	"errors"
	"io"
)

func runSim(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("the simulator is not built yet")
}
