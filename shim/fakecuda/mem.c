/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: the allocation table, device / managed / host
 * allocations, capacity, stream-ordered allocation and pools, prefetch,
 * advice, pointer and range attributes. "Device memory" is host memory;
 * capacity and managed-memory residency are accounted in the emulated GPU
 * (emugpu.c) shared by every process.
 */
#include "fakecuda.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct fpool {
	uint32_t magic;
	int managed;
	int is_default;
	CUmemPoolProps props;
	uint64_t used, used_high, reserved_high, threshold;
	int reuse[3];
	struct fpool *next;
};

struct falloc {
	uint64_t base, size;
	int kind;    /* FA_* */
	int how;     /* 0 free(), 1 munmap(), 2 not ours (registered / mapped) */
	int has_emu;
	uint32_t emu;
	int graph;   /* graph memory: 1 owned by a graph, 2 its graph is gone but it is live */
	int gdev;    /* graph memory: the device whose graph pool backs it */
	int glive;   /* graph memory: allocated by a launch, not freed yet */
	int gmapped; /* graph memory: physical memory mapped (counted in the pool's reserve) */
	int gheld;   /* graph memory: launched by a graph that does not free it, not freed since */
	int read_mostly, preferred, last_prefetch;
	uint32_t accessed_by;
	uint64_t id;
	struct fctx *ctx;
	struct fpool *pool;
};

static struct falloc *tab;
static size_t ntab, captab;
static uint64_t next_id;

static struct fpool defpool[8];
static struct fpool *curpool[8];
static struct fpool mpool; /* default managed pool (13.x) */
static struct fpool *cur_mpool;
static struct fpool *pools;

#define ALLOC_ALIGN 256u
#define PITCH_ALIGN 512u

/* ------------------------------------------------------------- table */

/* index of the last entry with base <= p, or -1; caller holds G.mu */
static long tab_floor(uint64_t p)
{
	long lo = 0, hi = (long)ntab - 1, ans = -1;
	while (lo <= hi) {
		long mid = (lo + hi) / 2;
		if (tab[mid].base <= p) {
			ans = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return ans;
}

static struct falloc *tab_find(uint64_t p)
{
	long i = tab_floor(p);
	if (i < 0)
		return NULL;
	struct falloc *a = &tab[i];
	return (p >= a->base && p - a->base < a->size) ? a : NULL;
}

static struct falloc *tab_insert(const struct falloc *a)
{
	if (ntab == captab) {
		size_t nc = captab ? captab * 2 : 64;
		struct falloc *n = realloc(tab, nc * sizeof(*n));
		if (!n)
			return NULL;
		tab = n;
		captab = nc;
	}
	long i = tab_floor(a->base) + 1;
	memmove(&tab[i + 1], &tab[i], (ntab - (size_t)i) * sizeof(*tab));
	tab[i] = *a;
	tab[i].id = ++next_id;
	ntab++;
	return &tab[i];
}

static void tab_remove(struct falloc *a)
{
	size_t i = (size_t)(a - tab);
	memmove(&tab[i], &tab[i + 1], (ntab - i - 1) * sizeof(*tab));
	ntab--;
}

int fk_find_range(uint64_t ptr, struct fk_range *out)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(ptr);
	if (a && out) {
		out->base = a->base;
		out->size = a->size;
		out->kind = a->kind;
		out->has_emu = a->has_emu;
		out->emu = a->emu;
	}
	pthread_mutex_unlock(&G.mu);
	return a != NULL;
}

int fk_range_ok(uint64_t p, uint64_t n)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	int ok = a && n <= a->size - (p - a->base);
	pthread_mutex_unlock(&G.mu);
	return ok;
}

int fk_range_add(uint64_t base, uint64_t size, int kind)
{
	struct falloc a;
	memset(&a, 0, sizeof(a));
	a.base = base;
	a.size = size;
	a.kind = kind;
	a.how = 2;
	a.preferred = CU_DEVICE_INVALID;
	a.last_prefetch = CU_DEVICE_INVALID;
	a.ctx = fk_current_ctx();
	pthread_mutex_lock(&G.mu);
	struct falloc *r = tab_insert(&a);
	pthread_mutex_unlock(&G.mu);
	return r ? 0 : -1;
}

void fk_range_del(uint64_t base)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(base);
	if (a && a->base == base)
		tab_remove(a);
	pthread_mutex_unlock(&G.mu);
}

/* ------------------------------------------------------- alloc / free */

