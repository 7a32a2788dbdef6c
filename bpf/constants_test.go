package bpf

import (
	"os"
	"strings"
	"testing"
)

// TestMemcpySyncMatchesHeader keeps memcpySync in step with probe.h.
func TestMemcpySyncMatchesHeader(t *testing.T) {
	h, err := os.ReadFile("probe.h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h), "MEMCPY_SYNC = 256,") || memcpySync != 256 {
		t.Errorf("probe.h's MEMCPY_SYNC and memcpySync (%d) differ", memcpySync)
	}
}
