/*
 * Test 5, graph capture: while a stream captures, the shim issues no
 * synchronization, converts nothing, and the capture's launches are only
 * recorded; the later cuGraphLaunch is a normal (gated) submission.
 */
#include "t.h"

int main(void)
{
	int fake = t_fake_init();
	t_ctx();
	CUfunction f = t_noop();
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CUdeviceptr buf = 0;
	CHECK_CU(cuMemAlloc_v2(&buf, 4096));
	CHECK(t_is_managed(buf), "allocation before capture not converted");

	const char *syncs[] = {"cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize",
			       "cuStreamSynchronize_ptsz"};
	unsigned long before[4];
	for (int i = 0; i < 4; i++)
		before[i] = t_calls(syncs[i]);
	unsigned long managed0 = t_calls("cuMemAllocManaged");
	unsigned long pool0 = t_calls("cuMemAllocFromPoolAsync");

	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	void *args[] = {&buf};
	CHECK_CU(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, args, NULL));
	CUdeviceptr a = 0;
	CUresult ra = cuMemAllocAsync(&a, 1 << 16, s);
	if (ra == CUDA_SUCCESS) {
		CHECK(!t_is_managed(a), "capture allocation converted");
		CHECK_CU(cuMemFreeAsync(a, s));
	}
	/* Relaxed mode allows a synchronous allocation: device memory. */
	CUdeviceptr d = 0;
	CUresult rd = cuMemAlloc_v2(&d, 8192);
	if (rd == CUDA_SUCCESS)
		CHECK(!t_is_managed(d), "allocation during capture converted");
	CUgraph g = NULL;
	CHECK_CU(cuStreamEndCapture(s, &g));
	if (fake) {
		for (int i = 0; i < 4; i++)
			CHECK(t_calls(syncs[i]) == before[i], "%s called during capture", syncs[i]);
		CHECK(t_calls("cuMemAllocManaged") == managed0, "managed allocation during capture");
		CHECK(t_calls("cuMemAllocFromPoolAsync") == pool0, "pool allocation during capture");
	}
	if (rd == CUDA_SUCCESS)
		CHECK_CU(cuMemFree_v2(d));

	/* The CUDA 10.0 entry (no mode argument, global mode) counts as a
	 * capture too: a stream-ordered allocation in it is not converted, and
	 * the count drops again at its end. */
	if (fake) {
		unsigned long m1 = t_calls("cuMemAllocManaged"), p1 = t_calls("cuMemAllocFromPoolAsync");
		CHECK_CU(cuStreamBeginCapture(s));
		CUdeviceptr v = 0;
		CHECK_CU(cuMemAllocAsync(&v, 4096, s));
		CHECK(!t_is_managed(v), "allocation during a v1 capture converted");
		CHECK_CU(cuMemFreeAsync(v, s));
		CHECK(t_calls("cuMemAllocManaged") == m1 && t_calls("cuMemAllocFromPoolAsync") == p1,
		      "managed allocation during a v1 capture");
		CUgraph g1 = NULL;
		CHECK_CU(cuStreamEndCapture(s, &g1));
		if (g1 != NULL)
			CHECK_CU(cuGraphDestroy(g1));
	}

	/* After capture: conversion again, and the graph launches. */
	CUdeviceptr e = 0;
	CHECK_CU(cuMemAlloc_v2(&e, 4096));
	CHECK(t_is_managed(e), "allocation after capture not converted");
	CUgraphExec ge = NULL;
	CHECK_CU(cuGraphInstantiateWithFlags(&ge, g, 0));
	CHECK_CU(cuGraphLaunch(ge, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK_CU(cuMemFree_v2(e));
	CHECK_CU(cuMemFree_v2(buf));
	return t_done("capture");
}
