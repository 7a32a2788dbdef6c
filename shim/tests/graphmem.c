/*
 * Test 5b, graph memory: allocation nodes (explicit, and stream-ordered
 * allocations captured into a graph) pass through unconverted; their memory
 * appears in the capacity view when a graph runs (the driver's graph pool,
 * read with cuDeviceGetGraphMemAttribute), stays there after the graph frees
 * it (the pool keeps it for the next launch) and leaves with
 * cuDeviceGraphMemTrim. The shim never asks the driver on a launch.
 *
 * On the fake driver the figures are exact; a real driver's pool maps in
 * larger chunks, so there the checks are lower bounds.
 */
#include "t.h"

static int fake;

static size_t free_now(void)
{
	size_t f = 0;
	CHECK_CU(cuMemGetInfo_v2(&f, NULL));
	return f;
}

/* The view's free memory dropped by want (exactly on the fake). */
static void dropped(size_t f0, size_t want, const char *what)
{
	size_t f = free_now();
	size_t d = f0 >= f ? f0 - f : 0;
	int ok = fake ? d == want : d >= want;
	CHECK(ok, "%s: view dropped by %zu, want %s%zu", what, d, fake ? "" : ">= ", want);
}
#define DROPPED(f0, want, what) dropped((f0), (size_t)(want), (what))

int main(void)
{
	fake = t_fake_init();
	t_ctx();
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuDeviceGraphMemTrim(0));
	const size_t N = 8 << 20;
	size_t f0 = free_now();

	/* An explicit allocation node and a free node. */
	CUgraph g;
	CHECK_CU(cuGraphCreate(&g, 0));
	CUDA_MEM_ALLOC_NODE_PARAMS ap = t_graph_alloc_params(N);
	CUgraphNode an = NULL, fn = NULL;
	unsigned long managed0 = t_calls("cuMemAllocManaged");
	CHECK_CU(cuGraphAddMemAllocNode(&an, g, NULL, 0, &ap));
	CHECK(ap.dptr != 0, "allocation node without an address");
	CHECK(!t_is_managed(ap.dptr), "graph allocation converted");
	CHECK(t_calls("cuMemAllocManaged") == managed0, "allocation node made managed memory");
	CHECK_CU(cuGraphAddMemFreeNode(&fn, g, &an, 1, ap.dptr));
	DROPPED(f0, 0, "nodes made, graph not run");
	CUgraphExec x;
	CHECK_CU(cuGraphInstantiateWithFlags(&x, g, 0));
	unsigned long q0 = t_calls("cuDeviceGetGraphMemAttribute");
	CHECK_CU(cuGraphLaunch(x, s));
	CHECK_CU(cuGraphLaunch(x, s));
	CHECK_CU(cuStreamSynchronize(s));
	if (fake)
		CHECK(t_calls("cuDeviceGetGraphMemAttribute") == q0, "the shim queried graph memory on a launch");
	/* freed by the graph, kept by the pool for the next launch */
	DROPPED(f0, N, "after launches");
	if (fake)
		CHECK(t_calls("cuDeviceGetGraphMemAttribute") > q0, "the capacity view did not ask the driver");
	CHECK_CU(cuDeviceGraphMemTrim(0));
	DROPPED(f0, 0, "after trim");

	/* A graph that does not free its allocation: the memory is the
	 * application's until it frees it, and still the pool's after that. */
	CUgraph g2;
	CHECK_CU(cuGraphCreate(&g2, 0));
	CUDA_MEM_ALLOC_NODE_PARAMS ap2 = ap;
	ap2.dptr = 0;
	ap2.bytesize = N / 2;
	CHECK_CU(cuGraphAddMemAllocNode(&an, g2, NULL, 0, &ap2));
	CUgraphExec x2;
	CHECK_CU(cuGraphInstantiateWithFlags(&x2, g2, 0));
	CHECK_CU(cuGraphLaunch(x2, s));
	CHECK_CU(cuStreamSynchronize(s));
	DROPPED(f0, N / 2, "live graph allocation");
	CHECK_CU(cuMemFreeAsync(ap2.dptr, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK_CU(cuDeviceGraphMemTrim(0));
	DROPPED(f0, 0, "freed by the app, trimmed");

	/* Captured stream-ordered allocations are allocation nodes: not
	 * converted, not counted while capturing, counted when the graph runs. */
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CUdeviceptr c = 0;
	CHECK_CU(cuMemAllocAsync(&c, N, s));
	CHECK(!t_is_managed(c), "captured allocation converted");
	CHECK_CU(cuMemsetD8Async(c, 7, N, s));
	CHECK_CU(cuMemFreeAsync(c, s));
	CUgraph g3;
	CHECK_CU(cuStreamEndCapture(s, &g3));
	DROPPED(f0, 0, "captured, not run");
	CUgraphExec x3;
	CHECK_CU(cuGraphInstantiateWithFlags(&x3, g3, 0));
	CHECK_CU(cuGraphLaunch(x3, s));
	CHECK_CU(cuStreamSynchronize(s));
	DROPPED(f0, N, "captured graph run");
	CHECK_CU(cuGraphExecDestroy(x3));
	CHECK_CU(cuGraphDestroy(g3));
	CHECK_CU(cuDeviceGraphMemTrim(0));
	DROPPED(f0, 0, "captured graph destroyed, trimmed");

	/* Ordinary allocations still convert, and count as before. */
	CUdeviceptr m = 0;
	CHECK_CU(cuMemAlloc_v2(&m, 1 << 20));
	CHECK(t_is_managed(m), "allocation after graphs not converted");
	DROPPED(f0, 1 << 20, "managed allocation");
	CHECK_CU(cuMemFree_v2(m));

	CHECK_CU(cuGraphExecDestroy(x));
	CHECK_CU(cuGraphDestroy(g));
	CHECK_CU(cuGraphExecDestroy(x2));
	CHECK_CU(cuGraphDestroy(g2));
	CHECK_CU(cuStreamDestroy_v2(s));
	return t_done("graphmem");
}
