/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: modules, functions, kernel launches and the
 * kernel emulator. The fake cannot run PTX. It reads the .entry signatures
 * of a PTX module (ptx.c) to copy launch parameters, and emulates kernels
 * by name:
 *   sluice_matmul(const float *A, const float *B, float *C, u32 n)
 *       C = A x B (n x n, row-major) computed on the CPU; modelled time
 *       2 n^3 / FAKECUDA_TFLOPS.
 *   sluice_spin(u64 ns)        holds the device for ns nanoseconds.
 *   sluice_touch(float *p, u64 n)  p[i] += 1 for i < n; modelled time
 *       8 n / FAKECUDA_MEM_GBPS.
 *   anything else              FAKECUDA_KERNEL_US (default 0).
 * Every kernel touches the allocations its pointer-sized parameters point
 * into: non-resident managed memory demand-faults (emugpu.c), and the
 * kernel then holds the emulated device (time slicing with other
 * processes) for its modelled duration plus the fault time.
 */
#include "fakecuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KN_GENERIC = 0, KN_MATMUL, KN_SPIN, KN_TOUCH };

struct ffunc {
	uint32_t magic;
	struct fmod *mod;
	const struct fk_sig *sig;
	int kind;
	int attrs[10];
};

struct fmod {
	uint32_t magic;
	int nsig;
	struct fk_sig *sigs;
	struct ffunc *funcs;
	struct fmod *next;
};

static struct fmod *mods;

static int kernel_kind(const struct fk_sig *s)
{
	if (strstr(s->name, "sluice_matmul") && s->nparams >= 4 && s->size[0] == 8 && s->size[1] == 8 &&
	    s->size[2] == 8 && s->size[3] == 4)
		return KN_MATMUL;
	if (strstr(s->name, "sluice_spin") && s->nparams >= 1 && s->size[0] == 8)
		return KN_SPIN;
	if (strstr(s->name, "sluice_touch") && s->nparams >= 2 && s->size[0] == 8 && s->size[1] == 8)
		return KN_TOUCH;
	return KN_GENERIC;
}

static struct ffunc *func_get(CUfunction h)
{
	struct ffunc *f = (struct ffunc *)h, *found = NULL;
	if (!f)
		return NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fmod *m = mods; m && !found; m = m->next)
		if (f >= m->funcs && f < m->funcs + m->nsig)
			found = f;
	pthread_mutex_unlock(&G.mu);
	return found;
}

