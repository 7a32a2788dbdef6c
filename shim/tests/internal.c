/*
 * Test 2b, real-driver resolution: against the test-only null driver, whose
 * cuGetProcAddress returns internal (unexported) pointers like a real
 * driver's, the shim must still hand out the wrapper of the exact variant
 * (table path), and a wrapper whose variant the driver does not export by
 * name (cuLaunchKernel_ptsz here) must call the pointer the driver gave.
 */
#include "t.h"

typedef CUresult (*gpa2_fn)(const char *, void **, int, cuuint64_t,
			    CUdriverProcAddressQueryResult *);
typedef CUresult (*launch_fn)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
			      unsigned, unsigned, CUstream, void **, void **);

int main(void)
{
	unsigned long (*calls)(const char *) =
		(unsigned long (*)(const char *))dlsym(RTLD_DEFAULT, "nulldrv_calls");
	if (calls == NULL) {
		fprintf(stderr, "internal: needs the null driver (build/shim-tests/null)\n");
		return 2;
	}
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	gpa2_fn gpa = (gpa2_fn)dlsym(h, "cuGetProcAddress_v2");
	CHECK(t_is((void *)gpa, "libsluice", "cuGetProcAddress_v2"), "resolver not ours");
	void *p;
	CUdriverProcAddressQueryResult st;
#define GET(sym, ver, fl) (p = NULL, gpa(sym, &p, ver, fl, &st), p)
	CHECK(t_is(GET("cuLaunchKernel", 12000, 0), "libsluice", "cuLaunchKernel"), "legacy launch");
	CHECK(t_is(GET("cuLaunchKernel", 12000, 2), "libsluice", "cuLaunchKernel_ptsz"), "ptsz launch");
	CHECK(t_is(GET("cuMemAlloc", 12000, 0), "libsluice", "cuMemAlloc_v2"), "cuMemAlloc_v2");
	CHECK(!t_in_shim(GET("cuMemAlloc", 3000, 0)), "v1 cuMemAlloc wrapped");
	CHECK(t_is(GET("cuGetProcAddress", 12000, 0), "libsluice", "cuGetProcAddress_v2"), "resolver v2");
	CHECK(t_is(GET("cuGetProcAddress", 11030, 0), "libsluice", "cuGetProcAddress"), "resolver v1");
	CHECK(!t_in_shim(GET("cuCtxSynchronize", 12000, 0)), "unwrapped name wrapped");
	/* A driver newer than the shim's table: the unknown variant is passed
	 * through, never wrapped in an older variant's wrapper. */
	CHECK(t_is(GET("cuMemGetInfo", 12000, 0), "libsluice", "cuMemGetInfo_v2"), "cuMemGetInfo_v2");
	CHECK(!t_in_shim(GET("cuMemGetInfo", 99000, 0)), "unknown newer variant wrapped");
	CHECK(GET("cuMemGetInfo", 99000, 0) != NULL, "unknown newer variant lost");
	CHECK(GET("cuCtxSynchronize", 12000, 0) != dlsym(h, "cuCtxSynchronize"),
	      "null driver returned its export, not an internal pointer");

	/* Calls reach the driver: the ptsz wrapper calls the internal pointer. */
	cuInit(0);
	launch_fn lp = (launch_fn)GET("cuLaunchKernel", 12000, 2);
	unsigned long before = calls("launch_ptsz");
	CHECK(lp && lp(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL) == CUDA_SUCCESS, "ptsz launch call");
	CHECK(calls("launch_ptsz") == before + 1, "ptsz wrapper did not reach the driver's pointer");
	CUresult (*alloc)(CUdeviceptr *, size_t) = (CUresult(*)(CUdeviceptr *, size_t))GET("cuMemAlloc", 12000, 0);
	CUdeviceptr d = 0;
	size_t f0 = 0, f1 = 0;
	cuMemGetInfo_v2(&f0, NULL);
	CHECK(alloc && alloc(&d, 1 << 20) == CUDA_SUCCESS && d != 0, "alloc through the wrapper");
	cuMemGetInfo_v2(&f1, NULL);
	CHECK(f0 - f1 == 1 << 20, "allocation not tracked");
	/* A context reset frees what was in it: the shim forgets it, and only
	 * it (an allocation made afterwards stays counted). */
	CHECK_CU(cuDevicePrimaryCtxReset_v2(0));
	size_t f2 = 0, f3 = 0;
	cuMemGetInfo_v2(&f2, NULL);
	CHECK(f2 == f0, "allocation freed by the context reset still counted: %zu vs %zu", f2, f0);
	CUdeviceptr d2 = 0;
	CHECK(alloc(&d2, 1 << 20) == CUDA_SUCCESS, "alloc after reset");
	CHECK_CU(cuCtxDestroy_v2(NULL)); /* the null driver frees nothing here */
	cuMemGetInfo_v2(&f3, NULL);
	CHECK(f0 - f3 == 1 << 20, "live allocation dropped by a sweep: %zu vs %zu", f3, f0);
	/* Generated gate wrappers forward every argument unchanged. */
	unsigned long long *args = (unsigned long long *)dlsym(RTLD_DEFAULT, "nulldrv_args");
	CHECK(args != NULL, "nulldrv_args");
	if (args != NULL) {
		CHECK(t_in_shim((void *)cuMemsetD2D16Async), "cuMemsetD2D16Async not the shim's");
		CHECK_CU(cuMemsetD2D16Async(0x1000, 512, 0xbeef, 300, 7, (CUstream)0x77));
		CHECK(args[0] == 0x1000 && args[1] == 512 && args[2] == 0xbeef && args[3] == 300 &&
			      args[4] == 7 && args[5] == 0x77,
		      "cuMemsetD2D16Async arguments changed");
		CHECK_CU(cuMemcpyAtoA_v2_ptds((CUarray)0x10, 3, (CUarray)0x20, 5, 4096));
		CHECK(args[0] == 0x10 && args[1] == 3 && args[2] == 0x20 && args[3] == 5 && args[4] == 4096,
		      "cuMemcpyAtoA_v2_ptds arguments changed");
		/* the batched copies' eight and five arguments */
		CHECK_CU(cuMemcpyBatchAsync_v2((CUdeviceptr *)0x100, (CUdeviceptr *)0x200, (size_t *)0x300, 4,
					       (CUmemcpyAttributes *)0x500, (size_t *)0x600, 7, (CUstream)0x800));
		CHECK(args[0] == 0x100 && args[1] == 0x200 && args[2] == 0x300 && args[3] == 4 &&
			      args[4] == 0x500 && args[5] == 0x600 && args[6] == 7 && args[7] == 0x800,
		      "cuMemcpyBatchAsync_v2 arguments changed");
		CHECK_CU(cuMemcpy3DBatchAsync(9, (CUDA_MEMCPY3D_BATCH_OP *)0x90, (size_t *)0x91, 0, (CUstream)0x93));
		CHECK(args[0] == 9 && args[1] == 0x90 && args[2] == 0x91 && args[3] == 0 && args[4] == 0x93,
		      "cuMemcpy3DBatchAsync arguments changed");
	}
	/* Through the resolver the runtime gets for itself, too. */
	gpa2_fn gpa_again = (gpa2_fn)GET("cuGetProcAddress", 12000, 0);
	p = NULL;
	CHECK(gpa_again && gpa_again("cuLaunchKernel", &p, 12080, 2, &st) == CUDA_SUCCESS &&
		      t_is(p, "libsluice", "cuLaunchKernel_ptsz"),
	      "second-level resolver");
	return t_done("internal");
}
