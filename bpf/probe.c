//go:build ignore

/* probe.c: Sluice's uprobes on the CUDA driver library (libcuda.so.1).
 *
 * Every probed call is folded into per-cgroup counters (a hash keyed by the
 * caller's cgroup-v2 id, atomic adds); the Go side diffs successive reads
 * for rates. Only rare events (a process's first
 * allocation, its exit or exec, a failed allocation) go through the ring
 * buffer. Which driver function a program is attached to is told by the
 * attach cookie, so one program serves all launch variants, all
 * synchronizations and all copies.
 *
 * Rebuilt by `go generate ./bpf` (bpf2go, clang); the objects are committed. */

#include "sluice_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "probe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Per-cgroup counters, updated with atomic adds. One shared copy, not one
 * per CPU: a per-CPU map would cost max_entries x 608 B x CPUs of memory
 * (~320 MB on a 128-CPU host), and the cross-CPU atomic (~0.1 us at worst)
 * is small next to the uprobe trap (0.8-15 us measured). Entries are
 * allocated on first use. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct counters);
} stats SEC(".maps");

/* Live device allocations: (tgid, device pointer) -> size and cgroup.
 * Allocated on use: preallocating 131072 entries would pin ~10 MB. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_ALLOCS);
	__type(key, struct alloc_key);
	__type(value, struct alloc_val);
} allocs SEC(".maps");

/* Allocations in flight, between a cuMemAlloc* entry and its return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_INFLIGHT);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending_alloc);
} pending_allocs SEC(".maps");

/* Synchronizations in flight: entry time, between entry and return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_INFLIGHT);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending_sync);
} pending_syncs SEC(".maps");

/* Synchronous copies in flight: entry time, between entry and return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_INFLIGHT);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending_sync);
} pending_copies SEC(".maps");

/* Processes that allocated device memory: tgid -> cgroup and live bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct proc_val);
} procs SEC(".maps");

/* Observer health: map-full and ring-buffer-full drops (index: enum drop_kind). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_RINGBUF_BYTES);
} events SEC(".maps");

/* Referenced so that bpf2go's -type finds them in BTF. */
const struct event *unused_event __attribute__((unused));
const struct counters *unused_counters __attribute__((unused));

static __always_inline void count_drop(__u32 kind)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &kind);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* The calling cgroup's counters, created zeroed on first use. */
static __always_inline struct counters *cgroup_counters(__u64 cgid)
{
	struct counters *c = bpf_map_lookup_elem(&stats, &cgid);
	if (c)
		return c;
	/* struct counters is too big for the stack: insert from a static
	 * zero. Losing a race with another CPU's insert (-EEXIST) is fine. */
	static const struct counters zero;
	bpf_map_update_elem(&stats, &cgid, &zero, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&stats, &cgid);
	if (!c)
		count_drop(DROP_STATS_FULL);
	return c;
}

static __always_inline void emit(__u32 kind, __u64 pid_tgid, __u64 cgid, __u64 bytes, __u64 count, __s64 result)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgid;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->kind = kind;
	e->result = (__s32)result;
	e->bytes = bytes;
	e->count = count;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* floor(log2(v)) for v > 0, clamped to the histogram. */
static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	if (r >= SYNC_HIST_BUCKETS)
		r = SYNC_HIST_BUCKETS - 1;
	return r;
}

/* ---- kernel launches: entry only, the cheapest path ---- */

SEC("uprobe")
int uprobe_launch(struct pt_regs *ctx)
{
	__u64 k = bpf_get_attach_cookie(ctx);
	struct counters *c = cgroup_counters(bpf_get_current_cgroup_id());
	if (!c)
		return 0;
	if (k < LAUNCH_KINDS)
		__sync_fetch_and_add(&c->launches[k], 1);
	return 0;
}

/* ---- synchronizations: entry time, wait accounted on return ---- */

SEC("uprobe")
int uprobe_sync(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_sync p = {
		.start_ns = bpf_ktime_get_ns(),
		.kind = (__u32)bpf_get_attach_cookie(ctx),
	};
	if (bpf_map_update_elem(&pending_syncs, &id, &p, BPF_ANY))
		count_drop(DROP_INFLIGHT_FULL);
	return 0;
}

