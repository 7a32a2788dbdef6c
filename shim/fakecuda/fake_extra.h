/*
 * EMULATOR / TEST DOUBLE -- part of Sluice's fake CUDA driver.
 *
 * Driver-API entry points the fake exports that shim/include/cuda_min.h
 * (owned by the shim) does not declare. Names and ABIs follow the public
 * CUDA driver API.
 */
#ifndef SLUICE_FAKE_EXTRA_H
#define SLUICE_FAKE_EXTRA_H

#include "cuda_min.h"

#ifdef __cplusplus
extern "C" {
#endif

CUresult CUDAAPI cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev);
CUresult CUDAAPI cuCtxDestroy(CUcontext ctx);
CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx);
CUresult CUDAAPI cuCtxPopCurrent(CUcontext *pctx);
CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev);
CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev);
CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags);
CUresult CUDAAPI cuMemFree(CUdeviceptr_v1 dptr);
CUresult CUDAAPI cuStreamDestroy(CUstream hStream);
CUresult CUDAAPI cuEventDestroy(CUevent hEvent);
CUresult CUDAAPI cuStreamGetPriority(CUstream hStream, int *priority);
CUresult CUDAAPI cuStreamGetPriority_ptsz(CUstream hStream, int *priority);
CUresult CUDAAPI cuStreamGetFlags_ptsz(CUstream hStream, unsigned int *flags);
CUresult CUDAAPI cuStreamAddCallback_ptsz(CUstream hStream, CUstreamCallback callback,
                                          void *userData, unsigned int flags);
CUresult CUDAAPI cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream,
                                             unsigned int flags);
CUresult CUDAAPI cuStreamBeginCapture(CUstream hStream);
CUresult CUDAAPI cuStreamBeginCapture_ptsz(CUstream hStream);
CUresult CUDAAPI cuStreamGetCaptureInfo_ptsz(CUstream hStream,
                                             CUstreamCaptureStatus *captureStatus,
                                             cuuint64_t *id);
CUresult CUDAAPI cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream,
                                                CUstreamCaptureStatus *captureStatus_out,
                                                cuuint64_t *id_out, CUgraph *graph_out,
                                                const CUgraphNode **dependencies_out,
                                                size_t *numDependencies_out);
CUresult CUDAAPI cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream,
                                                CUstreamCaptureStatus *captureStatus_out,
                                                cuuint64_t *id_out, CUgraph *graph_out,
                                                const CUgraphNode **dependencies_out,
                                                const CUgraphEdgeData **edgeData_out,
                                                size_t *numDependencies_out);
CUresult CUDAAPI cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph,
                                       CUgraphNode *phErrorNode, char *logBuffer,
                                       size_t bufferSize);
CUresult CUDAAPI cuMemsetD16(CUdeviceptr dstDevice, unsigned short us, size_t N);
CUresult CUDAAPI cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams,
                                unsigned int flags, CUdevice dev);

/* Test hooks of the fake (not part of any CUDA API). */
/* Number of calls the fake has seen for `name` in this process. */
unsigned long fakecuda_call_count(const char *name);
/* Bytes of the allocation containing ptr that are resident on the emulated
 * device, or -1 if ptr is not a managed allocation of this process. */
long long fakecuda_resident_bytes(CUdeviceptr ptr);
/* Pending (not yet executed) operations on a stream (0 = legacy). */
unsigned long fakecuda_stream_pending(CUstream s);
/* Test only: take the emulated device's shared lock and exit while holding
 * it, to exercise EOWNERDEAD recovery. Never returns. */
void fakecuda_test_die_holding_lock(int status);

#ifdef __cplusplus
}
#endif
#endif
