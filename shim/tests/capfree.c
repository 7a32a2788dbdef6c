/*
 * Test 13, transparency of a stream-ordered free inside a graph capture.
 * Allocates with cuMemAllocAsync outside the capture, then captures a memset
 * and cuMemFreeAsync of it, instantiates and launches the graph, and prints
 * every result code on one line. shim/tests/run.sh runs it without the shim
 * (the driver's own answer for device memory) and with it: the lines must be
 * equal, whatever the driver decides, since function code must behave the same
 * with the shim as without.
 */
#include "t.h"

int main(void)
{
	t_fake_init();
	t_ctx();
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CUdeviceptr p = 0;
	CHECK_CU(cuMemAllocAsync(&p, 1 << 16, s));
	CHECK_CU(cuStreamSynchronize(s));
	int r_free = -1, r_end = -1, r_inst = -1, r_launch = -1, r_sync = -1, r_after = -1;
	CUgraph g = NULL;
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_CU(cuMemsetD8Async(p, 3, 1 << 16, s));
	r_free = cuMemFreeAsync(p, s);
	r_end = cuStreamEndCapture(s, &g);
	if (r_end == CUDA_SUCCESS && g != NULL) {
		CUgraphExec ge = NULL;
		r_inst = cuGraphInstantiateWithFlags(&ge, g, 0);
		if (r_inst == CUDA_SUCCESS) {
			r_launch = cuGraphLaunch(ge, s);
			r_sync = cuStreamSynchronize(s);
			CHECK_CU(cuGraphExecDestroy(ge));
		}
		CHECK_CU(cuGraphDestroy(g));
	}
	if (r_free != CUDA_SUCCESS || r_end != CUDA_SUCCESS) {
		/* The free did not join a graph: the memory is still ours. */
		r_after = cuMemFreeAsync(p, s);
		CHECK_CU(cuStreamSynchronize(s));
	}
	printf("capfree free=%d end=%d instantiate=%d launch=%d sync=%d free_after=%d\n", r_free, r_end,
	       r_inst, r_launch, r_sync, r_after);
	CHECK_CU(cuStreamDestroy_v2(s));
	return t_done("capfree");
}
