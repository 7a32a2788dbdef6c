// Package bpftest holds helpers for the bpf packages' tests: it builds the
// driver test double and the caller program from bpf/testdata with the C
// compiler, and runs the caller in a fresh cgroup-v2 so that a test can
// assert exact per-cgroup counts while other processes use the machine.
//
// Linux only, like the probes.
package bpftest
