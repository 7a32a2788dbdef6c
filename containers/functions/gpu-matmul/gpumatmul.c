/*
 * gpu-matmul: Sluice's example GPU function and GPU self-check program.
 *
 * Plain C on the CUDA driver API only (no runtime, no nvcc): it loads a
 * hand-written PTX module at run time (the driver JIT-compiles it), runs a
 * naive fp32 matrix multiply plus a kernel that touches an N MB buffer, for
 * a requested number of iterations, checks the result against the CPU, and
 * prints one JSON line with its timings. Under Sluice's fake driver
 * (build/fakecuda, an emulator) the kernels are emulated on the CPU and the
 * JSON says "emulated": true.
 *
 *   gpu-matmul [--mode matmul|launch|prefetch|fault|partial] [--mb N] [--iters K]
 *              [--n SIZE] [--count K] [--managed]
 *   gpu-matmul --ptx      (prints the embedded PTX, e.g. for ptxas)
 *
 * With SLUICE_FN_SOCKET set it serves Sluice's function protocol instead:
 * HTTP/1.1 on that Unix socket, GET /ready and POST /invoke with a JSON body
 * {"mb": N, "iters": K, "n": SIZE}; the context and module stay loaded
 * between invocations (a warm function).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cuda_min.h"

/* Naive kernels for sm_52 and newer, written by hand. */
static const char PTX[] =
	".version 7.0\n"
	".target sm_52\n"
	".address_size 64\n"
	"\n"
	"// C[row*n+col] = sum_k A[row*n+k] * B[k*n+col]; 2D grid, one thread per C element\n"
	".visible .entry sluice_matmul(\n"
	"\t.param .u64 sluice_matmul_param_0,\n"
	"\t.param .u64 sluice_matmul_param_1,\n"
	"\t.param .u64 sluice_matmul_param_2,\n"
	"\t.param .u32 sluice_matmul_param_3\n"
	")\n"
	"{\n"
	"\t.reg .pred %p<4>;\n"
	"\t.reg .b32 %r<16>;\n"
	"\t.reg .f32 %f<8>;\n"
	"\t.reg .b64 %rd<16>;\n"
	"\n"
	"\tld.param.u64 %rd1, [sluice_matmul_param_0];\n"
	"\tld.param.u64 %rd2, [sluice_matmul_param_1];\n"
	"\tld.param.u64 %rd3, [sluice_matmul_param_2];\n"
	"\tld.param.u32 %r1, [sluice_matmul_param_3];\n"
	"\tcvta.to.global.u64 %rd4, %rd1;\n"
	"\tcvta.to.global.u64 %rd5, %rd2;\n"
	"\tcvta.to.global.u64 %rd6, %rd3;\n"
	"\tmov.u32 %r2, %ctaid.x;\n"
	"\tmov.u32 %r3, %ntid.x;\n"
	"\tmov.u32 %r4, %tid.x;\n"
	"\tmad.lo.u32 %r5, %r2, %r3, %r4;\n"          /* col */
	"\tmov.u32 %r6, %ctaid.y;\n"
	"\tmov.u32 %r7, %ntid.y;\n"
	"\tmov.u32 %r8, %tid.y;\n"
	"\tmad.lo.u32 %r9, %r6, %r7, %r8;\n"          /* row */
	"\tsetp.ge.u32 %p1, %r5, %r1;\n"
	"\tsetp.ge.u32 %p2, %r9, %r1;\n"
	"\tor.pred %p3, %p1, %p2;\n"
	"\t@%p3 bra MM_DONE;\n"
	"\tmov.f32 %f1, 0f00000000;\n"
	"\tmov.u32 %r10, 0;\n"                        /* k */
	"\tmul.lo.u32 %r11, %r9, %r1;\n"              /* row*n */
	"\tmul.wide.u32 %rd7, %r11, 4;\n"
	"\tadd.s64 %rd8, %rd4, %rd7;\n"               /* &A[row*n] */
	"\tmul.wide.u32 %rd9, %r5, 4;\n"
	"\tadd.s64 %rd10, %rd5, %rd9;\n"              /* &B[col] */
	"\tmul.wide.u32 %rd11, %r1, 4;\n"             /* row stride of B in bytes */
	"MM_LOOP:\n"
	"\tld.global.f32 %f2, [%rd8];\n"
	"\tld.global.f32 %f3, [%rd10];\n"
	"\tfma.rn.f32 %f1, %f2, %f3, %f1;\n"
	"\tadd.s64 %rd8, %rd8, 4;\n"
	"\tadd.s64 %rd10, %rd10, %rd11;\n"
	"\tadd.u32 %r10, %r10, 1;\n"
	"\tsetp.lt.u32 %p1, %r10, %r1;\n"
	"\t@%p1 bra MM_LOOP;\n"
	"\tadd.u32 %r12, %r11, %r5;\n"
	"\tmul.wide.u32 %rd12, %r12, 4;\n"
	"\tadd.s64 %rd13, %rd6, %rd12;\n"
	"\tst.global.f32 [%rd13], %f1;\n"
	"MM_DONE:\n"
	"\tret;\n"
	"}\n"
	"\n"
	"// busy-wait on the global timer for ns nanoseconds\n"
	".visible .entry sluice_spin(\n"
	"\t.param .u64 sluice_spin_param_0\n"
	")\n"
	"{\n"
	"\t.reg .pred %p<2>;\n"
	"\t.reg .b64 %rd<6>;\n"
	"\n"
	"\tld.param.u64 %rd1, [sluice_spin_param_0];\n"
	"\tmov.u64 %rd2, %globaltimer;\n"
	"SPIN_LOOP:\n"
	"\tmov.u64 %rd3, %globaltimer;\n"
	"\tsub.s64 %rd4, %rd3, %rd2;\n"
	"\tsetp.lt.u64 %p1, %rd4, %rd1;\n"
	"\t@%p1 bra SPIN_LOOP;\n"
	"\tret;\n"
	"}\n"
	"\n"
	"// p[i] += 1.0f for i < n, grid-stride loop\n"
	".visible .entry sluice_touch(\n"
	"\t.param .u64 sluice_touch_param_0,\n"
	"\t.param .u64 sluice_touch_param_1\n"
	")\n"
	"{\n"
	"\t.reg .pred %p<2>;\n"
	"\t.reg .b32 %r<8>;\n"
	"\t.reg .f32 %f<3>;\n"
	"\t.reg .b64 %rd<12>;\n"
	"\n"
	"\tld.param.u64 %rd1, [sluice_touch_param_0];\n"
	"\tld.param.u64 %rd2, [sluice_touch_param_1];\n"
	"\tcvta.to.global.u64 %rd3, %rd1;\n"
	"\tmov.u32 %r1, %ctaid.x;\n"
	"\tmov.u32 %r2, %ntid.x;\n"
	"\tmov.u32 %r3, %tid.x;\n"
	"\tmad.lo.u32 %r4, %r1, %r2, %r3;\n"
	"\tcvt.u64.u32 %rd4, %r4;\n"                  /* i */
	"\tmov.u32 %r5, %nctaid.x;\n"
	"\tmul.lo.u32 %r6, %r5, %r2;\n"
	"\tcvt.u64.u32 %rd5, %r6;\n"                  /* stride */
	"\tsetp.ge.u64 %p1, %rd4, %rd2;\n"
	"\t@%p1 bra TOUCH_DONE;\n"
	"TOUCH_LOOP:\n"
	"\tshl.b64 %rd6, %rd4, 2;\n"
	"\tadd.s64 %rd7, %rd3, %rd6;\n"
	"\tld.global.f32 %f1, [%rd7];\n"
	"\tadd.f32 %f2, %f1, 0f3F800000;\n"
	"\tst.global.f32 [%rd7], %f2;\n"
	"\tadd.s64 %rd4, %rd4, %rd5;\n"
	"\tsetp.lt.u64 %p1, %rd4, %rd2;\n"
	"\t@%p1 bra TOUCH_LOOP;\n"
	"TOUCH_DONE:\n"
	"\tret;\n"
	"}\n";

