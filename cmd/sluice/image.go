package main

// Placeholder until image building lands (issue 6): owned by the function-runtime work.

import (
	"context"
	"errors"
	"io"
)

func runImage(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("image building is not built yet")
}
