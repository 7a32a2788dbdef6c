/*
 * Test 1c, memory the shim cannot convert: VMM allocations on a device,
 * CUDA arrays and IPC exports pass through untouched and are accounted as
 * non-evictable (the capacity view moves); VMM on a host location is not
 * device memory and is not accounted; IPC export of a converted pointer is
 * refused by the driver and the shim says why.
 */
#include "t.h"

static size_t free_now(void)
{
	size_t f = 0;
	CHECK_CU(cuMemGetInfo_v2(&f, NULL));
	return f;
}

int main(void)
{
	t_fake_init();
	t_ctx();
	size_t f0 = free_now();

	/* VMM on the device. */
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	size_t gran = 0;
	CHECK_CU(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	if (gran == 0)
		gran = 2 << 20;
	CUmemGenericAllocationHandle h = 0;
	CHECK_CU(cuMemCreate(&h, 2 * gran, &prop, 0));
	CHECK(f0 - free_now() == 2 * gran, "VMM not accounted: %zu -> %zu", f0, free_now());

	/* VMM on the host (NCCL host buffers): not device memory. */
	CUmemAllocationProp hp = prop;
	hp.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
	CUmemGenericAllocationHandle hh = 0;
	CUresult rh = cuMemCreate(&hh, gran, &hp, 0);
	if (rh == CUDA_SUCCESS) {
		CHECK(f0 - free_now() == 2 * gran, "host VMM accounted");
		CHECK_CU(cuMemRelease(hh));
	}
	CHECK_CU(cuMemRelease(h));
	CHECK(free_now() == f0, "VMM release not accounted");

	/* Arrays. */
	CUDA_ARRAY_DESCRIPTOR d = {.Width = 256, .Height = 64, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 4};
	CUarray a = NULL;
	CHECK_CU(cuArrayCreate_v2(&a, &d));
	CHECK(f0 - free_now() == 256 * 64 * 4 * 4, "2D array accounted as %zu", f0 - free_now());
	CUDA_ARRAY3D_DESCRIPTOR d3 = {.Width = 32, .Height = 32, .Depth = 8, .Format = CU_AD_FORMAT_UNSIGNED_INT8, .NumChannels = 1};
	CUarray a3 = NULL;
	CHECK_CU(cuArray3DCreate_v2(&a3, &d3));
	CHECK(f0 - free_now() == 256 * 64 * 4 * 4 + 32 * 32 * 8, "3D array accounted");
	CHECK_CU(cuArrayDestroy(a));
	CHECK_CU(cuArrayDestroy(a3));
	CHECK(free_now() == f0, "array destroy not accounted");

	/* IPC export of a converted (managed) pointer: the driver refuses. */
	CUdeviceptr p = 0;
	CHECK_CU(cuMemAlloc_v2(&p, 1 << 20));
	CUipcMemHandle ipc;
	CHECK(cuIpcGetMemHandle(&ipc, p) != CUDA_SUCCESS, "IPC export of managed memory succeeded");
	CHECK_CU(cuMemFree_v2(p));
	CHECK(free_now() == f0, "free not accounted");
	return t_done("kinds");
}