/* ------------------------------------------------------------- state */

struct opts {
	const char *mode;
	long mb, iters, n, count;
	int managed;
};

static struct {
	int ready;
	CUdevice dev;
	CUcontext ctx;
	CUmodule mod;
	CUfunction mm, spin, touch;
	CUstream s;
	int driver;
	int emulated;
	char name[128];
} W;

static char errbuf[512];

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(CUresult r, const char *what)
{
	const char *s = NULL;
	cuGetErrorName(r, &s);
	snprintf(errbuf, sizeof(errbuf), "%s: %s (%d)", what, s ? s : "?", (int)r);
	return -1;
}

#define CK(call)                                                       \
	do {                                                           \
		CUresult r_ = (call);                                  \
		if (r_ != CUDA_SUCCESS) {                              \
			rc = fail(r_, #call);                          \
			goto out;                                      \
		}                                                      \
	} while (0)

static int setup(void)
{
	if (W.ready)
		return 0;
	int rc = 0;
	char jitlog[4096] = "";
	CK(cuInit(0));
	CK(cuDriverGetVersion(&W.driver));
	CK(cuDeviceGet(&W.dev, 0));
	CK(cuDeviceGetName(W.name, sizeof(W.name), W.dev));
	W.emulated = strstr(W.name, "Emulated") != NULL;
	CK(cuDevicePrimaryCtxRetain(&W.ctx, W.dev));
	CK(cuCtxSetCurrent(W.ctx));
	CUjit_option o[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
	void *ov[2] = {jitlog, (void *)(uintptr_t)sizeof(jitlog)};
	CUresult lr = cuModuleLoadDataEx(&W.mod, PTX, 2, o, ov);
	if (lr != CUDA_SUCCESS) {
		fail(lr, "cuModuleLoadDataEx");
		size_t l = strlen(errbuf);
		snprintf(errbuf + l, sizeof(errbuf) - l, "; JIT log: %.300s", jitlog);
		return -1;
	}
	CK(cuModuleGetFunction(&W.mm, W.mod, "sluice_matmul"));
	CK(cuModuleGetFunction(&W.spin, W.mod, "sluice_spin"));
	CK(cuModuleGetFunction(&W.touch, W.mod, "sluice_touch"));
	CK(cuStreamCreate(&W.s, CU_STREAM_NON_BLOCKING));
	W.ready = 1;
out:
	return rc;
}

/* JSON string escape of a short message */
static void jstr(char *out, size_t cap, const char *s)
{
	size_t k = 0;
	for (; *s && k + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[k++] = '\\';
			out[k++] = (char)c;
		} else if (c < 0x20) {
			k += (size_t)snprintf(out + k, cap - k, "\\u%04x", c);
		} else {
			out[k++] = (char)c;
		}
	}
	out[k] = 0;
}

static int head(char *out, size_t cap, const struct opts *o)
{
	char nm[256];
	jstr(nm, sizeof(nm), W.name);
	return snprintf(out, cap,
			"{\"program\":\"gpu-matmul\",\"mode\":\"%s\",\"emulated\":%s,\"device\":\"%s\",\"driver\":%d,"
			"\"mb\":%ld,\"iters\":%ld,\"n\":%ld,\"managed\":%s",
			o->mode, W.emulated ? "true" : "false", nm, W.driver, o->mb, o->iters, o->n,
			o->managed ? "true" : "false");
}

static CUresult dalloc(CUdeviceptr *p, size_t bytes, int managed)
{
	return managed ? cuMemAllocManaged(p, bytes, CU_MEM_ATTACH_GLOBAL) : cuMemAlloc_v2(p, bytes);
}

static CUresult touch(CUdeviceptr p, unsigned long long nfloat, CUstream s)
{
	void *a[] = {&p, &nfloat};
	unsigned blocks = (unsigned)((nfloat + 255) / 256);
	if (blocks > 4096)
		blocks = 4096;
	if (blocks == 0)
		blocks = 1;
	return cuLaunchKernel(W.touch, blocks, 1, 1, 256, 1, 1, 0, s, a, NULL);
}

/* prefetch through whichever ABI this driver has */
static CUresult prefetch(CUdeviceptr p, size_t bytes, int to_device, CUstream s)
{
	if (W.driver >= 12020) {
		CUmemLocation l;
		l.type = to_device ? CU_MEM_LOCATION_TYPE_DEVICE : CU_MEM_LOCATION_TYPE_HOST;
		l.id = to_device ? W.dev : 0;
		return cuMemPrefetchAsync_v2(p, bytes, l, 0, s);
	}
	return cuMemPrefetchAsync(p, bytes, to_device ? W.dev : CU_DEVICE_CPU, s);
}

/* one prefetch of n bytes at p on W.s, timed between e0 and e1; *best
 * keeps the fastest in ms */
static CUresult timed_prefetch(CUdeviceptr p, size_t n, int to_device, CUevent e0, CUevent e1, float *best)
{
	float ms;
	CUresult r = cuEventRecord(e0, W.s);
	if (r == CUDA_SUCCESS)
		r = prefetch(p, n, to_device, W.s);
	if (r == CUDA_SUCCESS)
		r = cuEventRecord(e1, W.s);
	if (r == CUDA_SUCCESS)
		r = cuEventSynchronize(e1);
	if (r == CUDA_SUCCESS)
		r = cuEventElapsedTime(&ms, e0, e1);
	if (r == CUDA_SUCCESS && ms < *best)
		*best = ms;
	return r;
}

/* the events and the managed buffer of a memory mode, whichever exist */
static void release(CUevent e0, CUevent e1, CUdeviceptr p)
{
	if (e0)
		cuEventDestroy_v2(e0);
	if (e1)
		cuEventDestroy_v2(e1);
	if (p)
		cuMemFree_v2(p);
}

/* ------------------------------------------------------------- modes */

static int run_matmul(const struct opts *o, char *out, size_t cap)
{
	int rc = 0;
	size_t n = (size_t)o->n, mbytes = n * n * sizeof(float), bbytes = (size_t)o->mb << 20;
	float *A = malloc(mbytes), *B = malloc(mbytes), *C = malloc(mbytes), *R = malloc(mbytes);
	float *probe = malloc(4096 * sizeof(float));
	CUdeviceptr dA = 0, dB = 0, dC = 0, buf = 0;
	CUevent e0 = NULL, e1 = NULL;
	if (!A || !B || !C || !R || !probe) {
		snprintf(errbuf, sizeof(errbuf), "host out of memory");
		rc = -1;
		goto out;
	}
	/* small integers: every partial sum is exact in fp32, with or
	 * without fused multiply-add, so the check is exact */
	for (size_t i = 0; i < n * n; i++) {
		A[i] = (float)((long)((i * 7) % 9) - 4);
		B[i] = (float)((long)((i * 5) % 7) - 3);
	}
	double t0 = now_ms();
	CK(dalloc(&dA, mbytes, o->managed));
	CK(dalloc(&dB, mbytes, o->managed));
	CK(dalloc(&dC, mbytes, o->managed));
	CK(dalloc(&buf, bbytes, o->managed));
	double t1 = now_ms();
	CK(cuMemcpyHtoD_v2(dA, A, mbytes));
	CK(cuMemcpyHtoD_v2(dB, B, mbytes));
	CK(cuMemsetD32_v2(buf, 0, bbytes / 4));
	/* the copies and the memset ran on the legacy stream and may still be
	 * in flight; W.s is non-blocking and does not wait for them */
	CK(cuCtxSynchronize());
	double t2 = now_ms();
	CK(cuEventCreate(&e0, 0));
	CK(cuEventCreate(&e1, 0));
	unsigned nn = (unsigned)n;
	void *args[] = {&dA, &dB, &dC, &nn};
	unsigned g = (unsigned)((n + 15) / 16);
	CK(cuEventRecord(e0, W.s));
	for (long it = 0; it < o->iters; it++) {
		CK(cuLaunchKernel(W.mm, g, g, 1, 16, 16, 1, 0, W.s, args, NULL));
		CK(touch(buf, bbytes / 4, W.s));
	}
	CK(cuEventRecord(e1, W.s));
	CK(cuStreamSynchronize(W.s));
	double t3 = now_ms();
	float kms = 0;
	CK(cuEventElapsedTime(&kms, e0, e1));
	CK(cuMemcpyDtoH_v2(C, dC, mbytes));
	size_t np = bbytes / 4 < 4096 ? bbytes / 4 : 4096;
	CK(cuMemcpyDtoH_v2(probe, buf + (bbytes - np * 4), np * 4));
	double t4 = now_ms();
	/* CPU reference (i-k-j order for the cache; the inputs are small
	 * integers, so the summation order does not change the result) */
	for (size_t i = 0; i < n; i++) {
		float *r = R + i * n;
		for (size_t j = 0; j < n; j++)
			r[j] = 0;
		for (size_t k = 0; k < n; k++) {
			float a = A[i * n + k];
			const float *b = B + k * n;
			for (size_t j = 0; j < n; j++)
				r[j] += a * b[j];
		}
	}
	double maxerr = 0;
	for (size_t i = 0; i < n * n; i++) {
		double d = fabs((double)C[i] - (double)R[i]);
		if (d > maxerr)
			maxerr = d;
	}
	int buf_ok = 1;
	for (size_t i = 0; i < np; i++)
		if (probe[i] != (float)o->iters)
			buf_ok = 0;
	int ok = maxerr == 0 && buf_ok;
	double flops = 2.0 * (double)n * n * n * o->iters;
	int k = head(out, cap, o);
	snprintf(out + k, cap - (size_t)k,
		 ",\"ok\":%s,\"max_abs_err\":%g,\"buffer_ok\":%s,\"ms\":{\"alloc\":%.3f,\"h2d\":%.3f,\"kernels\":%.3f,"
		 "\"kernels_wall\":%.3f,\"per_iter\":%.4f,\"d2h\":%.3f,\"total\":%.3f},\"gflops\":%.2f,"
		 "\"timings\":\"%s\"}",
		 ok ? "true" : "false", maxerr, buf_ok ? "true" : "false", t1 - t0, t2 - t1, (double)kms, t3 - t2,
		 o->iters ? (double)kms / (double)o->iters : 0.0, t4 - t3, t4 - t0,
		 kms > 0 ? flops / ((double)kms * 1e6) : 0.0, W.emulated ? "emulated" : "measured");
	rc = ok ? 0 : 1;
out:
	release(e0, e1, dA);
	if (dB)
		cuMemFree_v2(dB);
	if (dC)
		cuMemFree_v2(dC);
	if (buf)
		cuMemFree_v2(buf);
	free(A), free(B), free(C), free(R), free(probe);
	return rc;
}

/* launch overhead: CPU time per cuLaunchKernel of an empty kernel */
static int run_launch(const struct opts *o, char *out, size_t cap)
{
	int rc = 0;
	unsigned long long ns = 0;
	void *a[] = {&ns};
	for (int i = 0; i < 100; i++) /* warm-up */
		CK(cuLaunchKernel(W.spin, 1, 1, 1, 32, 1, 1, 0, W.s, a, NULL));
	CK(cuStreamSynchronize(W.s));
	double best = 1e18, sum = 0;
	const int rounds = 5;
	const long batch = 256; /* stay below the launch queue's depth */
	long per = o->count / rounds > 0 ? o->count / rounds : 1;
	for (int r = 0; r < rounds; r++) {
		double acc = 0;
		for (long done = 0; done < per;) {
			long b = per - done < batch ? per - done : batch;
			double t0 = now_ms();
			for (long i = 0; i < b; i++)
				CK(cuLaunchKernel(W.spin, 1, 1, 1, 32, 1, 1, 0, W.s, a, NULL));
			acc += now_ms() - t0; /* CPU time of the launch calls only */
			CK(cuStreamSynchronize(W.s));
			done += b;
		}
		double el = acc * 1e6 / (double)per;
		best = el < best ? el : best;
		sum += el;
	}
	int k = head(out, cap, o);
	snprintf(out + k, cap - (size_t)k,
		 ",\"ok\":true,\"launches\":%ld,\"ns_per_launch_best\":%.1f,\"ns_per_launch_mean\":%.1f,\"timings\":\"%s\"}",
		 per * rounds, best, sum / rounds, W.emulated ? "emulated" : "measured");
out:
	return rc;
}

/* prefetch bandwidth of managed memory, to the device and to the host */
static int run_prefetch(const struct opts *o, char *out, size_t cap)
{
	int rc = 0;
	size_t bytes = (size_t)o->mb << 20;
	CUdeviceptr p = 0;
	CUevent e0 = NULL, e1 = NULL;
	CK(cuMemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL));
	memset((void *)(uintptr_t)p, 1, bytes); /* populate on the host */
	CK(cuEventCreate(&e0, 0));
	CK(cuEventCreate(&e1, 0));
	float best_d = 1e30f, best_h = 1e30f;
	for (long r = 0; r < (o->iters > 0 ? o->iters : 3); r++) {
		CK(timed_prefetch(p, bytes, 1, e0, e1, &best_d));
		CK(timed_prefetch(p, bytes, 0, e0, e1, &best_h));
	}
	int k = head(out, cap, o);
	snprintf(out + k, cap - (size_t)k,
		 ",\"ok\":true,\"to_device_ms\":%.3f,\"to_device_gbps\":%.2f,\"to_host_ms\":%.3f,\"to_host_gbps\":%.2f,"
		 "\"timings\":\"%s\"}",
		 (double)best_d, (double)bytes / ((double)best_d * 1e6), (double)best_h,
		 (double)bytes / ((double)best_h * 1e6), W.emulated ? "emulated" : "measured");
out:
	release(e0, e1, p);
	return rc;
}

