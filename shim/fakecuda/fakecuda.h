/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Internal declarations of Sluice's fake CUDA driver
 * (build/fakecuda/libcuda.so.1). The driver is split by area:
 *   fakecuda.c  init, env, logging, fault injection, devices, contexts
 *   mem.c       allocation table, capacity, pools, prefetch, advice, attributes
 *   copy.c      memcpy / memset families
 *   vmm.c       virtual memory management and arrays
 *   stream.c    the op queue, streams, events, capture, graphs
 *   launch.c    modules, functions, kernel launches and kernel emulation
 *   procaddr.c  cuGetProcAddress(_v2) and cuGetExportTable
 *   ptx.c       PTX .entry reader
 *   emugpu.c    the emulated GPU shared by all processes (device file)
 *
 * Execution model: host memory stands in for device memory (a CUdeviceptr
 * is a host address). Work submitted to streams is queued in one
 * process-wide FIFO in submission order and executed lazily: when a caller
 * synchronizes (stream, event, context, synchronous copy), queries, or when
 * more than FAKECUDA_QUEUE_DEPTH operations are pending. Executing in global
 * submission order respects stream order, events and legacy-stream
 * semantics. Kernels are recognised by name and emulated on the CPU; they
 * hold the emulated device (emugpu) for a modelled duration.
 */
#ifndef SLUICE_FAKECUDA_H
#define SLUICE_FAKECUDA_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "cuda_min.h"
#include "emugpu.h"
#include "fake_extra.h"
#include "fake_internal.h"

#define FK_HIDDEN __attribute__((visibility("hidden")))
#define FK_EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------ globals */

struct fk_counter {
	const char *name;
	unsigned long count;
	struct fk_counter *next;
	int fault_idx; /* -2 unresolved, -1 none, else index into G.faults */
};

struct fk_fault {
	char name[96];
	unsigned long nth; /* 1-based call number */
	int from_on;       /* "N+" fails the Nth and every later call */
	CUresult code;
};

struct fk_global {
	int logfd;
	int inited;
	int driver_version;
	int device_count;
	int concurrent_managed;
	double flops;         /* emulated fp32 FLOP/s (matmul kernel duration) */
	double mem_bps;       /* emulated device memory bandwidth (touch kernel) */
	uint64_t kernel_ns;   /* duration of kernels the fake does not know */
	unsigned queue_depth; /* pending ops before the oldest run */
	unsigned query_polls; /* queries answered NOT_READY before one runs the work */
	int emu_ok;           /* attached to the emulated GPU */
	int nfaults;
	struct fk_fault faults[16];
	struct fk_counter *counters;
	pthread_mutex_t mu;   /* process state: tables, queue */
	pthread_mutex_t exec; /* recursive: held while executing queued ops */
	CUresult async_err;   /* sticky error from an executed operation */
};

extern struct fk_global G FK_HIDDEN;

int fk_enter(struct fk_counter *c, CUresult *inj) FK_HIDDEN;
CUresult fk_log(const char *name, CUresult r, const char *fmt, ...) FK_HIDDEN
	__attribute__((format(printf, 3, 4)));
void fk_init_once(void) FK_HIDDEN;

/* Count the call and apply fault injection (returns from the caller). */
#define FK_ENTER(nm)                                                          \
	static struct fk_counter fk_c_ = {nm, 0, NULL, -2};                   \
	do {                                                                  \
		CUresult fk_inj_;                                             \
		if (fk_enter(&fk_c_, &fk_inj_))                               \
			return fk_log(nm, fk_inj_, "injected=1");             \
	} while (0)

#define FK_NEED_INIT(nm)                                                      \
	do {                                                                  \
		if (!G.inited)                                                \
			return fk_log(nm, CUDA_ERROR_NOT_INITIALIZED, NULL);  \
	} while (0)

/* ------------------------------------------------------------ contexts */

#define FK_MAGIC_CTX 0x43545846u
#define FK_MAGIC_STREAM 0x53545246u
#define FK_MAGIC_EVENT 0x45565446u
#define FK_MAGIC_MOD 0x4d4f4446u
#define FK_MAGIC_FUNC 0x46554e46u
#define FK_MAGIC_POOL 0x504f4f46u
#define FK_MAGIC_GRAPH 0x47524146u
#define FK_MAGIC_GEXEC 0x47455846u

struct fctx {
	uint32_t magic;
	int dev;
	unsigned flags;
	int primary;
	int destroyed;
	size_t limits[8];
};

struct fctx *fk_current_ctx(void) FK_HIDDEN;

/* Declare `c` as the calling thread's current context or fail with
 * CUDA_ERROR_INVALID_CONTEXT (after the init check). */
#define NEED_CTX(nm, c)                                                       \
	struct fctx *c = fk_current_ctx();                                    \
	do {                                                                  \
		FK_NEED_INIT(nm);                                             \
		if (!c)                                                       \
			return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, NULL);  \
	} while (0)

int fk_valid_device(CUdevice d) FK_HIDDEN;

/* ------------------------------------------------------------- streams */

struct fgraph;

struct fstream {
	uint32_t magic;
	struct fctx *ctx;
	unsigned flags;
	int priority;
	int kind;                     /* 0 created, 1 legacy, 2 per-thread */
	CUstreamCaptureStatus capture;
	CUstreamCaptureMode cmode;
	uint64_t capture_id;
	struct fgraph *graph;         /* capture target */
	uint64_t last_seq;            /* last op this stream depends on */
	unsigned long pending;        /* queued, not executed */
	unsigned polls;               /* NOT_READY answers since last progress */
	struct fstream *cap_origin;   /* joined a capture begun on this stream */
	struct fstream *joined[8];    /* origin: streams that joined its capture */
	int njoined;
	struct fstream *next;         /* G list of created streams */
};

