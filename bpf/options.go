package bpf

import (
	"errors"
	"fmt"
	"os"
)

// ErrNotSupported is wrapped by [Open]'s error when eBPF observability cannot
// run here: not root, no BTF, no uprobes, no driver library, or an
// unsupported architecture. The daemon logs it and runs without eBPF.
var ErrNotSupported = errors.New("ebpf observability not supported")

// Options configures [Open]. The zero value attaches to the host's driver with
// launch probing off.
type Options struct {
	// Library is the CUDA driver library to probe: the host file that
	// containers load (the NVIDIA container toolkit bind-mounts it), or the
	// fake driver in tests. Default is the first of [DefaultLibraries]
	// that exists.
	Library string
	// Launches attaches the kernel-launch probes. Default is false: a uprobe
	// adds 0.8-15 us to every launch, more than 5% of a ~5 us native launch
	// (see docs/OBSERVABILITY.md).
	Launches bool
	// Syncs, Memory and Copies are on unless the matching Disable field is set.
	DisableSyncs  bool
	DisableMemory bool // allocations and frees
	DisableCopies bool // copies and prefetches
	// PerFunctionUprobes attaches one perf-event uprobe per function even
	// where the kernel has uprobe_multi links (Linux 6.6+), as older kernels
	// must. Default is false: multi links detach ~7x faster.
	PerFunctionUprobes bool
}

// DefaultLibraries returns the usual paths of the host's driver library
// (Debian/Ubuntu x86-64 and arm64, then RHEL-style lib64).
func DefaultLibraries() []string {
	return []string{
		"/usr/lib/x86_64-linux-gnu/libcuda.so.1",
		"/usr/lib/aarch64-linux-gnu/libcuda.so.1",
		"/usr/lib64/libcuda.so.1",
	}
}

func (o *Options) library() (string, error) {
	if o.Library != "" {
		return o.Library, nil
	}
	for _, p := range DefaultLibraries() {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no CUDA driver library at %v: %w", DefaultLibraries(), ErrNotSupported)
}