/* demand-fault cost: a kernel touching host-resident managed memory vs the
 * same kernel once the memory is resident (and vs prefetch + kernel) */
static int run_fault(const struct opts *o, char *out, size_t cap)
{
	int rc = 0;
	size_t bytes = (size_t)o->mb << 20;
	CUdeviceptr p = 0;
	CUevent e0 = NULL, e1 = NULL;
	float faulted = 0, resident = 0, pf_kernel = 0;
	CK(cuMemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL));
	CK(cuEventCreate(&e0, 0));
	CK(cuEventCreate(&e1, 0));
	memset((void *)(uintptr_t)p, 0, bytes); /* pages on the host */
	CK(cuEventRecord(e0, W.s));
	CK(touch(p, bytes / 4, W.s));
	CK(cuEventRecord(e1, W.s));
	CK(cuEventSynchronize(e1));
	CK(cuEventElapsedTime(&faulted, e0, e1));
	CK(cuEventRecord(e0, W.s));
	CK(touch(p, bytes / 4, W.s));
	CK(cuEventRecord(e1, W.s));
	CK(cuEventSynchronize(e1));
	CK(cuEventElapsedTime(&resident, e0, e1));
	CK(prefetch(p, bytes, 0, W.s));
	CK(cuStreamSynchronize(W.s));
	CK(cuEventRecord(e0, W.s));
	CK(prefetch(p, bytes, 1, W.s));
	CK(touch(p, bytes / 4, W.s));
	CK(cuEventRecord(e1, W.s));
	CK(cuEventSynchronize(e1));
	CK(cuEventElapsedTime(&pf_kernel, e0, e1));
	float v = 0;
	CK(cuMemcpyDtoH_v2(&v, p + bytes - 4, 4));
	int ok = v == 3.0f;
	int k = head(out, cap, o);
	double mbs = (double)bytes / 1048576.0;
	snprintf(out + k, cap - (size_t)k,
		 ",\"ok\":%s,\"faulting_kernel_ms\":%.3f,\"resident_kernel_ms\":%.3f,\"prefetch_then_kernel_ms\":%.3f,"
		 "\"fault_us_per_mb\":%.2f,\"fault_gbps\":%.2f,\"timings\":\"%s\"}",
		 ok ? "true" : "false", (double)faulted, (double)resident, (double)pf_kernel,
		 ((double)faulted - (double)resident) * 1e3 / mbs,
		 faulted > resident ? (double)bytes / (((double)faulted - (double)resident) * 1e6) : 0.0,
		 W.emulated ? "emulated" : "measured");
	rc = ok ? 0 : 1;
