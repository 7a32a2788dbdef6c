/*
 * shim/mem.c - allocation wrappers, the allocation table, usage counters and
 * the capacity view.
 *
 * cuMemAlloc_v2 / cuMemAllocPitch_v2 become cuMemAllocManaged(ATTACH_GLOBAL);
 * stream-ordered allocations come from a managed pool on CUDA 13 drivers and
 * fall back to synchronous managed allocations with a deferred free on 12.x;
 * nothing is converted while a stream captures. VMM, arrays and IPC pools
 * pass through and count as non-evictable; graph memory (captured
 * stream-ordered allocations, allocation nodes) is read from the driver's
 * graph pools when usage is computed. The table is
 * behind one mutex: allocation paths only, never a submission path.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

_Atomic uint64_t shim_budget;
_Atomic int shim_captures;

/* ------------------------------------------------------- usage counters */

static struct sluice_usage_page local_page __attribute__((aligned(64))) = {
	.magic = SLUICE_USAGE_MAGIC,
	.version = SLUICE_PROTO_VERSION,
};
struct sluice_usage_page *_Atomic shim_usage = &local_page;
static int usage_fd = -1;

static inline struct sluice_usage_page *page(void)
{
	return atomic_load_explicit(&shim_usage, memory_order_relaxed);
}

/* Raise the peak to the current live bytes (lock-free; racing raisers keep
 * the larger figure). */
