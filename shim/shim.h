/*
 * shim/shim.h - internal declarations of Sluice's CUDA interception shim
 * (build/libsluice.so, LD_PRELOADed into unmodified CUDA processes).
 *
 * The symbol table shim/syms.def is expanded here into function-pointer
 * typedefs and symbol ids; syms.c expands it into the wrappers, the
 * real-pointer table and the hook table. Everything is hidden unless it is
 * a wrapper (exported under the driver's name) or dlsym.
 */
#ifndef SLUICE_SHIM_H
#define SLUICE_SHIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_min.h"
#include "sluice_proto.h"

#ifdef __x86_64__
/* Bind libc references to their baseline versions, so the shim also loads
 * in images whose glibc predates 2.34 (where libdl and libpthread were
 * separate libraries). */
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlvsym,dlvsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver pthread_once,pthread_once@GLIBC_2.2.5");
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
__asm__(".symver pthread_atfork,pthread_atfork@GLIBC_2.2.5");
__asm__(".symver pthread_attr_setstacksize,pthread_attr_setstacksize@GLIBC_2.2.5");
#endif

#define SHIM_HIDDEN __attribute__((visibility("hidden")))
#define SHIM_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------ symbols */

#define X(name, kind, base, ver, pt, stream, ret, params, args) typedef ret (*name##_fn) params;
#include "syms.def"
#undef X

enum sym {
#define X(name, ...) SYM_##name,
#include "syms.def"
#undef X
	SYM_COUNT
};

struct sym_info {
	const char *name;	/* exported variant name */
	const char *base;	/* name cuGetProcAddress is asked for */
	int ver;		/* first caller version that gets this variant */
	int pt;			/* per-thread-default-stream variant */
	void *hook;		/* our wrapper, NULL for USE entries */
};

extern const struct sym_info sym_info[SYM_COUNT] SHIM_HIDDEN;
extern void *sym_real[SYM_COUNT] SHIM_HIDDEN;	/* atomic access only */

static inline void *sym_real_get(enum sym i)
{
	return __atomic_load_n(&sym_real[i], __ATOMIC_RELAXED);
}
#define REAL(name) ((name##_fn)sym_real_get(SYM_##name))

/* Index of an exact variant name, or -1. */
int sym_lookup(const char *name) SHIM_HIDDEN;
/* The cuGetProcAddress swap: given what the real resolver returned for
 * (symbol, version, flags), return our wrapper for that exact variant, or p. */
void *sym_swap_proc(const char *symbol, void *p, int cuda_version, cuuint64_t flags) SHIM_HIDDEN;
/* Fill sym_real from the real driver. */
void syms_resolve(void *driver) SHIM_HIDDEN;

/* --------------------------------------------------------------- gate */

/* The one word every submission path loads. Zero: nothing to do. */
#define GATE_INIT 0x1u		/* shim not initialized yet */
#define GATE_REGISTER 0x2u	/* registration with the daemon pending */
#define GATE_PREFETCH 0x4u	/* a prefetch is in flight: order after it */
extern _Atomic uint32_t shim_gate SHIM_HIDDEN;

void gate_slow(CUstream s) SHIM_HIDDEN;

/* Prefetch [p, p+n) to device dev (to_device) or to the host on stream s:
 * cuMemPrefetchAsync_v2 where the driver has it, else v1. */
CUresult shim_prefetch(CUdeviceptr p, size_t n, int to_device, CUdevice dev, CUstream s) SHIM_HIDDEN;

/* --------------------------------------------------------------- init */

struct shim_config {
	int log;		/* SLUICE_LOG set */
	int convert;		/* SLUICE_UVM != "0": turn device allocations into managed */
	int populate;		/* SLUICE_POPULATE != "0": place new managed ranges on the GPU */
	uint64_t reserve;	/* bytes hidden from the capacity view (SLUICE_RESERVE_MB) */
	int reconnect_watch;	/* SLUICE_RECONNECT_WATCH=1: inotify while the daemon is away */
	char socket[108];	/* SLUICE_SOCKET, "" if unset */
	char function[SLUICE_FUNCTION_ID_MAX];	/* SLUICE_FUNCTION */
};
extern struct shim_config shim_cfg SHIM_HIDDEN;
extern void *shim_driver SHIM_HIDDEN;	/* dlopen handle of the real libcuda.so.1 */

void shim_init(void) SHIM_HIDDEN;	/* pthread_once; safe from every entry point */
static inline void shim_ensure_init(void)
{
	if (unlikely(atomic_load_explicit(&shim_gate, memory_order_acquire) & GATE_INIT))
		shim_init();
}
void shim_log(const char *fmt, ...) SHIM_HIDDEN __attribute__((format(printf, 1, 2)));
#define SHIM_LOG(...)                                 \
	do {                                          \
		if (unlikely(shim_cfg.log))           \
			shim_log(__VA_ARGS__);        \
	} while (0)
/* Always logged (to stderr): misuse the app must hear about. */
void shim_warn(const char *fmt, ...) SHIM_HIDDEN __attribute__((format(printf, 1, 2)));

/* Real dlsym of libc, reached without going through our interposer. */
extern void *(*real_dlsym_ptr)(void *, const char *) SHIM_HIDDEN;
void *shim_real_dlsym(void *handle, const char *name) SHIM_HIDDEN;

/* ------------------------------------------------------------- memory */

/* Usage counters: live on the shared page once registered (mem.c). */
extern struct sluice_usage_page *_Atomic shim_usage SHIM_HIDDEN;

void mem_account(int kind, int64_t delta) SHIM_HIDDEN;
uint64_t mem_live_bytes(void) SHIM_HIDDEN;
uint64_t mem_evictable_bytes(void) SHIM_HIDDEN;
/* Read the driver's graph memory pools of the devices this process used
 * them on into the graph kind. Never on a submission path. */
void mem_graph_refresh(void) SHIM_HIDDEN;
extern _Atomic uint64_t shim_budget SHIM_HIDDEN;	/* 0 = none */
extern _Atomic int shim_captures SHIM_HIDDEN;		/* streams capturing now */

/* Snapshot of evictable ranges for the control thread: malloc'ed array. */
struct mem_range {
	CUdeviceptr ptr;
	uint64_t size;
	CUcontext ctx;
};
int mem_snapshot(struct mem_range **out, size_t *n) SHIM_HIDDEN;
/* After fork, in the child: forget the parent's allocations. */
void mem_atfork_prepare(void) SHIM_HIDDEN;
void mem_atfork_parent(void) SHIM_HIDDEN;
void mem_atfork_child(void) SHIM_HIDDEN;
/* Create the shared usage page (memfd); returns its fd or -1. */
int mem_usage_page_fd(void) SHIM_HIDDEN;
void mem_reap_deferred(void) SHIM_HIDDEN;
void mem_init_shared(void) SHIM_HIDDEN;	/* usage page for the daemon */

/* -------------------------------------------------------------- control */

void ctl_kick(void) SHIM_HIDDEN;		/* start lazy registration if pending */
void ctl_atfork_prepare(void) SHIM_HIDDEN;
void ctl_atfork_parent(void) SHIM_HIDDEN;
void ctl_atfork_child(void) SHIM_HIDDEN;
void ctl_prefetch_wait(CUstream s) SHIM_HIDDEN;	/* gate slow path for prefetches */

#endif