static CUresult do_alloc(CUdeviceptr *dptr, size_t bytes, int kind, struct fpool *pool, int graph, int low32)
{
	if (!dptr || bytes == 0)
		return CUDA_ERROR_INVALID_VALUE;
	size_t sz = (bytes + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
	if (sz < bytes)
		return CUDA_ERROR_OUT_OF_MEMORY;
	void *mem;
	if (low32) {
		mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		if (mem == MAP_FAILED)
			return CUDA_ERROR_OUT_OF_MEMORY;
	} else {
		mem = aligned_alloc(ALLOC_ALIGN, sz);
		if (!mem)
			return CUDA_ERROR_OUT_OF_MEMORY;
	}
	struct falloc a;
	memset(&a, 0, sizeof(a));
	a.base = (uint64_t)(uintptr_t)mem;
	a.size = bytes;
	a.kind = kind;
	a.how = low32 ? 1 : 0;
	a.graph = graph;
	a.pool = pool;
	a.ctx = fk_current_ctx();
	a.preferred = CU_DEVICE_INVALID;
	a.last_prefetch = CU_DEVICE_INVALID;
	/* graph memory gets its physical (emulated) memory at launch; pinned
	 * host memory (host pools) is not on the emulated GPU */
	if (G.emu_ok && !graph && kind != FA_HOST) {
		uint32_t h;
		int r = emu_alloc(a.base, bytes, kind == FA_MANAGED ? EMU_KIND_MANAGED : EMU_KIND_DEVICE, &h);
		if (r == -ENOMEM) {
			if (low32)
				munmap(mem, sz);
			else
				free(mem);
			return CUDA_ERROR_OUT_OF_MEMORY;
		}
		if (r == 0) {
			a.has_emu = 1;
			a.emu = h;
		}
	}
	pthread_mutex_lock(&G.mu);
	struct falloc *ins = tab_insert(&a);
	if (ins && pool) {
		pool->used += bytes;
		if (pool->used > pool->used_high)
			pool->used_high = pool->used;
		if (pool->used > pool->reserved_high)
			pool->reserved_high = pool->used;
	}
	pthread_mutex_unlock(&G.mu);
	if (!ins) {
		if (a.has_emu)
			emu_free(a.emu);
		if (low32)
			munmap(mem, sz);
		else
			free(mem);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	*dptr = a.base;
	return CUDA_SUCCESS;
}

/* Free the allocation based exactly at p (kinds device/managed). */
static CUresult do_free(uint64_t p, int allow_graph)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (!a || a->base != p || (a->kind != FA_DEVICE && a->kind != FA_MANAGED && !(a->kind == FA_HOST && a->pool)) ||
	    (a->graph && !allow_graph)) {
		pthread_mutex_unlock(&G.mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	struct falloc c = *a;
	if (c.pool)
		c.pool->used -= c.size <= c.pool->used ? c.size : c.pool->used;
	tab_remove(a);
	pthread_mutex_unlock(&G.mu);
	if (c.has_emu)
		emu_free(c.emu);
	if (c.how == 1)
		munmap((void *)(uintptr_t)c.base, (c.size + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN);
	else
		free((void *)(uintptr_t)c.base);
	return CUDA_SUCCESS;
}

CUresult fk_free_now(CUdeviceptr p) { return do_free(p, 1); }

/* The context is destroyed or its primary context reset: like a real
 * driver, free every device and managed allocation made in it (stream
 * ordered ones included). Graph memory belongs to the device's graph pool
 * and registered or mapped memory to the application: both stay. The
 * caller drained the queue. */
void fk_free_ctx_allocs(struct fctx *c)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *gone = ntab ? malloc(ntab * sizeof(*gone)) : NULL;
	size_t n = 0, w = 0;
	for (size_t i = 0; i < ntab; i++) {
		struct falloc *a = &tab[i];
		if (gone && a->ctx == c && !a->graph && a->how != 2 && (a->kind == FA_DEVICE || a->kind == FA_MANAGED)) {
			if (a->pool)
				a->pool->used -= a->size <= a->pool->used ? a->size : a->pool->used;
			gone[n++] = *a;
		} else {
			tab[w++] = *a;
		}
	}
	ntab = w;
	pthread_mutex_unlock(&G.mu);
	for (size_t i = 0; i < n; i++) {
		if (gone[i].has_emu)
			emu_free(gone[i].emu);
		if (gone[i].how == 1)
			munmap((void *)(uintptr_t)gone[i].base, (gone[i].size + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN);
		else
			free((void *)(uintptr_t)gone[i].base);
	}
	free(gone);
	if (n)
		fk_log("context-teardown", CUDA_SUCCESS, "ctx=%p freed=%zu", (void *)c, n);
}

/* ------------------------------------------------------ graph memory
 *
 * Like a real driver, an allocation node's address is fixed when the node is
 * made (captured cuMemAllocAsync or cuGraphAddMemAllocNode) but its physical
 * memory comes from the device's graph memory pool when a graph that holds
 * the node is launched. A free (a free node, cuMemFreeAsync, cuMemFree) ends
 * the allocation but the pool keeps the physical memory for later launches
 * until cuDeviceGraphMemTrim. Per device: used = live graph allocations,
 * reserved = physical memory held (mapped nodes + memory of destroyed graphs
 * not trimmed yet). Physical memory is accounted on the emulated GPU as
 * device memory, so other processes see it. Caller-visible through
 * cuDeviceGetGraphMemAttribute.
 */
struct gcached {
	uint64_t size;
	int has_emu;
	uint32_t emu;
};
struct gpool {
	uint64_t used, used_high, reserved, reserved_high;
	struct gcached *cached; /* physical memory no node holds any more */
	size_t ncached, capcached;
};
static struct gpool gpools[8]; /* FK_MAX_DEV (fakecuda.c) */

static void gpool_used(struct gpool *gp, int64_t d)
{
	gp->used = (uint64_t)((int64_t)gp->used + d);
	if (gp->used > gp->used_high)
		gp->used_high = gp->used;
}

static void gpool_reserved(struct gpool *gp, int64_t d)
{
	gp->reserved = (uint64_t)((int64_t)gp->reserved + d);
	if (gp->reserved > gp->reserved_high)
		gp->reserved_high = gp->reserved;
}

/* A node lets go of its physical memory: the pool keeps it; caller holds G.mu. */
static void gpool_cache(struct gpool *gp, struct falloc *a)
{
	if (!a->gmapped)
		return;
	if (gp->ncached == gp->capcached) {
		size_t nc = gp->capcached ? gp->capcached * 2 : 8;
		struct gcached *n = realloc(gp->cached, nc * sizeof(*n));
		if (!n) {
			/* no room to remember it: give it back at once */
			gpool_reserved(gp, -(int64_t)a->size);
			if (a->has_emu)
				emu_free(a->emu);
			a->gmapped = a->has_emu = 0;
			return;
		}
		gp->cached = n;
		gp->capcached = nc;
	}
	gp->cached[gp->ncached++] = (struct gcached){a->size, a->has_emu, a->emu};
	a->gmapped = a->has_emu = 0;
}

CUresult fk_alloc_graph_mem(CUdeviceptr *dptr, size_t bytes, int dev)
{
	if (!fk_valid_device(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	CUresult r = do_alloc(dptr, bytes, FA_DEVICE, NULL, 1, 0);
	if (r != CUDA_SUCCESS)
		return r;
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(*dptr);
	if (a)
		a->gdev = dev;
	pthread_mutex_unlock(&G.mu);
	return CUDA_SUCCESS;
}

int fk_is_graph_mem(CUdeviceptr p)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	int ok = a && a->base == p && a->graph;
	pthread_mutex_unlock(&G.mu);
	return ok;
}

/* A launch of a graph holding the node for p: the pool maps its physical
 * memory now (so a full device fails the launch); the allocation itself
 * happens in stream order (fk_graph_mem_exec_alloc). held: the graph does
 * not free p itself; such a graph cannot be launched again until the
 * application freed p (real drivers refuse that launch too). */
CUresult fk_graph_mem_launch(CUdeviceptr p, int held)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (!a || a->base != p || a->graph != 1 || a->gheld) {
		pthread_mutex_unlock(&G.mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	a->gheld = held;
	if (a->gmapped) {
		pthread_mutex_unlock(&G.mu);
		return CUDA_SUCCESS;
	}
	/* reuse the pool's idle physical memory before mapping more */
	struct gpool *gp = &gpools[a->gdev];
	size_t nfree = gp->ncached;
	struct gcached *fr = NULL;
	if (nfree) {
		fr = malloc(nfree * sizeof(*fr));
		if (fr) {
			memcpy(fr, gp->cached, nfree * sizeof(*fr));
			for (size_t i = 0; i < nfree; i++)
				gpool_reserved(gp, -(int64_t)fr[i].size);
			gp->ncached = 0;
		} else {
			nfree = 0;
		}
	}
	uint64_t base = a->base, size = a->size;
	pthread_mutex_unlock(&G.mu);
	for (size_t i = 0; i < nfree; i++)
		if (fr[i].has_emu)
			emu_free(fr[i].emu);
	free(fr);
	uint32_t h = 0;
	int has = 0;
	if (G.emu_ok) {
		int e = emu_alloc(base, size, EMU_KIND_DEVICE, &h);
		if (e == -ENOMEM) {
			pthread_mutex_lock(&G.mu);
			a = tab_find(base);
			if (a && a->base == base)
				a->gheld = 0;
			pthread_mutex_unlock(&G.mu);
			return CUDA_ERROR_OUT_OF_MEMORY;
		}
		has = e == 0;
	}
	pthread_mutex_lock(&G.mu);
	a = tab_find(base);
	if (a && a->base == base && !a->gmapped) {
		a->gmapped = 1;
		a->has_emu = has;
		a->emu = h;
		gpool_reserved(&gpools[a->gdev], (int64_t)size);
		has = 0;
	}
	pthread_mutex_unlock(&G.mu);
	if (has)
		emu_free(h);
	return CUDA_SUCCESS;
}

/* The allocation node runs (stream order). */
void fk_graph_mem_exec_alloc(CUdeviceptr p)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (a && a->base == p && a->graph && !a->glive) {
		a->glive = 1;
		gpool_used(&gpools[a->gdev], (int64_t)a->size);
	}
	pthread_mutex_unlock(&G.mu);
}

/* The application frees p (submitted): its graph may be launched again. */
void fk_graph_mem_unhold(CUdeviceptr p)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (a && a->base == p && a->graph)
		a->gheld = 0;
	pthread_mutex_unlock(&G.mu);
}

/* Undo fk_graph_mem_launch for a launch that failed later on (the mapped
 * memory stays in the pool). */
void fk_graph_mem_unlaunch(CUdeviceptr p)
{
	fk_graph_mem_unhold(p);
}

/* Free graph memory (a free node, cuMemFreeAsync, cuMemFree). Returns 0 if
 * p is not graph memory, else 1 with *r set. */
static int graph_mem_free(CUdeviceptr p, CUresult *r)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (!a || a->base != p || !a->graph) {
		pthread_mutex_unlock(&G.mu);
		return 0;
	}
	if (!a->glive) {
		pthread_mutex_unlock(&G.mu);
		*r = CUDA_ERROR_INVALID_VALUE; /* not allocated now: double free */
		return 1;
	}
	a->glive = 0;
	a->gheld = 0;
	struct gpool *gp = &gpools[a->gdev];
	gpool_used(gp, -(int64_t)a->size);
	void *mem = NULL;
	if (a->graph == 2) { /* its graph is gone: the address goes too */
		gpool_cache(gp, a);
		mem = (void *)(uintptr_t)a->base;
		tab_remove(a);
	}
	pthread_mutex_unlock(&G.mu);
	free(mem);
	*r = CUDA_SUCCESS;
	return 1;
}

/* The graph that owns p is destroyed: a live allocation stays until the
 * application frees it; otherwise the address goes and the physical memory
 * stays in the pool until trimmed. */
void fk_graph_mem_release(CUdeviceptr p)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (!a || a->base != p || a->graph != 1) {
		pthread_mutex_unlock(&G.mu);
		return;
	}
	if (a->glive) {
		a->graph = 2;
		pthread_mutex_unlock(&G.mu);
		return;
	}
	gpool_cache(&gpools[a->gdev], a);
	void *mem = (void *)(uintptr_t)a->base;
	tab_remove(a);
	pthread_mutex_unlock(&G.mu);
	free(mem);
}

FK_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice device)
{
	FK_ENTER("cuDeviceGraphMemTrim");
	FK_NEED_INIT("cuDeviceGraphMemTrim");
	if (!fk_valid_device(device))
		return fk_log("cuDeviceGraphMemTrim", CUDA_ERROR_INVALID_DEVICE, NULL);
	fk_drain_all(); /* queued frees release their nodes first */
	pthread_mutex_lock(&G.mu);
	struct gpool *gp = &gpools[device];
	/* idle mapped nodes give their memory to the pool, then all of it goes */
	for (size_t i = 0; i < ntab; i++)
		if (tab[i].graph && tab[i].gdev == device && tab[i].gmapped && !tab[i].glive)
			gpool_cache(gp, &tab[i]);
	struct gcached *fr = gp->cached;
	size_t n = gp->ncached;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += fr[i].size;
	gpool_reserved(gp, -(int64_t)bytes);
	gp->cached = NULL;
	gp->ncached = gp->capcached = 0;
	uint64_t left = gp->reserved;
	pthread_mutex_unlock(&G.mu);
	for (size_t i = 0; i < n; i++)
		if (fr[i].has_emu)
			emu_free(fr[i].emu);
	free(fr);
	return fk_log("cuDeviceGraphMemTrim", CUDA_SUCCESS, "dev=%d released=%llu reserved=%llu", device,
		      (unsigned long long)bytes, (unsigned long long)left);
}

FK_EXPORT CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
	FK_ENTER("cuDeviceGetGraphMemAttribute");
	FK_NEED_INIT("cuDeviceGetGraphMemAttribute");
	if (!fk_valid_device(device))
		return fk_log("cuDeviceGetGraphMemAttribute", CUDA_ERROR_INVALID_DEVICE, "dev=%d", device);
	if (!value)
		return fk_log("cuDeviceGetGraphMemAttribute", CUDA_ERROR_INVALID_VALUE, "value=NULL");
	pthread_mutex_lock(&G.mu);
	struct gpool *gp = &gpools[device];
	CUresult r = CUDA_SUCCESS;
	cuuint64_t v = 0;
	switch (attr) {
	case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT: v = gp->used; break;
	case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH: v = gp->used_high; break;
	case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT: v = gp->reserved; break;
	case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH: v = gp->reserved_high; break;
	default: r = CUDA_ERROR_INVALID_VALUE; break;
	}
	pthread_mutex_unlock(&G.mu);
	if (r == CUDA_SUCCESS)
		*(cuuint64_t *)value = v;
	return fk_log("cuDeviceGetGraphMemAttribute", r, "dev=%d attr=%d value=%llu", device, (int)attr,
		      (unsigned long long)v);
}

