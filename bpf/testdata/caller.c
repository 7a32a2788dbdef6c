/* caller.c: test program for bpf/ tests. Loads a CUDA driver library (the
 * test double or the fake driver) with dlopen and calls it as the
 * arguments say, so that a test knows exactly which calls to expect.
 *
 *   caller LIB OP...
 *   launch=N ptsz=N ex=N graph=N   N launches of that API
 *   alloc=B managed=B              allocate B bytes (pushed on a stack)
 *   free                           free the most recent allocation
 *   badalloc[=N]                    N (default 1) cuMemAlloc_v2 of 0 bytes (fail)
 *   htod=B dtoh=B dtod=B memcpy=B htodasync=B prefetch=B
 *                                  (device side: the most recent allocation;
 *                                  host side: a fresh zeroed buffer of B bytes)
 *   init                           cuInit, cuDeviceGet(0), cuCtxCreate_v2 (the
 *                                  fake driver needs them; the double has none)
 *   ctxsync streamsync=US eventsync=US
 *   wait                           print "ready", wait for a line on stdin
 *   sleep=MS                       sleep MS milliseconds
 *   thread=B                       a second thread allocates B bytes and exits
 *   exec                           re-exec itself with LIB and the remaining ops
 *   bench=N                        time N cuLaunchKernel calls, print "ns/call X";
 *                                  results are ignored (a NULL function is an
 *                                  error in a real driver: the call cost is the point)
 *   benchsync=N                    the same for N cuCtxSynchronize calls
 *   launchbench=N                  (after init) load a PTX module with an empty
 *                                  kernel, time N real launches of it (results
 *                                  checked), synchronize; print "ns/call X"
 *   gpa=N                          N cuLaunchKernel calls through the pointer
 *                                  cuGetProcAddress returns (as the CUDA runtime
 *                                  calls the driver); results ignored
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*launch_fn)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
			 void **, void **);
typedef int (*launch_ex_fn)(const void *, void *, void **, void **);
typedef int (*graph_fn)(void *, void *);
typedef int (*alloc_fn)(uint64_t *, size_t);
typedef int (*managed_fn)(uint64_t *, size_t, unsigned);
typedef int (*free_fn)(uint64_t);
typedef int (*copy_fn)(uint64_t, uint64_t, size_t);
typedef int (*copy_async_fn)(uint64_t, uint64_t, size_t, void *);
typedef int (*prefetch_fn)(uint64_t, size_t, int, void *);
typedef int (*sync0_fn)(void);
typedef int (*sync1_fn)(void *);

static void *lib;

/* An empty kernel: any driver JITs it; the fake driver emulates it as a
 * generic kernel of FAKECUDA_KERNEL_US (default 0). */
static const char noop_ptx[] = ".version 7.0\n"
			       ".target sm_50\n"
			       ".address_size 64\n"
			       ".visible .entry sluice_noop()\n"
			       "{\n"
			       "\tret;\n"
			       "}\n";

struct thread_alloc {
	size_t bytes;
	uint64_t ptr;
	int rc;
};

static void *sym(const char *name);

static void *thread_main(void *arg)
{
	struct thread_alloc *ta = arg;
	ta->rc = ((int (*)(uint64_t *, size_t))sym("cuMemAlloc_v2"))(&ta->ptr, ta->bytes);
	return NULL;
}

static void *sym(const char *name)
{
	void *p = dlsym(lib, name);
	if (!p) {
		fprintf(stderr, "caller: %s: %s\n", name, dlerror());
		exit(2);
	}
	return p;
}

static unsigned long long num(const char *op, const char *v)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (*v == '\0' || *end != '\0') {
		fprintf(stderr, "caller: bad number in %s\n", op);
		exit(2);
	}
	return n;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t stack[4096];
	int depth = 0;
	if (argc < 2) {
		fprintf(stderr, "usage: caller LIB OP...\n");
		return 2;
	}
	lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "caller: %s\n", dlerror());
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		char *op = argv[i];
		char *eq = strchr(op, '=');
		const char *val = eq ? eq + 1 : "";
		size_t klen = eq ? (size_t)(eq - op) : strlen(op);
