// Package bpf attaches Sluice's uprobes to the CUDA driver library
// (libcuda.so.1) and reads what they record: per-cgroup counters of kernel
// launches, synchronization waits, allocations, frees, copies and
// prefetches, and a ring buffer of rare per-process events (first
// allocation, exit, exec, failed allocation).
//
// probe.c and probe.h are the BPF programs; probe_{x86,arm64}_bpfel.{go,o}
// are bpf2go output: committed, never edited, rebuilt by `go generate ./bpf`
// (which alone needs clang). [Open] loads and attaches, [Probe.Counters]
// reads the maps, [Probe.ReadEvent] reads the ring buffer and [Probe.Close]
// detaches. Where eBPF cannot run (not root, no BTF, no uprobes, no driver
// library) Open returns an error wrapping [ErrNotSupported].
//
// Package observer (bpf/observer) turns these readings into per-container
// rates, Prometheus metrics and samples for the scheduler.
package bpf