static inline void raise_peak(struct sluice_usage_page *p)
{
	uint64_t live = mem_live_bytes();
	uint64_t peak = __atomic_load_n(&p->peak_bytes, __ATOMIC_RELAXED);
	while (live > peak && !__atomic_compare_exchange_n(&p->peak_bytes, &peak, live, 1,
							    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void mem_account(int kind, int64_t delta)
{
	struct sluice_usage_page *p = page();
	__atomic_fetch_add(&p->live_bytes[kind], (uint64_t)delta, __ATOMIC_RELAXED);
	if (delta > 0) {
		__atomic_fetch_add(&p->allocs[kind], 1, __ATOMIC_RELAXED);
		raise_peak(p);
	} else {
		__atomic_fetch_add(&p->frees, 1, __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&p->seq, 1, __ATOMIC_RELEASE);
}

uint64_t mem_live_bytes(void)
{
	struct sluice_usage_page *p = page();
	uint64_t sum = 0;
	for (int k = 0; k < SLUICE_KIND_COUNT; k++)
		sum += __atomic_load_n(&p->live_bytes[k], __ATOMIC_RELAXED);
	return sum;
}

uint64_t mem_evictable_bytes(void)
{
	struct sluice_usage_page *p = page();
	uint64_t sum = 0;
	for (int k = 0; k < SLUICE_KIND_COUNT; k++)
		if (SLUICE_KIND_EVICTABLE(k))
			sum += __atomic_load_n(&p->live_bytes[k], __ATOMIC_RELAXED);
	return sum;
}

/* ------------------------------------------------------- graph memory */

/* Devices whose graph memory pool this process used (captured stream-ordered
 * allocations, explicit allocation nodes, trims) or asked the capacity of:
 * only these are queried, so the shim never touches a device (or makes a
 * driver create state for one) the application does not use. */
static _Atomic uint32_t graph_devs;
static _Atomic int graph_used; /* a path the shim sees made graph memory */
static pthread_mutex_t graph_mu = PTHREAD_MUTEX_INITIALIZER;

static void graph_dev_note(CUdevice d)
{
	if (d >= 0 && d < SLUICE_MAX_DEVICES)
		atomic_fetch_or(&graph_devs, 1u << d);
	atomic_store_explicit(&graph_used, 1, memory_order_relaxed);
}

static CUdevice current_device(void)
{
	CUdevice d = -1;
	if (REAL(cuCtxGetDevice) == NULL || REAL(cuCtxGetDevice)(&d) != CUDA_SUCCESS)
		return -1;
	return d;
}

static void graph_dev_note_current(void)
{
	graph_dev_note(current_device());
}

/* Set one kind's live bytes to an absolute value (the driver's figure). */
static void mem_set_kind(int kind, uint64_t v)
{
	struct sluice_usage_page *p = page();
	uint64_t old = __atomic_exchange_n(&p->live_bytes[kind], v, __ATOMIC_RELAXED);
	if (old == v)
		return;
	if (v > old)
		raise_peak(p);
	__atomic_fetch_add(&p->seq, 1, __ATOMIC_RELEASE);
}

/* The graph kind is what the driver's graph pools hold for this process:
 * the reserved (physical) bytes, which include memory freed by graphs but
 * kept for their next launch until cuDeviceGraphMemTrim, and never less
 * than the bytes of live graph allocations. Non-evictable. When a query
 * fails the previous figure stays. */
void mem_graph_refresh(void)
{
	cuDeviceGetGraphMemAttribute_fn q = REAL(cuDeviceGetGraphMemAttribute);
	uint32_t m = atomic_load_explicit(&graph_devs, memory_order_relaxed);
	if (q == NULL || m == 0)
		return;
	pthread_mutex_lock(&graph_mu); /* one reader at a time: no stale store wins */
	uint64_t sum = 0;
	int ok = 1;
	for (int d = 0; d < SLUICE_MAX_DEVICES && ok; d++) {
		if (!(m & (1u << d)))
			continue;
		cuuint64_t used = 0, reserved = 0;
		ok = q(d, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &used) == CUDA_SUCCESS &&
		     q(d, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved) == CUDA_SUCCESS;
		sum += reserved > used ? reserved : used;
	}
	if (ok)
		mem_set_kind(SLUICE_KIND_GRAPH, sum);
	pthread_mutex_unlock(&graph_mu);
}

/* A fresh shared page in a sealed memfd; called once the shim knows it will
 * register, and again in a forked child (which must not share the parent's). */
static int usage_page_create(void)
{
	int fd = (int)syscall(SYS_memfd_create, "sluice-usage", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, SLUICE_USAGE_PAGE_SIZE) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
		close(fd);
		return -1;
	}
	void *m = mmap(NULL, SLUICE_USAGE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		close(fd);
		return -1;
	}
	struct sluice_usage_page *p = m;
	p->magic = SLUICE_USAGE_MAGIC;
	p->version = SLUICE_PROTO_VERSION;
	usage_fd = fd;
	return fd;
}

int mem_usage_page_fd(void)
{
	return usage_fd;
}

/* ------------------------------------------------------ allocation table */

struct ent {
	uint64_t key;	/* pointer or handle; 0 empty, TOMB deleted */
	uint64_t size;
	CUcontext ctx;
	int kind;	/* enum sluice_kind, or a POOL_* tag in the pool table */
	int defer_free;	/* sync-managed stand-in for an async allocation */
};
#define TOMB UINT64_MAX
enum { POOL_IPC = 100, POOL_MANAGED = 101, POOL_HOST = 102 };

struct table {
	struct ent *e;
	size_t cap, used, tombs;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct table ptrs;	/* device pointers */
static struct table handles;	/* VMM handles, arrays */
static struct table pools;	/* application pools we must not convert */

static inline size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

static int table_grow(struct table *t)
{
	size_t ncap = t->cap ? t->cap : 256;
	if ((t->used + 1) * 2 > ncap)
		ncap *= 2;
	struct ent *ne = calloc(ncap, sizeof(*ne));
	if (ne == NULL)
		return -1;
	for (size_t i = 0; i < t->cap; i++) {
		struct ent *o = &t->e[i];
		if (o->key == 0 || o->key == TOMB)
			continue;
		size_t j = slot_of(o->key, ncap);
		while (ne[j].key != 0)
			j = (j + 1) & (ncap - 1);
		ne[j] = *o;
	}
	free(t->e);
	t->e = ne;
	t->cap = ncap;
	t->tombs = 0;
	return 0;
}

/* Insert or replace; caller holds mu. Returns -1 only when out of memory
 * (the allocation then stays untracked, never fails). */
static int table_put(struct table *t, const struct ent *v)
{
	if (v->key == 0 || v->key == TOMB)
		return -1;
	if ((t->used + t->tombs + 1) * 4 > t->cap * 3 && table_grow(t) != 0)
		return -1;
	size_t j = slot_of(v->key, t->cap), tomb = SIZE_MAX;
	while (t->e[j].key != 0) {
		if (t->e[j].key == v->key) {
			t->e[j] = *v;
			return 0;
		}
		if (t->e[j].key == TOMB && tomb == SIZE_MAX)
			tomb = j;
		j = (j + 1) & (t->cap - 1);
	}
	if (tomb != SIZE_MAX) {
		j = tomb;
		t->tombs--;
	}
	t->e[j] = *v;
	t->used++;
	return 0;
}

/* The slot holding key, or NULL; caller holds mu. */
static struct ent *table_find(struct table *t, uint64_t key)
{
	if (t->cap == 0 || key == 0 || key == TOMB)
		return NULL;
	for (size_t j = slot_of(key, t->cap); t->e[j].key != 0; j = (j + 1) & (t->cap - 1))
		if (t->e[j].key == key)
			return &t->e[j];
	return NULL;
}

/* Remove key; caller holds mu. Returns 1 and the entry if it was there. */
static int table_take(struct table *t, uint64_t key, struct ent *out)
{
	struct ent *e = table_find(t, key);
	if (!e)
		return 0;
	if (out)
		*out = *e;
	e->key = TOMB;
	t->used--;
	t->tombs++;
	return 1;
}

/* Copy key's entry to out; caller holds mu. Returns 1 if it was there. */
static int table_get(struct table *t, uint64_t key, struct ent *out)
{
	struct ent *e = table_find(t, key);
	if (!e)
		return 0;
	*out = *e;
	return 1;
}

static void track_ent(struct table *t, const struct ent *e)
{
	struct ent v = *e;
	uint64_t key = v.key;
	int kind = v.kind;
	uint64_t size = v.size;
	pthread_mutex_lock(&mu);
	int ok = table_put(t, &v) == 0;
	pthread_mutex_unlock(&mu);
	if (ok && kind < SLUICE_KIND_COUNT)
		mem_account(kind, (int64_t)size);
	if (!ok)
		shim_warn("allocation table full: %#llx untracked", (unsigned long long)key);
}

static void track(struct table *t, uint64_t key, uint64_t size, int kind, CUcontext ctx)
{
	struct ent v = {.key = key, .size = size, .ctx = ctx, .kind = kind};
	track_ent(t, &v);
}

static int untrack(struct table *t, uint64_t key, struct ent *out)
{
	pthread_mutex_lock(&mu);
	int found = table_take(t, key, out);
	pthread_mutex_unlock(&mu);
	if (found && out->kind < SLUICE_KIND_COUNT)
		mem_account(out->kind, -(int64_t)out->size);
	return found;
}

/* Put back what untrack took, when the driver refused the free. */
static void retrack(struct table *t, const struct ent *e)
{
	track_ent(t, e);
}

int mem_snapshot(struct mem_range **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&mu);
	size_t cnt = 0;
	for (size_t i = 0; i < ptrs.cap; i++) {
		struct ent *e = &ptrs.e[i];
		if (e->key != 0 && e->key != TOMB && SLUICE_KIND_EVICTABLE(e->kind))
			cnt++;
	}
	struct mem_range *r = cnt ? malloc(cnt * sizeof(*r)) : NULL;
	if (cnt && r == NULL) {
		pthread_mutex_unlock(&mu);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < ptrs.cap && k < cnt; i++) {
		struct ent *e = &ptrs.e[i];
		if (e->key != 0 && e->key != TOMB && SLUICE_KIND_EVICTABLE(e->kind))
			r[k++] = (struct mem_range){e->key, e->size, e->ctx};
	}
	pthread_mutex_unlock(&mu);
	*out = r;
	*n = k;
	return 0;
}

/* -------------------------------------------------------- deferred frees */

struct deferred {
	CUdeviceptr ptr;
	CUevent ev;	/* completes when the stream reached the free */
	CUstream s;	/* NULL ev: synchronize s once no capture is active */
};
static pthread_mutex_t defer_mu = PTHREAD_MUTEX_INITIALIZER;
static struct deferred *defer_v;
static size_t defer_n, defer_cap;
static _Atomic size_t defer_count;

static int defer_push(CUdeviceptr p, CUevent ev, CUstream s)
{
	pthread_mutex_lock(&defer_mu);
	if (defer_n == defer_cap) {
		size_t nc = defer_cap ? defer_cap * 2 : 32;
		struct deferred *nv = realloc(defer_v, nc * sizeof(*nv));
		if (nv == NULL) {
			pthread_mutex_unlock(&defer_mu);
			return -1;
		}
		defer_v = nv;
		defer_cap = nc;
	}
	defer_v[defer_n++] = (struct deferred){p, ev, s};
	atomic_store(&defer_count, defer_n);
	pthread_mutex_unlock(&defer_mu);
	return 0;
}

void mem_reap_deferred(void)
{
	if (atomic_load_explicit(&defer_count, memory_order_relaxed) == 0)
		return;
	struct deferred ready[32];
	size_t nr = 0;
	pthread_mutex_lock(&defer_mu);
	for (size_t i = 0; i < defer_n && nr < 32;) {
		struct deferred *d = &defer_v[i];
		int done;
		if (d->ev != NULL) {
			CUresult q = REAL(cuEventQuery) ? REAL(cuEventQuery)(d->ev) : CUDA_SUCCESS;
			done = q != CUDA_ERROR_NOT_READY;
		} else {
			done = atomic_load(&shim_captures) == 0;
		}
		if (done) {
			ready[nr++] = *d;
			defer_v[i] = defer_v[--defer_n];
		} else {
			i++;
		}
	}
	atomic_store(&defer_count, defer_n);
	pthread_mutex_unlock(&defer_mu);
	for (size_t i = 0; i < nr; i++) {
		if (ready[i].ev != NULL) {
			if (REAL(cuEventDestroy_v2))
				REAL(cuEventDestroy_v2)(ready[i].ev);
		} else if (REAL(cuStreamSynchronize)) {
			REAL(cuStreamSynchronize)(ready[i].s);
		}
		if (REAL(cuMemFree_v2))
			REAL(cuMemFree_v2)(ready[i].ptr);
		SHIM_LOG("deferred free of %#llx done", (unsigned long long)ready[i].ptr);
	}
}

/* ---------------------------------------------------------------- fork */

void mem_atfork_prepare(void)
{
	pthread_mutex_lock(&graph_mu);
	pthread_mutex_lock(&mu);
	pthread_mutex_lock(&defer_mu);
}

void mem_atfork_parent(void)
{
	pthread_mutex_unlock(&defer_mu);
	pthread_mutex_unlock(&mu);
	pthread_mutex_unlock(&graph_mu);
}

/* The child's CUDA state is not the parent's: forget its allocations, give it
 * its own (zeroed) usage page so the parent's counters stay the parent's. */
void mem_atfork_child(void)
{
	free(ptrs.e);
	free(handles.e);
	memset(&ptrs, 0, sizeof(ptrs));
	memset(&handles, 0, sizeof(handles));
	defer_n = 0;
	atomic_store(&defer_count, 0);
	atomic_store(&shim_captures, 0);
	struct sluice_usage_page *old = page();
	int oldfd = usage_fd;
	usage_fd = -1;
	if (oldfd >= 0 && usage_page_create() >= 0) {
		void *m = mmap(NULL, SLUICE_USAGE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			       usage_fd, 0);
		if (m != MAP_FAILED) {
			atomic_store(&shim_usage, (struct sluice_usage_page *)m);
			munmap(old, SLUICE_USAGE_PAGE_SIZE);
		}
		close(oldfd);
	} else {
		if (oldfd >= 0)
			close(oldfd);
		memset(&local_page, 0, sizeof(local_page));
		local_page.magic = SLUICE_USAGE_MAGIC;
		local_page.version = SLUICE_PROTO_VERSION;
		atomic_store(&shim_usage, &local_page);
	}
	atomic_store(&graph_devs, 0); /* the child has no graph memory yet */
	atomic_store(&graph_used, 0);
	pthread_mutex_unlock(&defer_mu);
	pthread_mutex_unlock(&mu);
	pthread_mutex_unlock(&graph_mu);
}

/* Called from init when a socket is configured. */
SHIM_HIDDEN void mem_init_shared(void)
{
	if (usage_page_create() < 0) {
		shim_warn("cannot create the usage page; usage goes in RESULT messages only");
		return;
	}
	void *m = mmap(NULL, SLUICE_USAGE_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, usage_fd, 0);
	if (m == MAP_FAILED)
		return;
	atomic_store(&shim_usage, (struct sluice_usage_page *)m);
}

/* ------------------------------------------------------------- helpers */

static CUcontext current_ctx(void)
{
	CUcontext c = NULL;
	if (REAL(cuCtxGetCurrent) == NULL || REAL(cuCtxGetCurrent)(&c) != CUDA_SUCCESS)
		return NULL;
	return c;
}

static int capturing_any(void)
{
	return atomic_load_explicit(&shim_captures, memory_order_relaxed) > 0;
}

/* Is the stream capturing? Asked of the driver on every stream-ordered
 * allocation and free (allocation paths only), so a capture begun through a
 * path the shim does not count is still seen. */
static int stream_capturing(CUstream s)
{
	if (REAL(cuStreamIsCapturing) == NULL)
		return capturing_any();
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	CUresult r = REAL(cuStreamIsCapturing)(s, &st);
	if (r != CUDA_SUCCESS)
		/* cannot tell (or the capture was invalidated): be safe, do not
		 * convert or sync while any capture is known */
		return r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED || capturing_any();
	return st != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* Managed memory is only worth converting to where the device can access it
 * concurrently with the host (not on WSL2 and some vGPU/MIG setups): checked
 * once per device, and the process keeps device memory elsewhere. */
static int uvm_usable(void)
{
	static _Atomic int cached[SLUICE_MAX_DEVICES]; /* 0 unknown, 1 yes, 2 no */
	CUdevice d = 0;
	if (REAL(cuCtxGetDevice) == NULL || REAL(cuCtxGetDevice)(&d) != CUDA_SUCCESS || d < 0 ||
	    d >= SLUICE_MAX_DEVICES)
		return 1; /* no context: the driver reports that error itself */
	int v = atomic_load_explicit(&cached[d], memory_order_relaxed);
	if (v == 0) {
		int attr = 0;
		v = REAL(cuDeviceGetAttribute) &&
				    REAL(cuDeviceGetAttribute)(&attr, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS,
							       d) == CUDA_SUCCESS &&
				    attr == 1
			    ? 1
			    : 2;
		int expected = 0;
		if (atomic_compare_exchange_strong(&cached[d], &expected, v) && v == 2)
			shim_warn("device %d has no concurrent managed access: allocations stay device "
				  "memory (tracked, not evictable)",
				  (int)d);
	}
	return v == 1;
}

/* Allocation would exceed the daemon's budget for this function. */
static int over_budget(size_t n)
{
	uint64_t b = atomic_load_explicit(&shim_budget, memory_order_relaxed);
	if (b == 0)
		return 0;
	/* only when the process made graph memory: two driver queries */
	if (atomic_load_explicit(&graph_used, memory_order_relaxed))
		mem_graph_refresh();
	if (mem_live_bytes() + n <= b)
		return 0;
	__atomic_fetch_add(&page()->oom_refused, 1, __ATOMIC_RELAXED);
	SHIM_LOG("allocation of %zu bytes refused: budget %llu, live %llu", n,
		 (unsigned long long)b, (unsigned long long)mem_live_bytes());
	return 1;
}

static void alloc_prologue(void)
{
	shim_ensure_init();
	if (unlikely(atomic_load_explicit(&shim_gate, memory_order_relaxed) & GATE_REGISTER))
		ctl_kick();
	mem_reap_deferred();
}

/* A device allocation is first touched by the GPU (a copy or a kernel: the
 * program never dereferences what it asked cuMemAlloc for). Left unpopulated,
 * managed memory would take that first touch as page faults, about 9 GB/s on
 * an H100 (docs/BENCHMARKS.md), where device memory is written at HBM speed;
 * one prefetch of the empty range places its pages on the GPU at once. The
 * prefetch is a hint: a failure changes nothing. It goes on the legacy
 * stream on purpose: the copies and kernels a program issues right after
 * cudaMalloc (on the legacy or a blocking stream) are ordered after it, so
 * they find the pages placed instead of faulting while the prefetch runs;
 * only non-blocking streams may overtake it. Small ranges are left to fault
 * in: the call would cost more than it saves. */
#define POPULATE_MIN ((size_t)2 << 20)

static void populate_on_gpu(CUdeviceptr p, size_t n)
{
	CUdevice d = 0;
	if (!shim_cfg.populate || n < POPULATE_MIN || REAL(cuCtxGetDevice) == NULL ||
	    REAL(cuCtxGetDevice)(&d) != CUDA_SUCCESS)
		return;
	CUresult r = shim_prefetch(p, n, 1, d, NULL);
	if (r != CUDA_SUCCESS)
		SHIM_LOG("populate %#llx (%zu bytes) on device %d: error %d", (unsigned long long)p, n,
			 (int)d, (int)r);
}

/* Managed allocation, falling back to device memory where the platform has
 * no managed memory. */
static CUresult alloc_managed(CUdeviceptr *dp, size_t n, int kind)
{
	cuMemAllocManaged_fn mf = REAL(cuMemAllocManaged);
	CUresult r = mf ? mf(dp, n, CU_MEM_ATTACH_GLOBAL) : CUDA_ERROR_NOT_SUPPORTED;
	if (r == CUDA_SUCCESS) {
		track(&ptrs, *dp, n, kind, current_ctx());
		populate_on_gpu(*dp, n);
		return r;
	}
	if (r != CUDA_ERROR_NOT_SUPPORTED || REAL(cuMemAlloc_v2) == NULL)
		return r;
	r = REAL(cuMemAlloc_v2)(dp, n);
	if (r == CUDA_SUCCESS)
		track(&ptrs, *dp, n, SLUICE_KIND_DEVICE, current_ctx());
	return r;
}

static CUresult alloc_device(CUdeviceptr *dp, size_t n)
{
	if (REAL(cuMemAlloc_v2) == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = REAL(cuMemAlloc_v2)(dp, n);
	if (r == CUDA_SUCCESS)
		track(&ptrs, *dp, n, SLUICE_KIND_DEVICE, current_ctx());
	return r;
}

/* ------------------------------------------------------ sync allocation */

SHIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dp, size_t n)
{
	alloc_prologue();
	if (dp == NULL || n == 0)
		return REAL(cuMemAlloc_v2) ? REAL(cuMemAlloc_v2)(dp, n) : CUDA_ERROR_INVALID_VALUE;
	if (over_budget(n))
		return CUDA_ERROR_OUT_OF_MEMORY;
	if (!shim_cfg.convert || capturing_any() || !uvm_usable())
		return alloc_device(dp, n);
	return alloc_managed(dp, n, SLUICE_KIND_MANAGED);
}

static size_t pitch_alignment(void)
{
	static _Atomic int cached[SLUICE_MAX_DEVICES];
	CUdevice d = 0;
	if (REAL(cuCtxGetDevice) == NULL || REAL(cuCtxGetDevice)(&d) != CUDA_SUCCESS || d < 0 ||
	    d >= SLUICE_MAX_DEVICES)
		return 512;
	int a = atomic_load(&cached[d]);
	if (a == 0) {
		if (REAL(cuDeviceGetAttribute) == NULL ||
		    REAL(cuDeviceGetAttribute)(&a, CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT, d) !=
			    CUDA_SUCCESS ||
		    a <= 0 || (a & (a - 1)) != 0)
			a = 512;
		atomic_store(&cached[d], a);
	}
	return (size_t)a;
}

SHIM_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dp, size_t *pitch, size_t width,
					size_t height, unsigned int esz)
{
	alloc_prologue();
	cuMemAllocPitch_v2_fn real = REAL(cuMemAllocPitch_v2);
	if (dp == NULL || pitch == NULL || width == 0 || height == 0 ||
	    (esz != 4 && esz != 8 && esz != 16))
		return real ? real(dp, pitch, width, height, esz) : CUDA_ERROR_INVALID_VALUE;
	if (!shim_cfg.convert || capturing_any() || !uvm_usable()) {
		if (real == NULL)
			return CUDA_ERROR_NOT_INITIALIZED;
		CUresult r = real(dp, pitch, width, height, esz);
		if (r == CUDA_SUCCESS)
			track(&ptrs, *dp, (uint64_t)*pitch * height, SLUICE_KIND_DEVICE, current_ctx());
		return r;
	}
	size_t a = pitch_alignment();
	if (width > SIZE_MAX - a)
		return CUDA_ERROR_INVALID_VALUE;
	size_t p = (width + a - 1) & ~(a - 1);
	if (height > SIZE_MAX / p)
		return CUDA_ERROR_INVALID_VALUE;
	if (over_budget(p * height))
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult r = alloc_managed(dp, p * height, SLUICE_KIND_MANAGED);
	if (r == CUDA_SUCCESS)
		*pitch = p;
	return r;
}

SHIM_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dp, size_t n, unsigned int flags)
{
	alloc_prologue();
	cuMemAllocManaged_fn real = REAL(cuMemAllocManaged);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (dp != NULL && n != 0 && over_budget(n))
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult r = real(dp, n, flags);
	if (r == CUDA_SUCCESS && dp != NULL)
		track(&ptrs, *dp, n, SLUICE_KIND_APP_MANAGED, current_ctx());
	return r;
}

SHIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr dp)
{
	alloc_prologue();
	cuMemFree_v2_fn real = REAL(cuMemFree_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	struct ent e;
	int had = dp != 0 && untrack(&ptrs, dp, &e);
	CUresult r = real(dp);
	if (r != CUDA_SUCCESS && had)
		retrack(&ptrs, &e);
	return r;
}

/* -------------------------------------------------- stream-ordered alloc */

static CUmemoryPool managed_pool(void)
{
	static _Atomic(CUmemoryPool) cache[SLUICE_MAX_DEVICES];
	static _Atomic int driver_version = -1;
	int v = atomic_load(&driver_version);
	if (v < 0) {
		int dv = 0;
		if (REAL(cuDriverGetVersion) == NULL || REAL(cuDriverGetVersion)(&dv) != CUDA_SUCCESS)
			dv = 0;
		atomic_store(&driver_version, dv);
		v = dv;
	}
	if (v < CUDA_MIN_VERSION_13_0 || REAL(cuMemGetDefaultMemPool) == NULL ||
	    REAL(cuMemAllocFromPoolAsync) == NULL)
		return NULL;
	CUdevice d = 0;
	if (REAL(cuCtxGetDevice) == NULL || REAL(cuCtxGetDevice)(&d) != CUDA_SUCCESS || d < 0 ||
	    d >= SLUICE_MAX_DEVICES)
		return NULL;
	CUmemoryPool p = atomic_load(&cache[d]);
	if (p != NULL)
		return p;
	CUmemLocation loc = {CU_MEM_LOCATION_TYPE_DEVICE, d};
	if (REAL(cuMemGetDefaultMemPool)(&p, &loc, CU_MEM_ALLOCATION_TYPE_MANAGED) != CUDA_SUCCESS)
		return NULL;
	atomic_store(&cache[d], p);
	return p;
}

static CUresult alloc_async(CUdeviceptr *dp, size_t n, CUstream s, CUmemoryPool app_pool,
			    int ptsz)
{
	alloc_prologue();
	if (ptsz && s == NULL)
		s = CU_STREAM_PER_THREAD;
	cuMemAllocFromPoolAsync_fn from_pool = REAL(cuMemAllocFromPoolAsync);
	cuMemAllocAsync_fn plain = REAL(cuMemAllocAsync);
	if (dp == NULL || n == 0) {
		if (app_pool)
			return from_pool ? from_pool(dp, n, app_pool, s) : CUDA_ERROR_INVALID_VALUE;
		return plain ? plain(dp, n, s) : CUDA_ERROR_INVALID_VALUE;
	}
	struct ent pe;
	int known = 0;
	if (app_pool != NULL) {
		pthread_mutex_lock(&mu);
		known = table_get(&pools, (uint64_t)(uintptr_t)app_pool, &pe);
		pthread_mutex_unlock(&mu);
		/* A pool of pinned host memory: not GPU memory, not ours. */
		if (known && pe.kind == POOL_HOST)
			return from_pool ? from_pool(dp, n, app_pool, s) : CUDA_ERROR_NOT_FOUND;
	}
	int cap = stream_capturing(s);
	if (cap && REAL(cuDeviceGetGraphMemAttribute) != NULL) {
		/* A graph allocation node: its memory comes from the device's
		 * graph pool each time the graph runs, and the pool's size is
		 * read from the driver (mem_graph_refresh), so the node itself
		 * is not tracked: counting it here too would count it twice.
		 * The budget applies when usage is computed, not now. */
		CUresult r = app_pool ? (from_pool ? from_pool(dp, n, app_pool, s) : CUDA_ERROR_NOT_FOUND)
				      : (plain ? plain(dp, n, s) : CUDA_ERROR_NOT_FOUND);
		if (r == CUDA_SUCCESS)
			graph_dev_note_current();
		return r;
	}
	if (over_budget(n))
		return CUDA_ERROR_OUT_OF_MEMORY;
	int kind = SLUICE_KIND_DEVICE;
	if (app_pool != NULL) {
		if (known)
			kind = pe.kind == POOL_MANAGED ? SLUICE_KIND_ASYNC_MANAGED : SLUICE_KIND_DEVICE;
		if (known || !shim_cfg.convert || cap || !uvm_usable()) {
			CUresult r = from_pool ? from_pool(dp, n, app_pool, s) : CUDA_ERROR_NOT_FOUND;
			if (r == CUDA_SUCCESS)
				track(&ptrs, *dp, n, kind, current_ctx());
			return r;
		}
	} else if (!shim_cfg.convert || cap || !uvm_usable()) {
		/* Capture on a driver without graph pool queries (before 11.4):
		 * a graph memory node, counted as device memory now. */
		CUresult r = plain ? plain(dp, n, s) : CUDA_ERROR_NOT_FOUND;
		if (r == CUDA_SUCCESS)
			track(&ptrs, *dp, n, SLUICE_KIND_DEVICE, current_ctx());
		return r;
	}
	CUmemoryPool mp = managed_pool();
	if (mp != NULL) {
		CUresult r = from_pool(dp, n, mp, s);
		if (r == CUDA_SUCCESS) {
			track(&ptrs, *dp, n, SLUICE_KIND_ASYNC_MANAGED, current_ctx());
			return r;
		}
		if (r != CUDA_ERROR_NOT_SUPPORTED)
			return r;
	}
	/* CUDA 12.x: a synchronous managed allocation is ready before any work
	 * the stream could order after it; cuMemFreeAsync defers the free. */
	cuMemAllocManaged_fn mf = REAL(cuMemAllocManaged);
	CUresult r = mf ? mf(dp, n, CU_MEM_ATTACH_GLOBAL) : CUDA_ERROR_NOT_INITIALIZED;
	if (r == CUDA_SUCCESS) {
		struct ent e = {.key = *dp, .size = n, .ctx = current_ctx(),
				.kind = SLUICE_KIND_ASYNC_MANAGED, .defer_free = 1};
		track_ent(&ptrs, &e);
	}
	return r;
}

SHIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dp, size_t n, CUstream s)
{
	return alloc_async(dp, n, s, NULL, 0);
}

SHIM_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dp, size_t n, CUstream s)
{
	return alloc_async(dp, n, s, NULL, 1);
}