out:
	release(e0, e1, p);
	return rc;
}

/* partial moves: with the whole buffer on the GPU, send its first k bytes
 * to the host, then prefetch the whole buffer back, for k = 1/8, 1/4, 1/2
 * and all of it; and prefetch it once more while it is all on the GPU.
 * Sluice's partial evictions assume the swap-in costs what is missing, not
 * the footprint (docs/EVALUATION.md). */
static int run_partial(const struct opts *o, char *out, size_t cap)
{
	int rc = 0;
	size_t bytes = (size_t)o->mb << 20;
	const size_t align = 2u << 20;
	CUdeviceptr p = 0;
	CUevent e0 = NULL, e1 = NULL;
	static const int eighths[] = {1, 2, 4, 8};
	float out_ms[4], back_ms[4], again_ms = 1e30f;
	size_t part[4];
	CK(cuMemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL));
	memset((void *)(uintptr_t)p, 0, bytes);
	CK(cuEventCreate(&e0, 0));
	CK(cuEventCreate(&e1, 0));
	CK(prefetch(p, bytes, 1, W.s));
	CK(cuStreamSynchronize(W.s));
	for (int f = 0; f < 4; f++) {
		size_t k = bytes / 8 * (size_t)eighths[f];
		k = f == 3 ? bytes : (k + align - 1) / align * align;
		part[f] = k < bytes ? k : bytes;
		out_ms[f] = back_ms[f] = 1e30f;
		for (long r = 0; r < (o->iters > 0 ? o->iters : 3); r++) {
			CK(timed_prefetch(p, part[f], 0, e0, e1, &out_ms[f]));
			CK(timed_prefetch(p, bytes, 1, e0, e1, &back_ms[f]));
		}
	}
	for (long r = 0; r < (o->iters > 0 ? o->iters : 3); r++)
		CK(timed_prefetch(p, bytes, 1, e0, e1, &again_ms));
	/* the data survived every move: one touch makes each float 1 */
	CK(touch(p, bytes / 4, W.s));
	CK(cuStreamSynchronize(W.s)); /* W.s does not block the legacy stream's copies */
	float v[2] = {0, 0};
	CK(cuMemcpyDtoH_v2(&v[0], p, 4));
	CK(cuMemcpyDtoH_v2(&v[1], p + bytes - 4, 4));
	int ok = v[0] == 1.0f && v[1] == 1.0f;
	int k = head(out, cap, o);
	k += snprintf(out + k, cap - (size_t)k, ",\"ok\":%s,\"parts\":[", ok ? "true" : "false");
	for (int f = 0; f < 4; f++)
		k += snprintf(out + k, cap - (size_t)k,
			      "%s{\"mb\":%.1f,\"to_host_ms\":%.3f,\"back_ms\":%.3f,\"back_gbps\":%.2f}",
			      f ? "," : "", (double)part[f] / 1048576.0, (double)out_ms[f], (double)back_ms[f],
			      (double)part[f] / ((double)back_ms[f] * 1e6));
	snprintf(out + k, cap - (size_t)k, "],\"resident_prefetch_ms\":%.3f,\"timings\":\"%s\"}",
		 (double)again_ms, W.emulated ? "emulated" : "measured");
	rc = ok ? 0 : 1;
