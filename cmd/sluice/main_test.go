package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"version"}, 0, "sluice ", ""},
		{[]string{"--help"}, 0, "Commands:", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"frob"}, 2, "", `unknown command "frob"`},
		{[]string{"version", "x"}, 2, "", "usage: sluice version"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.inErr) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.code, tt.out, tt.inErr)
		}
	}
}