SHIM_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dp, size_t n, CUmemoryPool pool,
					     CUstream s)
{
	if (pool == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	return alloc_async(dp, n, s, pool, 0);
}

SHIM_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dp, size_t n, CUmemoryPool pool,
						  CUstream s)
{
	if (pool == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	return alloc_async(dp, n, s, pool, 1);
}

static CUresult free_async(CUdeviceptr dp, CUstream s, int ptsz)
{
	alloc_prologue();
	if (ptsz && s == NULL)
		s = CU_STREAM_PER_THREAD;
	cuMemFreeAsync_fn real = REAL(cuMemFreeAsync);
	struct ent e;
	if (dp == 0 || !untrack(&ptrs, dp, &e))
		return real ? real(dp, s) : CUDA_ERROR_NOT_INITIALIZED;
	if (!e.defer_free) {
		CUresult r = real ? real(dp, s) : CUDA_ERROR_NOT_INITIALIZED;
		if (r != CUDA_SUCCESS)
			retrack(&ptrs, &e);
		return r;
	}
	/* Sync-managed fallback: free once the stream's prior work completes. */
	if (stream_capturing(s)) {
		/* The free becomes part of a graph that runs later, maybe never,
		 * maybe after the work that still uses the memory: no point in
		 * time is safe to free a stand-in we cannot put in the graph. It
		 * stays allocated (and accounted) until the process exits. */
		retrack(&ptrs, &e);
		static _Atomic int warned;
		if (!atomic_exchange(&warned, 1))
			shim_warn("cuMemFreeAsync(%#llx) while capturing a graph: on this CUDA 12.x driver the "
				  "allocation is a synchronous managed stand-in and stays allocated",
				  (unsigned long long)dp);
		return CUDA_SUCCESS;
	}
	CUevent ev = NULL;
	if (REAL(cuEventCreate) && REAL(cuEventRecord) &&
	    REAL(cuEventDestroy_v2) &&
	    REAL(cuEventCreate)(&ev, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS) {
		if (REAL(cuEventRecord)(ev, s) != CUDA_SUCCESS) {
			REAL(cuEventDestroy_v2)(ev);
			ev = NULL;
		}
	}
	if (defer_push(dp, ev, s) != 0) {
		/* No memory to defer: order it the slow way. */
		if (ev && REAL(cuEventDestroy_v2))
			REAL(cuEventDestroy_v2)(ev);
		if (REAL(cuStreamSynchronize))
			REAL(cuStreamSynchronize)(s);
		return REAL(cuMemFree_v2) ? REAL(cuMemFree_v2)(dp) : CUDA_ERROR_NOT_INITIALIZED;
	}
	SHIM_LOG("free of %#llx deferred until its stream completes", (unsigned long long)dp);
	return CUDA_SUCCESS;
}

SHIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dp, CUstream s)
{
	return free_async(dp, s, 0);
}

SHIM_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dp, CUstream s)
{
	return free_async(dp, s, 1);
}

