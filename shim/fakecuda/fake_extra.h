/*
 * EMULATOR / TEST DOUBLE -- part of Sluice's fake CUDA driver.
 *
 * The fake's test hooks (not part of any CUDA API). Every driver-API entry
 * point it exports is declared in shim/include/cuda_min.h, the single source
 * of the driver API's declarations.
 */
#ifndef SLUICE_FAKE_EXTRA_H
#define SLUICE_FAKE_EXTRA_H

#include "cuda_min.h"

#ifdef __cplusplus
extern "C" {
#endif

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