SEC("uretprobe")
int uretprobe_sync(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_sync *p = bpf_map_lookup_elem(&pending_syncs, &id);
	if (!p)
		return 0;
	__u64 dt = bpf_ktime_get_ns() - p->start_ns;
	__u32 k = p->kind;
	bpf_map_delete_elem(&pending_syncs, &id);

	struct counters *c = cgroup_counters(bpf_get_current_cgroup_id());
	if (!c)
		return 0;
	if (k < SYNC_KINDS) {
		__sync_fetch_and_add(&c->syncs[k], 1);
		__sync_fetch_and_add(&c->sync_ns[k], dt);
	}
	__u32 b = log2_bucket(dt | 1);
	if (b < SYNC_HIST_BUCKETS)
		__sync_fetch_and_add(&c->sync_hist[b], 1);
	if ((__s32)PT_REGS_RC(ctx) != 0)
		__sync_fetch_and_add(&c->failed_calls, 1);
	return 0;
}

/* ---- copies and prefetches: bytes counted on entry ----
 * Every probed copy is cuMemcpy*(dst, src, bytes[, stream]). The cookie is
 * the direction, plus MEMCPY_SYNC for the synchronous forms: they wait for
 * the GPU (the work queued before them, then the copy), so their duration
 * is timed like a synchronization, by a return probe. */

SEC("uprobe")
int uprobe_memcpy(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 k = cookie & ~(__u64)MEMCPY_SYNC;
	__u64 bytes = PT_REGS_PARM3(ctx);
	if (cookie & MEMCPY_SYNC) {
		__u64 id = bpf_get_current_pid_tgid();
		struct pending_sync p = {.start_ns = bpf_ktime_get_ns(), .kind = (__u32)k};
		if (bpf_map_update_elem(&pending_copies, &id, &p, BPF_ANY))
			count_drop(DROP_INFLIGHT_FULL);
	}
	struct counters *c = cgroup_counters(bpf_get_current_cgroup_id());
	if (!c)
		return 0;
	if (k < MEMCPY_KINDS) {
		__sync_fetch_and_add(&c->memcpys[k], 1);
		__sync_fetch_and_add(&c->memcpy_bytes[k], bytes);
	}
	return 0;
}

SEC("uretprobe")
int uretprobe_memcpy(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_sync *p = bpf_map_lookup_elem(&pending_copies, &id);
	if (!p)
		return 0;
	__u64 dt = bpf_ktime_get_ns() - p->start_ns;
	__u32 k = p->kind;
	bpf_map_delete_elem(&pending_copies, &id);
	struct counters *c = cgroup_counters(bpf_get_current_cgroup_id());
	if (!c)
		return 0;
	if (k < MEMCPY_KINDS)
		__sync_fetch_and_add(&c->memcpy_ns[k], dt);
	if ((__s32)PT_REGS_RC(ctx) != 0)
		__sync_fetch_and_add(&c->failed_calls, 1);
	return 0;
}

/* cuMemPrefetchAsync(ptr, bytes, ...) and its _v2. */
SEC("uprobe")
int uprobe_prefetch(struct pt_regs *ctx)
{
	__u64 bytes = PT_REGS_PARM2(ctx);
	struct counters *c = cgroup_counters(bpf_get_current_cgroup_id());
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->prefetches, 1);
	__sync_fetch_and_add(&c->prefetch_bytes, bytes);
	return 0;
}

/* ---- allocations: entry remembers the out-pointer, return reads it ----
 * Signatures: cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes),
 * cuMemAllocManaged(CUdeviceptr *dptr, size_t bytes, unsigned flags),
 * cuMemAllocAsync(CUdeviceptr *dptr, size_t bytes, CUstream),
 * cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytes, pool, CUstream). */

SEC("uprobe")
int uprobe_alloc(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_alloc p = {
		.out_ptr = PT_REGS_PARM1(ctx),
		.bytes = PT_REGS_PARM2(ctx),
		.kind = (__u32)bpf_get_attach_cookie(ctx),
	};
	if (bpf_map_update_elem(&pending_allocs, &id, &p, BPF_ANY))
		count_drop(DROP_INFLIGHT_FULL);
	return 0;
}