/* Only the high-water marks can be set, and only to 0 (reset to current). */
FK_EXPORT CUresult cuDeviceSetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
	FK_ENTER("cuDeviceSetGraphMemAttribute");
	FK_NEED_INIT("cuDeviceSetGraphMemAttribute");
	if (!fk_valid_device(device))
		return fk_log("cuDeviceSetGraphMemAttribute", CUDA_ERROR_INVALID_DEVICE, "dev=%d", device);
	if (!value || *(cuuint64_t *)value != 0)
		return fk_log("cuDeviceSetGraphMemAttribute", CUDA_ERROR_INVALID_VALUE, "attr=%d", (int)attr);
	pthread_mutex_lock(&G.mu);
	struct gpool *gp = &gpools[device];
	CUresult r = CUDA_SUCCESS;
	if (attr == CU_GRAPH_MEM_ATTR_USED_MEM_HIGH)
		gp->used_high = gp->used;
	else if (attr == CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH)
		gp->reserved_high = gp->reserved;
	else
		r = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuDeviceSetGraphMemAttribute", r, "dev=%d attr=%d", device, (int)attr);
}

FK_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	FK_ENTER("cuMemAlloc_v2");
	NEED_CTX("cuMemAlloc_v2", c);
	(void)c;
	if (fk_capture_prohibited())
		return fk_log("cuMemAlloc_v2", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "bytes=%zu", bytesize);
	CUresult r = do_alloc(dptr, bytesize, FA_DEVICE, NULL, 0, 0);
	return fk_log("cuMemAlloc_v2", r, "bytes=%zu ptr=%#llx", bytesize, r ? 0ull : (unsigned long long)*dptr);
}

FK_EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
	FK_ENTER("cuMemAlloc");
	NEED_CTX("cuMemAlloc", c);
	(void)c;
	if (!dptr)
		return fk_log("cuMemAlloc", CUDA_ERROR_INVALID_VALUE, NULL);
	CUdeviceptr p = 0;
	CUresult r = do_alloc(&p, bytesize, FA_DEVICE, NULL, 0, 1);
	if (r == CUDA_SUCCESS && p > 0xffffffffull) {
		do_free(p, 0);
		r = CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (r == CUDA_SUCCESS)
		*dptr = (CUdeviceptr_v1)p;
	return fk_log("cuMemAlloc", r, "bytes=%u ptr=%#llx", bytesize, (unsigned long long)p);
}

FK_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
				      unsigned int ElementSizeBytes)
{
	FK_ENTER("cuMemAllocPitch_v2");
	NEED_CTX("cuMemAllocPitch_v2", c);
	(void)c;
	if (!dptr || !pPitch || !WidthInBytes || !Height ||
	    (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16))
		return fk_log("cuMemAllocPitch_v2", CUDA_ERROR_INVALID_VALUE, "w=%zu h=%zu elem=%u", WidthInBytes, Height,
			      ElementSizeBytes);
	if (fk_capture_prohibited())
		return fk_log("cuMemAllocPitch_v2", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, NULL);
	size_t pitch = (WidthInBytes + PITCH_ALIGN - 1) / PITCH_ALIGN * PITCH_ALIGN;
	if (Height > SIZE_MAX / pitch)
		return fk_log("cuMemAllocPitch_v2", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	CUresult r = do_alloc(dptr, pitch * Height, FA_DEVICE, NULL, 0, 0);
	if (r == CUDA_SUCCESS)
		*pPitch = pitch;
	return fk_log("cuMemAllocPitch_v2", r, "w=%zu h=%zu pitch=%zu ptr=%#llx", WidthInBytes, Height, pitch,
		      r ? 0ull : (unsigned long long)*dptr);
}

FK_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
	FK_ENTER("cuMemAllocManaged");
	NEED_CTX("cuMemAllocManaged", c);
	(void)c;
	if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
		return fk_log("cuMemAllocManaged", CUDA_ERROR_INVALID_VALUE, "bytes=%zu flags=%u", bytesize, flags);
	if (fk_capture_prohibited())
		return fk_log("cuMemAllocManaged", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "bytes=%zu", bytesize);
	CUresult r = do_alloc(dptr, bytesize, FA_MANAGED, NULL, 0, 0);
	return fk_log("cuMemAllocManaged", r, "bytes=%zu flags=%u ptr=%#llx", bytesize, flags,
		      r ? 0ull : (unsigned long long)*dptr);
}

static CUresult mem_free(const char *nm, CUdeviceptr p)
{
	FK_NEED_INIT(nm);
	if (p == 0)
		return fk_log(nm, CUDA_SUCCESS, "ptr=0");
	if (fk_capture_prohibited())
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "ptr=%#llx", (unsigned long long)p);
	fk_drain_all(); /* cuMemFree synchronizes: queued work may use it */
	CUresult r;
	if (!graph_mem_free(p, &r))
		r = do_free(p, 0);
	return fk_log(nm, r, "ptr=%#llx", (unsigned long long)p);
}

FK_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
	FK_ENTER("cuMemFree_v2");
	return mem_free("cuMemFree_v2", dptr);
}

FK_EXPORT CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
	FK_ENTER("cuMemFree");
	return mem_free("cuMemFree", (CUdeviceptr)dptr);
}

static void mem_info(uint64_t *fr, uint64_t *tot)
{
	if (G.emu_ok) {
		emu_mem_info(fr, tot);
		if (*tot)
			return;
	}
	struct emu_config c;
	emu_config_from_env(&c);
	uint64_t used = 0;
	pthread_mutex_lock(&G.mu);
	for (size_t i = 0; i < ntab; i++)
		if (tab[i].kind == FA_DEVICE)
			used += tab[i].size;
	pthread_mutex_unlock(&G.mu);
	*tot = c.capacity;
	*fr = used < c.capacity ? c.capacity - used : 0;
}

FK_EXPORT CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total)
{
	FK_ENTER("cuMemGetInfo_v2");
	NEED_CTX("cuMemGetInfo_v2", c);
	(void)c;
	if (!free_b || !total)
		return fk_log("cuMemGetInfo_v2", CUDA_ERROR_INVALID_VALUE, NULL);
	uint64_t fr, tot;
	mem_info(&fr, &tot);
	*free_b = fr;
	*total = tot;
	return fk_log("cuMemGetInfo_v2", CUDA_SUCCESS, "free=%zu total=%zu", *free_b, *total);
}

FK_EXPORT CUresult cuMemGetInfo(unsigned int *free_b, unsigned int *total)
{
	FK_ENTER("cuMemGetInfo");
	NEED_CTX("cuMemGetInfo", c);
	(void)c;
	if (!free_b || !total)
		return fk_log("cuMemGetInfo", CUDA_ERROR_INVALID_VALUE, NULL);
	uint64_t fr, tot;
	mem_info(&fr, &tot);
	*free_b = fr > 0xffffffffull ? 0xffffffffu : (unsigned)fr;
	*total = tot > 0xffffffffull ? 0xffffffffu : (unsigned)tot;
	return fk_log("cuMemGetInfo", CUDA_SUCCESS, "free=%u total=%u", *free_b, *total);
}

