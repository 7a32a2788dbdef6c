/*
 * Tests of Sluice's fake CUDA driver (EMULATOR / TEST DOUBLE) through its
 * public driver API. Usage: t_driver [all|v12|faults|log|threads|sticky|symbols]
 * (run.sh sets the environment each mode expects; see there).
 */
#include "ft.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

static const char *PTX =
	"// test module: bodies are never run by the fake\n"
	".version 7.0\n.target sm_52\n.address_size 64\n"
	".visible .entry sluice_matmul(.param .u64 A, .param .u64 B, .param .u64 C, .param .u32 n) { ret; }\n"
	".visible .entry sluice_spin(.param .u64 ns) { ret; }\n"
	".visible .entry sluice_touch(.param .u64 p, .param .u64 n) { ret; }\n"
	".visible .entry other(.param .u32 a, .param .align 8 .b8 blob[24], .param .u64 ptr) { ret; }\n";

static CUmodule mod;
static CUfunction f_mm, f_spin, f_touch, f_other;

static void load_module(void)
{
	CHECK_CU(cuModuleLoadData(&mod, PTX));
	CHECK_CU(cuModuleGetFunction(&f_mm, mod, "sluice_matmul"));
	CHECK_CU(cuModuleGetFunction(&f_spin, mod, "sluice_spin"));
	CHECK_CU(cuModuleGetFunction(&f_touch, mod, "sluice_touch"));
	CHECK_CU(cuModuleGetFunction(&f_other, mod, "other"));
}

static CUresult spin(CUstream s, unsigned long long ns)
{
	void *args[] = {&ns};
	return cuLaunchKernel(f_spin, 1, 1, 1, 32, 1, 1, 0, s, args, NULL);
}

static CUresult touch(CUstream s, CUdeviceptr p, unsigned long long n)
{
	void *args[] = {&p, &n};
	return cuLaunchKernel(f_touch, (unsigned)((n + 255) / 256), 1, 1, 256, 1, 1, 0, s, args, NULL);
}

static void t_devices(void)
{
	int n = -1, v = 0, attr = 0;
	char name[128];
	CHECK_RC(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuInit(0));
	CHECK_CU(cuDriverGetVersion(&v));
	CHECK(v == 13000, "driver version %d", v);
	CHECK_CU(cuDeviceGetCount(&n));
	CHECK(n == 1, "count %d", n);
	CHECK_CU(cuDeviceGetName(name, sizeof(name), 0));
	CHECK(strstr(name, "Emulated") && strstr(name, "fake"), "name '%s' not labelled", name);
	size_t tot = 0;
	CHECK_CU(cuDeviceTotalMem_v2(&tot, 0));
	CHECK(tot == 256ull << 20, "total %zu (FAKECUDA_CAPACITY=256M)", tot);
	CHECK_CU(cuDeviceGetAttribute(&attr, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, 0));
	CHECK(attr == 1, "concurrentManagedAccess %d", attr);
	CHECK_RC(cuDeviceGetAttribute(&attr, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 1), CUDA_ERROR_INVALID_DEVICE);
	CHECK_RC(cuDeviceGetAttribute(NULL, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0), CUDA_ERROR_INVALID_VALUE);
	CUuuid u;
	CHECK_CU(cuDeviceGetUuid_v2(&u, 0));
	CHECK(memcmp(u.bytes, "SLUICE-EMU", 10) == 0, "uuid");
}

