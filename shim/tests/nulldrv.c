/*
 * shim/tests/nulldrv.c - TEST-ONLY NULL DRIVER for the overhead benchmark.
 * Not a CUDA driver and not the emulator (that is shim/fakecuda): every entry
 * point returns at once, so bench.c measures only what the shim adds.
 * nulldrv_raw(name) hands out its own functions for the unshimmed baseline.
 */
#include <stdint.h>
#include <string.h>

#include "cuda_min.h"

static CUdeviceptr next_ptr = 0x100000000ull;
static int ctx_token;

CUresult cuInit(unsigned int f) { (void)f; return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int *v) { if (v) *v = 12080; return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext *c) { if (c) *c = (CUcontext)&ctx_token; return CUDA_SUCCESS; }
CUresult cuCtxGetDevice(CUdevice *d) { if (d) *d = 0; return CUDA_SUCCESS; }
CUresult cuGetProcAddress_internal_v1(const char *s, void **p, int v, cuuint64_t f);
CUresult cuGetProcAddress(const char *s, void **p, int v, cuuint64_t f)
{ return cuGetProcAddress_internal_v1(s, p, v, f); }
CUresult cuGetProcAddress_v2(const char *s, void **p, int v, cuuint64_t f,
			     CUdriverProcAddressQueryResult *st)
{
	CUresult r = cuGetProcAddress_internal_v1(s, p, v, f);
	if (st) *st = r == CUDA_SUCCESS ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return r;
}
CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }
CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
			unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
			CUstream s, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem;
	(void)s; (void)params; (void)extra;
	return CUDA_SUCCESS;
}
CUresult cuMemAllocManaged(CUdeviceptr *dp, size_t n, unsigned int flags)
{
	(void)flags;
	if (!dp || !n) return CUDA_ERROR_INVALID_VALUE;
	*dp = __atomic_fetch_add(&next_ptr, (n + 255) & ~(size_t)255, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}
CUresult cuMemAlloc_v2(CUdeviceptr *dp, size_t n) { return cuMemAllocManaged(dp, n, 1); }
CUresult cuMemFree_v2(CUdeviceptr p) { (void)p; return CUDA_SUCCESS; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t)
{ if (f) *f = 8ull << 30; if (t) *t = 16ull << 30; return CUDA_SUCCESS; }

/* A primary-context reset frees everything allocated before it; the
 * pointer query knows only what is still allocated (by address range). */
static CUdeviceptr reset_below;
CUresult cuDevicePrimaryCtxReset_v2(CUdevice d)
{
	(void)d;
	__atomic_store_n(&reset_below, __atomic_load_n(&next_ptr, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}
CUresult cuCtxDestroy_v2(CUcontext c) { (void)c; return CUDA_SUCCESS; }
CUresult cuPointerGetAttribute(void *data, CUpointer_attribute a, CUdeviceptr p)
{
	(void)a;
	if (p < 0x100000000ull || p >= __atomic_load_n(&next_ptr, __ATOMIC_RELAXED) ||
	    p < __atomic_load_n(&reset_below, __ATOMIC_RELAXED))
		return CUDA_ERROR_INVALID_VALUE;
	if (data)
		*(void **)data = &ctx_token;
	return CUDA_SUCCESS;
}

/* Argument capture for the generated wrappers' forwarding check. */
unsigned long long nulldrv_args[8];
CUresult cuMemsetD2D16Async(CUdeviceptr d, size_t pitch, unsigned short v, size_t w, size_t h,
			    CUstream st)
{
	nulldrv_args[0] = d; nulldrv_args[1] = pitch; nulldrv_args[2] = v;
	nulldrv_args[3] = w; nulldrv_args[4] = h; nulldrv_args[5] = (uintptr_t)st;
	return CUDA_SUCCESS;
}
CUresult cuMemcpyAtoA_v2_ptds(CUarray d, size_t doff, CUarray s, size_t soff, size_t n)
{
	nulldrv_args[0] = (uintptr_t)d; nulldrv_args[1] = doff; nulldrv_args[2] = (uintptr_t)s;
	nulldrv_args[3] = soff; nulldrv_args[4] = n; nulldrv_args[5] = 0;
	return CUDA_SUCCESS;
}

CUresult cuMemcpyBatchAsync_v2(CUdeviceptr *d, CUdeviceptr *s, size_t *n, size_t count,
			       CUmemcpyAttributes *a, size_t *ai, size_t na, CUstream st)
{
	nulldrv_args[0] = (uintptr_t)d; nulldrv_args[1] = (uintptr_t)s; nulldrv_args[2] = (uintptr_t)n;
	nulldrv_args[3] = count; nulldrv_args[4] = (uintptr_t)a; nulldrv_args[5] = (uintptr_t)ai;
	nulldrv_args[6] = na; nulldrv_args[7] = (uintptr_t)st;
	return CUDA_SUCCESS;
}
CUresult cuMemcpy3DBatchAsync(size_t nops, CUDA_MEMCPY3D_BATCH_OP *ops, size_t *fail,
			      unsigned long long flags, CUstream st)
{
	nulldrv_args[0] = nops; nulldrv_args[1] = (uintptr_t)ops; nulldrv_args[2] = (uintptr_t)fail;
	nulldrv_args[3] = flags; nulldrv_args[4] = (uintptr_t)st; nulldrv_args[5] = 0;
	return CUDA_SUCCESS;
}

void *nulldrv_raw(const char *name)
{
	if (strcmp(name, "cuLaunchKernel") == 0) return (void *)cuLaunchKernel;
	if (strcmp(name, "cuMemAllocManaged") == 0) return (void *)cuMemAllocManaged;
	if (strcmp(name, "cuMemAlloc_v2") == 0) return (void *)cuMemAlloc_v2;
	if (strcmp(name, "cuMemFree_v2") == 0) return (void *)cuMemFree_v2;
	return NULL;
}

/*
 * A real driver's cuGetProcAddress returns internal pointers, not its
 * exports, whatever is preloaded. These are such internal functions (static:
 * no exported name), and cuLaunchKernel_ptsz is deliberately not exported at
 * all, so test program `internal` sees what a real driver does.
 */
static unsigned long n_launch, n_launch_ptsz, n_alloc_v1, n_sync;

static CUresult i_launch(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
			 unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
			 CUstream s, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem;
	(void)s; (void)params; (void)extra;
	__atomic_fetch_add(&n_launch, 1, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

static CUresult i_launch_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
			      unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
			      CUstream s, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem;
	(void)s; (void)params; (void)extra;
	__atomic_fetch_add(&n_launch_ptsz, 1, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

static CUresult i_alloc_v2(CUdeviceptr *dp, size_t n) { return cuMemAllocManaged(dp, n, 1); }
static CUresult i_alloc_v1(CUdeviceptr_v1 *dp, unsigned int n)
{
	(void)n;
	__atomic_fetch_add(&n_alloc_v1, 1, __ATOMIC_RELAXED);
	if (dp) *dp = 0x1000;
	return CUDA_SUCCESS;
}
static CUresult i_info_v2(size_t *f, size_t *t) { if (f) *f = 1; if (t) *t = 2; return CUDA_SUCCESS; }
/* A pretend future ABI of cuMemGetInfo (from "CUDA 99.0"): the shim's table
 * does not know it, so it must not wrap it in the _v2 wrapper. */
static CUresult i_info_future(size_t *f, size_t *t, int extra)
{ (void)extra; if (f) *f = 3; if (t) *t = 4; return CUDA_SUCCESS; }
static CUresult i_sync(void) { __atomic_fetch_add(&n_sync, 1, __ATOMIC_RELAXED); return CUDA_SUCCESS; }
static CUresult i_gpa_v1(const char *s, void **p, int v, cuuint64_t f);
static CUresult i_gpa_v2(const char *s, void **p, int v, cuuint64_t f,
			 CUdriverProcAddressQueryResult *st);

static void *lookup(const char *s, int v, cuuint64_t f)
{
	int pt = (f & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) &&
		 !(f & CU_GET_PROC_ADDRESS_LEGACY_STREAM);
	if (!s) return NULL;
	if (!strcmp(s, "cuGetProcAddress")) return v >= 12000 ? (void *)i_gpa_v2 : (void *)i_gpa_v1;
	if (!strcmp(s, "cuLaunchKernel")) return pt ? (void *)i_launch_ptsz : (void *)i_launch;
	if (!strcmp(s, "cuMemAlloc")) return v >= 3020 ? (void *)i_alloc_v2 : (void *)i_alloc_v1;
	if (!strcmp(s, "cuCtxSynchronize")) return (void *)i_sync;
	if (!strcmp(s, "cuMemGetInfo")) return v >= 99000 ? (void *)i_info_future : v >= 3020 ? (void *)i_info_v2 : NULL;
	return NULL;
}

static CUresult i_gpa_v1(const char *s, void **p, int v, cuuint64_t f)
{
	if (!p) return CUDA_ERROR_INVALID_VALUE;
	*p = lookup(s, v, f);
	return *p ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

static CUresult i_gpa_v2(const char *s, void **p, int v, cuuint64_t f,
			 CUdriverProcAddressQueryResult *st)
{
	CUresult r = i_gpa_v1(s, p, v, f);
	if (st) *st = r == CUDA_SUCCESS ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return r;
}

CUresult cuGetProcAddress_internal_v1(const char *s, void **p, int v, cuuint64_t f)
{ return i_gpa_v1(s, p, v, f); }

unsigned long nulldrv_calls(const char *what)
{
	if (!strcmp(what, "launch")) return n_launch;
	if (!strcmp(what, "launch_ptsz")) return n_launch_ptsz;
	if (!strcmp(what, "alloc_v1")) return n_alloc_v1;
	if (!strcmp(what, "sync")) return n_sync;
	return 0;
}