unsigned char *fk_dup_params(const unsigned char *p, size_t n)
{
	unsigned char *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

/* ------------------------------------------------------------ modules */

static void put_log(unsigned numOptions, CUjit_option *options, void **values, CUjit_option which, const char *msg)
{
	if (!options || !values)
		return;
	char *buf = NULL;
	size_t cap = 0;
	for (unsigned i = 0; i < numOptions; i++) {
		if (options[i] == which)
			buf = values[i];
		if (options[i] == (which == CU_JIT_ERROR_LOG_BUFFER ? CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
								    : CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES))
			cap = (size_t)(uintptr_t)values[i];
	}
	if (buf && cap)
		snprintf(buf, cap, "%s", msg);
}

static CUresult load_image(const char *nm, CUmodule *out, const void *image, unsigned nopt, CUjit_option *opts,
			   void **vals)
{
	NEED_CTX(nm, c);
	(void)c;
	if (!out || !image)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	const unsigned char *b = image;
	if ((b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F') ||
	    (b[0] == 0x50 && b[1] == 0xed && b[2] == 0x55 && b[3] == 0xba)) {
		put_log(nopt, opts, vals, CU_JIT_ERROR_LOG_BUFFER,
			"fakecuda (emulator): only PTX text modules can be loaded, not cubin/fatbin");
		return fk_log(nm, CUDA_ERROR_NO_BINARY_FOR_GPU, "binary image");
	}
	const char *text = image;
	struct fk_sig *sigs = NULL;
	int n = fk_ptx_parse(text, strlen(text), &sigs);
	if (n < 0) {
		put_log(nopt, opts, vals, CU_JIT_ERROR_LOG_BUFFER, "fakecuda (emulator): not PTX (.version/.target missing)");
		return fk_log(nm, CUDA_ERROR_INVALID_PTX, NULL);
	}
	struct fmod *m = calloc(1, sizeof(*m));
	struct ffunc *fs = calloc((size_t)(n ? n : 1), sizeof(*fs));
	if (!m || !fs) {
		free(m);
		free(fs);
		free(sigs);
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	m->magic = FK_MAGIC_MOD;
	m->nsig = n;
	m->sigs = sigs;
	m->funcs = fs;
	for (int i = 0; i < n; i++) {
		fs[i].magic = FK_MAGIC_FUNC;
		fs[i].mod = m;
		fs[i].sig = &sigs[i];
		fs[i].kind = kernel_kind(&sigs[i]);
	}
	pthread_mutex_lock(&G.mu);
	m->next = mods;
	mods = m;
	pthread_mutex_unlock(&G.mu);
	put_log(nopt, opts, vals, CU_JIT_INFO_LOG_BUFFER, "fakecuda (emulator): PTX accepted, kernels emulated by name");
	*out = (CUmodule)m;
	return fk_log(nm, CUDA_SUCCESS, "module=%p entries=%d", (void *)m, n);
}

FK_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
	FK_ENTER("cuModuleLoadData");
	return load_image("cuModuleLoadData", module, image, 0, NULL, NULL);
}

FK_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
				      CUjit_option *options, void **optionValues)
{
	FK_ENTER("cuModuleLoadDataEx");
	return load_image("cuModuleLoadDataEx", module, image, numOptions, options, optionValues);
}

FK_EXPORT CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
	FK_ENTER("cuModuleLoad");
	FK_NEED_INIT("cuModuleLoad");
	if (!fname)
		return fk_log("cuModuleLoad", CUDA_ERROR_INVALID_VALUE, NULL);
	FILE *f = fopen(fname, "rb");
	if (!f)
		return fk_log("cuModuleLoad", CUDA_ERROR_FILE_NOT_FOUND, "file=%s", fname);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return fk_log("cuModuleLoad", CUDA_ERROR_OUT_OF_MEMORY, NULL);
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, 4096, f);
		len += r;
		if (r < 4096)
			break;
	}
	fclose(f);
	buf[len] = 0;
	CUresult r = len >= 4 ? load_image("cuModuleLoad", module, buf, 0, NULL, NULL) : CUDA_ERROR_INVALID_IMAGE;
	free(buf);
	return fk_log("cuModuleLoad", r, "file=%s", fname);
}

FK_EXPORT CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
	FK_ENTER("cuModuleLoadFatBinary");
	(void)module, (void)fatCubin;
	return fk_log("cuModuleLoadFatBinary", CUDA_ERROR_NO_BINARY_FOR_GPU, "emulator runs PTX text only");
}

static CUresult unload(const char *nm, void *h)
{
	FK_NEED_INIT(nm);
	struct fmod *m = NULL;
	fk_drain_all(); /* queued launches reference its functions */
	pthread_mutex_lock(&G.mu);
	for (struct fmod **pp = &mods; *pp; pp = &(*pp)->next)
		if ((void *)*pp == h) {
			m = *pp;
			*pp = m->next;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	if (!m)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "module=%p", h);
	free(m->funcs);
	free(m->sigs);
	m->magic = 0;
	free(m);
	return fk_log(nm, CUDA_SUCCESS, "module=%p", h);
}

FK_EXPORT CUresult cuModuleUnload(CUmodule hmod)
{
	FK_ENTER("cuModuleUnload");
	return unload("cuModuleUnload", (void *)hmod);
}

static struct fmod *mod_get(void *h)
{
	struct fmod *found = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fmod *m = mods; m; m = m->next)
		if ((void *)m == h)
			found = m;
	pthread_mutex_unlock(&G.mu);
	return found;
}

static CUresult get_function(const char *nm, CUfunction *out, void *hmod, const char *name)
{
	FK_NEED_INIT(nm);
	struct fmod *m = mod_get(hmod);
	if (!out || !name)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	if (!m)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "module=%p", hmod);
	for (int i = 0; i < m->nsig; i++)
		if (strcmp(m->sigs[i].name, name) == 0) {
			*out = (CUfunction)&m->funcs[i];
			return fk_log(nm, CUDA_SUCCESS, "name=%s kind=%d params=%d", name, m->funcs[i].kind,
				      m->sigs[i].nparams);
		}
	return fk_log(nm, CUDA_ERROR_NOT_FOUND, "name=%s", name);
}