SHIM_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *props)
{
	shim_ensure_init();
	cuMemPoolCreate_fn real = REAL(cuMemPoolCreate);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(pool, props);
	if (r == CUDA_SUCCESS && pool != NULL && props != NULL) {
		int tag = 0;
		if (props->allocType == CU_MEM_ALLOCATION_TYPE_MANAGED)
			tag = props->handleTypes != CU_MEM_HANDLE_TYPE_NONE ? POOL_IPC : POOL_MANAGED;
		else if (props->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
			tag = POOL_HOST; /* pinned host memory (HOST, HOST_NUMA...) */
		else if (props->handleTypes != CU_MEM_HANDLE_TYPE_NONE)
			tag = POOL_IPC;
		if (tag)
			track(&pools, (uint64_t)(uintptr_t)*pool, 0, tag, NULL);
	}
	return r;
}

SHIM_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
	shim_ensure_init();
	struct ent e;
	untrack(&pools, (uint64_t)(uintptr_t)pool, &e);
	cuMemPoolDestroy_fn real = REAL(cuMemPoolDestroy);
	return real ? real(pool) : CUDA_ERROR_NOT_INITIALIZED;
}

/* ------------------------------------------------ non-evictable memory */

SHIM_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *h, size_t n,
				 const CUmemAllocationProp *prop, unsigned long long flags)
{
	alloc_prologue();
	cuMemCreate_fn real = REAL(cuMemCreate);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(h, n, prop, flags);
	/* Host locations (NCCL host buffers) are not device memory: untouched. */
	if (r == CUDA_SUCCESS && h != NULL && prop != NULL &&
	    prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE)
		track(&handles, *h, n, SLUICE_KIND_VMM, NULL);
	return r;
}

