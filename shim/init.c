/*
 * shim/init.c - lazy initialization, configuration, logging, fork handling
 * and the dlsym door.
 *
 * Nothing runs at load time: no constructor, no NVML, no context. The first
 * call into any entry point (a wrapper, our dlsym for a driver name, or
 * cuGetProcAddress) runs shim_init() once through pthread_once. Submission
 * wrappers get there through the gate word, which starts non-zero.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

_Atomic uint32_t shim_gate = GATE_INIT;
struct shim_config shim_cfg;
void *shim_driver;
void *(*real_dlsym_ptr)(void *, const char *);

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_once_t dlsym_once = PTHREAD_ONCE_INIT;
static __thread int in_init;

/* ------------------------------------------------------------- logging */

static void vlog(const char *level, const char *fmt, va_list ap)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "sluice-shim[%d] %s: ", (int)getpid(), level);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		int m = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(2, buf, n);
	(void)w;
}

void shim_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("debug", fmt, ap);
	va_end(ap);
}

void shim_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("warning", fmt, ap);
	va_end(ap);
}

/* --------------------------------------------------------------- dlsym */

static void *no_dlsym(void *h, const char *n)
{
	(void)h;
	(void)n;
	return NULL;
}

static void resolve_real_dlsym(void)
{
	/* dlvsym, not dlsym: our own dlsym would find itself. */
	void *p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (p == NULL)
		p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	real_dlsym_ptr = p ? (void *(*)(void *, const char *))p : no_dlsym;
}

void *shim_real_dlsym(void *handle, const char *name)
{
	pthread_once(&dlsym_once, resolve_real_dlsym);
	return real_dlsym_ptr(handle, name);
}

/*
 * Called by the dlsym entry (dlsym_x86_64.S). Returns 0 to let the real
 * dlsym answer with the caller's own return address, or 1 with *out set.
 * Driver names in our table come back as our wrapper when the real lookup
 * finds the driver's export (or our own); other libraries' symbols of the
 * same name, and every other name, are left alone.
 */
SHIM_HIDDEN int shim_dlsym_hook(void *handle, const char *name, void **out)
{
	pthread_once(&dlsym_once, resolve_real_dlsym);
	/* RTLD_NEXT is the caller's business: from the program it finds our
	 * export anyway (we are preloaded); from a library loaded after us it
	 * must find what follows that library, or another interposer that asks
	 * for "the next cuMemAlloc_v2" would get itself back. */
	if (handle == RTLD_NEXT)
		return 0;
	int i = sym_lookup(name);
	if (i < 0 || sym_info[i].hook == NULL || in_init)
		return 0;
	shim_ensure_init();
	void *r = real_dlsym_ptr(handle, name);
	if (r == NULL) {
		*out = NULL;
		return 1;
	}
	void *expected = NULL;
	if (r == sym_info[i].hook || r == sym_real_get(i) ||
	    __atomic_compare_exchange_n(&sym_real[i], &expected, r, 0, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED)) {
		SHIM_LOG("dlsym(%s) -> wrapper", name);
		*out = sym_info[i].hook;
		return 1;
	}
	*out = r;
	return 1;
}

#ifndef __x86_64__
/* Other architectures: a C entry (RTLD_NEXT lookups become relative to the
 * shim). The version script names the per-arch glibc baseline. */
SHIM_EXPORT void *dlsym(void *handle, const char *name)
{
	void *out;
	if (shim_dlsym_hook(handle, name, &out))
		return out;
	return real_dlsym_ptr(handle, name);
}
#endif

/* ---------------------------------------------------------------- init */

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return def;
	/* decimal digits by hand: glibc 2.38 and newer redirect strtoull to a
	 * C23 symbol that older systems' glibc lacks (check_syms.sh) */
	uint64_t x = 0;
	for (const char *c = v; *c != '\0'; c++) {
		if (*c < '0' || *c > '9' || x > (UINT64_MAX - (uint64_t)(*c - '0')) / 10) {
			shim_warn("ignoring %s=%s: not a number", name, v);
			return def;
		}
		x = x * 10 + (uint64_t)(*c - '0');
	}
	return x;
}

static void copy_env(char *dst, size_t n, const char *name)
{
	const char *v = getenv(name);
	dst[0] = '\0';
	if (v == NULL)
		return;
	if (strlen(v) >= n) {
		shim_warn("ignoring %s: longer than %zu bytes", name, n - 1);
		return;
	}
	strcpy(dst, v);
}