FK_EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
	FK_ENTER("cuModuleGetFunction");
	return get_function("cuModuleGetFunction", hfunc, (void *)hmod, name);
}

FK_EXPORT CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
{
	FK_ENTER("cuModuleGetGlobal_v2");
	(void)dptr, (void)bytes;
	if (!mod_get((void *)hmod))
		return fk_log("cuModuleGetGlobal_v2", CUDA_ERROR_INVALID_HANDLE, NULL);
	return fk_log("cuModuleGetGlobal_v2", CUDA_ERROR_NOT_FOUND, "name=%s (globals not emulated)",
		      name ? name : "(null)");
}

FK_EXPORT CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
				     void **jitOptionsValues, unsigned int numJitOptions, CUlibraryOption *libraryOptions,
				     void **libraryOptionValues, unsigned int numLibraryOptions)
{
	FK_ENTER("cuLibraryLoadData");
	(void)libraryOptions, (void)libraryOptionValues, (void)numLibraryOptions;
	return load_image("cuLibraryLoadData", (CUmodule *)library, code, numJitOptions, jitOptions, jitOptionsValues);
}

FK_EXPORT CUresult cuLibraryUnload(CUlibrary library)
{
	FK_ENTER("cuLibraryUnload");
	return unload("cuLibraryUnload", (void *)library);
}

FK_EXPORT CUresult cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
	FK_ENTER("cuLibraryGetKernel");
	return get_function("cuLibraryGetKernel", (CUfunction *)pKernel, (void *)library, name);
}

FK_EXPORT CUresult cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
	FK_ENTER("cuKernelGetFunction");
	FK_NEED_INIT("cuKernelGetFunction");
	struct ffunc *f = func_get((CUfunction)kernel);
	if (!pFunc || !f)
		return fk_log("cuKernelGetFunction", CUDA_ERROR_INVALID_HANDLE, NULL);
	*pFunc = (CUfunction)f;
	return fk_log("cuKernelGetFunction", CUDA_SUCCESS, "kernel=%p", (void *)kernel);
}

FK_EXPORT CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
	FK_ENTER("cuFuncGetAttribute");
	FK_NEED_INIT("cuFuncGetAttribute");
	struct ffunc *f = func_get(hfunc);
	if (!pi || !f || (unsigned)attrib >= 10)
		return fk_log("cuFuncGetAttribute", !f ? CUDA_ERROR_INVALID_HANDLE : CUDA_ERROR_INVALID_VALUE, NULL);
	static const int defaults[10] = {1024, 0, 0, 0, 32, 70, 90, 0, 0, -1};
	*pi = f->attrs[attrib] ? f->attrs[attrib] : defaults[attrib];
	return fk_log("cuFuncGetAttribute", CUDA_SUCCESS, "attr=%d value=%d", (int)attrib, *pi);
}

FK_EXPORT CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
	FK_ENTER("cuFuncSetAttribute");
	FK_NEED_INIT("cuFuncSetAttribute");
	struct ffunc *f = func_get(hfunc);
	if (!f)
		return fk_log("cuFuncSetAttribute", CUDA_ERROR_INVALID_HANDLE, NULL);
	if (attrib != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES &&
	    attrib != CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT)
		return fk_log("cuFuncSetAttribute", CUDA_ERROR_INVALID_VALUE, "attr=%d", (int)attrib);
	f->attrs[attrib] = value;
	return fk_log("cuFuncSetAttribute", CUDA_SUCCESS, "attr=%d value=%d", (int)attrib, value);
}

FK_EXPORT CUresult cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config)
{
	FK_ENTER("cuFuncSetCacheConfig");
	FK_NEED_INIT("cuFuncSetCacheConfig");
	if (!func_get(hfunc) || (unsigned)config > CU_FUNC_CACHE_PREFER_EQUAL)
		return fk_log("cuFuncSetCacheConfig", CUDA_ERROR_INVALID_VALUE, NULL);
	return fk_log("cuFuncSetCacheConfig", CUDA_SUCCESS, "config=%d", (int)config);
}