FK_EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
	FK_ENTER("cuMemGetAddressRange_v2");
	FK_NEED_INIT("cuMemGetAddressRange_v2");
	struct fk_range r;
	if (!fk_find_range(dptr, &r))
		return fk_log("cuMemGetAddressRange_v2", CUDA_ERROR_NOT_FOUND, "ptr=%#llx", (unsigned long long)dptr);
	if (pbase)
		*pbase = r.base;
	if (psize)
		*psize = r.size;
	return fk_log("cuMemGetAddressRange_v2", CUDA_SUCCESS, "ptr=%#llx base=%#llx size=%llu",
		      (unsigned long long)dptr, (unsigned long long)r.base, (unsigned long long)r.size);
}

/* ---------------------------------------------------------- host memory */

static CUresult host_alloc(const char *nm, void **pp, size_t bytes, unsigned flags)
{
	NEED_CTX(nm, c);
	if (!pp || !bytes || (flags & ~7u))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "bytes=%zu flags=%#x", bytes, flags);
	size_t sz = (bytes + 4095) / 4096 * 4096;
	void *m = aligned_alloc(4096, sz);
	if (!m)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "bytes=%zu", bytes);
	struct falloc a;
	memset(&a, 0, sizeof(a));
	a.base = (uint64_t)(uintptr_t)m;
	a.size = bytes;
	a.kind = FA_HOST;
	a.ctx = c;
	a.preferred = a.last_prefetch = CU_DEVICE_INVALID;
	pthread_mutex_lock(&G.mu);
	struct falloc *ins = tab_insert(&a);
	pthread_mutex_unlock(&G.mu);
	if (!ins) {
		free(m);
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	*pp = m;
	return fk_log(nm, CUDA_SUCCESS, "bytes=%zu flags=%#x ptr=%p", bytes, flags, m);
}

FK_EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
	FK_ENTER("cuMemAllocHost_v2");
	return host_alloc("cuMemAllocHost_v2", pp, bytesize, 0);
}

FK_EXPORT CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
	FK_ENTER("cuMemHostAlloc");
	return host_alloc("cuMemHostAlloc", pp, bytesize, Flags);
}

FK_EXPORT CUresult cuMemFreeHost(void *p)
{
	FK_ENTER("cuMemFreeHost");
	FK_NEED_INIT("cuMemFreeHost");
	fk_drain_all();
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find((uint64_t)(uintptr_t)p);
	if (!p || !a || a->base != (uint64_t)(uintptr_t)p || a->kind != FA_HOST || a->pool) {
		pthread_mutex_unlock(&G.mu);
		return fk_log("cuMemFreeHost", CUDA_ERROR_INVALID_VALUE, "ptr=%p", p);
	}
	tab_remove(a);
	pthread_mutex_unlock(&G.mu);
	fk_log("cuMemFreeHost", CUDA_SUCCESS, "ptr=%p", p);
	free(p);
	return CUDA_SUCCESS;
}

FK_EXPORT CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
{
	FK_ENTER("cuMemHostGetDevicePointer_v2");
	FK_NEED_INIT("cuMemHostGetDevicePointer_v2");
	struct fk_range r;
	if (!pdptr || Flags || !fk_find_range((uint64_t)(uintptr_t)p, &r) ||
	    (r.kind != FA_HOST && r.kind != FA_HOSTREG))
		return fk_log("cuMemHostGetDevicePointer_v2", CUDA_ERROR_INVALID_VALUE, "ptr=%p", p);
	*pdptr = (CUdeviceptr)(uintptr_t)p;
	return fk_log("cuMemHostGetDevicePointer_v2", CUDA_SUCCESS, "ptr=%p", p);
}

FK_EXPORT CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
	FK_ENTER("cuMemHostRegister_v2");
	NEED_CTX("cuMemHostRegister_v2", c);
	(void)c;
	if (!p || !bytesize || (Flags & ~0xfu))
		return fk_log("cuMemHostRegister_v2", CUDA_ERROR_INVALID_VALUE, "ptr=%p bytes=%zu", p, bytesize);
	uint64_t b = (uint64_t)(uintptr_t)p;
	pthread_mutex_lock(&G.mu);
	long i = tab_floor(b + bytesize - 1);
	int overlap = i >= 0 && tab[i].base + tab[i].size > b;
	pthread_mutex_unlock(&G.mu);
	if (overlap)
		return fk_log("cuMemHostRegister_v2", CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "ptr=%p", p);
	if (fk_range_add(b, bytesize, FA_HOSTREG) < 0)
		return fk_log("cuMemHostRegister_v2", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	return fk_log("cuMemHostRegister_v2", CUDA_SUCCESS, "ptr=%p bytes=%zu flags=%#x", p, bytesize, Flags);
}

FK_EXPORT CUresult cuMemHostUnregister(void *p)
{
	FK_ENTER("cuMemHostUnregister");
	FK_NEED_INIT("cuMemHostUnregister");
	fk_drain_all();
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find((uint64_t)(uintptr_t)p);
	if (!p || !a || a->base != (uint64_t)(uintptr_t)p || a->kind != FA_HOSTREG) {
		pthread_mutex_unlock(&G.mu);
		return fk_log("cuMemHostUnregister", CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "ptr=%p", p);
	}
	tab_remove(a);
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuMemHostUnregister", CUDA_SUCCESS, "ptr=%p", p);
}

/* ------------------------------------------------------------- pools */

static int has_13(void) { return G.driver_version >= 13000; }

static void pool_init(struct fpool *p, int managed, int dev, int is_default)
{
	memset(p, 0, sizeof(*p));
	p->magic = FK_MAGIC_POOL;
	p->managed = managed;
	p->is_default = is_default;
	p->props.allocType = managed ? CU_MEM_ALLOCATION_TYPE_MANAGED : CU_MEM_ALLOCATION_TYPE_PINNED;
	p->props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p->props.location.id = dev;
	p->reuse[0] = p->reuse[1] = p->reuse[2] = 1;
}

/* caller holds G.mu */
static struct fpool *dev_default_pool(int dev)
{
	struct fpool *p = &defpool[dev];
	if (p->magic != FK_MAGIC_POOL)
		pool_init(p, 0, dev, 1);
	return p;
}

static struct fpool *managed_default_pool(void)
{
	if (mpool.magic != FK_MAGIC_POOL)
		pool_init(&mpool, 1, 0, 1);
	return &mpool;
}

static struct fpool *pool_get(CUmemoryPool h)
{
	struct fpool *p = (struct fpool *)h;
	if (!p)
		return NULL;
	pthread_mutex_lock(&G.mu);
	int ok = 0;
	for (int i = 0; i < 8; i++)
		if (p == &defpool[i] && p->magic == FK_MAGIC_POOL)
			ok = 1;
	if (p == &mpool && p->magic == FK_MAGIC_POOL)
		ok = 1;
	for (struct fpool *q = pools; q && !ok; q = q->next)
		if (q == p)
			ok = 1;
	pthread_mutex_unlock(&G.mu);
	return ok ? p : NULL;
}

FK_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
	FK_ENTER("cuMemPoolCreate");
	FK_NEED_INIT("cuMemPoolCreate");
	if (!pool || !poolProps)
		return fk_log("cuMemPoolCreate", CUDA_ERROR_INVALID_VALUE, NULL);
	int managed = 0;
	if (poolProps->allocType == CU_MEM_ALLOCATION_TYPE_MANAGED) {
		if (!has_13())
			return fk_log("cuMemPoolCreate", CUDA_ERROR_NOT_SUPPORTED, "managed pools need a 13.0 driver");
		managed = 1;
	} else if (poolProps->allocType != CU_MEM_ALLOCATION_TYPE_PINNED) {
		return fk_log("cuMemPoolCreate", CUDA_ERROR_INVALID_VALUE, "allocType=%d", (int)poolProps->allocType);
	}
	if (poolProps->location.type == CU_MEM_LOCATION_TYPE_DEVICE) {
		if (!fk_valid_device(poolProps->location.id))
			return fk_log("cuMemPoolCreate", CUDA_ERROR_INVALID_DEVICE, NULL);
	} else if (!managed && (poolProps->location.type == CU_MEM_LOCATION_TYPE_HOST ||
				poolProps->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA)) {
		/* pinned host memory (one emulated NUMA node, 0) */
		if (G.driver_version < 12020)
			return fk_log("cuMemPoolCreate", CUDA_ERROR_NOT_SUPPORTED, "host pools need a 12.2 driver");
		if (poolProps->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA && poolProps->location.id != 0)
			return fk_log("cuMemPoolCreate", CUDA_ERROR_INVALID_VALUE, "NUMA node %d (the fake has node 0)",
				      poolProps->location.id);
	} else if (!(managed && poolProps->location.type == CU_MEM_LOCATION_TYPE_HOST)) {
		return fk_log("cuMemPoolCreate", CUDA_ERROR_INVALID_VALUE, "location type=%d",
			      (int)poolProps->location.type);
	}
	struct fpool *p = calloc(1, sizeof(*p));
	if (!p)
		return fk_log("cuMemPoolCreate", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	pool_init(p, managed, poolProps->location.id, 0);
	p->props = *poolProps;
	pthread_mutex_lock(&G.mu);
	p->next = pools;
	pools = p;
	pthread_mutex_unlock(&G.mu);
	*pool = (CUmemoryPool)p;
	return fk_log("cuMemPoolCreate", CUDA_SUCCESS, "pool=%p managed=%d loc=%d:%d", (void *)p, managed,
		      (int)poolProps->location.type, poolProps->location.id);
}