SHIM_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle h)
{
	alloc_prologue();
	cuMemRelease_fn real = REAL(cuMemRelease);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	struct ent e;
	int had = untrack(&handles, h, &e);
	CUresult r = real(h);
	if (r != CUDA_SUCCESS && had)
		retrack(&handles, &e);
	return r;
}

static uint64_t format_bytes(CUarray_format f)
{
	switch (f) {
	case CU_AD_FORMAT_UNSIGNED_INT8:
	case CU_AD_FORMAT_SIGNED_INT8:
		return 1;
	case CU_AD_FORMAT_UNSIGNED_INT16:
	case CU_AD_FORMAT_SIGNED_INT16:
	case CU_AD_FORMAT_HALF:
		return 2;
	default:
		return 4;
	}
}

static uint64_t dim(size_t v)
{
	return v ? v : 1;
}

SHIM_EXPORT CUresult cuArrayCreate_v2(CUarray *a, const CUDA_ARRAY_DESCRIPTOR *d)
{
	alloc_prologue();
	cuArrayCreate_v2_fn real = REAL(cuArrayCreate_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(a, d);
	if (r == CUDA_SUCCESS && a != NULL && d != NULL)
		track(&handles, (uint64_t)(uintptr_t)*a,
		      dim(d->Width) * dim(d->Height) * dim(d->NumChannels) * format_bytes(d->Format),
		      SLUICE_KIND_ARRAY, NULL);
	return r;
}

SHIM_EXPORT CUresult cuArray3DCreate_v2(CUarray *a, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
	alloc_prologue();
	cuArray3DCreate_v2_fn real = REAL(cuArray3DCreate_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(a, d);
	if (r == CUDA_SUCCESS && a != NULL && d != NULL)
		track(&handles, (uint64_t)(uintptr_t)*a,
		      dim(d->Width) * dim(d->Height) * dim(d->Depth) * dim(d->NumChannels) *
			      format_bytes(d->Format),
		      SLUICE_KIND_ARRAY, NULL);
	return r;
}

SHIM_EXPORT CUresult cuArrayDestroy(CUarray a)
{
	alloc_prologue();
	cuArrayDestroy_fn real = REAL(cuArrayDestroy);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	struct ent e;
	int had = a != NULL && untrack(&handles, (uint64_t)(uintptr_t)a, &e);
	CUresult r = real(a);
	if (r != CUDA_SUCCESS && had)
		retrack(&handles, &e);
	return r;
}

SHIM_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *h, CUdeviceptr dp)
{
	shim_ensure_init();
	cuIpcGetMemHandle_fn real = REAL(cuIpcGetMemHandle);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	struct ent e;
	pthread_mutex_lock(&mu);
	int known = table_get(&ptrs, dp, &e);
	pthread_mutex_unlock(&mu);
	CUresult r = real(h, dp);
	if (known && SLUICE_KIND_EVICTABLE(e.kind) && r != CUDA_SUCCESS)
		shim_warn("cuIpcGetMemHandle(%#llx): the shim made this allocation managed memory, "
			  "which CUDA IPC cannot export (error %d); run this function with "
			  "SLUICE_UVM=0",
			  (unsigned long long)dp, (int)r);
	return r;
}

/* ------------------------------------------------------ context teardown */

/* After the application destroyed, reset or released a context the driver
 * has freed every allocation in it: ask the driver about each tracked
 * pointer and drop the ones it no longer knows, so the capacity view, the
 * budget and the daemon's prefetches stop counting them. Teardown paths
 * only (rare), never a submission path. */
static void sweep_dead(void)
{
	cuPointerGetAttribute_fn q = REAL(cuPointerGetAttribute);
	if (q == NULL)
		return;
	pthread_mutex_lock(&mu);
	size_t cnt = 0;
	uint64_t *keys = ptrs.used ? malloc(ptrs.used * sizeof(*keys)) : NULL;
	for (size_t i = 0; keys != NULL && i < ptrs.cap && cnt < ptrs.used; i++)
		if (ptrs.e[i].key != 0 && ptrs.e[i].key != TOMB)
			keys[cnt++] = ptrs.e[i].key;
	pthread_mutex_unlock(&mu);
	for (size_t i = 0; i < cnt; i++) {
		CUcontext c = NULL;
		CUresult r = q(&c, CU_POINTER_ATTRIBUTE_CONTEXT, keys[i]);
		struct ent e;
		if ((r == CUDA_ERROR_INVALID_VALUE || r == CUDA_ERROR_NOT_FOUND) && untrack(&ptrs, keys[i], &e))
			SHIM_LOG("%#llx (%llu bytes) went with its context", (unsigned long long)keys[i],
				 (unsigned long long)e.size);
	}
	free(keys);
}

SHIM_EXPORT CUresult cuCtxDestroy_v2(CUcontext c)
{
	shim_ensure_init();
	cuCtxDestroy_v2_fn real = REAL(cuCtxDestroy_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(c);
	if (r == CUDA_SUCCESS)
		sweep_dead();
	return r;
}

SHIM_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d)
{
	shim_ensure_init();
	cuDevicePrimaryCtxRelease_v2_fn real = REAL(cuDevicePrimaryCtxRelease_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(d);
	if (r == CUDA_SUCCESS)
		sweep_dead(); /* the last release destroys the primary context */
	return r;
}

SHIM_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice d)
{
	shim_ensure_init();
	cuDevicePrimaryCtxReset_v2_fn real = REAL(cuDevicePrimaryCtxReset_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(d);
	if (r == CUDA_SUCCESS)
		sweep_dead();
	return r;
}

/* ------------------------------------------------------------- capture */

static CUresult begin_capture(cuStreamBeginCapture_v2_fn real, CUstream s,
			      CUstreamCaptureMode mode)
{
	shim_ensure_init();
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(s, mode);
	if (r == CUDA_SUCCESS)
		atomic_fetch_add(&shim_captures, 1);
	return r;
}

static CUresult capture_begun(CUresult r)
{
	if (r == CUDA_SUCCESS)
		atomic_fetch_add(&shim_captures, 1);
	return r;
}

SHIM_EXPORT CUresult cuStreamBeginCapture(CUstream s)
{
	shim_ensure_init();
	cuStreamBeginCapture_fn real = REAL(cuStreamBeginCapture);
	return real ? capture_begun(real(s)) : CUDA_ERROR_NOT_INITIALIZED;
}

SHIM_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream s)
{
	shim_ensure_init();
	cuStreamBeginCapture_ptsz_fn real = REAL(cuStreamBeginCapture_ptsz);
	return real ? capture_begun(real(s)) : CUDA_ERROR_NOT_INITIALIZED;
}

SHIM_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream s, CUgraph g, const CUgraphNode *deps,
						 const CUgraphEdgeData *data, size_t n,
						 CUstreamCaptureMode mode)
{
	shim_ensure_init();
	cuStreamBeginCaptureToGraph_fn real = REAL(cuStreamBeginCaptureToGraph);
	return real ? capture_begun(real(s, g, deps, data, n, mode)) : CUDA_ERROR_NOT_INITIALIZED;
}