/* ------------------------------------------------------------ launches */

static CUresult launch(const char *nm, CUfunction hf, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
		       unsigned bz, unsigned shmem, CUstream hs, void **params, void **extra, int ptsz)
{
	NEED_CTX(nm, c);
	(void)c;
	struct ffunc *f = func_get(hf);
	if (!f)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "func=%p", (void *)hf);
	if (!gx || !gy || !gz || !bx || !by || !bz || (uint64_t)bx * by * bz > 1024 || shmem > 232448)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "grid=%u,%u,%u block=%u,%u,%u", gx, gy, gz, bx, by, bz);
	const struct fk_sig *s = f->sig;
	unsigned char *buf = NULL;
	size_t plen = s->total;
	if (params) {
		buf = calloc(1, plen ? plen : 1);
		if (!buf)
			return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
		for (int i = 0; i < s->nparams; i++) {
			if (!params[i]) {
				free(buf);
				return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "param %d is NULL", i);
			}
			memcpy(buf + s->offset[i], params[i], s->size[i]);
		}
	} else if (extra) {
		void *pb = NULL;
		size_t *psz = NULL;
		for (int i = 0; extra[i] != CU_LAUNCH_PARAM_END && i < 64; i += 2) {
			if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
				pb = extra[i + 1];
			else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
				psz = extra[i + 1];
			else
				return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "unknown extra key");
		}
		if (!pb || !psz || *psz < s->total)
			return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "extra buffer missing or short");
		plen = *psz;
		buf = fk_dup_params(pb, plen);
		if (!buf)
			return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	} else if (s->nparams > 0) {
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "kernel takes %d params, none given", s->nparams);
	} else {
		plen = 0;
		buf = fk_dup_params(NULL, 0);
		if (!buf)
			return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	CUresult err;
	struct fstream *st = fk_stream(hs, ptsz, &err);
	if (!st) {
		free(buf);
		return fk_log(nm, err, "stream=%p", (void *)hs);
	}
	struct fop *op = fk_op_new(OP_KERNEL);
	if (!op) {
		free(buf);
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	op->u.k.f = f;
	op->u.k.params = buf;
	op->u.k.plen = plen;
	op->u.k.grid[0] = gx, op->u.k.grid[1] = gy, op->u.k.grid[2] = gz;
	op->u.k.block[0] = bx, op->u.k.block[1] = by, op->u.k.block[2] = bz;
	CUresult r = fk_submit(st, op);
	return fk_log(nm, r, "func=%s grid=%u,%u,%u block=%u,%u,%u stream=%p", s->name, gx, gy, gz, bx, by, bz,
		      (void *)hs);
}

FK_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
				  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
				  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
	FK_ENTER("cuLaunchKernel");
	return launch("cuLaunchKernel", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
		      sharedMemBytes, hStream, kernelParams, extra, 0);
}

FK_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
				       unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
				       unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
				       void **kernelParams, void **extra)
{
	FK_ENTER("cuLaunchKernel_ptsz");
	return launch("cuLaunchKernel_ptsz", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
		      sharedMemBytes, hStream, kernelParams, extra, 1);
}

static CUresult launch_ex(const char *nm, const CUlaunchConfig *c, CUfunction f, void **params, void **extra,
			  int ptsz)
{
	if (!c)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "config=NULL");
	if (c->numAttrs && !c->attrs)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "attrs=NULL");
	return launch(nm, f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ,
		      c->sharedMemBytes, c->hStream, params, extra, ptsz);
}

FK_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
	FK_ENTER("cuLaunchKernelEx");
	return launch_ex("cuLaunchKernelEx", config, f, kernelParams, extra, 0);
}

FK_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
					 void **extra)
{
	FK_ENTER("cuLaunchKernelEx_ptsz");
	return launch_ex("cuLaunchKernelEx_ptsz", config, f, kernelParams, extra, 1);
}

FK_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
					     unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
					     unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
					     void **kernelParams)
{
	FK_ENTER("cuLaunchCooperativeKernel");
	return launch("cuLaunchCooperativeKernel", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
		      sharedMemBytes, hStream, kernelParams, NULL, 0);
}

