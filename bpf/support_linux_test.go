//go:build linux && (amd64 || arm64)

package bpf

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// TestCheckSupport takes each prerequisite away in turn: every missing one
// is ErrNotSupported with a line that names it.
func TestCheckSupport(t *testing.T) {
	const lib, pmu = "/drv/libcuda.so.1", "/sys/uprobe/type"
	ok := func() supportEnv {
		return supportEnv{
			stat: func(p string) (os.FileInfo, error) {
				if p == lib || p == pmu {
					return nil, nil
				}
				return nil, fs.ErrNotExist
			},
			euid:       func() int { return 0 },
			kernelBTF:  func() error { return nil },
			uprobeType: pmu,
		}
	}
	tests := []struct {
		name  string
		env   func(supportEnv) supportEnv
		words string // "" = supported
	}{
		{"all there", func(e supportEnv) supportEnv { return e }, ""},
		{"no library", func(e supportEnv) supportEnv {
			e.stat = func(p string) (os.FileInfo, error) { return nil, fs.ErrNotExist }
			return e
		}, "driver library"},
		{"not root", func(e supportEnv) supportEnv { e.euid = func() int { return 1000 }; return e }, "needs root"},
		{"no BTF", func(e supportEnv) supportEnv {
			e.kernelBTF = func() error { return errors.New("no /sys/kernel/btf/vmlinux") }
			return e
		}, "no kernel BTF"},
		{"no uprobes", func(e supportEnv) supportEnv { e.uprobeType = "/nonexistent"; return e }, "no uprobe PMU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSupport(lib, tt.env(ok()))
			if tt.words == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), tt.words) {
				t.Errorf("err = %v, want ErrNotSupported saying %q", err, tt.words)
			}
		})
	}
}
