/*
 * Test 6 and 8, driven line by line on stdin by the Go test daemon
 * (cgo/shimctl, TestShimCommands / TestShimFork). It first says
 * "ready PID CTX" (CTX: its context, "(nil)" with SLUICE_TEST_LAZY). Commands:
 *   alloc N     cuMemAlloc_v2 of N bytes         -> "ok PTR"
 *   async N     cuMemAllocAsync of N bytes       -> "ok PTR"
 *   info        cuMemGetInfo_v2                  -> "info FREE TOTAL"
 *   resident    bytes resident on the (fake) GPU -> "resident BYTES"
 *   launch      a kernel on a stream, then sync  -> "ok"
 *   waits       stream waits the driver has seen -> "waits N"
 *   fork        fork; the child allocates (and so registers again)
 *               and waits for its parent's exit  -> "forked PID SOCKETS_BEFORE"
 *   graph N     a graph with an N-byte allocation node and its free
 *               node, launched once and synchronized -> "ok"
 *   gnode N     the same, nodes made with the generic cuGraphAddNode_v2 -> "ok"
 *   trim        cuDeviceGraphMemTrim(0)          -> "ok"
 *   init        cuInit(0)                        -> "ok"
 *   ctxcalls    context-creating driver calls so far -> "ctxcalls N"
 *   exit
 * With SLUICE_TEST_LAZY=1 the program makes no CUDA call before its
 * commands (no context, no stream, no module), for the lazy-init test.
 */

#include "t.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXP 256
static CUdeviceptr ptrs[MAXP];
static size_t sizes[MAXP];
static int np;