FK_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
	FK_ENTER("cuMemPoolDestroy");
	FK_NEED_INIT("cuMemPoolDestroy");
	struct fpool *p = pool_get(pool);
	if (!p || p->is_default)
		return fk_log("cuMemPoolDestroy", CUDA_ERROR_INVALID_VALUE, "pool=%p", (void *)pool);
	fk_drain_all();
	pthread_mutex_lock(&G.mu);
	for (struct fpool **pp = &pools; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	for (int i = 0; i < 8; i++)
		if (curpool[i] == p)
			curpool[i] = NULL;
	if (cur_mpool == p)
		cur_mpool = NULL;
	for (size_t i = 0; i < ntab; i++)
		if (tab[i].pool == p)
			tab[i].pool = NULL; /* live allocations outlive the pool */
	pthread_mutex_unlock(&G.mu);
	p->magic = 0;
	free(p);
	return fk_log("cuMemPoolDestroy", CUDA_SUCCESS, "pool=%p", (void *)pool);
}

FK_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
	FK_ENTER("cuMemPoolSetAttribute");
	struct fpool *p = pool_get(pool);
	if (!p || !value)
		return fk_log("cuMemPoolSetAttribute", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	CUresult r = CUDA_SUCCESS;
	switch (attr) {
	case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
	case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
	case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
		p->reuse[attr - 1] = *(int *)value;
		break;
	case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
		p->threshold = *(cuuint64_t *)value;
		break;
	case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
	case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
		if (*(cuuint64_t *)value != 0)
			r = CUDA_ERROR_INVALID_VALUE;
		else if (attr == CU_MEMPOOL_ATTR_USED_MEM_HIGH)
			p->used_high = p->used;
		else
			p->reserved_high = p->used;
		break;
	default:
		r = CUDA_ERROR_INVALID_VALUE;
	}
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuMemPoolSetAttribute", r, "pool=%p attr=%d", (void *)pool, (int)attr);
}

FK_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
	FK_ENTER("cuMemPoolGetAttribute");
	struct fpool *p = pool_get(pool);
	if (!p || !value)
		return fk_log("cuMemPoolGetAttribute", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	CUresult r = CUDA_SUCCESS;
	switch (attr) {
	case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
	case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
	case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
		*(int *)value = p->reuse[attr - 1];
		break;
	case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: *(cuuint64_t *)value = p->threshold; break;
	case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
	case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = p->used; break;
	case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: *(cuuint64_t *)value = p->reserved_high; break;
	case CU_MEMPOOL_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = p->used_high; break;
	default: r = CUDA_ERROR_INVALID_VALUE;
	}
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuMemPoolGetAttribute", r, "pool=%p attr=%d", (void *)pool, (int)attr);
}

FK_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
	FK_ENTER("cuMemPoolTrimTo");
	if (!pool_get(pool))
		return fk_log("cuMemPoolTrimTo", CUDA_ERROR_INVALID_VALUE, NULL);
	return fk_log("cuMemPoolTrimTo", CUDA_SUCCESS, "pool=%p keep=%zu", (void *)pool, minBytesToKeep);
}

FK_EXPORT CUresult cuMemPoolSetAccess(CUmemoryPool pool, const CUmemAccessDesc *map, size_t count)
{
	FK_ENTER("cuMemPoolSetAccess");
	if (!pool_get(pool) || (count && !map))
		return fk_log("cuMemPoolSetAccess", CUDA_ERROR_INVALID_VALUE, NULL);
	return fk_log("cuMemPoolSetAccess", CUDA_SUCCESS, "pool=%p count=%zu", (void *)pool, count);
}

