/*
 * Test helpers for the fake CUDA driver's own tests (EMULATOR / TEST DOUBLE).
 * The CHECK macros are shim/include/t_check.h's (shared with the shim's
 * tests): each failed CHECK prints file:line and the message and counts a
 * failure; ft_done() prints "<name>: ok" or the failure count and returns the exit
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
#include "t_check.h"

static inline double ft_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int ft_done(const char *name)
{
	if (t_failures) {
		printf("%s: %d failure(s)\n", name, t_failures);
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