SHIM_EXPORT CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream s, CUgraph g,
						      const CUgraphNode *deps,
						      const CUgraphEdgeData *data, size_t n,
						      CUstreamCaptureMode mode)
{
	shim_ensure_init();
	cuStreamBeginCaptureToGraph_ptsz_fn real = REAL(cuStreamBeginCaptureToGraph_ptsz);
	return real ? capture_begun(real(s, g, deps, data, n, mode)) : CUDA_ERROR_NOT_INITIALIZED;
}

static CUresult end_capture(cuStreamEndCapture_fn real, CUstream s, CUgraph *g)
{
	shim_ensure_init();
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	int was = REAL(cuStreamIsCapturing) && REAL(cuStreamIsCapturing)(s, &st) == CUDA_SUCCESS &&
		  st != CU_STREAM_CAPTURE_STATUS_NONE;
	CUresult r = real(s, g);
	if (was) {
		int c = atomic_load(&shim_captures);
		while (c > 0 && !atomic_compare_exchange_weak(&shim_captures, &c, c - 1))
			;
	}
	return r;
}

SHIM_EXPORT CUresult cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode)
{
	return begin_capture(REAL(cuStreamBeginCapture_v2), s, mode);
}

SHIM_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode mode)
{
	return begin_capture(REAL(cuStreamBeginCapture_v2_ptsz), s, mode);
}