FK_EXPORT CUresult cuMemPoolExportToShareableHandle(void *handle_out, CUmemoryPool pool,
						    CUmemAllocationHandleType handleType, unsigned long long flags)
{
	FK_ENTER("cuMemPoolExportToShareableHandle");
	(void)handle_out, (void)pool, (void)handleType, (void)flags;
	return fk_log("cuMemPoolExportToShareableHandle", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

FK_EXPORT CUresult cuMemPoolImportFromShareableHandle(CUmemoryPool *pool_out, void *handle,
						      CUmemAllocationHandleType handleType, unsigned long long flags)
{
	FK_ENTER("cuMemPoolImportFromShareableHandle");
	(void)pool_out, (void)handle, (void)handleType, (void)flags;
	return fk_log("cuMemPoolImportFromShareableHandle", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

FK_EXPORT CUresult cuMemPoolExportPointer(CUmemPoolPtrExportData *shareData_out, CUdeviceptr ptr)
{
	FK_ENTER("cuMemPoolExportPointer");
	(void)shareData_out, (void)ptr;
	return fk_log("cuMemPoolExportPointer", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

FK_EXPORT CUresult cuMemPoolImportPointer(CUdeviceptr *ptr_out, CUmemoryPool pool, CUmemPoolPtrExportData *shareData)
{
	FK_ENTER("cuMemPoolImportPointer");
	(void)ptr_out, (void)pool, (void)shareData;
	return fk_log("cuMemPoolImportPointer", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

FK_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev)
{
	FK_ENTER("cuDeviceGetDefaultMemPool");
	FK_NEED_INIT("cuDeviceGetDefaultMemPool");
	if (!pool_out || !fk_valid_device(dev))
		return fk_log("cuDeviceGetDefaultMemPool", CUDA_ERROR_INVALID_VALUE, "dev=%d", dev);
	pthread_mutex_lock(&G.mu);
	*pool_out = (CUmemoryPool)dev_default_pool(dev);
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuDeviceGetDefaultMemPool", CUDA_SUCCESS, "dev=%d pool=%p", dev, (void *)*pool_out);
}

FK_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
	FK_ENTER("cuDeviceGetMemPool");
	FK_NEED_INIT("cuDeviceGetMemPool");
	if (!pool || !fk_valid_device(dev))
		return fk_log("cuDeviceGetMemPool", CUDA_ERROR_INVALID_VALUE, "dev=%d", dev);
	pthread_mutex_lock(&G.mu);
	*pool = (CUmemoryPool)(curpool[dev] ? curpool[dev] : dev_default_pool(dev));
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuDeviceGetMemPool", CUDA_SUCCESS, "dev=%d pool=%p", dev, (void *)*pool);
}

FK_EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool)
{
	FK_ENTER("cuDeviceSetMemPool");
	FK_NEED_INIT("cuDeviceSetMemPool");
	struct fpool *p = pool_get(pool);
	if (!p || !fk_valid_device(dev) || p->managed || p->props.location.id != dev)
		return fk_log("cuDeviceSetMemPool", CUDA_ERROR_INVALID_VALUE, "dev=%d pool=%p", dev, (void *)pool);
	pthread_mutex_lock(&G.mu);
	curpool[dev] = p;
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuDeviceSetMemPool", CUDA_SUCCESS, "dev=%d pool=%p", dev, (void *)pool);
}

static CUresult loc_pool(const char *nm, CUmemoryPool *out, CUmemLocation *loc, CUmemAllocationType type, int current)
{
	FK_NEED_INIT(nm);
	if (!has_13())
		return fk_log(nm, CUDA_ERROR_NOT_SUPPORTED, "needs a 13.0 driver");
	if (!out || !loc)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	CUresult r = CUDA_SUCCESS;
	if (type == CU_MEM_ALLOCATION_TYPE_MANAGED) {
		*out = (CUmemoryPool)((current && cur_mpool) ? cur_mpool : managed_default_pool());
	} else if (type == CU_MEM_ALLOCATION_TYPE_PINNED && loc->type == CU_MEM_LOCATION_TYPE_DEVICE &&
		   fk_valid_device(loc->id)) {
		*out = (CUmemoryPool)((current && curpool[loc->id]) ? curpool[loc->id] : dev_default_pool(loc->id));
	} else {
		r = CUDA_ERROR_INVALID_VALUE;
	}
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, r, "type=%d loc=%d:%d pool=%p", (int)type, (int)loc->type, loc->id,
		      r ? NULL : (void *)*out);
}

FK_EXPORT CUresult cuMemGetDefaultMemPool(CUmemoryPool *pool_out, CUmemLocation *location, CUmemAllocationType type)
{
	FK_ENTER("cuMemGetDefaultMemPool");
	return loc_pool("cuMemGetDefaultMemPool", pool_out, location, type, 0);
}

FK_EXPORT CUresult cuMemGetMemPool(CUmemoryPool *pool, CUmemLocation *location, CUmemAllocationType type)
{
	FK_ENTER("cuMemGetMemPool");
	return loc_pool("cuMemGetMemPool", pool, location, type, 1);
}

FK_EXPORT CUresult cuMemSetMemPool(CUmemLocation *location, CUmemAllocationType type, CUmemoryPool pool)
{
	FK_ENTER("cuMemSetMemPool");
	FK_NEED_INIT("cuMemSetMemPool");
	if (!has_13())
		return fk_log("cuMemSetMemPool", CUDA_ERROR_NOT_SUPPORTED, "needs a 13.0 driver");
	struct fpool *p = pool_get(pool);
	if (!location || !p || p->managed != (type == CU_MEM_ALLOCATION_TYPE_MANAGED))
		return fk_log("cuMemSetMemPool", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	CUresult r = CUDA_SUCCESS;
	if (p->managed)
		cur_mpool = p;
	else if (location->type == CU_MEM_LOCATION_TYPE_DEVICE && fk_valid_device(location->id))
		curpool[location->id] = p;
	else
		r = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuMemSetMemPool", r, "pool=%p", (void *)pool);
}

/* ------------------------------------------------ stream-ordered alloc */

static CUresult alloc_async(const char *nm, CUdeviceptr *dptr, size_t bytes, struct fpool *pool, CUstream hs,
			    int ptsz)
{
	NEED_CTX(nm, c);
	if (!dptr || !bytes)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "bytes=%zu", bytes);
	CUresult err;
	struct fstream *s = fk_stream(hs, ptsz, &err);
	if (!s)
		return fk_log(nm, err, "stream=%p", (void *)hs);
	if (s->capture == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
		/* graph memory: an allocation node of the graph (address now,
		 * memory from the device's graph pool at launch) */
		int dev = pool ? pool->props.location.id : c->dev;
		if (pool && (pool->managed || pool->props.location.type != CU_MEM_LOCATION_TYPE_DEVICE))
			dev = c->dev;
		CUresult r = fk_alloc_graph_mem(dptr, bytes, dev);
		if (r != CUDA_SUCCESS)
			return fk_log(nm, r, "bytes=%zu graph=1", bytes);
		fk_graph_add_mem(s->graph, *dptr);
		struct fop *op = fk_op_new(OP_NOP);
		if (op)
			op->u.fr.ptr = *dptr;
		r = fk_submit(s, op);
		return fk_log(nm, r, "bytes=%zu stream=%p graph=1 ptr=%#llx", bytes, (void *)hs,
			      (unsigned long long)*dptr);
	}
	if (!pool) {
		pthread_mutex_lock(&G.mu);
		pool = curpool[c->dev] ? curpool[c->dev] : dev_default_pool(c->dev);
		pthread_mutex_unlock(&G.mu);
	}
	int kind = pool->managed ? FA_MANAGED
		   : pool->props.location.type == CU_MEM_LOCATION_TYPE_DEVICE ? FA_DEVICE : FA_HOST;
	CUresult r = do_alloc(dptr, bytes, kind, pool, 0, 0);
	return fk_log(nm, r, "bytes=%zu stream=%p pool=%p managed=%d ptr=%#llx", bytes, (void *)hs, (void *)pool,
		      pool->managed, r ? 0ull : (unsigned long long)*dptr);
}

FK_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	FK_ENTER("cuMemAllocAsync");
	return alloc_async("cuMemAllocAsync", dptr, bytesize, NULL, hStream, 0);
}

FK_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	FK_ENTER("cuMemAllocAsync_ptsz");
	return alloc_async("cuMemAllocAsync_ptsz", dptr, bytesize, NULL, hStream, 1);
}

FK_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
	FK_ENTER("cuMemAllocFromPoolAsync");
	struct fpool *p = pool_get(pool);
	if (!p)
		return fk_log("cuMemAllocFromPoolAsync", CUDA_ERROR_INVALID_VALUE, "pool=%p", (void *)pool);
	return alloc_async("cuMemAllocFromPoolAsync", dptr, bytesize, p, hStream, 0);
}

FK_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
						CUstream hStream)
{
	FK_ENTER("cuMemAllocFromPoolAsync_ptsz");
	struct fpool *p = pool_get(pool);
	if (!p)
		return fk_log("cuMemAllocFromPoolAsync_ptsz", CUDA_ERROR_INVALID_VALUE, "pool=%p", (void *)pool);
	return alloc_async("cuMemAllocFromPoolAsync_ptsz", dptr, bytesize, p, hStream, 1);
}

static CUresult free_async(const char *nm, CUdeviceptr p, CUstream hs, int ptsz)
{
	FK_NEED_INIT(nm);
	CUresult err;
	struct fstream *s = fk_stream(hs, ptsz, &err);
	if (!s)
		return fk_log(nm, err, "stream=%p", (void *)hs);
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	int ok = a && a->base == p && (a->kind == FA_DEVICE || a->kind == FA_MANAGED || (a->kind == FA_HOST && a->pool));
	pthread_mutex_unlock(&G.mu);
	if (!ok)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)p);
	struct fop *op = fk_op_new(OP_FREE);
	if (op)
		op->u.fr.ptr = p;
	if (op && s->capture != CU_STREAM_CAPTURE_STATUS_ACTIVE)
		fk_graph_mem_unhold(p); /* the graph that made p may run again */
	return fk_log(nm, fk_submit(s, op), "ptr=%#llx stream=%p", (unsigned long long)p, (void *)hs);
}

FK_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
	FK_ENTER("cuMemFreeAsync");
	return free_async("cuMemFreeAsync", dptr, hStream, 0);
}

FK_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
	FK_ENTER("cuMemFreeAsync_ptsz");
	return free_async("cuMemFreeAsync_ptsz", dptr, hStream, 1);
}

void fk_exec_free(struct fop *op)
{
	/* graph memory goes back to its graph pool; unknown pointers (a
	 * graph replaying a free of memory freed earlier) are ignored */
	CUresult r;
	if (!graph_mem_free(op->u.fr.ptr, &r))
		do_free(op->u.fr.ptr, 0);
}

/* ------------------------------------------------------------ prefetch */

void fk_exec_prefetch(struct fop *op)
{
	struct fk_range r;
	if (!fk_find_range(op->u.pf.ptr, &r))
		return;
	uint64_t off = op->u.pf.ptr - r.base;
	uint64_t n = op->u.pf.n < r.size - off ? op->u.pf.n : r.size - off;
	if (r.has_emu) {
		if (op->u.pf.discard)
			emu_discard(r.emu, n);
		if (op->u.pf.to_device || !op->u.pf.discard)
			emu_prefetch(r.emu, n, op->u.pf.to_device);
	}
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(op->u.pf.ptr);
	if (a && !(op->u.pf.discard && !op->u.pf.to_device))
		a->last_prefetch = op->u.pf.to_device ? 0 : CU_DEVICE_CPU;
	pthread_mutex_unlock(&G.mu);
}

