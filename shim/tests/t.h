/*
 * shim/tests/t.h - tiny test harness for the shim's C test programs.
 *
 * The programs run with LD_PRELOAD=build/libsluice.so against the fake
 * driver (build/fakecuda/libcuda.so.1, first on LD_LIBRARY_PATH) or a real
 * one. Fake-only assertions use the fake's test hooks, looked up at run time;
 * on a real driver they are skipped (FAKE is NULL).
 */
#ifndef SLUICE_SHIM_T_H
#define SLUICE_SHIM_T_H
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_min.h"
#include "t_check.h"

static __attribute__((unused)) int t_done(const char *name)
{
	if (t_failures) {
		fprintf(stderr, "%s: %d failure(s)\n", name, t_failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

/* The fake driver's test hooks, NULL on a real driver. */
struct t_fake {
	unsigned long (*calls)(const char *name);
	long long (*resident)(CUdeviceptr p);
};
static struct t_fake FAKE;

static __attribute__((unused)) int t_fake_init(void)
{
	FAKE.calls = (unsigned long (*)(const char *))dlsym(RTLD_DEFAULT, "fakecuda_call_count");
	FAKE.resident = (long long (*)(CUdeviceptr))dlsym(RTLD_DEFAULT, "fakecuda_resident_bytes");
	return FAKE.calls != NULL;
}

static __attribute__((unused)) unsigned long t_calls(const char *name)
{
	return FAKE.calls ? FAKE.calls(name) : 0;
}

/* Is p a managed allocation (fake only; 1 on a real driver via attribute). */
static __attribute__((unused)) int t_is_managed(CUdeviceptr p)
{
	if (FAKE.resident)
		return FAKE.resident(p) >= 0;
	unsigned int m = 0;
	return cuPointerGetAttribute(&m, CU_POINTER_ATTRIBUTE_IS_MANAGED, p) == CUDA_SUCCESS && m;
}

/* Which object and symbol p belongs to. */
static const char *t_where(void *p, const char **sym)
{
	Dl_info di;
	if (p == NULL || !dladdr(p, &di)) {
		if (sym)
			*sym = "?";
		return "?";
	}
	if (sym)
		*sym = di.dli_sname ? di.dli_sname : "?";
	return di.dli_fname ? di.dli_fname : "?";
}

static __attribute__((unused)) int t_in_shim(void *p)
{
	return strstr(t_where(p, NULL), "libsluice") != NULL;
}

static __attribute__((unused)) int t_is(void *p, const char *lib, const char *sym)
{
	const char *s;
	const char *f = t_where(p, &s);
	return strstr(f, lib) != NULL && strcmp(s, sym) == 0;
}

static __attribute__((unused)) CUcontext t_ctx(void)
{
	CUdevice d;
	CUcontext c = NULL;
	CHECK_CU(cuInit(0));
	CHECK_CU(cuDeviceGet(&d, 0));
	CHECK_CU(cuDevicePrimaryCtxRetain(&c, d));
	CHECK_CU(cuCtxSetCurrent(c));
	return c;
}

/* A kernel for launches: the fake emulates unknown kernels by name; a real
 * driver JIT-compiles it. */
static const char t_ptx[] =
	".version 7.0\n.target sm_50\n.address_size 64\n"
	".visible .entry sluice_noop(.param .u64 p)\n{\n\tret;\n}\n";

static __attribute__((unused)) CUfunction t_noop(void)
{
	CUmodule m = NULL;
	CUfunction f = NULL;
	CHECK_CU(cuModuleLoadData(&m, t_ptx));
	CHECK_CU(cuModuleGetFunction(&f, m, "sluice_noop"));
	return f;
}

#endif