static int count_sockets(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	char path[300], link[64];
	while (d && (e = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k > 0) {
			link[k] = 0;
			if (strncmp(link, "socket:", 7) == 0)
				n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}

int main(void)
{
	t_fake_init();
	int lazy = getenv("SLUICE_TEST_LAZY") != NULL;
	CUcontext ctx = NULL;
	CUfunction f = NULL;
	CUstream s = NULL;
	if (!lazy) {
		ctx = t_ctx();
		f = t_noop();
		CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d %p\n", (int)getpid(), (void *)ctx);
	char line[256];
	int pipefd[2] = {-1, -1};
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long long n = 0;
		if (sscanf(line, "alloc %llu", &n) == 1 && np < MAXP) {
			CUresult r = cuMemAlloc_v2(&ptrs[np], n);
			if (r == CUDA_SUCCESS) {
				sizes[np] = n;
				printf("ok %llu\n", (unsigned long long)ptrs[np++]);
			} else {
				printf("err %d\n", (int)r);
			}
		} else if (sscanf(line, "async %llu", &n) == 1 && np < MAXP) {
			CUresult r = cuMemAllocAsync(&ptrs[np], n, s);
			if (r == CUDA_SUCCESS) {
				sizes[np] = n;
				printf("ok %llu\n", (unsigned long long)ptrs[np++]);
			} else {
				printf("err %d\n", (int)r);
			}
		} else if (strncmp(line, "info", 4) == 0) {
			size_t fr = 0, to = 0;
			CUresult r = cuMemGetInfo_v2(&fr, &to);
			printf("info %zu %zu %d\n", fr, to, (int)r);
		} else if (strncmp(line, "resident", 8) == 0) {
			long long sum = 0;
			for (int i = 0; i < np; i++)
				if (FAKE.resident && FAKE.resident(ptrs[i]) > 0)
					sum += FAKE.resident(ptrs[i]);
			printf("resident %lld\n", sum);
		} else if (strncmp(line, "waits", 5) == 0) {
			printf("waits %lu\n", t_calls("cuStreamWaitEvent"));
		} else if (strncmp(line, "launch", 6) == 0) {
			void *args[] = {&ptrs[0]};
			CUresult r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, args, NULL);
			CUresult r2 = cuStreamSynchronize(s);
			printf(r == CUDA_SUCCESS && r2 == CUDA_SUCCESS ? "ok\n" : "err %d %d\n", (int)r, (int)r2);
		} else if (strncmp(line, "fork", 4) == 0) {
			if (pipe(pipefd) != 0)
				return 2;
			pid_t c = fork();
			if (c == 0) {
				close(pipefd[1]);
				int before = count_sockets();
				CUdeviceptr q = 0;
				cuCtxSetCurrent(ctx);
				cuMemAlloc_v2(&q, 1 << 16);
				printf("forked %d %d\n", (int)getpid(), before);
				fflush(stdout);
				char b;
				while (read(pipefd[0], &b, 1) > 0)
					;
				_exit(0);
			}
			close(pipefd[0]);
		} else if (sscanf(line, "graph %llu", &n) == 1 || sscanf(line, "gnode %llu", &n) == 1) {
			int generic = line[1] == 'n';
			CUgraph g = NULL;
			CUgraphExec x = NULL;
			CUgraphNode an = NULL, fn = NULL;
			CUgraphNodeParams np;
			memset(&np, 0, sizeof(np));
			np.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
			np.alloc = t_graph_alloc_params((size_t)n);
			CUDA_MEM_ALLOC_NODE_PARAMS *ap = &np.alloc;
			CUresult r = cuGraphCreate(&g, 0);
			if (r == CUDA_SUCCESS)
				r = generic ? cuGraphAddNode_v2(&an, g, NULL, NULL, 0, &np)
					    : cuGraphAddMemAllocNode(&an, g, NULL, 0, ap);
			CUdeviceptr dp = ap->dptr;
			if (r == CUDA_SUCCESS && generic) {
				memset(&np, 0, sizeof(np));
				np.type = CU_GRAPH_NODE_TYPE_MEM_FREE;
				np.free.dptr = dp;
				r = cuGraphAddNode_v2(&fn, g, &an, NULL, 1, &np);
			} else if (r == CUDA_SUCCESS) {
				r = cuGraphAddMemFreeNode(&fn, g, &an, 1, dp);
			}
			if (r == CUDA_SUCCESS)
				r = cuGraphInstantiateWithFlags(&x, g, 0);
			if (r == CUDA_SUCCESS)
				r = cuGraphLaunch(x, s);
			if (r == CUDA_SUCCESS)
				r = cuStreamSynchronize(s);
			if (x)
				cuGraphExecDestroy(x);
			if (g)
				cuGraphDestroy(g);
			printf(r == CUDA_SUCCESS ? "ok\n" : "err %d\n", (int)r);
		} else if (strncmp(line, "trim", 4) == 0) {
			CUresult r = cuDeviceGraphMemTrim(0);
			printf(r == CUDA_SUCCESS ? "ok\n" : "err %d\n", (int)r);
		} else if (strncmp(line, "init", 4) == 0) {
			CUresult r = cuInit(0);
			printf(r == CUDA_SUCCESS ? "ok\n" : "err %d\n", (int)r);
		} else if (strncmp(line, "ctxcalls", 8) == 0) {
			static const char *const creators[] = {
				"cuDevicePrimaryCtxRetain", "cuCtxCreate_v2", "cuCtxCreate_v3",
				"cuCtxCreate_v4",	    "cuCtxSetCurrent", "cuCtxPushCurrent_v2",
			};
			unsigned long n = 0;
			for (size_t i = 0; i < sizeof(creators) / sizeof(creators[0]); i++)
				n += t_calls(creators[i]);
			printf("ctxcalls %lu\n", n);
		} else if (strncmp(line, "exit", 4) == 0) {
			break;
		} else {
			printf("unknown\n");
		}
	}
	if (pipefd[1] >= 0) {
		close(pipefd[1]);
		wait(NULL);
	}
	for (int i = 0; i < np; i++)
		cuMemFree_v2(ptrs[i]);
	return t_failures ? 1 : 0;
}