/* Validate and submit one prefetch; dev is a device ordinal or CU_DEVICE_CPU. */
static CUresult submit_prefetch(CUdeviceptr p, size_t n, int dev, int discard, struct fstream *s)
{
	if (n == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev != CU_DEVICE_CPU && !fk_valid_device(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	if (dev != CU_DEVICE_CPU && !G.concurrent_managed)
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	int ok = a && a->kind == FA_MANAGED && n <= a->size - (p - a->base);
	pthread_mutex_unlock(&G.mu);
	if (!ok)
		return CUDA_ERROR_INVALID_VALUE;
	struct fop *op = fk_op_new(OP_PREFETCH);
	if (op) {
		op->u.pf.ptr = p;
		op->u.pf.n = n;
		op->u.pf.to_device = dev != CU_DEVICE_CPU;
		op->u.pf.discard = discard;
	}
	return fk_submit(s, op);
}

static int loc_to_dev(const CUmemLocation *l, int *dev)
{
	switch (l->type) {
	case CU_MEM_LOCATION_TYPE_DEVICE:
		*dev = l->id;
		return fk_valid_device(l->id);
	case CU_MEM_LOCATION_TYPE_HOST:
	case CU_MEM_LOCATION_TYPE_HOST_NUMA:
	case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT:
		*dev = CU_DEVICE_CPU;
		return 1;
	default:
		return 0;
	}
}

static CUresult prefetch_v1(const char *nm, CUdeviceptr p, size_t n, CUdevice dst, CUstream hs, int ptsz)
{
	FK_NEED_INIT(nm);
	CUresult err;
	struct fstream *s = fk_stream(hs, ptsz, &err);
	if (!s)
		return fk_log(nm, err, "stream=%p", (void *)hs);
	CUresult r = submit_prefetch(p, n, dst, 0, s);
	return fk_log(nm, r, "ptr=%#llx bytes=%zu dst=%d stream=%p", (unsigned long long)p, n, dst, (void *)hs);
}

FK_EXPORT CUresult cuMemPrefetchAsync(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream)
{
	FK_ENTER("cuMemPrefetchAsync");
	return prefetch_v1("cuMemPrefetchAsync", devPtr, count, dstDevice, hStream, 0);
}

FK_EXPORT CUresult cuMemPrefetchAsync_ptsz(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream)
{
	FK_ENTER("cuMemPrefetchAsync_ptsz");
	return prefetch_v1("cuMemPrefetchAsync_ptsz", devPtr, count, dstDevice, hStream, 1);
}

static CUresult prefetch_v2(const char *nm, CUdeviceptr p, size_t n, CUmemLocation loc, unsigned flags, CUstream hs,
			    int ptsz)
{
	FK_NEED_INIT(nm);
	int dev;
	if (flags || !loc_to_dev(&loc, &dev))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "loc=%d:%d flags=%u", (int)loc.type, loc.id, flags);
	CUresult err;
	struct fstream *s = fk_stream(hs, ptsz, &err);
	if (!s)
		return fk_log(nm, err, "stream=%p", (void *)hs);
	CUresult r = submit_prefetch(p, n, dev, 0, s);
	return fk_log(nm, r, "ptr=%#llx bytes=%zu loc=%d:%d stream=%p", (unsigned long long)p, n, (int)loc.type,
		      loc.id, (void *)hs);
}

FK_EXPORT CUresult cuMemPrefetchAsync_v2(CUdeviceptr devPtr, size_t count, CUmemLocation location, unsigned int flags,
					 CUstream hStream)
{
	FK_ENTER("cuMemPrefetchAsync_v2");
	return prefetch_v2("cuMemPrefetchAsync_v2", devPtr, count, location, flags, hStream, 0);
}

FK_EXPORT CUresult cuMemPrefetchAsync_v2_ptsz(CUdeviceptr devPtr, size_t count, CUmemLocation location,
					      unsigned int flags, CUstream hStream)
{
	FK_ENTER("cuMemPrefetchAsync_v2_ptsz");
	return prefetch_v2("cuMemPrefetchAsync_v2_ptsz", devPtr, count, location, flags, hStream, 1);
}

static CUresult batch(const char *nm, CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *locs,
		      size_t *locIdxs, size_t nlocs, int discard, int prefetch, CUstream hs)
{
	FK_NEED_INIT(nm);
	if (!has_13())
		return fk_log(nm, CUDA_ERROR_NOT_SUPPORTED, "needs a 13.0 driver");
	if (!dptrs || !sizes || !count || (prefetch && (!locs || !locIdxs || !nlocs || locIdxs[0] != 0)))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "count=%zu", count);
	CUresult err;
	struct fstream *s = fk_stream(hs, 0, &err);
	if (!s)
		return fk_log(nm, err, "stream=%p", (void *)hs);
	size_t li = 0;
	for (size_t i = 0; i < count; i++) {
		int dev = CU_DEVICE_CPU;
		if (prefetch) {
			while (li + 1 < nlocs && locIdxs[li + 1] <= i)
				li++;
			if (!loc_to_dev(&locs[li], &dev))
				return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "loc %zu", li);
		}
		CUresult r = submit_prefetch(dptrs[i], sizes[i], dev, discard, s);
		if (r != CUDA_SUCCESS)
			return fk_log(nm, r, "op %zu ptr=%#llx", i, (unsigned long long)dptrs[i]);
	}
	return fk_log(nm, CUDA_SUCCESS, "count=%zu stream=%p", count, (void *)hs);
}

FK_EXPORT CUresult cuMemPrefetchBatchAsync(CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *prefetchLocs,
					   size_t *prefetchLocIdxs, size_t numPrefetchLocs, unsigned long long flags,
					   CUstream hStream)
{
	FK_ENTER("cuMemPrefetchBatchAsync");
	(void)flags;
	return batch("cuMemPrefetchBatchAsync", dptrs, sizes, count, prefetchLocs, prefetchLocIdxs, numPrefetchLocs, 0,
		     1, hStream);
}

FK_EXPORT CUresult cuMemDiscardBatchAsync(CUdeviceptr *dptrs, size_t *sizes, size_t count, unsigned long long flags,
					  CUstream hStream)
{
	FK_ENTER("cuMemDiscardBatchAsync");
	(void)flags;
	return batch("cuMemDiscardBatchAsync", dptrs, sizes, count, NULL, NULL, 0, 1, 0, hStream);
}

FK_EXPORT CUresult cuMemDiscardAndPrefetchBatchAsync(CUdeviceptr *dptrs, size_t *sizes, size_t count,
						     CUmemLocation *prefetchLocs, size_t *prefetchLocIdxs,
						     size_t numPrefetchLocs, unsigned long long flags, CUstream hStream)
{
	FK_ENTER("cuMemDiscardAndPrefetchBatchAsync");
	(void)flags;
	return batch("cuMemDiscardAndPrefetchBatchAsync", dptrs, sizes, count, prefetchLocs, prefetchLocIdxs,
		     numPrefetchLocs, 1, 1, hStream);
}

/* -------------------------------------------------------------- advice */

static CUresult advise(const char *nm, CUdeviceptr p, size_t n, CUmem_advise adv, int dev)
{
	FK_NEED_INIT(nm);
	if (dev != CU_DEVICE_CPU && !fk_valid_device(dev) &&
	    adv != CU_MEM_ADVISE_SET_READ_MOSTLY && adv != CU_MEM_ADVISE_UNSET_READ_MOSTLY &&
	    adv != CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION)
		return fk_log(nm, CUDA_ERROR_INVALID_DEVICE, "dev=%d", dev);
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	CUresult r = CUDA_SUCCESS;
	if (!a || a->kind != FA_MANAGED || n == 0 || n > a->size - (p - a->base)) {
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		uint32_t bit = dev == CU_DEVICE_CPU ? 0x80000000u : (1u << (dev & 15));
		switch (adv) {
		case CU_MEM_ADVISE_SET_READ_MOSTLY: a->read_mostly = 1; break;
		case CU_MEM_ADVISE_UNSET_READ_MOSTLY: a->read_mostly = 0; break;
		case CU_MEM_ADVISE_SET_PREFERRED_LOCATION: a->preferred = dev; break;
		case CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION: a->preferred = CU_DEVICE_INVALID; break;
		case CU_MEM_ADVISE_SET_ACCESSED_BY: a->accessed_by |= bit; break;
		case CU_MEM_ADVISE_UNSET_ACCESSED_BY: a->accessed_by &= ~bit; break;
		default: r = CUDA_ERROR_INVALID_VALUE;
		}
	}
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, r, "ptr=%#llx bytes=%zu advice=%d dev=%d", (unsigned long long)p, n, (int)adv, dev);
}

FK_EXPORT CUresult cuMemAdvise(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUdevice device)
{
	FK_ENTER("cuMemAdvise");
	return advise("cuMemAdvise", devPtr, count, advice, device);
}

FK_EXPORT CUresult cuMemAdvise_v2(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUmemLocation location)
{
	FK_ENTER("cuMemAdvise_v2");
	int dev = CU_DEVICE_INVALID;
	if (!loc_to_dev(&location, &dev) && advice != CU_MEM_ADVISE_SET_READ_MOSTLY &&
	    advice != CU_MEM_ADVISE_UNSET_READ_MOSTLY && advice != CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION)
		return fk_log("cuMemAdvise_v2", CUDA_ERROR_INVALID_VALUE, "loc=%d:%d", (int)location.type, location.id);
	return advise("cuMemAdvise_v2", devPtr, count, advice, dev);
}

/* ---------------------------------------------------- range attributes */

