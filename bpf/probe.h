/* probe.h: types and limits shared by probe.c and, through bpf2go's
 * generated Go types, the Go loader. Keep the Go constants in probe.go in
 * step with the enums here (TestConstantsMatchHeader checks them). */
#ifndef SLUICE_PROBE_H
#define SLUICE_PROBE_H

#define SLUICE_MAX_CGROUPS 4096
#define SLUICE_MAX_ALLOCS 131072
#define SLUICE_MAX_INFLIGHT 16384
#define SLUICE_MAX_PROCS 16384
#define SLUICE_RINGBUF_BYTES (256 * 1024)

/* Launch APIs (attach cookie of uprobe_launch). */
enum launch_kind {
	LAUNCH_KERNEL = 0, /* cuLaunchKernel, cuLaunchCooperativeKernel */
	LAUNCH_KERNEL_PTSZ = 1, /* their _ptsz forms */
	LAUNCH_KERNEL_EX = 2, /* cuLaunchKernelEx, cuLaunchKernelEx_ptsz */
	LAUNCH_GRAPH = 3, /* cuGraphLaunch, cuGraphLaunch_ptsz */
	LAUNCH_KINDS = 4,
};

/* Synchronization APIs (attach cookie of uprobe_sync). */
enum sync_kind {
	SYNC_CTX = 0, /* cuCtxSynchronize(_v2) */
	SYNC_STREAM = 1, /* cuStreamSynchronize(_ptsz) */
	SYNC_EVENT = 2, /* cuEventSynchronize */
	SYNC_KINDS = 3,
};

/* Copy directions (attach cookie of uprobe_memcpy, plus MEMCPY_SYNC for
 * the synchronous forms, which are timed). */
enum memcpy_kind {
	MEMCPY_HTOD = 0,
	MEMCPY_DTOH = 1,
	MEMCPY_DTOD = 2,
	MEMCPY_UNIFIED = 3, /* cuMemcpy, cuMemcpyAsync: direction from the pointers */
	MEMCPY_KINDS = 4,
	MEMCPY_SYNC = 256,
};

/* Allocation APIs (attach cookie of uprobe_alloc). */
enum alloc_kind {
	ALLOC_DEVICE = 0, /* cuMemAlloc_v2 */
	ALLOC_MANAGED = 1, /* cuMemAllocManaged */
	ALLOC_ASYNC = 2, /* cuMemAllocAsync, cuMemAllocFromPoolAsync (and _ptsz) */
	ALLOC_KINDS = 3,
};

#define SYNC_HIST_BUCKETS 40 /* log2(ns) buckets: 1 ns .. ~550 s and above */

enum drop_kind {
	DROP_STATS_FULL = 0,
	DROP_ALLOCS_FULL = 1,
	DROP_INFLIGHT_FULL = 2,
	DROP_PROCS_FULL = 3,
	DROP_RINGBUF_FULL = 4,
	DROP_KINDS = 5,
};

/* Per-cgroup counters. */
struct counters {
	__u64 launches[LAUNCH_KINDS];
	__u64 syncs[SYNC_KINDS];
	__u64 sync_ns[SYNC_KINDS];
	__u64 allocs[ALLOC_KINDS];
	__u64 alloc_bytes[ALLOC_KINDS];
	__u64 frees;
	__u64 freed_bytes;
	__u64 exit_released; /* allocations still live when their process exited or exec'd */
	__u64 exit_released_bytes;
	__u64 untracked_bytes; /* allocations the allocs map had no room for */
	__u64 memcpys[MEMCPY_KINDS];
	__u64 memcpy_bytes[MEMCPY_KINDS];
	__u64 memcpy_ns[MEMCPY_KINDS]; /* time inside synchronous copies */
	__u64 prefetches;
	__u64 prefetch_bytes;
	__u64 failed_calls; /* probed calls that returned a CUresult other than 0 */
	__u64 sync_hist[SYNC_HIST_BUCKETS];
};

struct alloc_key {
	__u32 tgid;
	__u32 pad;
	__u64 dptr;
};

struct alloc_val {
	__u64 bytes;
	__u64 cgroup_id;
};

struct pending_alloc {
	__u64 out_ptr;
	__u64 bytes;
	__u32 kind;
	__u32 pad;
};

struct pending_sync {
	__u64 start_ns;
	__u32 kind;
	__u32 pad;
};

struct proc_val {
	__u64 cgroup_id;
	__u64 allocs;
	__u64 start_ns;
};

/* Ring-buffer record kinds: rare events only. */
enum event_kind {
	EV_PROC_FIRST_ALLOC = 1, /* a process's first device allocation */
	EV_EXIT = 2, /* a process that allocated exited; bytes/count: released */
	EV_EXEC = 3, /* ... or exec'd another image */
	EV_ALLOC_FAILED = 4, /* an allocation returned an error; bytes asked */
};

struct event {
	__u64 ts_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 cgroup_id;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 kind;
	__s32 result; /* CUresult for EV_ALLOC_FAILED */
	__u64 bytes;
	__u64 count;
	char comm[16];
};

#endif /* SLUICE_PROBE_H */
