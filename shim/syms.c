/*
 * shim/syms.c - the symbol table expanded: generated gate wrappers, the
 * real-pointer table, the hook table, and the ABI-exact swap used by both
 * the dlsym and the cuGetProcAddress doors.
 */
#define _GNU_SOURCE
#include <string.h>

#include "shim.h"

/* Generated wrappers. A GATE wrapper costs one atomic load while no prefetch
 * is in flight; OWN wrappers live in mem.c/proc.c; USE entries have none. */
#define WRAP_USE(name, stream, ret, params, args)
#define WRAP_OWN(name, stream, ret, params, args)
#define WRAP_GATE(name, stream, ret, params, args)                                      \
	static __attribute__((noinline, cold)) ret name##_slow params                   \
	{                                                                                \
		gate_slow(stream);                                                       \
		name##_fn fn_ = REAL(name);                                              \
		if (fn_ == NULL)                                                         \
			return CUDA_ERROR_NOT_FOUND;                                     \
		return fn_ args;                                                         \
	}                                                                                \
	SHIM_EXPORT ret name params                                                      \
	{                                                                                \
		uint32_t gate_w_ = atomic_load_explicit(&shim_gate, memory_order_acquire); \
		name##_fn fn_ = REAL(name);                                              \
		if (likely(gate_w_ == 0 && fn_ != NULL))                                  \
			return fn_ args;                                                 \
		return name##_slow args;                                                 \
	}
#define X(name, kind, base, ver, pt, stream, ret, params, args) \
	WRAP_##kind(name, stream, ret, params, args)
#include "syms.def"
#undef X

/* The hook table. An OWN entry without a hand-written wrapper is an
 * undefined reference here, and the link (-z defs) fails: the build-time
 * check that every entry has a wrapper. */
#define HOOK_USE(name) NULL
#define HOOK_OWN(name) (void *)name
#define HOOK_GATE(name) (void *)name
const struct sym_info sym_info[SYM_COUNT] = {
#define X(name, kind, base, ver, pt, ...) \
	[SYM_##name] = {#name, #base, ver, pt, HOOK_##kind(name)},
#include "syms.def"
#undef X
};

void *sym_real[SYM_COUNT];

int sym_lookup(const char *name)
{
	if (name == NULL || name[0] != 'c' || name[1] != 'u')
		return -1;
	for (int i = 0; i < SYM_COUNT; i++)
		if (strcmp(sym_info[i].name, name) == 0)
			return i;
	return -1;
}

void syms_resolve(void *driver)
{
	for (int i = 0; i < SYM_COUNT; i++) {
		void *p = driver ? shim_real_dlsym(driver, sym_info[i].name) : NULL;
		__atomic_store_n(&sym_real[i], p, __ATOMIC_RELAXED);
	}
}

/*
 * Which variant does a caller of cuGetProcAddress(base, version, flags) get?
 * The newest variant of base at or below version, per-thread variants when
 * the caller asked for the per-thread default stream (and not for legacy).
 * Bases without per-thread variants serve both.
 */
static int sym_variant(const char *base, int version, cuuint64_t flags)
{
	int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) &&
		      !(flags & CU_GET_PROC_ADDRESS_LEGACY_STREAM);
	int best = -1, best_any = -1;
	for (int i = 0; i < SYM_COUNT; i++) {
		const struct sym_info *s = &sym_info[i];
		if (s->ver > version || strcmp(s->base, base) != 0)
			continue;
		if (s->pt == want_pt && (best < 0 || s->ver > sym_info[best].ver))
			best = i;
		if (!s->pt && (best_any < 0 || s->ver > sym_info[best_any].ver))
			best_any = i;
	}
	return best >= 0 ? best : best_any;
}

/*
 * Guard for the table path: a driver newer than this table may know a newer
 * ABI variant of the base than we do (CUDA releases add _v2/_v3 variants),
 * and wrapping its pointer in our older variant's wrapper would call the
 * wrong ABI. Ask the real resolver for the base at the version where our
 * variant begins (never below 11030, the first version cuGetProcAddress
 * serves): the same pointer means the caller gets our variant. A different
 * one means an unknown newer variant: the caller gets the driver's pointer
 * unwrapped (correct, but not intercepted; warned once). If the question
 * cannot be answered, the table decides, as before.
 */
static _Atomic unsigned char unknown_warned[SYM_COUNT];

static int variant_confirmed(int i, const char *base, void *p, int cuda_version, cuuint64_t flags)
{
	int v = sym_info[i].ver < 11030 ? 11030 : sym_info[i].ver;
	if (v >= cuda_version)
		return 1;
	void *q = NULL;
	CUresult r;
	cuGetProcAddress_v2_fn v2 = REAL(cuGetProcAddress_v2);
	if (v2 != NULL) {
		CUdriverProcAddressQueryResult st;
		r = v2(base, &q, v, flags, &st);
	} else if (REAL(cuGetProcAddress) != NULL) {
		r = REAL(cuGetProcAddress)(base, &q, v, flags);
	} else {
		return 1;
	}
	if (r != CUDA_SUCCESS || q == NULL || q == p)
		return 1;
	if (!atomic_exchange(&unknown_warned[i], 1))
		shim_warn("cuGetProcAddress(%s, %d): the driver has a newer variant than %s; passed "
			  "through unwrapped (not intercepted)",
			  base, cuda_version, sym_info[i].name);
	return 0;
}

void *sym_swap_proc(const char *symbol, void *p, int cuda_version, cuuint64_t flags)
{
	if (p == NULL || symbol == NULL)
		return p;
	/* 1. Pointer identity: the resolver returned an exported variant. */
	for (int i = 0; i < SYM_COUNT; i++) {
		if (sym_real_get(i) == p)
			return sym_info[i].hook ? sym_info[i].hook : p;
		if (sym_info[i].hook == p)
			return p;
	}
	/* 2. A real driver returns internal pointers: decide the variant from
	 *    (base, version, flags) and wrap it. Base names come first: the
	 *    oldest variant of a base has the base's own name (cuLaunchKernel,
	 *    cuMemAlloc), so an exact-name match would ignore version and flags. */
	int i = sym_variant(symbol, cuda_version, flags);
	if (i >= 0 && sym_info[i].hook != NULL && !variant_confirmed(i, symbol, p, cuda_version, flags))
		return p;
	if (i < 0)
		i = sym_lookup(symbol); /* asked by exact variant name */
	if (i < 0 || sym_info[i].hook == NULL)
		return p;
	void *expected = NULL;
	/* The driver exports no such name (internal-only): call what it gave us. */
	__atomic_compare_exchange_n(&sym_real[i], &expected, p, 0, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	SHIM_LOG("cuGetProcAddress(%s, %d, %llu): internal pointer, wrapped as %s", symbol,
		 cuda_version, (unsigned long long)flags, sym_info[i].name);
	return sym_info[i].hook;
}
