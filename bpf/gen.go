package bpf

// Rebuilds probe_{x86,arm64}_bpfel.{go,o} from probe.c. Needs clang (14 or
// later), llvm-strip and libbpf's headers (Debian: clang llvm libbpf-dev);
// nothing else in the build needs them, because the output is committed.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target amd64,arm64 -type event -type counters -type alloc_key -type alloc_val -type proc_val probe probe.c -- -I./headers -Wall -Werror
