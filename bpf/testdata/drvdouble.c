/* drvdouble.c: TEST DOUBLE of the CUDA driver for bpf/ tests only.
 *
 * Exports real functions named like the driver's probed entry points, with
 * the driver's signatures, so that uprobes attach to it exactly as they
 * would to libcuda.so.1. It emulates nothing: allocations hand out fake,
 * never-dereferenced addresses, copies copy nothing, synchronizations sleep
 * for the number of microseconds passed as the stream/event handle. Each
 * function touches its own counter so the compiler cannot fold two of them
 * into one address. */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;
typedef void *CUfunction;
typedef void *CUstream;
typedef void *CUevent;
typedef void *CUgraphExec;
typedef int CUdevice;

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2

#define EXPORT __attribute__((visibility("default"), noinline))

static volatile uint64_t calls[32];
static uint64_t next_addr = 0x7f0000000000ull;

static void sleep_us(uintptr_t us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
	while (us && nanosleep(&ts, &ts) != 0) {
	}
}

static CUresult alloc(CUdeviceptr *dptr, size_t bytes)
{
	if (!dptr || bytes == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (bytes > ((size_t)1 << 40))
		return CUDA_ERROR_OUT_OF_MEMORY;
	*dptr = __atomic_fetch_add(&next_addr, (bytes + 0xfff) & ~(size_t)0xfff, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
			       unsigned bz, unsigned shmem, CUstream s, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem; (void)s;
	(void)params; (void)extra;
	calls[0]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
				    unsigned by, unsigned bz, unsigned shmem, CUstream s, void **params,
				    void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem; (void)s;
	(void)params; (void)extra;
	calls[1]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernelEx(const void *config, CUfunction f, void **params, void **extra)
{
	(void)config; (void)f; (void)params; (void)extra;
	calls[2]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGraphLaunch(CUgraphExec g, CUstream s)
{
	(void)g; (void)s;
	calls[3]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void)
{
	calls[4]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream s)
{
	calls[5]++;
	sleep_us((uintptr_t)s);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuEventSynchronize(CUevent e)
{
	calls[6]++;
	sleep_us((uintptr_t)e);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes)
{
	calls[7]++;
	return alloc(dptr, bytes);
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytes, unsigned flags)
{
	(void)flags;
	calls[8]++;
	return alloc(dptr, bytes);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p)
{
	(void)p;
	calls[9]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes)
{
	(void)dst; (void)src; (void)bytes;
	calls[10]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
	(void)dst; (void)src; (void)bytes;
	calls[11]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
	(void)dst; (void)src; (void)bytes;
	calls[12]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
	(void)dst; (void)src; (void)bytes;
	calls[13]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream s)
{
	(void)dst; (void)src; (void)bytes; (void)s;
	calls[14]++;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t bytes, CUdevice dev, CUstream s)
{
	(void)p; (void)bytes; (void)dev; (void)s;
	calls[15]++;
	return CUDA_SUCCESS;
}