FK_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
						  unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
						  unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
						  void **kernelParams)
{
	FK_ENTER("cuLaunchCooperativeKernel_ptsz");
	return launch("cuLaunchCooperativeKernel_ptsz", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
		      blockDimZ, sharedMemBytes, hStream, kernelParams, NULL, 1);
}

/* ------------------------------------------------------------ emulator */

static uint64_t param_u64(const struct fop *op, int i)
{
	const struct fk_sig *s = op->u.k.f->sig;
	uint64_t v = 0;
	if (i < s->nparams && s->offset[i] + s->size[i] <= op->u.k.plen)
		memcpy(&v, op->u.k.params + s->offset[i], s->size[i] < 8 ? s->size[i] : 8);
	return v;
}

static void matmul(const float *A, const float *B, float *C, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		float *row = C + (size_t)i * n;
		for (uint32_t j = 0; j < n; j++)
			row[j] = 0.0f;
		for (uint32_t k = 0; k < n; k++) {
			float a = A[(size_t)i * n + k];
			const float *brow = B + (size_t)k * n;
			for (uint32_t j = 0; j < n; j++)
				row[j] += a * brow[j];
		}
	}
}

static void set_async_err(CUresult r)
{
	pthread_mutex_lock(&G.mu);
	if (G.async_err == CUDA_SUCCESS)
		G.async_err = r;
	pthread_mutex_unlock(&G.mu);
}

void fk_exec_kernel(struct fop *op)
{
	struct ffunc *f = op->u.k.f;
	const struct fk_sig *s = f->sig;
	if (G.async_err != CUDA_SUCCESS)
		return; /* the context is broken (sticky error): kernels do not run */
	/* the allocations this kernel touches: every pointer-sized argument */
	uint32_t handles[16];
	uint64_t bytes[16];
	int nh = 0;
	for (int i = 0; i < s->nparams && nh < 16; i++) {
		if (s->size[i] != 8)
			continue;
		struct fk_range r;
		if (fk_find_range(param_u64(op, i), &r) && r.has_emu) {
			handles[nh] = r.emu;
			bytes[nh] = r.size;
			nh++;
		}
	}
	uint64_t ns = G.kernel_ns;
	switch (f->kind) {
	case KN_MATMUL: {
		uint64_t a = param_u64(op, 0), b = param_u64(op, 1), c = param_u64(op, 2);
		uint32_t n = (uint32_t)param_u64(op, 3);
		uint64_t sz = (uint64_t)n * n * sizeof(float);
		if (n && (!fk_range_ok(a, sz) || !fk_range_ok(b, sz) || !fk_range_ok(c, sz))) {
			set_async_err(CUDA_ERROR_ILLEGAL_ADDRESS);
			return;
		}
		matmul((const float *)(uintptr_t)a, (const float *)(uintptr_t)b, (float *)(uintptr_t)c, n);
		ns = (uint64_t)(2.0 * n * n * (double)n / G.flops * 1e9);
		break;
	}
	case KN_SPIN:
		ns = param_u64(op, 0);
		if (ns > 600ull * 1000000000ull)
			ns = 600ull * 1000000000ull;
		break;
	case KN_TOUCH: {
		uint64_t p = param_u64(op, 0), n = param_u64(op, 1);
		if (n && (n > UINT64_MAX / 4 || !fk_range_ok(p, n * 4))) {
			set_async_err(CUDA_ERROR_ILLEGAL_ADDRESS);
			return;
		}
		float *v = (float *)(uintptr_t)p;
		for (uint64_t i = 0; i < n; i++)
			v[i] += 1.0f;
		ns = (uint64_t)(8.0 * (double)n / G.mem_bps * 1e9);
		for (int k = 0; k < nh; k++)
			if (bytes[k] > n * 4)
				bytes[k] = n * 4; /* touches only the first n floats */
		break;
	}
	default:
		break;
	}
	if (G.emu_ok) {
		uint64_t fault = emu_touch(handles, bytes, nh);
		emu_run_kernel(ns, fault);
	} else {
		emu_sleep_ns(ns);
	}
}
