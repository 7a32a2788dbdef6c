/*
 * Test 1, direct link: a program linked with -lcuda. cuMemAlloc_v2 and
 * cuMemAllocPitch_v2 must reach the driver as cuMemAllocManaged, frees
 * untrack, and cuMemGetInfo_v2 / cuDeviceTotalMem_v2 agree.
 */
#include "t.h"

int main(void)
{
	int fake = t_fake_init();
	t_ctx();
	CHECK(t_in_shim((void *)cuMemAlloc_v2), "cuMemAlloc_v2 binds to %s", t_where((void *)cuMemAlloc_v2, NULL));

	size_t free0, total0, tm = 0;
	CHECK_CU(cuMemGetInfo_v2(&free0, &total0));
	CHECK_CU(cuDeviceTotalMem_v2(&tm, 0));
	CHECK(tm == total0, "cuDeviceTotalMem_v2 %zu != cuMemGetInfo total %zu", tm, total0);
	CHECK(free0 <= total0, "free %zu > total %zu", free0, total0);
	/* run.sh sets the device's capacity and SLUICE_RESERVE_MB, and says
	 * what the view's total must be (physical - reserve, the reserve at
	 * most a quarter of the device). */
	const char *want = getenv("SLUICE_TEST_EXPECT_TOTAL");
	if (want != NULL && fake) {
		size_t w = (size_t)strtoull(want, NULL, 10);
		CHECK(total0 == w && tm == w, "total %zu / %zu with the reserve, want %zu", total0, tm, w);
	}
	/* NULL out-pointers are skipped, never dereferenced. */
	size_t only = 0;
	CHECK_CU(cuMemGetInfo_v2(NULL, &only));
	CHECK(only == total0, "total alone %zu", only);
	CHECK_CU(cuMemGetInfo_v2(NULL, NULL));
	CHECK(cuDeviceTotalMem_v2(NULL, 0) != CUDA_SUCCESS, "cuDeviceTotalMem_v2(NULL) succeeded");

	unsigned long managed0 = t_calls("cuMemAllocManaged"), alloc0 = t_calls("cuMemAlloc_v2");
	CUdeviceptr p = 0;
	const size_t n = 1 << 20;
	CHECK_CU(cuMemAlloc_v2(&p, n));
	CHECK(p != 0, "null pointer");
	CHECK(t_is_managed(p), "cuMemAlloc_v2 result is not managed memory");
	if (fake) {
		CHECK(t_calls("cuMemAllocManaged") == managed0 + 1, "driver saw %lu managed allocations",
		      t_calls("cuMemAllocManaged") - managed0);
		CHECK(t_calls("cuMemAlloc_v2") == alloc0, "driver saw cuMemAlloc_v2");
	}
	size_t free1, total1;
	CHECK_CU(cuMemGetInfo_v2(&free1, &total1));
	CHECK(total1 == total0, "total changed %zu -> %zu", total0, total1);
	CHECK(free1 + n == free0, "free %zu -> %zu after %zu bytes", free0, free1, n);

	/* The memory works: write, read back. */
	unsigned char in[256], out[256];
	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)i;
	CHECK_CU(cuMemcpyHtoD_v2(p, in, sizeof(in)));
	CHECK_CU(cuMemcpyDtoH_v2(out, p, sizeof(out)));
	CHECK(memcmp(in, out, sizeof(in)) == 0, "data mismatch");
	CHECK_CU(cuMemsetD8_v2(p, 0x5a, 16));
	CHECK_CU(cuMemcpyDtoH_v2(out, p, 16));
	CHECK(out[0] == 0x5a && out[15] == 0x5a, "memset not applied");

	/* Pitch: managed, pitch aligned and at least the width. */
	CUdeviceptr q = 0;
	size_t pitch = 0;
	CHECK_CU(cuMemAllocPitch_v2(&q, &pitch, 1000, 10, 4));
	CHECK(pitch >= 1000 && pitch % 128 == 0, "pitch %zu", pitch);
	CHECK(t_is_managed(q), "pitched allocation not managed");
	size_t free2;
	CHECK_CU(cuMemGetInfo_v2(&free2, NULL));
	CHECK(free2 + n + pitch * 10 == free0, "free after pitch %zu", free2);

	/* cuMemAllocManaged by the app: tracked too, passes through. */
	CUdeviceptr m = 0;
	CHECK_CU(cuMemAllocManaged(&m, 4096, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuMemFree_v2(m));

	/* A launch (gated) goes through. */
	CUfunction f = t_noop();
	void *args[] = {&p};
	CHECK_CU(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
	CHECK_CU(cuCtxSynchronize());

	/* A second context, destroyed with allocations in it: the driver
	 * (the fake too) frees the dead context's memory, and the shim's sweep
	 * drops exactly those allocations, keeping every one of the primary
	 * context (p and q are still counted below). */
	CUcontext primary = NULL, c2 = NULL;
	CHECK_CU(cuCtxGetCurrent(&primary));
	size_t fs0;
	CHECK_CU(cuMemGetInfo_v2(&fs0, NULL));
	if (cuCtxCreate_v2(&c2, 0, 0) == CUDA_SUCCESS) {
		CUdeviceptr x = 0, y = 0;
		CHECK_CU(cuMemAlloc_v2(&x, 1 << 16));
		CHECK_CU(cuMemAllocManaged(&y, 1 << 17, CU_MEM_ATTACH_GLOBAL));
		size_t fs2;
		CHECK_CU(cuMemGetInfo_v2(&fs2, NULL));
		CHECK(fs2 + (3 << 16) == fs0, "second context's memory not counted: %zu -> %zu", fs0, fs2);
		CHECK_CU(cuCtxDestroy_v2(c2));
		CHECK_CU(cuCtxSetCurrent(primary));
		size_t fs1;
		CHECK_CU(cuMemGetInfo_v2(&fs1, NULL));
		CHECK(fs1 == fs0, "allocations of a destroyed context still counted: %zu -> %zu", fs0, fs1);
		CHECK(cuMemFree_v2(x) != CUDA_SUCCESS, "memory of a destroyed context freed again");
	}

	CHECK_CU(cuMemFree_v2(p));
	CHECK_CU(cuMemFree_v2(q));
	size_t free3;
	CHECK_CU(cuMemGetInfo_v2(&free3, NULL));
	CHECK(free3 == free0, "free not restored: %zu vs %zu", free3, free0);

	/* New ranges of 2 MiB or more are placed on the GPU by one prefetch
	 * (first touch without page faults); smaller ones are left to fault
	 * in; SLUICE_POPULATE=0 leaves every range unplaced. */
	{
		const char *pop = getenv("SLUICE_POPULATE");
		int populate = !(pop != NULL && strcmp(pop, "0") == 0);
		CUdeviceptr big = 0, small = 0;
		CHECK_CU(cuMemAlloc_v2(&big, 4 << 20));
		CHECK_CU(cuMemAlloc_v2(&small, 64 << 10));
		CHECK_CU(cuCtxSynchronize());
		int lb = -9, ls = -9;
		CHECK_CU(cuMemRangeGetAttribute(&lb, sizeof(lb), CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION,
						big, 4 << 20));
		CHECK_CU(cuMemRangeGetAttribute(&ls, sizeof(ls), CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION,
						small, 64 << 10));
		CHECK(lb == (populate ? 0 : CU_DEVICE_INVALID), "4 MiB range last prefetched to %d (populate %d)",
		      lb, populate);
		CHECK(ls == CU_DEVICE_INVALID, "64 KiB range last prefetched to %d", ls);
		if (fake && populate)
			CHECK(FAKE.resident(big) == 4 << 20, "4 MiB range has %lld bytes on the GPU",
			      FAKE.resident(big));
		CHECK_CU(cuMemFree_v2(big));
		CHECK_CU(cuMemFree_v2(small));
	}

	/* A primary-context reset (cudaDeviceReset) frees everything in it:
	 * the shim's sweep drops it all. */
	CUdeviceptr r1 = 0, r2 = 0;
	CHECK_CU(cuMemAlloc_v2(&r1, 1 << 20));
	CHECK_CU(cuMemAllocManaged(&r2, 1 << 18, CU_MEM_ATTACH_GLOBAL));
	size_t fr;
	CHECK_CU(cuMemGetInfo_v2(&fr, NULL));
	CHECK(fr + (1 << 20) + (1 << 18) == free0, "before reset: %zu vs %zu", fr, free0);
	CHECK_CU(cuDevicePrimaryCtxReset_v2(0));
	t_ctx(); /* a fresh primary context, as cudart would make */
	CHECK_CU(cuMemGetInfo_v2(&fr, NULL));
	CHECK(fr == free0, "memory of a reset primary context still counted: %zu vs %zu", fr, free0);
	/* 0 and unknown pointers pass through to the driver. */
	CUresult r0 = cuMemFree_v2(0);
	CHECK(r0 == CUDA_SUCCESS || r0 == CUDA_ERROR_INVALID_VALUE, "cuMemFree(0) = %d", (int)r0);
	CHECK(cuMemFree_v2(0xdead0000ull) != CUDA_SUCCESS, "unknown pointer freed");
	return t_done("direct");
}
