package bpf

// probeKind names which BPF program handles a driver function.
type probeKind int

const (
	kindLaunch probeKind = iota
	kindSync
	kindMemcpy      // synchronous copies: timed, entry and return probe
	kindMemcpyAsync // entry probe only
	kindPrefetch
	kindAlloc
	kindFree
)

// memcpySync marks a synchronous copy's cookie (MEMCPY_SYNC in probe.h).
const memcpySync = 256

// symbol is one probed driver function. cookie is passed to the program
// (bpf_get_attach_cookie): the API or copy direction index.
type symbol struct {
	name   string
	kind   probeKind
	cookie uint64
}

// symbols lists every driver function Sluice probes. Functions the library
// lacks are skipped (the fake driver exports a subset; old drivers lack
// the _ptsz and Ex variants).
var symbols = []symbol{
	{"cuLaunchKernel", kindLaunch, LaunchKernel},
	{"cuLaunchKernel_ptsz", kindLaunch, LaunchKernelPtsz},
	{"cuLaunchCooperativeKernel", kindLaunch, LaunchKernel},
	{"cuLaunchCooperativeKernel_ptsz", kindLaunch, LaunchKernelPtsz},
	{"cuLaunchKernelEx", kindLaunch, LaunchKernelEx},
	{"cuLaunchKernelEx_ptsz", kindLaunch, LaunchKernelEx},
	{"cuGraphLaunch", kindLaunch, LaunchGraph},
	{"cuGraphLaunch_ptsz", kindLaunch, LaunchGraph},

	{"cuCtxSynchronize", kindSync, SyncCtx},
	{"cuCtxSynchronize_v2", kindSync, SyncCtx}, // newer drivers: takes the context
	{"cuStreamSynchronize", kindSync, SyncStream},
	{"cuStreamSynchronize_ptsz", kindSync, SyncStream},
	{"cuEventSynchronize", kindSync, SyncEvent},

	// cuMemcpy*(dst, src, bytes[, stream]): bytes is the third argument.
	{"cuMemcpyHtoD_v2", kindMemcpy, MemcpyHtoD | memcpySync},
	{"cuMemcpyHtoD_v2_ptds", kindMemcpy, MemcpyHtoD | memcpySync},
	{"cuMemcpyHtoDAsync_v2", kindMemcpyAsync, MemcpyHtoD},
	{"cuMemcpyHtoDAsync_v2_ptsz", kindMemcpyAsync, MemcpyHtoD},
	{"cuMemcpyDtoH_v2", kindMemcpy, MemcpyDtoH | memcpySync},
	{"cuMemcpyDtoH_v2_ptds", kindMemcpy, MemcpyDtoH | memcpySync},
	{"cuMemcpyDtoHAsync_v2", kindMemcpyAsync, MemcpyDtoH},
	{"cuMemcpyDtoHAsync_v2_ptsz", kindMemcpyAsync, MemcpyDtoH},
	{"cuMemcpyDtoD_v2", kindMemcpy, MemcpyDtoD | memcpySync},
	{"cuMemcpyDtoD_v2_ptds", kindMemcpy, MemcpyDtoD | memcpySync},
	{"cuMemcpyDtoDAsync_v2", kindMemcpyAsync, MemcpyDtoD},
	{"cuMemcpyDtoDAsync_v2_ptsz", kindMemcpyAsync, MemcpyDtoD},
	{"cuMemcpy", kindMemcpy, MemcpyUnified | memcpySync},
	{"cuMemcpy_ptds", kindMemcpy, MemcpyUnified | memcpySync},
	{"cuMemcpyAsync", kindMemcpyAsync, MemcpyUnified},
	{"cuMemcpyAsync_ptsz", kindMemcpyAsync, MemcpyUnified},

	// cuMemPrefetchAsync(ptr, bytes, ...) and its _v2 (CUDA 12.2+).
	{"cuMemPrefetchAsync", kindPrefetch, 0},
	{"cuMemPrefetchAsync_ptsz", kindPrefetch, 0},
	{"cuMemPrefetchAsync_v2", kindPrefetch, 0},
	{"cuMemPrefetchAsync_v2_ptsz", kindPrefetch, 0},

	{"cuMemAlloc_v2", kindAlloc, AllocDevice},
	{"cuMemAllocManaged", kindAlloc, AllocManaged},
	{"cuMemAllocAsync", kindAlloc, AllocAsync},
	{"cuMemAllocAsync_ptsz", kindAlloc, AllocAsync},
	// cuMemAllocFromPoolAsync(dptr, bytes, pool, stream): same first two arguments.
	{"cuMemAllocFromPoolAsync", kindAlloc, AllocAsync},
	{"cuMemAllocFromPoolAsync_ptsz", kindAlloc, AllocAsync},

	{"cuMemFree_v2", kindFree, 0},
	{"cuMemFreeAsync", kindFree, 0},
	{"cuMemFreeAsync_ptsz", kindFree, 0},
}