SHIM_EXPORT CUresult cuStreamEndCapture(CUstream s, CUgraph *g)
{
	return end_capture(REAL(cuStreamEndCapture), s, g);
}

SHIM_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream s, CUgraph *g)
{
	return end_capture(REAL(cuStreamEndCapture_ptsz), s, g);
}

/* --------------------------------------------------------- graph nodes */

SHIM_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *node, CUgraph g, const CUgraphNode *deps,
					    size_t ndeps, CUDA_MEM_ALLOC_NODE_PARAMS *params)
{
	shim_ensure_init();
	cuGraphAddMemAllocNode_fn real = REAL(cuGraphAddMemAllocNode);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(node, g, deps, ndeps, params);
	/* No memory yet (it comes with each launch): remember the device. */
	if (r == CUDA_SUCCESS) {
		if (params != NULL && params->poolProps.location.type == CU_MEM_LOCATION_TYPE_DEVICE)
			graph_dev_note(params->poolProps.location.id);
		else
			graph_dev_note_current();
		SHIM_LOG("graph %p: allocation node of %zu bytes", (void *)g,
			 params ? params->bytesize : (size_t)0);
	}
	return r;
}

/* The generic way to add a node: an allocation node notes its device. */
static void node_added(CUresult r, const CUgraphNodeParams *p)
{
	if (r != CUDA_SUCCESS || p == NULL || p->type != CU_GRAPH_NODE_TYPE_MEM_ALLOC)
		return;
	if (p->alloc.poolProps.location.type == CU_MEM_LOCATION_TYPE_DEVICE)
		graph_dev_note(p->alloc.poolProps.location.id);
	else
		graph_dev_note_current();
}

