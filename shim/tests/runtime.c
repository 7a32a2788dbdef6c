/*
 * Test 2, runtime emulation: what cudart 11, 12 and 13 do. dlopen the
 * driver, dlsym cuGetProcAddress(_v2), then resolve every other entry point
 * through it with the caller's CUDA version and stream flags. Each request
 * must come back as the wrapper of exactly the ABI variant the driver would
 * give that caller, and unwrapped variants as the driver's own.
 */
#include "t.h"

typedef CUresult (*gpa1_fn)(const char *, void **, int, cuuint64_t);
typedef CUresult (*gpa2_fn)(const char *, void **, int, cuuint64_t,
			    CUdriverProcAddressQueryResult *);

static gpa2_fn gpa2;

static void *get(const char *sym, int ver, cuuint64_t flags)
{
	void *p = NULL;
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	CUresult r = gpa2(sym, &p, ver, flags, &st);
	CHECK(r == CUDA_SUCCESS && st == CU_GET_PROC_ADDRESS_SUCCESS,
	      "cuGetProcAddress_v2(%s, %d, %llu) = %d status %d", sym, ver,
	      (unsigned long long)flags, (int)r, (int)st);
	return p;
}

/* Wrappers are checked by name. A real driver returns internal pointers
 * for what it keeps, so there only "not the shim's" is checkable. */
static int real_driver;
#define EXPECT(sym, ver, flags, lib, want)                                             \
	do {                                                                           \
		void *p_ = get(sym, ver, flags);                                       \
		const char *s_;                                                        \
		const char *f_ = t_where(p_, &s_);                                     \
		int ok_ = strcmp(lib, "libcuda") == 0 && real_driver ? !t_in_shim(p_)   \
								      : t_is(p_, lib, want); \
		CHECK(ok_, "%s@%d flags %d -> %s in %s, want %s in %s", sym, ver,      \
		      (int)(flags), s_, f_, want, lib);                                \
	} while (0)

