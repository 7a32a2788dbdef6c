/*
 * Test 9, robustness: NULL out-parameters, cuMemFree(0), unknown pointers,
 * a thread without a current context, dlsym(RTLD_NEXT) lookups, and 32
 * threads allocating, launching and querying at once. Run under valgrind
 * memcheck and helgrind by run.sh.
 */

#include "t.h"

#include <pthread.h>

#define THREADS 32
#define ITERS 40

static CUcontext ctx;
static CUfunction fn;

static void *worker(void *arg)
{
	long id = (long)arg;
	CHECK_CU(cuCtxSetCurrent(ctx));
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (int i = 0; i < ITERS; i++) {
		CUdeviceptr p = 0;
		size_t n = 4096 * (size_t)(1 + (id + i) % 7);
		CHECK_CU(cuMemAlloc_v2(&p, n));
		void *args[] = {&p};
		CHECK_CU(cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, s, args, NULL));
		CHECK_CU(cuMemsetD8Async(p, (unsigned char)i, n, s));
		size_t f = 0, t = 0;
		CHECK_CU(cuMemGetInfo_v2(&f, &t));
		CHECK(f <= t, "free %zu > total %zu", f, t);
		CHECK_CU(cuStreamSynchronize(s));
		CHECK_CU(cuMemFree_v2(p));
		if (i % 8 == 0) {
			CHECK_CU(cuMemAllocAsync(&p, 8192, s));
			CHECK_CU(cuMemFreeAsync(p, s));
		}
	}
	CHECK_CU(cuStreamSynchronize(s));
	return NULL;
}

static void *no_context(void *arg)
{
	(void)arg;
	CUdeviceptr p = 0;
	CUresult r = cuMemAlloc_v2(&p, 4096);
	if (r == CUDA_SUCCESS)
		cuMemFree_v2(p);
	size_t f, t;
	(void)cuMemGetInfo_v2(&f, &t);
	CHECK(cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL) != CUDA_SUCCESS ||
		      r == CUDA_SUCCESS,
	      "launch without a context succeeded");
	return NULL;
}

int main(void)
{
	t_fake_init();
	ctx = t_ctx();
	fn = t_noop();

	/* NULL out-parameters: errors or success, never a crash. */
	size_t f0 = 0, t0 = 0;
	CHECK_CU(cuMemGetInfo_v2(NULL, NULL));
	CHECK_CU(cuMemGetInfo_v2(&f0, NULL));
	CHECK_CU(cuMemGetInfo_v2(NULL, &t0));
	CHECK(f0 <= t0, "free %zu total %zu", f0, t0);
	CHECK(cuMemAlloc_v2(NULL, 16) != CUDA_SUCCESS, "NULL dptr accepted");
	CUdeviceptr p = 0;
	CHECK(cuMemAlloc_v2(&p, 0) != CUDA_SUCCESS, "zero-byte allocation accepted");
	size_t pitch;
	CHECK(cuMemAllocPitch_v2(NULL, &pitch, 64, 64, 4) != CUDA_SUCCESS, "NULL pitch dptr");
	CHECK(cuMemAllocPitch_v2(&p, NULL, 64, 64, 4) != CUDA_SUCCESS, "NULL pitch");
	CHECK(cuMemAllocPitch_v2(&p, &pitch, 64, 64, 3) != CUDA_SUCCESS, "element size 3");
	CHECK(cuDeviceTotalMem_v2(NULL, 0) != CUDA_SUCCESS, "NULL total");
	CHECK(cuMemAllocAsync(NULL, 16, NULL) != CUDA_SUCCESS, "NULL async dptr");
	CHECK(cuMemAllocFromPoolAsync(&p, 16, NULL, NULL) != CUDA_SUCCESS, "NULL pool");
	CUresult r0 = cuMemFree_v2(0);
	CHECK(r0 == CUDA_SUCCESS || r0 == CUDA_ERROR_INVALID_VALUE, "cuMemFree(0) = %d", (int)r0);
	CHECK(cuMemFree_v2(0x1000) != CUDA_SUCCESS, "unknown pointer freed");
	CHECK(cuMemFreeAsync(0x2000, NULL) != CUDA_SUCCESS, "unknown async pointer freed");
	CHECK(cuLaunchKernelEx(NULL, fn, NULL, NULL) != CUDA_SUCCESS, "NULL launch config");

	/* dlsym(RTLD_NEXT) for driver names and others. */
	void *n1 = dlsym(RTLD_NEXT, "cuMemAlloc_v2");
	CHECK(n1 != NULL, "RTLD_NEXT cuMemAlloc_v2 not found");
	CHECK(dlsym(RTLD_NEXT, "sluice_no_such_symbol") == NULL, "bogus RTLD_NEXT name found");

	pthread_t nt;
	pthread_create(&nt, NULL, no_context, NULL);
	pthread_join(nt, NULL);

	size_t free0;
	CHECK_CU(cuMemGetInfo_v2(&free0, NULL));
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0, "pthread_create");
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	CHECK_CU(cuCtxSynchronize());
	size_t free1;
	CHECK_CU(cuMemGetInfo_v2(&free1, NULL));
	CHECK(free1 == free0, "accounting drifted: free %zu -> %zu", free0, free1);
	return t_done("robust");
}