SHIM_EXPORT CUresult cuGraphAddNode(CUgraphNode *node, CUgraph g, const CUgraphNode *deps,
				    size_t ndeps, CUgraphNodeParams *p)
{
	shim_ensure_init();
	cuGraphAddNode_fn real = REAL(cuGraphAddNode);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(node, g, deps, ndeps, p);
	node_added(r, p);
	return r;
}

SHIM_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode *node, CUgraph g, const CUgraphNode *deps,
				       const CUgraphEdgeData *edges, size_t ndeps,
				       CUgraphNodeParams *p)
{
	shim_ensure_init();
	cuGraphAddNode_v2_fn real = REAL(cuGraphAddNode_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(node, g, deps, edges, ndeps, p);
	node_added(r, p);
	return r;
}

SHIM_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode *node, CUgraph g, const CUgraphNode *deps,
					   size_t ndeps, CUdeviceptr dp)
{
	shim_ensure_init();
	cuGraphAddMemFreeNode_fn real = REAL(cuGraphAddMemFreeNode);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	return real(node, g, deps, ndeps, dp);
}

SHIM_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice d)
{
	shim_ensure_init();
	cuDeviceGraphMemTrim_fn real = REAL(cuDeviceGraphMemTrim);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = real(d);
	if (r == CUDA_SUCCESS) {
		graph_dev_note(d);
		mem_graph_refresh();
	}
	return r;
}

/* ------------------------------------------------------- capacity view */

static uint64_t view_total(uint64_t physical)
{
	uint64_t reserve = shim_cfg.reserve;
	if (reserve > physical / 4)
		reserve = physical / 4;
	uint64_t t = physical - reserve;
	uint64_t b = atomic_load_explicit(&shim_budget, memory_order_relaxed);
	if (b != 0 && b < t)
		t = b;
	return t;
}

SHIM_EXPORT CUresult cuMemGetInfo_v2(size_t *free_out, size_t *total_out)
{
	alloc_prologue();
	cuMemGetInfo_v2_fn real = REAL(cuMemGetInfo_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	size_t pf = 0, pt = 0;
	CUresult r = real(&pf, &pt);
	if (r != CUDA_SUCCESS)
		return r;
	/* graph memory the driver allocated at launches since the last look
	 * (the current device is watched from now on, whatever path made it) */
	CUdevice cd = current_device();
	if (cd >= 0 && cd < SLUICE_MAX_DEVICES)
		atomic_fetch_or(&graph_devs, 1u << cd);
	mem_graph_refresh();
	uint64_t total = view_total(pt);
	uint64_t live = mem_live_bytes();
	uint64_t free = live < total ? total - live : 0;
	if (free_out)
		*free_out = (size_t)free;
	if (total_out)
		*total_out = (size_t)total;
	return CUDA_SUCCESS;
}

SHIM_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice d)
{
	shim_ensure_init();
	cuDeviceTotalMem_v2_fn real = REAL(cuDeviceTotalMem_v2);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	size_t phys = 0;
	CUresult r = real(bytes ? &phys : NULL, d);
	if (r == CUDA_SUCCESS && bytes != NULL)
		*bytes = (size_t)view_total(phys);
	return r;
}