int main(void)
{
	int fake = t_fake_init();
	real_driver = !fake;
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	CHECK(h != NULL, "dlopen: %s", dlerror());
	if (!h)
		return t_done("runtime");
	/* cudart 12/13: dlsym the resolver by name, through our dlsym. */
	gpa2 = (gpa2_fn)dlsym(h, "cuGetProcAddress_v2");
	CHECK(t_is((void *)gpa2, "libsluice", "cuGetProcAddress_v2"), "dlsym gave %s",
	      t_where((void *)gpa2, NULL));
	gpa1_fn gpa1 = (gpa1_fn)dlsym(h, "cuGetProcAddress");
	CHECK(t_is((void *)gpa1, "libsluice", "cuGetProcAddress"), "cudart 11 resolver not ours");

	/* Requests for the resolver itself return our wrapper of that ABI. */
	EXPECT("cuGetProcAddress", 12000, 0, "libsluice", "cuGetProcAddress_v2");
	EXPECT("cuGetProcAddress", 13000, 0, "libsluice", "cuGetProcAddress_v2");
	EXPECT("cuGetProcAddress", 11030, 0, "libsluice", "cuGetProcAddress");

	/* cuMemAlloc: the 64-bit _v2 ABI since 3.2; older callers get v1. */
	EXPECT("cuMemAlloc", 12000, 0, "libsluice", "cuMemAlloc_v2");
	EXPECT("cuMemAlloc", 3020, 0, "libsluice", "cuMemAlloc_v2");
	if (fake)
		EXPECT("cuMemAlloc", 3000, 0, "libcuda", "cuMemAlloc");

	/* cuMemAdvise / cuMemPrefetchAsync: v1 (CUdevice) before 12.2, _v2
	 * (CUmemLocation) from 12.2; the only one CUDA 13 headers name. */
	EXPECT("cuMemAdvise", 11000, 0, "libcuda", "cuMemAdvise");
	EXPECT("cuMemAdvise", 12020, 0, "libcuda", "cuMemAdvise_v2");
	EXPECT("cuMemPrefetchAsync", 11000, 0, "libsluice", "cuMemPrefetchAsync");
	EXPECT("cuMemPrefetchAsync", 12080, 0, "libsluice", "cuMemPrefetchAsync_v2");
	EXPECT("cuMemPrefetchAsync", 13000, 2, "libsluice", "cuMemPrefetchAsync_v2_ptsz");
	EXPECT("cuMemPrefetchAsync", 11080, 2, "libsluice", "cuMemPrefetchAsync_ptsz");

	/* Launch: legacy vs per-thread default stream. */
	EXPECT("cuLaunchKernel", 12000, 0, "libsluice", "cuLaunchKernel");
	EXPECT("cuLaunchKernel", 12000, 1, "libsluice", "cuLaunchKernel");
	EXPECT("cuLaunchKernel", 12000, 2, "libsluice", "cuLaunchKernel_ptsz");
	EXPECT("cuLaunchKernelEx", 12000, 2, "libsluice", "cuLaunchKernelEx_ptsz");
	EXPECT("cuGraphLaunch", 12000, 2, "libsluice", "cuGraphLaunch_ptsz");
	EXPECT("cuMemcpyHtoD", 12000, 2, "libsluice", "cuMemcpyHtoD_v2_ptds");
	EXPECT("cuMemcpyHtoD", 12000, 1, "libsluice", "cuMemcpyHtoD_v2");
	EXPECT("cuMemAllocAsync", 12000, 2, "libsluice", "cuMemAllocAsync_ptsz");
	EXPECT("cuMemFree", 12000, 0, "libsluice", "cuMemFree_v2");
	EXPECT("cuMemGetInfo", 12000, 0, "libsluice", "cuMemGetInfo_v2");
	EXPECT("cuInit", 12000, 0, "libsluice", "cuInit");
	/* Names we do not wrap are the driver's own. */
	EXPECT("cuCtxSynchronize", 12000, 0, "libcuda", "cuCtxSynchronize");

	/* The v1 resolver (cudart 11.3..11.8) is wrapped the same way. */
	void *p = NULL;
	CHECK_CU(gpa1("cuMemAlloc", &p, 11040, 0));
	CHECK(t_is(p, "libsluice", "cuMemAlloc_v2"), "v1 resolver: cuMemAlloc -> %s",
	      t_where(p, NULL));

	/* Calls through resolved pointers behave like the direct ones. */
	CUresult (*init)(unsigned) = get("cuInit", 12000, 0);
	CHECK_CU(init(0));
	t_ctx();
	CUresult (*alloc)(CUdeviceptr *, size_t) = get("cuMemAlloc", 12000, 0);
	CUresult (*freep)(CUdeviceptr) = get("cuMemFree", 12000, 0);
	CUdeviceptr d = 0;
	unsigned long m0 = t_calls("cuMemAllocManaged");
	CHECK_CU(alloc(&d, 8192));
	CHECK(t_is_managed(d), "resolved cuMemAlloc did not convert");
	if (fake)
		CHECK(t_calls("cuMemAllocManaged") == m0 + 1, "no managed allocation seen");
	CHECK_CU(freep(d));

	/* Batched copies: the 12.8 ABI (failure index) and the 13.0 _v2 ABI,
	 * each with its per-thread variant, resolve to their own wrappers, and
	 * a copy through the resolved pointer moves the data. */
	int dv = 0;
	CHECK_CU(cuDriverGetVersion(&dv));
	if (dv >= 12080) {
		EXPECT("cuMemcpyBatchAsync", 12080, 0, "libsluice", "cuMemcpyBatchAsync");
		EXPECT("cuMemcpyBatchAsync", 12090, 2, "libsluice", "cuMemcpyBatchAsync_ptsz");
		EXPECT("cuMemcpy3DBatchAsync", 12080, 0, "libsluice", "cuMemcpy3DBatchAsync");
		EXPECT("cuMemcpy3DBatchAsync", 12080, 2, "libsluice", "cuMemcpy3DBatchAsync_ptsz");
	}
	if (dv >= 13000) {
		EXPECT("cuMemcpyBatchAsync", 13000, 0, "libsluice", "cuMemcpyBatchAsync_v2");
		EXPECT("cuMemcpyBatchAsync", 13000, 2, "libsluice", "cuMemcpyBatchAsync_v2_ptsz");
		EXPECT("cuMemcpy3DBatchAsync", 13000, 0, "libsluice", "cuMemcpy3DBatchAsync_v2");
		EXPECT("cuMemcpy3DBatchAsync", 13000, 2, "libsluice", "cuMemcpy3DBatchAsync_v2_ptsz");
		/* A request newer than the driver: a 13.0 driver refuses one for
		 * 13.2, so ask only where the driver is that new. */
		if (dv >= 13020)
			EXPECT("cuMemcpy3DBatchAsync", 13020, 2, "libsluice", "cuMemcpy3DBatchAsync_v2_ptsz");
		typedef CUresult (*batch2_fn)(CUdeviceptr *, CUdeviceptr *, size_t *, size_t,
					      CUmemcpyAttributes *, size_t *, size_t, CUstream);
		batch2_fn batch = (batch2_fn)get("cuMemcpyBatchAsync", 13000, 0);
		CUdeviceptr a = 0, b = 0;
		CHECK_CU(alloc(&a, 8192));
		CHECK_CU(alloc(&b, 8192));
		CUstream bs;
		CHECK_CU(cuStreamCreate(&bs, CU_STREAM_NON_BLOCKING));
		memset((void *)(uintptr_t)a, 0x11, 8192);
		memset((void *)(uintptr_t)b, 0, 8192);
		CUdeviceptr dsts[2] = {b, b + 4096}, srcs[2] = {a, a + 4096};
		size_t sizes[2] = {4096, 100};
		/* CUmemcpyAttributes (opaque here): srcAccessOrder STREAM
		 * first, the rest zero; 64 bytes cover its layout. */
		unsigned int attr[16] = {1};
		size_t idx[1] = {0};
		unsigned long c0 = t_calls("cuMemcpyBatchAsync_v2");
		CHECK_CU(batch ? batch(dsts, srcs, sizes, 2, (CUmemcpyAttributes *)attr, idx, 1, bs)
			       : CUDA_ERROR_NOT_FOUND);
		CHECK_CU(cuStreamSynchronize(bs));
		const unsigned char *bb = (const unsigned char *)(uintptr_t)b;
		CHECK(bb[0] == 0x11 && bb[4095] == 0x11 && bb[4096 + 99] == 0x11 && bb[4096 + 100] == 0,
		      "batched copy through the resolved pointer");
		if (fake)
			CHECK(t_calls("cuMemcpyBatchAsync_v2") == c0 + 1, "the _v2 ABI did not reach the driver");
		CHECK_CU(cuStreamDestroy_v2(bs));
		CHECK_CU(freep(a));
		CHECK_CU(freep(b));
	}

	/* Unknown names are the driver's business; NULL pointers are refused
	 * before the driver sees them (a real driver may not check). */
	void *q = (void *)1;
	CUdriverProcAddressQueryResult st;
	CHECK(gpa2("cuNoSuchFunction", &q, 12000, 0, &st) != CUDA_SUCCESS || q == NULL,
	      "unknown symbol resolved");
	CHECK(gpa2("cuMemAlloc", NULL, 12000, 0, &st) == CUDA_ERROR_INVALID_VALUE, "NULL pfn accepted");
	CHECK(gpa1("cuMemAlloc", NULL, 12000, 0) == CUDA_ERROR_INVALID_VALUE, "NULL pfn accepted (v1)");
	CHECK(gpa2(NULL, &q, 12000, 0, &st) == CUDA_ERROR_INVALID_VALUE, "NULL symbol accepted");
	return t_done("runtime");
}
