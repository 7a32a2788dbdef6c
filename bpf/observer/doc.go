// Package observer turns the CUDA driver probes of package bpf into
// per-container GPU activity: totals and rates of kernel launches,
// synchronization waits, allocations, live device memory and copies, per
// cgroup, per container and per function. It exports them to Prometheus
// (through an injected Registerer) and hands the scheduler a [Sample] per
// active container each interval (a per-container activity signal, finer
// than NVML's device-wide utilization).
//
// An [Observer] polls the BPF maps once per interval; only rare events
// (process first allocation, exit, exec, failed allocation) come through the
// ring buffer. It never blocks its callers: [Observer.Snapshot] returns the
// last poll's copy, and samples are dropped, and counted, when nobody reads
// them.
package observer