struct fevent {
	uint32_t magic;
	unsigned flags;
	uint64_t rec_seq;  /* seq of the latest record op, 0 = never */
	uint64_t done_seq; /* seq of the latest executed record */
	uint64_t ts_ns;
	int recorded;
	unsigned polls; /* NOT_READY answers since last progress */
	struct fstream *cap_origin; /* last recorded into this capture (fork) */
	uint64_t cap_id;
	struct fevent *next;
};

struct ffunc;

enum fk_op_type {
	OP_KERNEL = 1,
	OP_COPY,
	OP_SET,
	OP_PREFETCH,
	OP_HOSTFN,
	OP_CALLBACK,
	OP_EVENT,
	OP_FREE,
	OP_NOP,
};

struct fop {
	struct fop *next;
	uint64_t seq;
	struct fstream *s;
	int type;
	union {
		struct {
			struct ffunc *f;
			unsigned char *params;
			size_t plen;
			unsigned grid[3], block[3];
		} k;
		struct {
			void *dst;
			const void *src;
			size_t n;
		} copy;
		struct {
			void *dst;
			uint32_t val;
			unsigned esize;
			size_t n;
		} set;
		struct {
			CUdeviceptr ptr;
			size_t n;
			int to_device;
			int discard;
		} pf;
		struct {
			CUhostFn fn;
			void *ud;
		} host;
		struct {
			CUstreamCallback fn;
			void *ud;
		} cb;
		struct {
			struct fevent *e;
		} ev;
		struct {
			CUdeviceptr ptr;
		} fr;
	} u;
};

/* Resolve a stream handle; ptsz selects per-thread semantics for 0. */
struct fstream *fk_stream(CUstream h, int ptsz, CUresult *err) FK_HIDDEN;
/* Whether a prohibited-during-capture call must fail now (900). */
int fk_capture_prohibited(void) FK_HIDDEN;
/* Submit an op (malloc'ed; ownership passes). Records it into the capture
 * graph when s is capturing. Returns a CUresult. */
CUresult fk_submit(struct fstream *s, struct fop *op) FK_HIDDEN;
struct fop *fk_op_new(int type) FK_HIDDEN;
void fk_op_free(struct fop *op) FK_HIDDEN;
struct fop *fk_op_clone(const struct fop *op) FK_HIDDEN;
/* Execute queued ops up to and including seq (UINT64_MAX = all). */
void fk_drain_until(uint64_t seq) FK_HIDDEN;
void fk_drain_all(void) FK_HIDDEN;
/* Execute one op now (stream.c -> mem.c / launch.c helpers). */
void fk_exec_op(struct fop *op) FK_HIDDEN;

/* ------------------------------------------------------------- kernels */

/* Execute one emulated kernel now. */
void fk_exec_kernel(struct fop *op) FK_HIDDEN;
/* Copy the params for a queued kernel op. */
unsigned char *fk_dup_params(const unsigned char *p, size_t n) FK_HIDDEN;

/* -------------------------------------------------------------- memory */

enum { FA_DEVICE = 1, FA_MANAGED = 2, FA_HOST = 3, FA_HOSTREG = 4, FA_VMM = 5, FA_ARRAY = 6 };

struct fk_range {
	uint64_t base, size;
	int kind; /* FA_* */
	int has_emu;
	uint32_t emu;
};
/* Returns 1 and fills out if ptr lies in a live allocation. */
int fk_find_range(uint64_t ptr, struct fk_range *out) FK_HIDDEN;
/* Execute a prefetch/discard op. */
void fk_exec_prefetch(struct fop *op) FK_HIDDEN;
/* Execute a stream-ordered free. */
void fk_exec_free(struct fop *op) FK_HIDDEN;
/* Free an allocation immediately (graph memory). */
CUresult fk_free_now(CUdeviceptr p) FK_HIDDEN;
/* Allocate device memory for a captured cuMemAllocAsync (graph memory). */
CUresult fk_alloc_graph_mem(CUdeviceptr *dptr, size_t bytes, int dev) FK_HIDDEN;
int fk_is_graph_mem(CUdeviceptr p) FK_HIDDEN;
CUresult fk_graph_mem_launch(CUdeviceptr p, int held) FK_HIDDEN;
void fk_graph_mem_exec_alloc(CUdeviceptr p) FK_HIDDEN;
void fk_graph_mem_unlaunch(CUdeviceptr p) FK_HIDDEN;
void fk_graph_mem_unhold(CUdeviceptr p) FK_HIDDEN;
void fk_graph_mem_release(CUdeviceptr p) FK_HIDDEN;
void fk_free_ctx_allocs(struct fctx *c) FK_HIDDEN;

/* Register / unregister a plain address range (VMM mappings, arrays). */
int fk_range_add(uint64_t base, uint64_t size, int kind) FK_HIDDEN;
void fk_range_del(uint64_t base) FK_HIDDEN;
/* Check that [p, p+n) lies inside one known allocation. */
int fk_range_ok(uint64_t p, uint64_t n) FK_HIDDEN;

/* Track a graph-owned allocation (stream.c). */
void fk_graph_add_mem(struct fgraph *g, CUdeviceptr p) FK_HIDDEN;

/* ---------------------------------------------------------- procaddr */

/* Whether name is an exported driver entry point of the fake. */
int fk_known_symbol(const char *name) FK_HIDDEN;
void *fk_proc_lookup(const char *symbol, int cudaVersion, cuuint64_t flags, int *status) FK_HIDDEN;

/* Duplicated small helpers. */
static inline int fk_ptds_flag(cuuint64_t flags)
{
	return (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) &&
	       !(flags & CU_GET_PROC_ADDRESS_LEGACY_STREAM);
}

#endif