out:
	release(e0, e1, p);
	return rc;
}

/* Validate options; returns NULL or an error message. */
static const char *check_opts(const struct opts *o)
{
	if (strcmp(o->mode, "matmul") && strcmp(o->mode, "launch") && strcmp(o->mode, "prefetch") &&
	    strcmp(o->mode, "fault") && strcmp(o->mode, "partial"))
		return "mode must be matmul, launch, prefetch, fault or partial";
	if (o->mb < 1 || o->mb > (1L << 20))
		return "mb must be in [1, 1048576]";
	if (o->iters < 0 || o->iters > 1000000)
		return "iters must be in [0, 1000000]";
	if (o->n < 1 || o->n > 4096)
		return "n must be in [1, 4096]";
	if (o->count < 1 || o->count > 100000000)
		return "count must be in [1, 100000000]";
	return NULL;
}

static int run(const struct opts *o, char *out, size_t cap)
{
	errbuf[0] = 0;
	if (setup() < 0)
		return -1;
	if (!strcmp(o->mode, "launch"))
		return run_launch(o, out, cap);
	if (!strcmp(o->mode, "prefetch"))
		return run_prefetch(o, out, cap);
	if (!strcmp(o->mode, "fault"))
		return run_fault(o, out, cap);
	if (!strcmp(o->mode, "partial"))
		return run_partial(o, out, cap);
	return run_matmul(o, out, cap);
}

