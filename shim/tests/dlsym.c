/*
 * Test 3, dlsym bindings. Built twice: dlsym_new references dlsym@GLIBC_2.34
 * (the default on glibc >= 2.34), dlsym_old (-DOLD_BINDING) references
 * dlsym@GLIBC_2.2.5 like binaries linked on older glibc. Both must reach the
 * shim, and RTLD_NEXT must stay relative to the caller.
 */
#include "t.h"

#ifdef OLD_BINDING
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
#define NAME "dlsym_old"
#else
#define NAME "dlsym_new"
#endif

int main(void)
{
	t_fake_init();
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	CHECK(h != NULL, "dlopen: %s", dlerror());
	if (!h)
		return t_done(NAME);
	void *p = dlsym(h, "cuMemAlloc_v2");
	CHECK(t_is(p, "libsluice", "cuMemAlloc_v2"), "cuMemAlloc_v2 -> %s", t_where(p, NULL));
	p = dlsym(h, "cuLaunchKernel_ptsz");
	CHECK(t_is(p, "libsluice", "cuLaunchKernel_ptsz"), "cuLaunchKernel_ptsz -> %s", t_where(p, NULL));
	p = dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2");
	CHECK(t_is(p, "libsluice", "cuGetProcAddress_v2"), "RTLD_DEFAULT -> %s", t_where(p, NULL));
	/* Not ours: the driver's own, found with the caller's handle. */
	p = dlsym(h, "cuCtxSynchronize");
	CHECK(t_is(p, "libcuda", "cuCtxSynchronize"), "cuCtxSynchronize -> %s", t_where(p, NULL));
	CHECK(dlsym(h, "cuNoSuchFunction") == NULL, "unknown name found");
	CHECK(dlerror() != NULL, "dlerror not set for a missing name");
	/* RTLD_NEXT from the main program: the next object is the preloaded
	 * shim, whose dlsym is the next "dlsym". A dlsym that called the real
	 * one from C would answer relative to the shim: libc's. */
	p = dlsym(RTLD_NEXT, "dlsym");
	CHECK(strstr(t_where(p, NULL), "libsluice") != NULL, "RTLD_NEXT dlsym -> %s", t_where(p, NULL));
	p = dlsym(RTLD_NEXT, "cuMemAlloc_v2");
	CHECK(t_is(p, "libsluice", "cuMemAlloc_v2"), "RTLD_NEXT cuMemAlloc_v2 -> %s", t_where(p, NULL));
	p = dlsym(RTLD_NEXT, "malloc");
	CHECK(strstr(t_where(p, NULL), "libc.so") != NULL, "RTLD_NEXT malloc -> %s", t_where(p, NULL));
	/* The resolved wrapper works. */
	CUresult (*init)(unsigned) = (CUresult(*)(unsigned))dlsym(h, "cuInit");
	CHECK(init != NULL && init(0) == CUDA_SUCCESS, "cuInit via dlsym");
	return t_done(NAME);
}