static void t_contexts(void)
{
	CUdeviceptr p;
	CUdevice d = -1;
	CHECK_RC(cuMemAlloc_v2(&p, 4096), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_RC(cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);
	CUcontext c = ft_ctx(), c2 = NULL, cur = NULL, popped = NULL;
	CHECK_CU(cuCtxGetDevice(&d));
	CHECK(d == 0, "device %d", d);
	CUcontext again;
	CHECK_CU(cuDevicePrimaryCtxRetain(&again, 0));
	CHECK(again == c, "primary context not shared");
	CHECK_CU(cuDevicePrimaryCtxRelease_v2(0));
	CHECK_CU(cuCtxCreate_v2(&c2, 0, 0));
	CHECK_CU(cuCtxGetCurrent(&cur));
	CHECK(cur == c2, "cuCtxCreate did not push");
	CHECK_CU(cuCtxPopCurrent_v2(&popped));
	CHECK(popped == c2, "pop");
	CHECK_CU(cuCtxGetCurrent(&cur));
	CHECK(cur == c, "after pop");
	CHECK_CU(cuCtxDestroy_v2(c2));
	CHECK_RC(cuCtxPushCurrent_v2(c2), CUDA_ERROR_INVALID_CONTEXT);
}

static void t_memory(void)
{
	size_t fr0, tot, fr1;
	CHECK_CU(cuMemGetInfo_v2(&fr0, &tot));
	CHECK(tot == 256ull << 20 && fr0 <= tot, "info %zu/%zu", fr0, tot);
	CUdeviceptr d, m;
	CHECK_CU(cuMemAlloc_v2(&d, 1 << 20));
	CHECK_CU(cuMemGetInfo_v2(&fr1, &tot));
	CHECK(fr1 + (1 << 20) == fr0, "device alloc not accounted %zu -> %zu", fr0, fr1);
	int managed = -1;
	CHECK_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, d));
	CHECK(managed == 0, "device memory reported managed");
	CHECK_CU(cuMemAllocManaged(&m, 2 << 20, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, m + 100));
	CHECK(managed == 1, "managed memory not reported managed");
	CHECK(fakecuda_resident_bytes(m) == 0, "managed starts resident");
	CHECK(fakecuda_resident_bytes(d) == -1, "device memory has residency");
	CHECK_CU(cuMemPrefetchAsync(m, 2 << 20, 0, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(fakecuda_resident_bytes(m) == 2 << 20, "prefetch to device: %lld", fakecuda_resident_bytes(m));
	size_t fr2;
	CHECK_CU(cuMemGetInfo_v2(&fr2, &tot));
	CHECK(fr2 + (2 << 20) == fr1, "resident managed memory not accounted");
	CUmemLocation host = {CU_MEM_LOCATION_TYPE_HOST, 0};
	CHECK_CU(cuMemPrefetchAsync_v2(m, 1 << 20, host, 0, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(fakecuda_resident_bytes(m) == 1 << 20, "prefetch to host: %lld", fakecuda_resident_bytes(m));
	int last = 99;
	CHECK_CU(cuMemRangeGetAttribute(&last, 4, CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, m, 4096));
	CHECK(last == CU_DEVICE_CPU, "last prefetch %d", last);
	CHECK_CU(cuMemAdvise(m, 4096, CU_MEM_ADVISE_SET_READ_MOSTLY, 0));
	CHECK_RC(cuMemAdvise(d, 4096, CU_MEM_ADVISE_SET_READ_MOSTLY, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuMemPrefetchAsync(d, 4096, 0, NULL), CUDA_ERROR_INVALID_VALUE);
	/* copies and memsets */
	unsigned char buf[4096], out[4096];
	for (int i = 0; i < 4096; i++)
		buf[i] = (unsigned char)i;
	CHECK_CU(cuMemcpyHtoD_v2(d, buf, sizeof(buf)));
	CHECK_CU(cuMemcpyDtoD_v2(m, d, sizeof(buf)));
	CHECK_CU(cuMemcpyDtoH_v2(out, m, sizeof(out)));
	CHECK(memcmp(buf, out, sizeof(buf)) == 0, "copy round trip");
	CHECK_CU(cuMemsetD32_v2(d, 0xdeadbeef, 1024));
	CHECK_CU(cuMemcpyDtoH_v2(out, d, 8));
	CHECK(((unsigned *)(void *)out)[1] == 0xdeadbeef, "memset32");
	CHECK_RC(cuMemcpyDtoH_v2(out, d + (1 << 20) - 8, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuMemcpyHtoD_v2(0x1000, buf, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuMemsetD32_v2(d + 2, 0, 4), CUDA_ERROR_INVALID_VALUE);
	/* pitch, v1, host memory */
	CUdeviceptr pp;
	size_t pitch = 0;
	CHECK_CU(cuMemAllocPitch_v2(&pp, &pitch, 1000, 10, 4));
	CHECK(pitch >= 1000 && pitch % 512 == 0, "pitch %zu", pitch);
	CUdeviceptr_v1 small;
	CHECK_CU(cuMemAlloc(&small, 4096));
	CHECK_CU(cuMemFree(small));
	void *h;
	CHECK_CU(cuMemAllocHost_v2(&h, 8192));
	unsigned mt = 0;
	CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)h));
	CHECK(mt == CU_MEMORYTYPE_HOST, "host memory type %u", mt);
	CHECK_CU(cuMemFreeHost(h));
	/* unknown pointers: single query fails, multi query zeroes */
	CHECK_RC(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, 0x1234), CUDA_ERROR_INVALID_VALUE);
	CUpointer_attribute at[1] = {CU_POINTER_ATTRIBUTE_IS_MANAGED};
	void *vals[1] = {&managed};
	managed = 7;
	CHECK_CU(cuPointerGetAttributes(1, at, vals, 0x1234));
	CHECK(managed == 0, "unknown pointer attrs not zeroed");
	/* frees */
	CHECK_CU(cuMemFree_v2(0));
	CHECK_RC(cuMemFree_v2(0x1234), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuMemFree_v2(d + 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemFree_v2(pp));
	CHECK_CU(cuMemFree_v2(m));
	CHECK_CU(cuMemFree_v2(d));
	CHECK_CU(cuMemGetInfo_v2(&fr1, &tot));
	CHECK(fr1 == fr0, "frees not accounted: %zu vs %zu", fr1, fr0);
	/* capacity */
	CHECK_RC(cuMemAlloc_v2(&d, 300ull << 20), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemAllocManaged(&m, 300ull << 20, CU_MEM_ATTACH_GLOBAL)); /* oversubscription */
	CHECK_CU(cuMemFree_v2(m));
	CHECK_RC(cuMemGetInfo_v2(NULL, &tot), CUDA_ERROR_INVALID_VALUE);
}

static int hostfn_calls;
static void hostfn(void *ud) { (*(int *)ud)++; }

static void t_streams(void)
{
	CUstream s, s2;
	CUevent e0, e1;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuEventCreate(&e0, 0));
	CHECK_CU(cuEventCreate(&e1, 0));
	CUdeviceptr d;
	CHECK_CU(cuMemAlloc_v2(&d, 4096));
	CHECK_CU(cuMemsetD8Async(d, 7, 4096, s));
	CHECK_CU(cuLaunchHostFunc(s, hostfn, &hostfn_calls));
	CHECK_CU(cuEventRecord(e0, s));
	CHECK(fakecuda_stream_pending(s) == 3, "pending %lu", fakecuda_stream_pending(s));
	CHECK(hostfn_calls == 0, "host function ran early");
	CHECK_RC(cuEventQuery(e0), CUDA_ERROR_NOT_READY);
	CHECK_CU(cuEventSynchronize(e0));
	CHECK(hostfn_calls == 1 && fakecuda_stream_pending(s) == 0, "event sync did not run the work");
	CHECK(((unsigned char *)(uintptr_t)d)[100] == 7, "memset async");
	CHECK_CU(cuEventQuery(e0));
	/* polling ends: a query loop makes progress */
	CHECK_CU(cuMemsetD8Async(d, 9, 4096, s));
	int polls = 0;
	while (cuStreamQuery(s) == CUDA_ERROR_NOT_READY && polls < 100)
		polls++;
	CHECK(polls > 0 && polls < 100, "stream query polls %d", polls);
	/* timing: events bracket an emulated 30 ms kernel */
	load_module();
	CHECK_CU(cuEventRecord(e0, s));
	CHECK_CU(spin(s, 30000000ull));
	CHECK_CU(cuEventRecord(e1, s));
	/* cross-stream: s2 waits for e1, so syncing s2 runs s's work */
	CHECK_CU(cuStreamWaitEvent(s2, e1, 0));
	double t0 = ft_now();
	CHECK_CU(cuStreamSynchronize(s2));
	double el = ft_now() - t0;
	CHECK(fakecuda_stream_pending(s) == 0, "wait event: s not drained");
	float ms = 0;
	CHECK_CU(cuEventElapsedTime(&ms, e0, e1));
	CHECK(ms >= 29.0f && ms < 1000.0f, "elapsed %.3f ms", (double)ms);
	CHECK(el >= 0.029, "sync returned after %.3f s", el);
	/* per-thread default stream */
	CHECK_CU(cuMemsetD8Async_ptsz(d, 3, 16, NULL));
	CHECK(fakecuda_stream_pending(CU_STREAM_PER_THREAD) == 1, "ptsz op not on the per-thread stream");
	CHECK_CU(cuStreamSynchronize_ptsz(NULL));
	CHECK(fakecuda_stream_pending(CU_STREAM_PER_THREAD) == 0, "per-thread stream not drained");
	CHECK_RC(cuStreamDestroy_v2(NULL), CUDA_ERROR_INVALID_HANDLE);
	CHECK_RC(cuStreamSynchronize((CUstream)(uintptr_t)0x77), CUDA_ERROR_INVALID_HANDLE);
	CHECK_CU(cuEventDestroy_v2(e0));
	CHECK_CU(cuEventDestroy_v2(e1));
	CHECK_CU(cuStreamDestroy_v2(s));
	CHECK_CU(cuStreamDestroy_v2(s2));
	CHECK_CU(cuMemFree_v2(d));
}

static void t_capture(void)
{
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CUdeviceptr d, gm = 0;
	CHECK_CU(cuMemAlloc_v2(&d, 1024 * 4));
	CHECK_CU(cuMemsetD32_v2(d, 0, 1024));
	/* global mode: an unsafe call invalidates the capture */
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CUdeviceptr x;
	CHECK_RC(cuMemAlloc_v2(&x, 4096), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CHECK_RC(cuCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CUevent ev;
	CHECK_CU(cuEventCreate(&ev, 0));
	CHECK_RC(cuEventQuery(ev), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CHECK_CU(cuEventDestroy_v2(ev));
	CUgraph g = NULL;
	CHECK_RC(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	CHECK(g == NULL, "graph from an invalidated capture");
	/* relaxed mode: record, then replay twice */
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	cuuint64_t id = 0;
	CUgraph cg = NULL;
	CHECK_CU(cuStreamGetCaptureInfo_v2(s, &st, &id, &cg, NULL, NULL));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_ACTIVE && id != 0 && cg != NULL, "capture info st=%d id=%llu", (int)st,
	      (unsigned long long)id);
	CHECK_CU(touch(s, d, 1024));
	CHECK_CU(cuMemAllocAsync(&gm, 4096, s));
	CHECK_CU(cuMemsetD8Async(gm, 1, 4096, s));
	CHECK_CU(cuMemFreeAsync(gm, s));
	CHECK(fakecuda_stream_pending(s) == 0, "captured work was queued");
	CHECK(((float *)(uintptr_t)d)[5] == 0.0f, "captured kernel ran");
	CHECK_CU(cuStreamEndCapture(s, &g));
	CHECK_CU(cuStreamIsCapturing(s, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE, "still capturing");
	size_t nn = 0;
	CHECK_CU(cuGraphGetNodes(g, NULL, &nn));
	CHECK(nn == 4, "nodes %zu", nn);
	CUgraphExec ge;
	CHECK_CU(cuGraphInstantiateWithFlags(&ge, g, 0));
	CHECK_CU(cuGraphLaunch(ge, s));
	CHECK_CU(cuGraphLaunch(ge, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK(((float *)(uintptr_t)d)[5] == 2.0f, "graph replay: %f", (double)((float *)(uintptr_t)d)[5]);
	CHECK(((unsigned char *)(uintptr_t)gm)[7] == 1, "graph memory not usable across launches");
	CHECK_CU(cuGraphExecDestroy(ge));
	CHECK_CU(cuGraphDestroy(g));
	/* fork/join: a stream waiting on an event recorded in a capture joins it */
	CUstream side;
	CUevent fork_ev, join_ev;
	CHECK_CU(cuStreamCreate(&side, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuEventCreate(&fork_ev, CU_EVENT_DISABLE_TIMING));
	CHECK_CU(cuEventCreate(&join_ev, CU_EVENT_DISABLE_TIMING));
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	CHECK_CU(cuEventRecord(fork_ev, s));
	CHECK_CU(cuStreamWaitEvent(side, fork_ev, 0));
	CHECK_CU(cuStreamIsCapturing(side, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_ACTIVE, "side stream did not join the capture: %d", (int)st);
	CHECK_CU(touch(side, d, 1024));
	CHECK(fakecuda_stream_pending(side) == 0, "joined stream's work was queued, not captured");
	CHECK_CU(cuEventRecord(join_ev, side));
	CHECK_CU(cuStreamWaitEvent(s, join_ev, 0));
	CHECK_RC(cuStreamEndCapture(side, &g), CUDA_ERROR_STREAM_CAPTURE_UNMATCHED);
	CHECK_CU(cuStreamEndCapture(s, &g));
	CHECK_CU(cuStreamIsCapturing(side, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE, "side stream still capturing after the end");
	CHECK_CU(cuGraphInstantiateWithFlags(&ge, g, 0));
	CHECK_CU(cuGraphLaunch(ge, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK(((float *)(uintptr_t)d)[5] == 3.0f, "fork/join graph replay: %f", (double)((float *)(uintptr_t)d)[5]);
	CHECK_CU(cuGraphExecDestroy(ge));
	CHECK_CU(cuGraphDestroy(g));
	CHECK_CU(cuEventDestroy_v2(fork_ev));
	CHECK_CU(cuEventDestroy_v2(join_ev));
	CHECK_CU(cuStreamDestroy_v2(side));
	/* relaxed thread mode allows unsafe calls during a global capture */
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	CHECK_CU(cuThreadExchangeStreamCaptureMode(&mode));
	CHECK_CU(cuMemAlloc_v2(&x, 4096));
	CHECK_CU(cuThreadExchangeStreamCaptureMode(&mode));
	CHECK(mode == CU_STREAM_CAPTURE_MODE_RELAXED, "exchange returned %d", (int)mode);
	CHECK_CU(cuStreamEndCapture(s, &g));
	CHECK_CU(cuGraphDestroy(g));
	CHECK_RC(cuStreamBeginCapture_v2(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CHECK_CU(cuMemFree_v2(x));
	CHECK_CU(cuMemFree_v2(d));
	CHECK_CU(cuStreamDestroy_v2(s));
}

static void t_pools(void)
{
	CUmemoryPool mp = NULL, dp = NULL;
	CUmemLocation loc = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
	CHECK_CU(cuMemGetDefaultMemPool(&mp, &loc, CU_MEM_ALLOCATION_TYPE_MANAGED));
	CHECK_CU(cuDeviceGetDefaultMemPool(&dp, 0));
	CHECK(mp && dp && mp != dp, "pools");
	CUmemPoolProps pr;
	memset(&pr, 0, sizeof(pr));
	pr.allocType = CU_MEM_ALLOCATION_TYPE_MANAGED;
	pr.location = loc;
	CUmemoryPool p;
	CHECK_CU(cuMemPoolCreate(&p, &pr));
	CUdeviceptr a;
	CHECK_CU(cuMemAllocFromPoolAsync(&a, 1 << 20, p, NULL));
	int managed = 0;
	CHECK_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, a));
	CHECK(managed == 1, "managed pool allocation not managed");
	cuuint64_t used = 0;
	CHECK_CU(cuMemPoolGetAttribute(p, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
	CHECK(used == 1 << 20, "pool used %llu", (unsigned long long)used);
	CHECK_CU(cuMemFreeAsync(a, NULL));
	CHECK_CU(cuStreamSynchronize(NULL));
	CHECK_CU(cuMemPoolGetAttribute(p, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
	CHECK(used == 0, "pool used after free %llu", (unsigned long long)used);
	CHECK_CU(cuMemAllocAsync(&a, 4096, NULL));
	CHECK_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, a));
	CHECK(managed == 0, "default device pool allocation is managed");
	CHECK_CU(cuMemFreeAsync(a, NULL));
	CHECK_CU(cuMemPoolDestroy(p));
	CHECK_RC(cuMemPoolDestroy(dp), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuCtxSynchronize());
}

static cuuint64_t gmem(CUgraphMem_attribute a)
{
	cuuint64_t v = 12345;
	CHECK_CU(cuDeviceGetGraphMemAttribute(0, a, &v));
	return v;
}

/* Graph memory: an allocation node's memory comes from the device's graph
 * pool at launch, a free returns it to the pool (still reserved), a trim
 * releases it; the emulated GPU counts the pool's physical memory. */
static void t_graph_mem(void)
{
	const size_t N = 4 << 20;
	CHECK_CU(cuDeviceGraphMemTrim(0));
	cuuint64_t used0 = gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT), res0 = gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT);
	CHECK(used0 == 0 && res0 == 0, "graph pool not empty at start: %llu/%llu", (unsigned long long)used0,
	      (unsigned long long)res0);
	size_t f0, f1, tot;
	CHECK_CU(cuMemGetInfo_v2(&f0, &tot));
	CUgraph g;
	CHECK_CU(cuGraphCreate(&g, 0));
	CUDA_MEM_ALLOC_NODE_PARAMS ap = t_graph_alloc_params(N);
	CUgraphNode an = NULL, fn = NULL;
	CHECK_CU(cuGraphAddMemAllocNode(&an, g, NULL, 0, &ap));
	CHECK(ap.dptr != 0, "no address for the allocation node");
	CUgraphNodeType ty;
	CHECK_CU(cuGraphNodeGetType(an, &ty));
	CHECK(ty == CU_GRAPH_NODE_TYPE_MEM_ALLOC, "alloc node type %d", (int)ty);
	/* bad parameters */
	CUDA_MEM_ALLOC_NODE_PARAMS bad = ap;
	bad.bytesize = 0;
	CHECK_RC(cuGraphAddMemAllocNode(&fn, g, NULL, 0, &bad), CUDA_ERROR_INVALID_VALUE);
	bad = ap;
	bad.poolProps.location.id = 7;
	CHECK_RC(cuGraphAddMemAllocNode(&fn, g, NULL, 0, &bad), CUDA_ERROR_INVALID_DEVICE);
	CHECK_RC(cuGraphAddMemAllocNode(&fn, g, NULL, 0, NULL), CUDA_ERROR_INVALID_VALUE);
	CUdeviceptr plain;
	CHECK_CU(cuMemAlloc_v2(&plain, 4096));
	CHECK_RC(cuGraphAddMemFreeNode(&fn, g, &an, 1, plain), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemFree_v2(plain));
	/* no memory until the graph runs */
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0 && gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == 0,
	      "node creation allocated graph memory");
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 == f0, "node creation took device memory: %zu -> %zu", f0, f1);

	/* graph 1: allocate, memset, free */
	CHECK_CU(cuMemsetD8Async(ap.dptr, 0x5a, N, NULL)); /* not captured: g is built by hand */
	CHECK_CU(cuCtxSynchronize());
	CHECK_CU(cuGraphAddMemFreeNode(&fn, g, &an, 1, ap.dptr));
	CHECK_CU(cuGraphNodeGetType(fn, &ty));
	CHECK(ty == CU_GRAPH_NODE_TYPE_MEM_FREE, "free node type %d", (int)ty);
	CUgraphExec x;
	CHECK_CU(cuGraphInstantiateWithFlags(&x, g, 0));
	CHECK_CU(cuGraphLaunch(x, NULL));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N, "launch did not map: reserved %llu",
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 + N == f0, "graph memory not on the emulated GPU: %zu -> %zu", f0, f1);
	CHECK_CU(cuCtxSynchronize()); /* the allocation and free nodes run */
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0, "free node did not free");
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N, "pool did not keep the memory");
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_HIGH) == N && gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH) == N,
	      "high-water marks");
	/* relaunch (twice in a row: stream order frees before it allocates
	 * again) reuses the pool's memory */
	CHECK_CU(cuGraphLaunch(x, NULL));
	CHECK_CU(cuGraphLaunch(x, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N, "relaunch grew the pool: %llu",
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	/* trim releases what no live allocation uses */
	CHECK_CU(cuDeviceGraphMemTrim(0));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == 0, "trim left %llu",
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 == f0, "trim did not give the memory back: %zu -> %zu", f0, f1);
	cuuint64_t zero = 0, one = 1;
	CHECK_CU(cuDeviceSetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH, &zero));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH) == 0, "high-water mark not reset");
	CHECK_RC(cuDeviceSetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_HIGH, &one), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuDeviceSetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &zero), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuDeviceGetGraphMemAttribute(9, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &one), CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(cuGraphExecDestroy(x));
	CHECK_CU(cuGraphDestroy(g));

	/* graph 2: an allocation the graph does not free stays live after the
	 * launch, a second launch is refused until the app frees it, and it
	 * outlives its graph */
	CUgraph g2;
	CHECK_CU(cuGraphCreate(&g2, 0));
	CUDA_MEM_ALLOC_NODE_PARAMS ap2 = ap;
	ap2.dptr = 0;
	CHECK_CU(cuGraphAddMemAllocNode(&an, g2, NULL, 0, &ap2));
	CUgraphExec x2;
	CHECK_CU(cuGraphInstantiateWithFlags(&x2, g2, 0));
	CHECK_CU(cuGraphLaunch(x2, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == N, "live graph allocation not counted");
	CHECK_RC(cuGraphLaunch(x2, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemFreeAsync(ap2.dptr, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0, "cuMemFreeAsync of graph memory");
	CHECK_CU(cuGraphLaunch(x2, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK_CU(cuGraphExecDestroy(x2));
	CHECK_CU(cuGraphDestroy(g2));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == N, "graph destroy freed a live allocation");
	unsigned char b = 0;
	CHECK_CU(cuMemcpyDtoH_v2(&b, ap2.dptr + 10, 1)); /* still usable */
	CHECK_CU(cuMemFree_v2(ap2.dptr));
	CHECK_RC(cuMemFree_v2(ap2.dptr), CUDA_ERROR_INVALID_VALUE);
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0 && gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N,
	      "after cuMemFree: used %llu reserved %llu", (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT),
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	CHECK_CU(cuDeviceGraphMemTrim(0));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == 0, "trim after destroy");

	/* graph 2b: the generic entry points make the same memory nodes */
	CUgraph gg;
	CHECK_CU(cuGraphCreate(&gg, 0));
	CUgraphNodeParams np;
	memset(&np, 0, sizeof(np));
	np.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
	np.alloc.poolProps = ap.poolProps;
	np.alloc.bytesize = N;
	CUgraphNode gn = NULL, gf = NULL;
	CHECK_CU(cuGraphAddNode(&gn, gg, NULL, 0, &np));
	CUdeviceptr gp = np.alloc.dptr;
	CHECK(gp != 0, "generic allocation node without an address");
	memset(&np, 0, sizeof(np));
	np.type = CU_GRAPH_NODE_TYPE_MEM_FREE;
	np.free.dptr = gp;
	CHECK_CU(cuGraphAddNode_v2(&gf, gg, &gn, NULL, 1, &np));
	CHECK_CU(cuGraphNodeGetType(gf, &ty));
	CHECK(ty == CU_GRAPH_NODE_TYPE_MEM_FREE, "generic free node type %d", (int)ty);
	np.type = CU_GRAPH_NODE_TYPE_KERNEL;
	CHECK_RC(cuGraphAddNode(&gf, gg, NULL, 0, &np), CUDA_ERROR_NOT_SUPPORTED);
	CUgraphExec gx;
	CHECK_CU(cuGraphInstantiateWithFlags(&gx, gg, 0));
	CHECK_CU(cuGraphLaunch(gx, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0 && gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N,
	      "generic nodes: used %llu reserved %llu", (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT),
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	CHECK_CU(cuGraphExecDestroy(gx));
	CHECK_CU(cuGraphDestroy(gg));
	CHECK_CU(cuDeviceGraphMemTrim(0));

	/* graph 3: a captured stream-ordered allocation is an allocation node */
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CUdeviceptr c = 0;
	CHECK_CU(cuMemAllocAsync(&c, N / 2, s));
	CHECK_CU(cuMemsetD8Async(c, 1, N / 2, s));
	CHECK_CU(cuMemFreeAsync(c, s));
	CUgraph g3;
	CHECK_CU(cuStreamEndCapture(s, &g3));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == 0, "capture allocated graph memory");
	CUgraphExec x3;
	CHECK_CU(cuGraphInstantiateWithFlags(&x3, g3, 0));
	CHECK_CU(cuGraphLaunch(x3, s));
	CHECK_CU(cuStreamSynchronize(s));
	CHECK(gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT) == 0 && gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) == N / 2,
	      "captured graph: used %llu reserved %llu", (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT),
	      (unsigned long long)gmem(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT));
	CHECK_CU(cuGraphExecDestroy(x3));
	CHECK_CU(cuGraphDestroy(g3));
	CHECK_CU(cuDeviceGraphMemTrim(0));
	CHECK_CU(cuStreamDestroy_v2(s));
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 == f0, "graph memory left on the device: %zu -> %zu", f0, f1);
}

/* Batched copies: both ABIs copy, bad input names the copy at fault. */
static void t_batch(void)
{
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CUdeviceptr a, b;
	CHECK_CU(cuMemAlloc_v2(&a, 8192));
	CHECK_CU(cuMemAlloc_v2(&b, 8192));
	CHECK_CU(cuMemsetD8_v2(a, 0x42, 8192));
	CHECK_CU(cuMemsetD8_v2(b, 0, 8192));
	CUdeviceptr d[2] = {b, b + 4096}, sr[2] = {a, a + 4096};
	size_t n[2] = {10, 4096}, idx[1] = {0}, fail = 7;
	unsigned int attr[16] = {1}; /* CUmemcpyAttributes: srcAccessOrder STREAM */
	CUmemcpyAttributes *at = (CUmemcpyAttributes *)attr;
	CHECK_CU(cuMemcpyBatchAsync(d, sr, n, 2, at, idx, 1, &fail, s));
	CHECK(fakecuda_stream_pending(s) == 2, "batch not queued in stream order: %lu", fakecuda_stream_pending(s));
	CHECK_CU(cuStreamSynchronize(s));
	const unsigned char *bb = (const unsigned char *)(uintptr_t)b;
	CHECK(bb[9] == 0x42 && bb[10] == 0 && bb[4096] == 0x42 && bb[8191] == 0x42, "batch copy data");
	CHECK(fail == SIZE_MAX, "failIdx after success %zu", fail);
	/* the second copy runs past its source: refused, and named */
	n[1] = 8192;
	CHECK_RC(cuMemcpyBatchAsync(d, sr, n, 2, at, idx, 1, &fail, s), CUDA_ERROR_INVALID_VALUE);
	CHECK(fail == 1, "failIdx %zu, want 1", fail);
	n[1] = 16;
	CHECK_RC(cuMemcpyBatchAsync_v2(d, sr, n, 2, at, idx, 1, NULL), CUDA_ERROR_INVALID_VALUE); /* legacy stream */
	CHECK_RC(cuMemcpyBatchAsync_v2(d, sr, n, 2, NULL, idx, 1, s), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyBatchAsync_v2_ptsz(d, sr, n, 2, at, idx, 1, NULL)); /* per-thread stream */
	CHECK_CU(cuCtxSynchronize());
	CHECK_RC(cuMemcpy3DBatchAsync_v2(1, NULL, 0, s), CUDA_ERROR_NOT_SUPPORTED);
	CHECK_CU(cuMemFree_v2(a));
	CHECK_CU(cuMemFree_v2(b));
	CHECK_CU(cuStreamDestroy_v2(s));
}

/* Destroying a context, or resetting the primary one, frees its memory. */
static void t_ctx_teardown(void)
{
	CUcontext prim = NULL, c2 = NULL;
	CHECK_CU(cuCtxGetCurrent(&prim));
	size_t f0, f1, tot;
	CHECK_CU(cuMemGetInfo_v2(&f0, &tot));
	CUdeviceptr keep, d, m, a;
	CHECK_CU(cuMemAlloc_v2(&keep, 1 << 20));
	CHECK_CU(cuCtxCreate_v2(&c2, 0, 0));
	CHECK_CU(cuMemAlloc_v2(&d, 1 << 20));
	CHECK_CU(cuMemAllocManaged(&m, 1 << 20, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuMemPrefetchAsync(m, 1 << 20, 0, NULL));
	CHECK_CU(cuMemAllocAsync(&a, 1 << 20, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 + (4 << 20) == f0, "before destroy %zu -> %zu", f0, f1);
	CHECK_CU(cuCtxDestroy_v2(c2));
	CHECK_CU(cuCtxSetCurrent(prim));
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 + (1 << 20) == f0, "cuCtxDestroy did not free its memory: %zu -> %zu", f0, f1);
	CUcontext q = NULL;
	CHECK_RC(cuPointerGetAttribute(&q, CU_POINTER_ATTRIBUTE_CONTEXT, d), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuMemFree_v2(m), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuPointerGetAttribute(&q, CU_POINTER_ATTRIBUTE_CONTEXT, keep));
	/* primary context reset */
	CHECK_CU(cuDevicePrimaryCtxReset_v2(0));
	CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
	CHECK(f1 == f0, "primary reset did not free its memory: %zu -> %zu", f0, f1);
	CHECK_RC(cuPointerGetAttribute(&q, CU_POINTER_ATTRIBUTE_CONTEXT, keep), CUDA_ERROR_INVALID_VALUE);
}

/* Pools of pinned host memory: allocations are host memory, not on the
 * emulated GPU. */
static void t_host_pools(void)
{
	for (int lt = 0; lt < 2; lt++) {
		CUmemPoolProps pr;
		memset(&pr, 0, sizeof(pr));
		pr.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
		pr.location.type = lt ? CU_MEM_LOCATION_TYPE_HOST_NUMA : CU_MEM_LOCATION_TYPE_HOST;
		CUmemoryPool p;
		CHECK_CU(cuMemPoolCreate(&p, &pr));
		size_t f0, f1, tot;
		CHECK_CU(cuMemGetInfo_v2(&f0, &tot));
		CUdeviceptr a;
		CHECK_CU(cuMemAllocFromPoolAsync(&a, 1 << 20, p, NULL));
		CHECK_CU(cuMemGetInfo_v2(&f1, &tot));
		CHECK(f1 == f0, "host pool allocation took device memory");
		CUmemorytype mt = 0;
		CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a));
		CHECK(mt == CU_MEMORYTYPE_HOST, "host pool memory type %d", (int)mt);
		CHECK_CU(cuMemsetD8Async(a, 3, 1 << 20, NULL));
		CHECK_CU(cuCtxSynchronize());
		CHECK(((unsigned char *)(uintptr_t)a)[12345] == 3, "host pool memory not host-accessible");
		cuuint64_t used = 0;
		CHECK_CU(cuMemPoolGetAttribute(p, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
		CHECK(used == 1 << 20, "host pool used %llu", (unsigned long long)used);
		CHECK_RC(cuMemFreeHost((void *)(uintptr_t)a), CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemFreeAsync(a, NULL));
		CHECK_CU(cuCtxSynchronize());
		CHECK_CU(cuMemPoolDestroy(p));
	}
	CUmemPoolProps pr;
	memset(&pr, 0, sizeof(pr));
	pr.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	pr.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
	pr.location.id = 3;
	CUmemoryPool p;
	CHECK_RC(cuMemPoolCreate(&p, &pr), CUDA_ERROR_INVALID_VALUE);
}

static void t_vmm(void)
{
	CUmemAllocationProp pr;
	memset(&pr, 0, sizeof(pr));
	pr.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	pr.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	size_t gran = 0, fr0, fr1, tot;
	CHECK_CU(cuMemGetAllocationGranularity(&gran, &pr, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	CHECK(gran == 2 << 20, "granularity %zu", gran);
	CHECK_CU(cuMemGetInfo_v2(&fr0, &tot));
	CUmemGenericAllocationHandle h;
	CHECK_CU(cuMemCreate(&h, gran, &pr, 0));
	CHECK_CU(cuMemGetInfo_v2(&fr1, &tot));
	CHECK(fr1 + gran == fr0, "cuMemCreate not accounted");
	CUdeviceptr va;
	CHECK_CU(cuMemAddressReserve(&va, 2 * gran, 0, 0, 0));
	CHECK_CU(cuMemMap(va, gran, 0, h, 0));
	CHECK_CU(cuMemMap(va + gran, gran, 0, h, 0));
	CUmemAccessDesc ad = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	CHECK_CU(cuMemSetAccess(va, 2 * gran, &ad, 1));
	CHECK_CU(cuMemsetD32_v2(va + 64, 0x01020304, 1));
	CHECK(*(unsigned *)(uintptr_t)(va + gran + 64) == 0x01020304, "two mappings of one handle do not alias");
	CHECK_RC(cuMemMap(va, gran, 0, h, 0), CUDA_ERROR_ALREADY_MAPPED);
	CHECK_CU(cuMemUnmap(va, gran));
	CHECK_CU(cuMemUnmap(va + gran, gran));
	CHECK_CU(cuMemRelease(h));
	CHECK_CU(cuMemAddressFree(va, 2 * gran));
	CHECK_CU(cuMemGetInfo_v2(&fr1, &tot));
	CHECK(fr1 == fr0, "cuMemRelease not accounted");
	CHECK_RC(cuMemCreate(&h, 4096, &pr, 0), CUDA_ERROR_INVALID_VALUE);
}

static void t_launch(void)
{
	enum { N = 48 };
	size_t bytes = N * N * sizeof(float);
	float *A = malloc(bytes), *B = malloc(bytes), *C = malloc(bytes), *R = malloc(bytes);
	for (int i = 0; i < N * N; i++) {
		A[i] = (float)((i * 7) % 13) - 6.0f;
		B[i] = (float)((i * 5) % 11) * 0.5f;
	}
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++) {
			float s = 0;
			for (int k = 0; k < N; k++)
				s += A[i * N + k] * B[k * N + j];
			R[i * N + j] = s;
		}
	CUdeviceptr dA, dB, dC;
	CHECK_CU(cuMemAllocManaged(&dA, bytes, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuMemAlloc_v2(&dB, bytes));
	CHECK_CU(cuMemAlloc_v2(&dC, bytes));
	CHECK_CU(cuMemcpyHtoD_v2(dA, A, bytes));
	CHECK_CU(cuMemcpyHtoD_v2(dB, B, bytes));
	unsigned n = N;
	void *args[] = {&dA, &dB, &dC, &n};
	CHECK_CU(cuLaunchKernel(f_mm, (N + 15) / 16, (N + 15) / 16, 1, 16, 16, 1, 0, NULL, args, NULL));
	CHECK_CU(cuMemcpyDtoH_v2(C, dC, bytes));
	CHECK(memcmp(C, R, bytes) == 0, "matmul result differs");
	CHECK(fakecuda_resident_bytes(dA) == (long long)bytes, "kernel did not fault A in: %lld",
	      fakecuda_resident_bytes(dA));
	/* legacy extra-buffer launch of the same kernel */
	struct {
		CUdeviceptr a, b, c;
		unsigned n, pad;
	} pb = {dA, dB, dC, N, 0};
	size_t pbs = 28;
	memset(C, 0, bytes);
	CHECK_CU(cuMemcpyHtoD_v2(dC, C, bytes));
	void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &pb, CU_LAUNCH_PARAM_BUFFER_SIZE, &pbs, CU_LAUNCH_PARAM_END};
	CHECK_CU(cuLaunchKernel_ptsz(f_mm, 3, 3, 1, 16, 16, 1, 0, NULL, NULL, extra));
	CHECK_CU(cuMemcpyDtoH_v2(C, dC, bytes));
	CHECK(memcmp(C, R, bytes) == 0, "matmul via extra buffer differs");
	/* cuLaunchKernelEx */
	CUlaunchConfig cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1;
	cfg.blockDimX = cfg.blockDimY = cfg.blockDimZ = 1;
	unsigned long long ns = 1000;
	void *sargs[] = {&ns};
	CHECK_CU(cuLaunchKernelEx(&cfg, f_spin, sargs, NULL));
	/* a kernel the fake does not know: params by PTX layout */
	unsigned a = 1;
	unsigned char blob[24] = {0};
	void *oargs[] = {&a, blob, &dB};
	CHECK_CU(cuLaunchKernel(f_other, 1, 1, 1, 1, 1, 1, 0, NULL, oargs, NULL));
	CHECK_RC(cuLaunchKernel(f_other, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuLaunchKernel(f_other, 1, 1, 1, 2048, 1, 1, 0, NULL, oargs, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_RC(cuLaunchKernel((CUfunction)(uintptr_t)0x99, 1, 1, 1, 1, 1, 1, 0, NULL, oargs, NULL),
		 CUDA_ERROR_INVALID_HANDLE);
	CUfunction nf;
	CHECK_RC(cuModuleGetFunction(&nf, mod, "nope"), CUDA_ERROR_NOT_FOUND);
	CUmodule bad;
	CHECK_RC(cuModuleLoadData(&bad, "this is not ptx"), CUDA_ERROR_INVALID_PTX);
	CHECK_CU(cuCtxSynchronize());
	CHECK_CU(cuMemFree_v2(dA));
	CHECK_CU(cuMemFree_v2(dB));
	CHECK_CU(cuMemFree_v2(dC));
	free(A), free(B), free(C), free(R);
}

typedef CUresult (*gpa2_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

static void expect_proc(const char *sym, int ver, int flags, const char *want)
{
	void *p = NULL;
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	CUresult r = cuGetProcAddress_v2(sym, &p, ver, (cuuint64_t)flags, &st);
	void *w = want ? dlsym(RTLD_DEFAULT, want) : NULL;
	CHECK(r == CUDA_SUCCESS && st == CU_GET_PROC_ADDRESS_SUCCESS && p && p == w,
	      "%s@%d flags %d: rc=%d status=%d, not %s", sym, ver, flags, (int)r, (int)st, want);
}

static void t_procaddr(void)
{
	expect_proc("cuMemAlloc", 12000, 0, "cuMemAlloc_v2");
	expect_proc("cuMemAlloc", 3000, 0, "cuMemAlloc");
	expect_proc("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
	expect_proc("cuGetProcAddress", 11030, 0, "cuGetProcAddress");
	expect_proc("cuLaunchKernel", 12000, 0, "cuLaunchKernel");
	expect_proc("cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuLaunchKernel_ptsz");
	expect_proc("cuLaunchKernel", 12000, 3, "cuLaunchKernel"); /* LEGACY wins */
	expect_proc("cuMemcpyHtoD", 12000, 2, "cuMemcpyHtoD_v2_ptds");
	expect_proc("cuMemcpyHtoD", 12000, 0, "cuMemcpyHtoD_v2");
	expect_proc("cuMemPrefetchAsync", 11000, 0, "cuMemPrefetchAsync");
	expect_proc("cuMemPrefetchAsync", 12020, 0, "cuMemPrefetchAsync_v2");
	expect_proc("cuMemPrefetchAsync", 13000, 2, "cuMemPrefetchAsync_v2_ptsz");
	expect_proc("cuMemAdvise", 12010, 0, "cuMemAdvise");
	expect_proc("cuStreamGetCaptureInfo", 12030, 0, "cuStreamGetCaptureInfo_v3");
	expect_proc("cuStreamGetCaptureInfo", 11030, 0, "cuStreamGetCaptureInfo_v2");
	expect_proc("cuStreamGetCaptureInfo", 12030, 2, "cuStreamGetCaptureInfo_v3_ptsz");
	expect_proc("cuGraphInstantiate", 12000, 0, "cuGraphInstantiateWithFlags");
	expect_proc("cuGraphInstantiate", 11000, 0, "cuGraphInstantiate_v2");
	expect_proc("cuCtxCreate", 12050, 0, "cuCtxCreate_v4");
	expect_proc("cuMemGetDefaultMemPool", 13000, 0, "cuMemGetDefaultMemPool");
	expect_proc("cuMemAlloc_v2", 12000, 0, "cuMemAlloc_v2"); /* exact versioned name */
	expect_proc("cuLaunchKernel_ptsz", 12000, 0, "cuLaunchKernel_ptsz");
	void *p = (void *)1;
	CUdriverProcAddressQueryResult st;
	CHECK_RC(cuGetProcAddress_v2("cuNoSuchThing", &p, 13000, 0, &st), CUDA_ERROR_NOT_FOUND);
	CHECK(p == NULL && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, "unknown symbol status %d", (int)st);
	CHECK_RC(cuGetProcAddress_v2("cuMemPrefetchAsync", &p, 7050, 0, &st), CUDA_ERROR_NOT_FOUND);
	CHECK(st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT, "old version status %d", (int)st);
	CHECK_RC(cuGetProcAddress("cuMemAlloc", &p, 12000, 8), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuGetProcAddress("cuMemAlloc", &p, 12000, 0));
	CHECK(p == dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"), "v1 resolver");
	const void *tab = (void *)1;
	CUuuid id;
	memset(&id, 0, sizeof(id));
	CHECK_RC(cuGetExportTable(&tab, &id), CUDA_ERROR_NOT_SUPPORTED);
	CHECK(tab == NULL, "export table");
}

/* ---------------------------------------------------------------- modes */

static int mode_all(void)
{
	t_devices();
	t_contexts();
	t_memory();
	t_streams();
	t_capture();
	t_pools();
	t_host_pools();
	t_graph_mem();
	t_batch();
	t_vmm();
	t_launch();
	t_procaddr();
	t_ctx_teardown(); /* last: resets the primary context */
	return ft_done("t_driver");
}

/* FAKECUDA_DRIVER_VERSION=12080: the 12.x generation */
static int mode_v12(void)
{
	ft_ctx();
	int v = 0;
	CHECK_CU(cuDriverGetVersion(&v));
	CHECK(v == 12080, "version %d", v);
	CUmemoryPool mp;
	CUmemLocation loc = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
	CHECK_RC(cuMemGetDefaultMemPool(&mp, &loc, CU_MEM_ALLOCATION_TYPE_MANAGED), CUDA_ERROR_NOT_SUPPORTED);
	CUmemPoolProps pr;
	memset(&pr, 0, sizeof(pr));
	pr.allocType = CU_MEM_ALLOCATION_TYPE_MANAGED;
	pr.location = loc;
	CHECK_RC(cuMemPoolCreate(&mp, &pr), CUDA_ERROR_NOT_SUPPORTED);
	void *p = (void *)1;
	CUdriverProcAddressQueryResult st;
	CHECK_RC(cuGetProcAddress_v2("cuMemGetDefaultMemPool", &p, 13000, 0, &st), CUDA_ERROR_NOT_FOUND);
	CHECK(st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, "status %d", (int)st);
	expect_proc("cuMemPrefetchAsync", 12080, 0, "cuMemPrefetchAsync_v2");
	return ft_done("t_driver v12");
}

/* FAKECUDA_FAIL=cuMemAllocManaged:2,cuLaunchKernel:1+:719 */
static int mode_faults(void)
{
	ft_ctx();
	CUdeviceptr a, b, c;
	CHECK_CU(cuMemAllocManaged(&a, 4096, CU_MEM_ATTACH_GLOBAL));
	CHECK_RC(cuMemAllocManaged(&b, 4096, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemAllocManaged(&c, 4096, CU_MEM_ATTACH_GLOBAL));
	CHECK(fakecuda_call_count("cuMemAllocManaged") == 3, "count %lu", fakecuda_call_count("cuMemAllocManaged"));
	load_module();
	CHECK_RC(spin(NULL, 10), CUDA_ERROR_LAUNCH_FAILED);
	CHECK_RC(spin(NULL, 10), CUDA_ERROR_LAUNCH_FAILED);
	CHECK(fakecuda_call_count("cuLaunchKernel") == 2, "launch count");
	CHECK_CU(cuMemFree_v2(a));
	CHECK_CU(cuMemFree_v2(c));
	return ft_done("t_driver faults");
}

/* FAKECUDA_LOG=path: run.sh checks the lines */
static int mode_log(void)
{
	ft_ctx();
	CUdeviceptr a;
	CHECK_CU(cuMemAlloc_v2(&a, 4096));
	CHECK_CU(cuMemFree_v2(a));
	return ft_done("t_driver log");
}

/* after an illegal address the context is broken: sticky error */
static int mode_sticky(void)
{
	ft_ctx();
	load_module();
	CUdeviceptr a;
	CHECK_CU(cuMemAlloc_v2(&a, 64));
	unsigned n = 64; /* 64x64 floats do not fit in 64 bytes */
	void *args[] = {&a, &a, &a, &n};
	CHECK_CU(cuLaunchKernel(f_mm, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
	CHECK_RC(cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS);
	CHECK_RC(cuStreamSynchronize(NULL), CUDA_ERROR_ILLEGAL_ADDRESS);
	return ft_done("t_driver sticky");
}

static void *worker(void *arg)
{
	CUcontext c = arg;
	CHECK_CU(cuCtxSetCurrent(c));
	CUstream s;
	CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (int i = 0; i < 40; i++) {
		CUdeviceptr m;
		CHECK_CU(cuMemAllocManaged(&m, 8192 + (size_t)i * 64, CU_MEM_ATTACH_GLOBAL));
		CHECK_CU(cuMemsetD8Async(m, (unsigned char)i, 8192, s));
		CHECK_CU(touch(s, m, 2048));
		CHECK_CU(cuMemPrefetchAsync(m, 8192, i % 2 ? 0 : CU_DEVICE_CPU, s));
		CHECK_CU(cuMemsetD8Async_ptsz(m, 1, 16, NULL));
		CHECK_CU(cuMemFreeAsync(m, s));
		if (i % 8 == 0)
			CHECK_CU(cuStreamSynchronize(s));
	}
	CHECK_CU(cuStreamSynchronize(s));
	CHECK_CU(cuStreamSynchronize_ptsz(NULL));
	CHECK_CU(cuStreamDestroy_v2(s));
	return NULL;
}

/* concurrent use from 8 threads (also run under valgrind) */
static int mode_threads(void)
{
	CUcontext c = ft_ctx();
	load_module();
	size_t fr0, fr1, tot;
	CHECK_CU(cuMemGetInfo_v2(&fr0, &tot));
	pthread_t th[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, worker, c);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	CHECK_CU(cuCtxSynchronize());
	CHECK_CU(cuMemGetInfo_v2(&fr1, &tot));
	CHECK(fr0 == fr1, "leaked device memory: %zu -> %zu", fr0, fr1);
	CHECK_CU(cuModuleUnload(mod));
	return ft_done("t_driver threads");
}

/* every exported cu* symbol (names on stdin) resolves to itself by name */
static int mode_symbols(void)
{
	CHECK_CU(cuInit(0));
	char line[256];
	int n = 0;
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		void *p = NULL;
		CUdriverProcAddressQueryResult st;
		CUresult r = cuGetProcAddress_v2(line, &p, 99999, 0, &st);
		/* versioned and per-thread names resolve to themselves; a base
		 * name resolves to its newest ABI */
		int exact = strstr(line, "_pt") || strstr(line, "_v");
		CHECK(r == CUDA_SUCCESS && p && (!exact || p == dlsym(RTLD_DEFAULT, line)),
		      "%s not resolvable by cuGetProcAddress (rc=%d)", line, (int)r);
		n++;
	}
	CHECK(n > 200, "only %d symbols", n);
	return ft_done("t_driver symbols");
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "all";
	if (!strcmp(m, "all"))
		return mode_all();
	if (!strcmp(m, "v12"))
		return mode_v12();
	if (!strcmp(m, "faults"))
		return mode_faults();
	if (!strcmp(m, "log"))
		return mode_log();
	if (!strcmp(m, "sticky"))
		return mode_sticky();
	if (!strcmp(m, "threads"))
		return mode_threads();
	if (!strcmp(m, "symbols"))
		return mode_symbols();
	fprintf(stderr, "usage: t_driver [all|v12|faults|log|sticky|threads|symbols]\n");
	return 2;
}
