/*
 * Test helpers for the fake CUDA driver's own tests (EMULATOR / TEST DOUBLE).
 * Each failed CHECK prints file:line and the message and counts a failure;
 * ft_done() prints "<name>: ok" or the failure count and returns the exit
 * status.
 */
#ifndef SLUICE_FT_H
#define SLUICE_FT_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_min.h"
#include "fake_extra.h"

static int ft_failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			ft_failures++;                                            \
		}                                                                 \
	} while (0)

#define CHECK_CU(call)                                                            \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == CUDA_SUCCESS, "%s returned %d", #call, (int)r_);     \
	} while (0)

#define CHECK_RC(call, want)                                                      \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == (want), "%s returned %d, want %d", #call, (int)r_, (int)(want)); \
	} while (0)

static inline double ft_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int ft_done(const char *name)
{
	if (ft_failures) {
		printf("%s: %d failure(s)\n", name, ft_failures);
		fflush(stdout);
		return 1;
	}
	printf("%s: ok\n", name);
	fflush(stdout);
	return 0;
}

static inline CUcontext ft_ctx(void)
{
	CUcontext c = NULL;
	CHECK_CU(cuInit(0));
	CHECK_CU(cuDevicePrimaryCtxRetain(&c, 0));
	CHECK_CU(cuCtxSetCurrent(c));
	return c;
}

#endif