static void atfork_prepare(void)
{
	ctl_atfork_prepare();
	mem_atfork_prepare();
}

static void atfork_parent(void)
{
	mem_atfork_parent();
	ctl_atfork_parent();
}

static void atfork_child(void)
{
	mem_atfork_child();
	ctl_atfork_child();
}

static void do_init(void)
{
	in_init = 1;
	pthread_once(&dlsym_once, resolve_real_dlsym);
	const char *log = getenv("SLUICE_LOG");
	shim_cfg.log = log != NULL && *log != '\0' && strcmp(log, "0") != 0;
	const char *uvm = getenv("SLUICE_UVM");
	shim_cfg.convert = !(uvm != NULL && strcmp(uvm, "0") == 0);
	const char *populate = getenv("SLUICE_POPULATE");
	shim_cfg.populate = !(populate != NULL && strcmp(populate, "0") == 0);
	shim_cfg.reserve = env_u64("SLUICE_RESERVE_MB", 1536) << 20;
	const char *watch = getenv("SLUICE_RECONNECT_WATCH");
	shim_cfg.reconnect_watch = watch != NULL && strcmp(watch, "1") == 0;
	copy_env(shim_cfg.socket, sizeof(shim_cfg.socket), "SLUICE_SOCKET");
	copy_env(shim_cfg.function, sizeof(shim_cfg.function), "SLUICE_FUNCTION");

	/* Our soname is not libcuda.so.1, so this is the real driver (or the
	 * fake one first on LD_LIBRARY_PATH in tests). */
	shim_driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (shim_driver == NULL)
		shim_warn("cannot load libcuda.so.1 (%s): driver calls will fail", dlerror());
	syms_resolve(shim_driver);
	if (shim_cfg.socket[0])
		mem_init_shared();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	SHIM_LOG("initialized: driver=%p convert=%d reserve=%llu socket=%s", shim_driver,
		 shim_cfg.convert, (unsigned long long)shim_cfg.reserve,
		 shim_cfg.socket[0] ? shim_cfg.socket : "(standalone)");
	uint32_t clear = GATE_INIT;
	if (shim_cfg.socket[0])
		atomic_fetch_or(&shim_gate, GATE_REGISTER);
	atomic_fetch_and(&shim_gate, ~clear);
	in_init = 0;
}

void shim_init(void)
{
	if (in_init)
		return;
	pthread_once(&init_once, do_init);
}

/* The slow path of every submission wrapper. */
void gate_slow(CUstream s)
{
	uint32_t g = atomic_load_explicit(&shim_gate, memory_order_acquire);
	if (g & GATE_INIT)
		shim_init();
	if (g & GATE_REGISTER || (atomic_load(&shim_gate) & GATE_REGISTER))
		ctl_kick();
	if (atomic_load_explicit(&shim_gate, memory_order_acquire) & GATE_PREFETCH)
		ctl_prefetch_wait(s);
}

/* ------------------------------------------------------ entry points */

SHIM_EXPORT CUresult cuInit(unsigned int flags)
{
	shim_ensure_init();
	cuInit_fn fn = REAL(cuInit);
	if (fn == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	CUresult r = fn(flags);
	if (r == CUDA_SUCCESS)
		ctl_kick();
	return r;
}

SHIM_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
				      cuuint64_t flags)
{
	shim_ensure_init();
	cuGetProcAddress_fn fn = REAL(cuGetProcAddress);
	if (fn == NULL)
		return CUDA_ERROR_NOT_FOUND;
	/* The documented answer; a driver may not check before writing. */
	if (symbol == NULL || pfn == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = fn(symbol, pfn, cudaVersion, flags);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = sym_swap_proc(symbol, *pfn, cudaVersion, flags);
	return r;
}

SHIM_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
					 cuuint64_t flags,
					 CUdriverProcAddressQueryResult *symbolStatus)
{
	shim_ensure_init();
	cuGetProcAddress_v2_fn fn = REAL(cuGetProcAddress_v2);
	if (fn == NULL)
		return CUDA_ERROR_NOT_FOUND;
	/* The documented answer; a driver may not check before writing. */
	if (symbol == NULL || pfn == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = fn(symbol, pfn, cudaVersion, flags, symbolStatus);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = sym_swap_proc(symbol, *pfn, cudaVersion, flags);
	return r;
}