/* ------------------------------------------------- function protocol */

/* find "key": number in a JSON object; 1 if found, -1 if malformed */
static int json_num(const char *body, const char *key, long *v)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = strstr(body, pat);
	if (!p)
		return 0;
	p += strlen(pat);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != ':')
		return -1;
	p++;
	char *end;
	errno = 0;
	long x = strtol(p, &end, 10);
	if (end == p || errno)
		return -1;
	*v = x;
	return 1;
}

static void reply(int fd, int status, const char *body)
{
	const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 404 ? "Not Found"
						      : "Internal Server Error";
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, reason, strlen(body));
	if (write(fd, hdr, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		return;
}

static void serve_one(int fd, const struct opts *defaults)
{
	static char req[65536];
	size_t len = 0;
	char *body = NULL;
	long clen = 0;
	for (;;) {
		if (len >= sizeof(req) - 1) {
			reply(fd, 400, "{\"error\":\"request too large\"}");
			return;
		}
		ssize_t r = read(fd, req + len, sizeof(req) - 1 - len);
		if (r <= 0)
			return;
		len += (size_t)r;
		req[len] = 0;
		char *e = strstr(req, "\r\n\r\n");
		if (!e)
			continue;
		body = e + 4;
		char *cl = strcasestr(req, "\r\ncontent-length:");
		clen = cl && cl < e ? strtol(cl + 17, NULL, 10) : 0;
		if (clen < 0 || clen > (long)(sizeof(req) - 1 - (size_t)(body - req))) {
			reply(fd, 400, "{\"error\":\"bad content-length\"}");
			return;
		}
		if ((long)(len - (size_t)(body - req)) >= clen)
			break;
	}
	body[clen] = 0;
	if (!strncmp(req, "GET /ready ", 11)) {
		reply(fd, 200, W.ready ? "{\"ready\":true}" : "{\"ready\":false}");
		return;
	}
	if (strncmp(req, "POST /invoke ", 13)) {
		reply(fd, 404, "{\"error\":\"unknown path (GET /ready, POST /invoke)\"}");
		return;
	}
	struct opts o = *defaults;
	o.mode = "matmul";
	const char *keys[] = {"mb", "iters", "n"};
	long *vals[] = {&o.mb, &o.iters, &o.n};
	for (int i = 0; i < 3; i++)
		if (json_num(body, keys[i], vals[i]) < 0) {
			char msg[128];
			snprintf(msg, sizeof(msg), "{\"error\":\"field %s must be an integer\"}", keys[i]);
			reply(fd, 400, msg);
			return;
		}
	const char *bad = check_opts(&o);
	if (bad) {
		char msg[160];
		snprintf(msg, sizeof(msg), "{\"error\":\"%s\"}", bad);
		reply(fd, 400, msg);
		return;
	}
	static char out[4096];
	int rc = run(&o, out, sizeof(out));
	if (rc < 0) {
		char esc[600], msg[700];
		jstr(esc, sizeof(esc), errbuf);
		snprintf(msg, sizeof(msg), "{\"error\":\"%s\"}", esc);
		reply(fd, 500, msg);
		return;
	}
	reply(fd, rc == 0 ? 200 : 500, out);
}

static int serve(const char *path, const struct opts *defaults)
{
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (ls < 0 || strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "gpu-matmul: bad socket path %s\n", path);
		return 1;
	}
	strcpy(a.sun_path, path);
	unlink(path);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0) {
		fprintf(stderr, "gpu-matmul: listen %s: %s\n", path, strerror(errno));
		return 1;
	}
	/* warm up before answering /ready with true */
	if (setup() < 0)
		fprintf(stderr, "gpu-matmul: CUDA setup failed: %s\n", errbuf);
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "gpu-matmul: accept: %s\n", strerror(errno));
			return 1;
		}
		serve_one(fd, defaults);
		close(fd);
	}
}