static CUresult range_attr(void *data, size_t size, CUmem_range_attribute attr, CUdeviceptr p, size_t n)
{
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(p);
	if (!data || !a || a->kind != FA_MANAGED || n == 0 || n > a->size - (p - a->base)) {
		pthread_mutex_unlock(&G.mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	struct falloc c = *a;
	pthread_mutex_unlock(&G.mu);
	int *iv = data;
	switch (attr) {
	case CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY:
		if (size < 4)
			return CUDA_ERROR_INVALID_VALUE;
		*iv = c.read_mostly;
		return CUDA_SUCCESS;
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION:
		if (size < 4)
			return CUDA_ERROR_INVALID_VALUE;
		*iv = c.preferred;
		return CUDA_SUCCESS;
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION:
		if (size < 4)
			return CUDA_ERROR_INVALID_VALUE;
		*iv = c.last_prefetch;
		return CUDA_SUCCESS;
	case CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY: {
		if (size < 4 || size % 4)
			return CUDA_ERROR_INVALID_VALUE;
		size_t k = 0, max = size / 4;
		if (c.accessed_by & 0x80000000u)
			iv[k++] = CU_DEVICE_CPU;
		for (int d = 0; d < 16 && k < max; d++)
			if (c.accessed_by & (1u << d))
				iv[k++] = d;
		for (; k < max; k++)
			iv[k] = CU_DEVICE_INVALID;
		return CUDA_SUCCESS;
	}
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE:
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE: {
		if (size < 4)
			return CUDA_ERROR_INVALID_VALUE;
		int v = attr == CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE ? c.preferred : c.last_prefetch;
		*iv = v == CU_DEVICE_INVALID ? CU_MEM_LOCATION_TYPE_INVALID
		      : v == CU_DEVICE_CPU   ? CU_MEM_LOCATION_TYPE_HOST
					     : CU_MEM_LOCATION_TYPE_DEVICE;
		return CUDA_SUCCESS;
	}
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID:
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID: {
		if (size < 4)
			return CUDA_ERROR_INVALID_VALUE;
		int v = attr == CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID ? c.preferred : c.last_prefetch;
		*iv = v >= 0 ? v : 0;
		return CUDA_SUCCESS;
	}
	default:
		return CUDA_ERROR_INVALID_VALUE;
	}
}

FK_EXPORT CUresult cuMemRangeGetAttribute(void *data, size_t dataSize, CUmem_range_attribute attribute,
					  CUdeviceptr devPtr, size_t count)
{
	FK_ENTER("cuMemRangeGetAttribute");
	FK_NEED_INIT("cuMemRangeGetAttribute");
	CUresult r = range_attr(data, dataSize, attribute, devPtr, count);
	return fk_log("cuMemRangeGetAttribute", r, "attr=%d ptr=%#llx", (int)attribute, (unsigned long long)devPtr);
}

FK_EXPORT CUresult cuMemRangeGetAttributes(void **data, size_t *dataSizes, CUmem_range_attribute *attributes,
					   size_t numAttributes, CUdeviceptr devPtr, size_t count)
{
	FK_ENTER("cuMemRangeGetAttributes");
	FK_NEED_INIT("cuMemRangeGetAttributes");
	if (!data || !dataSizes || !attributes || !numAttributes)
		return fk_log("cuMemRangeGetAttributes", CUDA_ERROR_INVALID_VALUE, NULL);
	for (size_t i = 0; i < numAttributes; i++) {
		CUresult r = range_attr(data[i], dataSizes[i], attributes[i], devPtr, count);
		if (r != CUDA_SUCCESS)
			return fk_log("cuMemRangeGetAttributes", r, "attr=%d", (int)attributes[i]);
	}
	return fk_log("cuMemRangeGetAttributes", CUDA_SUCCESS, "n=%zu ptr=%#llx", numAttributes,
		      (unsigned long long)devPtr);
}

/* -------------------------------------------------- pointer attributes */

/* Fill one attribute. known: whether ptr is in a tracked range. */
static CUresult ptr_attr(void *data, CUpointer_attribute attr, CUdeviceptr ptr, const struct falloc *a)
{
	if (!data)
		return CUDA_ERROR_INVALID_VALUE;
	int dev_mem = a && (a->kind == FA_DEVICE || a->kind == FA_MANAGED || a->kind == FA_VMM);
	switch (attr) {
	case CU_POINTER_ATTRIBUTE_CONTEXT:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(CUcontext *)data = (CUcontext)a->ctx;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(unsigned *)data = dev_mem ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(CUdeviceptr *)data = ptr;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_HOST_POINTER:
		if (!a || a->kind == FA_DEVICE || a->kind == FA_VMM)
			return CUDA_ERROR_INVALID_VALUE;
		*(void **)data = (void *)(uintptr_t)ptr;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
		*(int *)data = 0;
		return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	case CU_POINTER_ATTRIBUTE_BUFFER_ID:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(unsigned long long *)data = a->id;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_MANAGED:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(int *)data = a->kind == FA_MANAGED;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(int *)data = a->ctx ? a->ctx->dev : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(int *)data = a->kind == FA_DEVICE && !a->pool;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
	case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(CUdeviceptr *)data = a->base;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
	case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(size_t *)data = a->size;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPED:
		*(int *)data = a != NULL;
		return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(unsigned long long *)data = 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(int *)data = 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(unsigned *)data = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(CUmemoryPool *)data = (CUmemoryPool)a->pool;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
		if (!a)
			return CUDA_ERROR_INVALID_VALUE;
		*(unsigned long long *)data = a->id;
		return CUDA_SUCCESS;
	default:
		return CUDA_ERROR_INVALID_VALUE;
	}
}

FK_EXPORT CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
	FK_ENTER("cuPointerGetAttribute");
	FK_NEED_INIT("cuPointerGetAttribute");
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(ptr);
	struct falloc c;
	if (a)
		c = *a;
	pthread_mutex_unlock(&G.mu);
	CUresult r = ptr_attr(data, attribute, ptr, a ? &c : NULL);
	return fk_log("cuPointerGetAttribute", r, "attr=%d ptr=%#llx", (int)attribute, (unsigned long long)ptr);
}

FK_EXPORT CUresult cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes, void **data,
					  CUdeviceptr ptr)
{
	FK_ENTER("cuPointerGetAttributes");
	FK_NEED_INIT("cuPointerGetAttributes");
	if (!numAttributes || !attributes || !data)
		return fk_log("cuPointerGetAttributes", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(ptr);
	struct falloc c;
	if (a)
		c = *a;
	pthread_mutex_unlock(&G.mu);
	for (unsigned i = 0; i < numAttributes; i++) {
		if (!data[i])
			continue;
		if (ptr_attr(data[i], attributes[i], ptr, a ? &c : NULL) != CUDA_SUCCESS) {
			/* unlike the single query, unknown pointers get zeros */
			switch (attributes[i]) {
			case CU_POINTER_ATTRIBUTE_CONTEXT:
			case CU_POINTER_ATTRIBUTE_HOST_POINTER:
			case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
				*(void **)data[i] = NULL;
				break;
			case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
			case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
			case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
			case CU_POINTER_ATTRIBUTE_BUFFER_ID:
			case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
			case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
			case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
			case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
				*(unsigned long long *)data[i] = 0;
				break;
			default:
				*(int *)data[i] = 0;
			}
		}
	}
	return fk_log("cuPointerGetAttributes", CUDA_SUCCESS, "n=%u ptr=%#llx known=%d", numAttributes,
		      (unsigned long long)ptr, a != NULL);
}

FK_EXPORT CUresult cuPointerSetAttribute(const void *value, CUpointer_attribute attribute, CUdeviceptr ptr)
{
	FK_ENTER("cuPointerSetAttribute");
	FK_NEED_INIT("cuPointerSetAttribute");
	if (!value || attribute != CU_POINTER_ATTRIBUTE_SYNC_MEMOPS || !fk_find_range(ptr, NULL))
		return fk_log("cuPointerSetAttribute", CUDA_ERROR_INVALID_VALUE, "attr=%d", (int)attribute);
	return fk_log("cuPointerSetAttribute", CUDA_SUCCESS, "attr=%d ptr=%#llx", (int)attribute,
		      (unsigned long long)ptr);
}

/* ------------------------------------------------------------------ IPC */

FK_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
	FK_ENTER("cuIpcGetMemHandle");
	FK_NEED_INIT("cuIpcGetMemHandle");
	pthread_mutex_lock(&G.mu);
	struct falloc *a = tab_find(dptr);
	int ok = pHandle && a && a->kind == FA_DEVICE && !a->pool;
	pthread_mutex_unlock(&G.mu);
	if (!ok) /* managed and pool memory are not IPC-exportable */
		return fk_log("cuIpcGetMemHandle", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)dptr);
	memset(pHandle, 0, sizeof(*pHandle));
	snprintf(pHandle->reserved, sizeof(pHandle->reserved), "fakecuda:%d:%llx", (int)getpid(),
		 (unsigned long long)dptr);
	return fk_log("cuIpcGetMemHandle", CUDA_SUCCESS, "ptr=%#llx", (unsigned long long)dptr);
}

FK_EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
	FK_ENTER("cuIpcOpenMemHandle_v2");
	(void)pdptr, (void)handle, (void)Flags;
	return fk_log("cuIpcOpenMemHandle_v2", CUDA_ERROR_NOT_SUPPORTED, "cross-process mapping not emulated");
}

FK_EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
	FK_ENTER("cuIpcCloseMemHandle");
	return fk_log("cuIpcCloseMemHandle", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)dptr);
}

/* ------------------------------------------------------------ test hook */

FK_EXPORT long long fakecuda_resident_bytes(CUdeviceptr ptr)
{
	struct fk_range r;
	if (!fk_find_range(ptr, &r) || r.kind != FA_MANAGED || !r.has_emu)
		return -1;
	return (long long)emu_resident(r.emu);
}
