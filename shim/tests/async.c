/*
 * Test 7, stream-ordered allocations. cuMemAllocAsync becomes managed
 * memory (a managed pool on CUDA 13 drivers, a synchronous managed
 * allocation on 12.x); with the synchronous fallback, cuMemFreeAsync must not
 * free before the stream's earlier work completes. Allocations from an
 * IPC-exportable pool pass through untouched.
 */
#include "t.h"

int main(void)
{
	int fake = t_fake_init();
	t_ctx();
	int ver = 0;
	CHECK_CU(cuDriverGetVersion(&ver));
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	size_t free0;
	CHECK_CU(cuMemGetInfo_v2(&free0, NULL));

	CUdeviceptr p = 0;
	const size_t n = 1 << 20;
	CHECK_CU(cuMemAllocAsync(&p, n, s));
	CHECK(t_is_managed(p), "cuMemAllocAsync result not managed (driver %d)", ver);
	size_t free1;
	CHECK_CU(cuMemGetInfo_v2(&free1, NULL));
	CHECK(free1 + n == free0, "async allocation not accounted: %zu -> %zu", free0, free1);

	/* Work on the stream, then the free: it must wait for the work. */
	CHECK_CU(cuMemsetD8Async(p, 1, n, s));
	unsigned long frees0 = t_calls("cuMemFree_v2");
	unsigned long pfrees0 = t_calls("cuMemFreeAsync");
	CHECK_CU(cuMemFreeAsync(p, s));
	int fallback = fake && t_calls("cuMemFreeAsync") == pfrees0;
	if (fallback) {
		/* Another shim call reaps ready frees: the stream is not done. */
		size_t tmp;
		CHECK_CU(cuMemGetInfo_v2(&tmp, NULL));
		CHECK(t_calls("cuMemFree_v2") == frees0, "freed before the stream's work completed");
		CHECK_CU(cuStreamSynchronize(s));
		CHECK_CU(cuMemGetInfo_v2(&tmp, NULL));
		CHECK(t_calls("cuMemFree_v2") == frees0 + 1, "deferred free never happened");
	} else {
		CHECK_CU(cuStreamSynchronize(s));
	}
	size_t free2;
	CHECK_CU(cuMemGetInfo_v2(&free2, NULL));
	CHECK(free2 == free0, "free not restored: %zu vs %zu", free2, free0);

	/* A free captured into a graph: with the synchronous stand-in nothing
	 * may be freed (the graph runs later, its work may still use the
	 * memory); with a pool the driver records the free in the graph. */
	CUdeviceptr c = 0;
	CHECK_CU(cuMemAllocAsync(&c, 4096, s));
	CHECK_CU(cuStreamSynchronize(s));
	unsigned long cfrees0 = t_calls("cuMemFree_v2");
	CUgraph g = NULL;
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_CU(cuMemsetD8Async(c, 2, 4096, s));
	/* With the stand-in the shim answers; with a pool the driver does (a
	 * 13.0 driver refuses to free memory allocated outside the capture:
	 * capfree checks that the shim answers exactly as the driver alone). */
	CUresult rf = cuMemFreeAsync(c, s);
	if (fallback)
		CHECK(rf == CUDA_SUCCESS, "captured free of the stand-in returned %d", (int)rf);
	CHECK_CU(cuStreamEndCapture(s, &g));
	size_t tmpc;
	CHECK_CU(cuMemGetInfo_v2(&tmpc, NULL));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK_CU(cuMemGetInfo_v2(&tmpc, NULL));
	if (fallback) {
		CHECK(t_calls("cuMemFree_v2") == cfrees0, "stand-in freed while its graph has not run");
		CHECK(tmpc + 4096 == free0, "kept stand-in not accounted: %zu vs %zu", tmpc, free0);
	}
	if (g != NULL && cuGraphDestroy(g) != CUDA_SUCCESS)
		CHECK(0, "cuGraphDestroy");
	if (!fallback && rf != CUDA_SUCCESS) {
		/* refused: the allocation is still the program's to free */
		CHECK_CU(cuMemFreeAsync(c, s));
		CHECK_CU(cuStreamSynchronize(s));
		CHECK_CU(cuMemGetInfo_v2(&tmpc, NULL));
	}
	free0 = tmpc;

	/* Per-thread variant with the NULL stream. */
	CHECK_CU(cuMemAllocAsync_ptsz(&p, 4096, NULL));
	CHECK(t_is_managed(p), "ptsz async allocation not managed");
	CHECK_CU(cuMemFreeAsync_ptsz(p, NULL));
	CHECK_CU(cuStreamSynchronize_ptsz(CU_STREAM_PER_THREAD));

	/* IPC-exportable pool: device memory, untouched. */
	CUmemPoolProps props;
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.handleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = 0;
	CUmemoryPool pool = NULL;
	CUresult rp = cuMemPoolCreate(&pool, &props);
	if (rp == CUDA_SUCCESS) {
		CUdeviceptr q = 0;
		CHECK_CU(cuMemAllocFromPoolAsync(&q, 8192, pool, s));
		CHECK(!t_is_managed(q), "IPC pool allocation converted");
		CHECK_CU(cuMemFreeAsync(q, s));
		CHECK_CU(cuStreamSynchronize(s));
		CHECK_CU(cuMemPoolDestroy(pool));
	} else {
		printf("async: cuMemPoolCreate unsupported here (%d), IPC pool case skipped\n", (int)rp);
	}
	/* Pools of pinned host memory (HOST, and HOST_NUMA node 0): not GPU
	 * memory, passed through and not accounted. The fake driver has them,
	 * so there the case must run. */
	for (int lt = 0; lt < 2; lt++) {
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = lt == 0 ? CU_MEM_LOCATION_TYPE_HOST : CU_MEM_LOCATION_TYPE_HOST_NUMA;
	props.location.id = 0;
	CUmemoryPool hpool = NULL;
	CUresult rh = cuMemPoolCreate(&hpool, &props);
	if (rh == CUDA_SUCCESS) {
		size_t fh0, fh1;
		CHECK_CU(cuMemGetInfo_v2(&fh0, NULL));
		unsigned long pa0 = t_calls("cuMemAllocFromPoolAsync"), m0 = t_calls("cuMemAllocManaged");
		CUdeviceptr hq = 0;
		CHECK_CU(cuMemAllocFromPoolAsync(&hq, 8192, hpool, s));
		CHECK_CU(cuMemGetInfo_v2(&fh1, NULL));
		CHECK(fh1 == fh0, "host pool allocation counted as GPU memory: %zu -> %zu", fh0, fh1);
		if (fake)
			CHECK(t_calls("cuMemAllocFromPoolAsync") == pa0 + 1 && t_calls("cuMemAllocManaged") == m0,
			      "host pool allocation not passed to the app's pool");
		CHECK_CU(cuMemFreeAsync(hq, s));
		CHECK_CU(cuStreamSynchronize(s));
		CHECK_CU(cuMemPoolDestroy(hpool));
		printf("async: %s pool passed through, not accounted\n", lt == 0 ? "host" : "host-NUMA");
	} else {
		CHECK(!fake, "the fake driver refused a %s pool (%d)", lt == 0 ? "host" : "host-NUMA", (int)rh);
		printf("async: %s-located pools unsupported here (%d), case skipped\n", lt == 0 ? "host" : "host-NUMA",
		       (int)rh);
	}
	}
	printf("async: driver %d, %s path\n", ver, fallback ? "synchronous-managed fallback" : "pool");
	return t_done("async");
}
