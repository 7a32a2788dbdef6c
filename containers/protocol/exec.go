package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
)

// ExecHandler adapts a run-once program to the protocol: each invocation
// runs argv with the request body on stdin. If the body is an object with an
// "args" array of strings, they are appended to argv. A zero exit answers
// the program's stdout if it is JSON, else {"stdout": "..."}; a non-zero exit
// answers 500 with the exit status and the end of stderr. The program
// inherits the server's environment (so LD_PRELOAD and the shim's settings
// reach it).
func ExecHandler(argv []string) Handler {
	return func(ctx context.Context, req json.RawMessage) (any, error) {
		args := append([]string(nil), argv[1:]...)
		var obj struct {
			Args []string `json:"args"`
		}
		if len(req) > 0 && req[0] == '{' {
			if err := json.Unmarshal(req, &obj); err != nil {
				return nil, Errorf(http.StatusBadRequest, "field \"args\": want an array of strings")
			}
			args = append(args, obj.Args...)
		}
		cmd := exec.CommandContext(ctx, argv[0], args...)
		// The program must not mistake itself for the server.
		cmd.Env = withoutVar(os.Environ(), SocketEnv)
		cmd.Stdin = bytes.NewReader(req)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return nil, Errorf(http.StatusInternalServerError, "%s %s: %s", argv[0], ee.ProcessState, tail(stderr.Bytes(), 2048))
		case err != nil:
			return nil, fmt.Errorf("run %s: %w", argv[0], err)
		}
		out := bytes.TrimSpace(stdout.Bytes())
		if len(out) > 0 && json.Valid(out) {
			return json.RawMessage(out), nil
		}
		return map[string]string{"stdout": stdout.String()}, nil
	}
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
