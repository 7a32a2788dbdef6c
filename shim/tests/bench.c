/*
 * Test 10, overhead micro-benchmark. Against the test-only null driver
 * (nulldrv.c) it compares, in one process, calls through the shim with calls
 * straight to the driver: cuLaunchKernel, and cuMemAlloc_v2 + cuMemFree_v2
 * (converted and tracked) against the driver's own allocation. It also times
 * process start with and without LD_PRELOAD of the shim. Reports medians of
 * repeated batches; no pass/fail on speed (targets live in BENCHMARKS.md).
 *
 *   bench [shim.so]
 */

#include "t.h"

#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define BATCHES 15
static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp);
	return v[n / 2];
}

typedef CUresult (*launch_fn)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
			      unsigned, unsigned, CUstream, void **, void **);
typedef CUresult (*alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*managed_fn)(CUdeviceptr *, size_t, unsigned);
typedef CUresult (*free_fn)(CUdeviceptr);

static double launch_ns(launch_fn fn, long n)
{
	double v[BATCHES];
	for (int b = 0; b < BATCHES; b++) {
		double t0 = now();
		for (long i = 0; i < n; i++)
			fn(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
		v[b] = (now() - t0) / n;
	}
	return median(v, BATCHES);
}

#define NALLOC 1024
static CUdeviceptr ptrs[NALLOC];

static double alloc_ns(alloc_fn a, managed_fn m, free_fn f)
{
	double v[BATCHES];
	for (int b = 0; b < BATCHES; b++) {
		double t0 = now();
		for (int r = 0; r < 20; r++) {
			for (int i = 0; i < NALLOC; i++) {
				if (a)
					a(&ptrs[i], 4096);
				else
					m(&ptrs[i], 4096, CU_MEM_ATTACH_GLOBAL);
			}
			for (int i = 0; i < NALLOC; i++)
				f(ptrs[i]);
		}
		v[b] = (now() - t0) / (20.0 * NALLOC);
	}
	return median(v, BATCHES);
}

static double spawn_once(char *const envp[])
{
	char *argv[] = {"/bin/true", NULL};
	double t0 = now();
	pid_t pid;
	if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, envp) != 0)
		return -1;
	int st;
	waitpid(pid, &st, 0);
	return now() - t0;
}

/* Process start with and without the shim preloaded, alternating so both
 * see the same machine noise; medians of n each. */
#define NSPAWN 301
static void spawn_pair(const char *shim, double *plain, double *with)
{
	static double a[NSPAWN], b[NSPAWN];
	char pre[4200];
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", shim);
	char *env_plain[] = {NULL};
	char *env_shim[] = {pre, NULL};
	for (int i = 0; i < NSPAWN; i++) {
		a[i] = spawn_once(env_plain);
		b[i] = spawn_once(env_shim);
	}
	*plain = median(a, NSPAWN);
	*with = median(b, NSPAWN);
}

int main(int argc, char **argv)
{
	void *(*raw)(const char *) = (void *(*)(const char *))dlsym(RTLD_DEFAULT, "nulldrv_raw");
	if (raw == NULL) {
		fprintf(stderr, "bench: needs the null driver (build/shim-tests/null) first on LD_LIBRARY_PATH\n");
		return 2;
	}
	CHECK(t_in_shim((void *)cuLaunchKernel), "not running under the shim");
	cuInit(0);
	long n = 2000000;
	launch_fn lr = (launch_fn)raw("cuLaunchKernel");
	double l_shim = 0, l_raw = 0;
	/* Interleave to share the machine's noise. */
	for (int k = 0; k < 3; k++) {
		l_shim += launch_ns(cuLaunchKernel, n);
		l_raw += launch_ns(lr, n);
	}
	l_shim /= 3;
	l_raw /= 3;
	/* The shim really converts and tracks here: its capacity view moves. */
	size_t f0 = 0, f1 = 0;
	CUdeviceptr probe = 0;
	cuMemGetInfo_v2(&f0, NULL);
	CHECK_CU(cuMemAlloc_v2(&probe, 1 << 20));
	cuMemGetInfo_v2(&f1, NULL);
	CHECK(f0 - f1 == 1 << 20, "allocation not tracked: free %zu -> %zu", f0, f1);
	CHECK_CU(cuMemFree_v2(probe));
	double a_shim = alloc_ns(cuMemAlloc_v2, NULL, cuMemFree_v2);
	double a_raw = alloc_ns(NULL, (managed_fn)raw("cuMemAllocManaged"), (free_fn)raw("cuMemFree_v2"));
	printf("bench launch_shim_ns %.2f\n", l_shim);
	printf("bench launch_raw_ns %.2f\n", l_raw);
	printf("bench launch_added_ns %.2f (target <= 20)\n", l_shim - l_raw);
	printf("bench alloc_free_shim_ns %.1f\n", a_shim);
	printf("bench alloc_free_raw_ns %.1f\n", a_raw);
	printf("bench alloc_free_added_ns %.1f (target <= 1000)\n", a_shim - a_raw);
	if (argc > 1) {
		double s0, s1;
		spawn_pair(argv[1], &s0, &s1);
		printf("bench start_plain_us %.1f\n", s0 / 1e3);
		printf("bench start_shim_us %.1f\n", s1 / 1e3);
		printf("bench start_added_us %.1f (target <= 1000)\n", (s1 - s0) / 1e3);
	}
	return t_done("bench");
}