SEC("uretprobe")
int uretprobe_alloc(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_alloc *pp = bpf_map_lookup_elem(&pending_allocs, &id);
	if (!pp)
		return 0;
	struct pending_alloc p = *pp;
	bpf_map_delete_elem(&pending_allocs, &id);

	__u64 cgid = bpf_get_current_cgroup_id();
	struct counters *c = cgroup_counters(cgid);
	if (!c)
		return 0;
	__s32 rc = (__s32)PT_REGS_RC(ctx);
	if (rc != 0) {
		__sync_fetch_and_add(&c->failed_calls, 1);
		emit(EV_ALLOC_FAILED, id, cgid, p.bytes, 0, rc);
		return 0;
	}
	if (p.kind < ALLOC_KINDS) {
		__sync_fetch_and_add(&c->allocs[p.kind], 1);
		__sync_fetch_and_add(&c->alloc_bytes[p.kind], p.bytes);
	}

	struct alloc_key key = {.tgid = id >> 32};
	if (bpf_probe_read_user(&key.dptr, sizeof(key.dptr), (const void *)p.out_ptr))
		return 0;
	struct alloc_val val = {.bytes = p.bytes, .cgroup_id = cgid};
	struct alloc_val *old = bpf_map_lookup_elem(&allocs, &key);
	if (old) {
		/* The driver handed out an address we think is live: the free
		 * went unseen (e.g. probes attached mid-run). Retire the old one. */
		__sync_fetch_and_add(&c->freed_bytes, old->bytes);
	}
	if (bpf_map_update_elem(&allocs, &key, &val, BPF_ANY)) {
		count_drop(DROP_ALLOCS_FULL);
		/* Untracked: count it as freed now so live bytes stay right. */
		__sync_fetch_and_add(&c->untracked_bytes, p.bytes);
		return 0;
	}

	__u32 tgid = key.tgid;
	struct proc_val *pv = bpf_map_lookup_elem(&procs, &tgid);
	if (pv) {
		__sync_fetch_and_add(&pv->allocs, 1);
		return 0;
	}
	struct proc_val nv = {.cgroup_id = cgid, .allocs = 1, .start_ns = bpf_ktime_get_ns()};
	if (bpf_map_update_elem(&procs, &tgid, &nv, BPF_NOEXIST) == 0)
		emit(EV_PROC_FIRST_ALLOC, id, cgid, p.bytes, 1, 0);
	else
		count_drop(DROP_PROCS_FULL);
	return 0;
}

/* cuMemFree_v2(CUdeviceptr), cuMemFreeAsync(CUdeviceptr, CUstream). */
SEC("uprobe")
int uprobe_free(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct alloc_key key = {.tgid = id >> 32, .dptr = PT_REGS_PARM1(ctx)};
	struct alloc_val *v = bpf_map_lookup_elem(&allocs, &key);
	if (!v)
		return 0; /* freeing NULL, an unknown pointer, or one allocated before attach */
	__u64 bytes = v->bytes;
	__u64 cgid = v->cgroup_id;
	if (bpf_map_delete_elem(&allocs, &key))
		return 0; /* a concurrent free of the same pointer won */
	struct counters *c = cgroup_counters(cgid);
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->frees, 1);
	__sync_fetch_and_add(&c->freed_bytes, bytes);
	return 0;
}

/* ---- process exit and exec: release what the process still held ----
 * Raw tracepoints: they need no tracefs mount, and the arguments are not
 * needed since both run in the context of the exiting/exec'ing task. */

struct release_ctx {
	__u32 tgid;
	__u64 count;
	__u64 bytes;
	__u64 cgroup_id;
};

static long release_one(void *map, struct alloc_key *key, struct alloc_val *val, struct release_ctx *rc)
{
	if (key->tgid != rc->tgid)
		return 0;
	rc->count++;
	rc->bytes += val->bytes;
	rc->cgroup_id = val->cgroup_id;
	bpf_map_delete_elem(map, key);
	return 0;
}

static __always_inline void release_process(__u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct proc_val *pv = bpf_map_lookup_elem(&procs, &tgid);
	if (!pv)
		return; /* not a CUDA process: the common case, one lookup */
	__u64 cgid = pv->cgroup_id;
	bpf_map_delete_elem(&procs, &tgid);

	struct release_ctx rc = {.tgid = tgid, .cgroup_id = cgid};
	bpf_for_each_map_elem(&allocs, release_one, &rc, 0);
	if (rc.bytes) {
		struct counters *c = cgroup_counters(rc.cgroup_id);
		if (c) {
			__sync_fetch_and_add(&c->exit_released_bytes, rc.bytes);
			__sync_fetch_and_add(&c->exit_released, rc.count);
		}
	}
	emit(kind, id, cgid, rc.bytes, rc.count, 0);
}

SEC("raw_tracepoint/sched_process_exit")
int tp_exit(void *ctx)
{
	/* A thread that dies inside a probed call never returns from it:
	 * drop its in-flight entries so they cannot pile up. */
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&pending_syncs, &id);
	bpf_map_delete_elem(&pending_copies, &id);
	bpf_map_delete_elem(&pending_allocs, &id);

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int live = BPF_CORE_READ(task, signal, live.counter);
	if (live != 0)
		return 0; /* another thread of the process is still running */
	release_process(EV_EXIT);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int tp_exec(void *ctx)
{
	release_process(EV_EXEC);
	return 0;
}