#define IS(k) (klen == strlen(k) && strncmp(op, k, klen) == 0)
		if (IS("launch") || IS("ptsz") || IS("bench")) {
			launch_fn f = (launch_fn)sym(IS("ptsz") ? "cuLaunchKernel_ptsz" : "cuLaunchKernel");
			unsigned long long n = num(op, val);
			int bench = IS("bench");
			double t0 = now_ns();
			for (unsigned long long j = 0; j < n; j++)
				if (f(NULL, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL) != 0 && !bench)
					return 3;
			if (bench) {
				printf("ns/call %.2f\n", (now_ns() - t0) / (double)(n ? n : 1));
				fflush(stdout);
			}
		} else if (IS("gpa")) {
			void *fn = NULL;
			int (*gpa)(const char *, void **, int, unsigned long long) =
				(int (*)(const char *, void **, int, unsigned long long))sym("cuGetProcAddress");
			if (gpa("cuLaunchKernel", &fn, 12000, 0) != 0 || !fn)
				return 3;
			launch_fn f = (launch_fn)fn;
			for (unsigned long long j = 0, n = num(op, val); j < n; j++)
				(void)f(NULL, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
		} else if (IS("launchbench")) {
			void *mod = NULL, *fn = NULL;
			if (((int (*)(void **, const void *))sym("cuModuleLoadData"))(&mod, noop_ptx) != 0 ||
			    ((int (*)(void **, void *, const char *))sym("cuModuleGetFunction"))(&fn, mod, "sluice_noop") != 0)
				return 3;
			launch_fn f = (launch_fn)sym("cuLaunchKernel");
			unsigned long long n = num(op, val);
			double t0 = now_ns();
			for (unsigned long long j = 0; j < n; j++)
				if (f(fn, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL) != 0)
					return 3;
			double t1 = now_ns();
			if (((sync0_fn)sym("cuCtxSynchronize"))() != 0)
				return 3;
			printf("ns/call %.2f\n", (t1 - t0) / (double)(n ? n : 1));
			fflush(stdout);
		} else if (IS("benchsync")) {
			sync0_fn f = (sync0_fn)sym("cuCtxSynchronize");
			unsigned long long n = num(op, val);
			double t0 = now_ns();
			for (unsigned long long j = 0; j < n; j++)
				(void)f();
			printf("ns/call %.2f\n", (now_ns() - t0) / (double)(n ? n : 1));
			fflush(stdout);
		} else if (IS("ex")) {
			launch_ex_fn f = (launch_ex_fn)sym("cuLaunchKernelEx");
			for (unsigned long long j = 0, n = num(op, val); j < n; j++)
				if (f(NULL, NULL, NULL, NULL) != 0)
					return 3;
		} else if (IS("graph")) {
			graph_fn f = (graph_fn)sym("cuGraphLaunch");
			for (unsigned long long j = 0, n = num(op, val); j < n; j++)
				if (f(NULL, NULL) != 0)
					return 3;
		} else if (IS("alloc") || IS("managed")) {
			uint64_t p = 0;
			int rc = IS("alloc") ? ((alloc_fn)sym("cuMemAlloc_v2"))(&p, num(op, val))
					     : ((managed_fn)sym("cuMemAllocManaged"))(&p, num(op, val), 1);
			if (rc != 0 || depth == (int)(sizeof(stack) / sizeof(stack[0])))
				return 3;
			stack[depth++] = p;
		} else if (IS("free")) {
			if (depth == 0 || ((free_fn)sym("cuMemFree_v2"))(stack[--depth]) != 0)
				return 3;
		} else if (IS("badalloc")) {
			alloc_fn f = (alloc_fn)sym("cuMemAlloc_v2");
			for (unsigned long long j = 0, n = eq ? num(op, val) : 1; j < n; j++) {
				uint64_t p = 0;
				if (f(&p, 0) == 0)
					return 3;
			}
		} else if (IS("htod") || IS("dtoh") || IS("dtod") || IS("memcpy") || IS("htodasync")) {
			size_t bytes = num(op, val);
			uint64_t dev = depth ? stack[depth - 1] : 0;
			void *host = calloc(1, bytes ? bytes : 1);
			int rc;
			if (!host)
				return 5;
			if (IS("htod"))
				rc = ((copy_fn)sym("cuMemcpyHtoD_v2"))(dev, (uint64_t)(uintptr_t)host, bytes);
			else if (IS("dtoh"))
				rc = ((copy_fn)sym("cuMemcpyDtoH_v2"))((uint64_t)(uintptr_t)host, dev, bytes);
			else if (IS("dtod"))
				rc = ((copy_fn)sym("cuMemcpyDtoD_v2"))(dev, dev, bytes);
			else if (IS("memcpy"))
				rc = ((copy_fn)sym("cuMemcpy"))(dev, (uint64_t)(uintptr_t)host, bytes);
			else
				rc = ((copy_async_fn)sym("cuMemcpyHtoDAsync_v2"))(dev, (uint64_t)(uintptr_t)host, bytes, NULL);
			free(host);
			if (rc != 0)
				return 3;
		} else if (IS("init")) {
			int dev = 0;
			void *ctx = NULL;
			if (((int (*)(unsigned))sym("cuInit"))(0) != 0 || ((int (*)(int *, int))sym("cuDeviceGet"))(&dev, 0) != 0 ||
			    ((int (*)(void **, unsigned, int))sym("cuCtxCreate_v2"))(&ctx, 0, dev) != 0)
				return 3;
		} else if (IS("prefetch")) {
			if (((prefetch_fn)sym("cuMemPrefetchAsync"))(depth ? stack[depth - 1] : 0, num(op, val), 0,
								     NULL) != 0)
				return 3;
		} else if (IS("ctxsync")) {
			if (((sync0_fn)sym("cuCtxSynchronize"))() != 0)
				return 3;
		} else if (IS("streamsync") || IS("eventsync")) {
			sync1_fn f = (sync1_fn)sym(IS("streamsync") ? "cuStreamSynchronize" : "cuEventSynchronize");
			if (f((void *)(uintptr_t)num(op, val)) != 0)
				return 3;
		} else if (IS("wait")) {
			char line[64];
			printf("ready\n");
			fflush(stdout);
			if (!fgets(line, sizeof(line), stdin))
				return 4;
		} else if (IS("thread")) {
			struct thread_alloc ta = {.bytes = num(op, val)};
			pthread_t th;
			if (pthread_create(&th, NULL, thread_main, &ta) != 0 || pthread_join(th, NULL) != 0 || ta.rc != 0)
				return 3;
		} else if (IS("sleep")) {
			unsigned long long ms = num(op, val);
			struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
			while (nanosleep(&ts, &ts) != 0) {
			}
		} else if (IS("exec")) {
			char **nargv = calloc((size_t)(argc - i + 2), sizeof(char *));
			if (!nargv)
				return 5;
			nargv[0] = argv[0];
			nargv[1] = argv[1];
			for (int j = i + 1; j < argc; j++)
				nargv[j - i + 1] = argv[j];
			execv("/proc/self/exe", nargv);
			perror("caller: exec");
			return 5;
		} else {
			fprintf(stderr, "caller: unknown op %s\n", op);
			return 2;
		}
#undef IS
	}
	return 0;
}
