/*
 * Test 1b, no conversion: run with SLUICE_UVM=0 (a function that needs CUDA
 * IPC) or on a device without concurrent managed access
 * (FAKECUDA_CONCURRENT_MANAGED=0). Allocations stay device memory, reach the
 * driver as cuMemAlloc_v2 / cuMemAllocAsync, and are still accounted.
 */
#include "t.h"

int main(void)
{
	int fake = t_fake_init();
	t_ctx();
	size_t free0, free1;
	CHECK_CU(cuMemGetInfo_v2(&free0, NULL));
	unsigned long a0 = t_calls("cuMemAlloc_v2"), m0 = t_calls("cuMemAllocManaged");
	CUdeviceptr p = 0, q = 0;
	CHECK_CU(cuMemAlloc_v2(&p, 1 << 20));
	CHECK(!t_is_managed(p), "allocation converted");
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuMemAllocAsync(&q, 1 << 16, s));
	CHECK(!t_is_managed(q), "async allocation converted");
	if (fake) {
		CHECK(t_calls("cuMemAlloc_v2") == a0 + 1, "driver did not see cuMemAlloc_v2");
		CHECK(t_calls("cuMemAllocManaged") == m0, "driver saw a managed allocation");
	}
	CHECK_CU(cuMemGetInfo_v2(&free1, NULL));
	CHECK(free0 - free1 == (1 << 20) + (1 << 16), "not accounted: %zu -> %zu", free0, free1);
	CHECK_CU(cuMemFreeAsync(q, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK_CU(cuMemFree_v2(p));
	CHECK_CU(cuMemGetInfo_v2(&free1, NULL));
	CHECK(free1 == free0, "free not restored");
	return t_done("nouvm");
}