/* ------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr, "usage: gpu-matmul [--mode matmul|launch|prefetch|fault|partial] [--mb N] [--iters K] [--n SIZE]\n"
			"                  [--count K] [--managed]\n"
			"       gpu-matmul --ptx\n");
}

int main(int argc, char **argv)
{
	struct opts o = {"matmul", 64, 10, 256, 20000, 0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		long *num = NULL;
		if (!strcmp(a, "--managed")) {
			o.managed = 1;
			continue;
		}
		if (!strcmp(a, "--ptx")) { /* print the embedded PTX (for ptxas checks) */
			fputs(PTX, stdout);
			return 0;
		}
		if (!strcmp(a, "--mode") && i + 1 < argc) {
			o.mode = argv[++i];
			continue;
		}
		if (!strcmp(a, "--mb"))
			num = &o.mb;
		else if (!strcmp(a, "--iters"))
			num = &o.iters;
		else if (!strcmp(a, "--n"))
			num = &o.n;
		else if (!strcmp(a, "--count"))
			num = &o.count;
		if (!num || i + 1 >= argc) {
			usage();
			return 2;
		}
		char *end;
		*num = strtol(argv[++i], &end, 10);
		if (*end) {
			fprintf(stderr, "gpu-matmul: %s wants an integer, got '%s'\n", a, argv[i]);
			return 2;
		}
	}
	const char *bad = check_opts(&o);
	if (bad) {
		fprintf(stderr, "gpu-matmul: %s\n", bad);
		return 2;
	}
	const char *sock = getenv("SLUICE_FN_SOCKET");
	if (sock && *sock)
		return serve(sock, &o);
	static char out[4096];
	int rc = run(&o, out, sizeof(out));
	if (rc < 0) {
		char esc[600];
		jstr(esc, sizeof(esc), errbuf);
		printf("{\"program\":\"gpu-matmul\",\"mode\":\"%s\",\"ok\":false,\"error\":\"%s\"}\n", o.mode, esc);
		return 1;
	}
	printf("%s\n", out);
	return rc;
}
