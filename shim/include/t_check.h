/*
 * shim/include/t_check.h - the assertion macros shared by Sluice's C test
 * programs: the shim's (shim/tests/t.h) and the fake CUDA driver's
 * (shim/fakecuda/tests/ft.h). Test code only; never included by the shim or
 * the fake driver themselves.
 *
 * A failed CHECK prints "FAIL file:line: condition: message" on stderr and
 * counts the failure in t_failures; the program's done function reports the
 * count and gives the exit status. t_graph_alloc_params() is the graph
 * allocation node both test suites make.
 */
#ifndef SLUICE_T_CHECK_H
#define SLUICE_T_CHECK_H

#include <stdio.h>
#include <string.h>

#include "cuda_min.h"

static int t_failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			t_failures++;                                             \
		}                                                                 \
	} while (0)

#define CHECK_CU(call)                                                            \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == CUDA_SUCCESS, "%s returned %d", #call, (int)r_);      \
	} while (0)

#define CHECK_RC(call, want)                                                      \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == (want), "%s returned %d, want %d", #call, (int)r_, (int)(want)); \
	} while (0)

/* Parameters of a graph allocation node: bytes of device 0's memory
 * (pinned, device-located pool properties, everything else zero). */
static inline CUDA_MEM_ALLOC_NODE_PARAMS t_graph_alloc_params(size_t bytes)
{
	CUDA_MEM_ALLOC_NODE_PARAMS ap;
	memset(&ap, 0, sizeof(ap));
	ap.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	ap.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	ap.poolProps.location.id = 0;
	ap.bytesize = bytes;
	return ap;
}

#endif
