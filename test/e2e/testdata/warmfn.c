/*
 * warmfn: a test function for test/e2e that keeps its GPU memory between
 * invocations, like a model whose weights stay loaded (gpu-matmul frees
 * everything after each invocation). Test infrastructure, built by the e2e
 * tests with the host's gcc; plain C on the CUDA driver API.
 *
 * At start it allocates WARMFN_MB MiB with cuMemAlloc_v2 (the shim turns it
 * into managed memory), zeroes it and adds 1 to every float with one
 * kernel. Then it serves Sluice's function protocol on SLUICE_FN_SOCKET
 * (HTTP/1.1, one request per connection): GET /ready, and POST /invoke,
 * which adds 1 to every float again and answers
 *   {"ok":true,"touches":K,"first":F,"last":L}
 * where K counts the kernels so far and F, L are the first and last floats
 * (both must equal K). The kernel is sluice_touch, which Sluice's fake
 * driver emulates by name; the PTX is a real element-wise kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cuda_min.h"

static const char ptx[] =
	".version 7.0\n"
	".target sm_52\n"
	".address_size 64\n"
	".visible .entry sluice_touch(.param .u64 buf, .param .u64 count)\n"
	"{\n"
	"\t.reg .pred %p<2>;\n"
	"\t.reg .b32 %r<5>;\n"
	"\t.reg .b64 %rd<6>;\n"
	"\t.reg .f32 %f<3>;\n"
	"\tld.param.u64 %rd1, [buf];\n"
	"\tld.param.u64 %rd2, [count];\n"
	"\tmov.u32 %r1, %ctaid.x;\n"
	"\tmov.u32 %r2, %ntid.x;\n"
	"\tmov.u32 %r3, %tid.x;\n"
	"\tmad.lo.s32 %r4, %r1, %r2, %r3;\n"
	"\tcvt.u64.u32 %rd3, %r4;\n"
	"\tsetp.ge.u64 %p1, %rd3, %rd2;\n"
	"\t@%p1 bra DONE;\n"
	"\tcvta.to.global.u64 %rd4, %rd1;\n"
	"\tshl.b64 %rd5, %rd3, 2;\n"
	"\tadd.s64 %rd4, %rd4, %rd5;\n"
	"\tld.global.f32 %f1, [%rd4];\n"
	"\tadd.f32 %f2, %f1, 0f3F800000;\n"
	"\tst.global.f32 [%rd4], %f2;\n"
	"DONE:\n"
	"\tret;\n"
	"}\n";

static CUfunction touch_fn;
static CUdeviceptr model;
static unsigned long long nfloat;
static long touches;

static int check(CUresult r, const char *what)
{
	if (r == CUDA_SUCCESS)
		return 0;
	fprintf(stderr, "warmfn: %s failed: %d\n", what, (int)r);
	return -1;
}

static int touch(void)
{
	void *args[] = {&model, &nfloat};
	unsigned blocks = (unsigned)((nfloat + 255) / 256);
	if (check(cuLaunchKernel(touch_fn, blocks, 1, 1, 256, 1, 1, 0, NULL, args, NULL), "cuLaunchKernel") ||
	    check(cuCtxSynchronize(), "cuCtxSynchronize"))
		return -1;
	touches++;
	return 0;
}

static int setup(long mb)
{
	CUdevice dev;
	CUcontext ctx;
	CUmodule mod;
	nfloat = (unsigned long long)mb << 18; /* MiB / 4 bytes */
	if (check(cuInit(0), "cuInit") || check(cuDeviceGet(&dev, 0), "cuDeviceGet") ||
	    check(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain") ||
	    check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent") || check(cuModuleLoadData(&mod, ptx), "cuModuleLoadData") ||
	    check(cuModuleGetFunction(&touch_fn, mod, "sluice_touch"), "cuModuleGetFunction") ||
	    check(cuMemAlloc_v2(&model, nfloat * 4), "cuMemAlloc_v2") ||
	    check(cuMemsetD32_v2(model, 0, nfloat), "cuMemsetD32_v2"))
		return -1;
	return touch();
}

static void reply(int fd, int status, const char *body)
{
	char head[200];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Internal Server Error",
			 strlen(body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		fprintf(stderr, "warmfn: write reply: %s\n", strerror(errno));
}

/* Reads the request head (and ignores any body: /invoke takes no input). */
static void serve_one(int fd)
{
	char req[8192];
	size_t len = 0;
	while (len < sizeof(req) - 1) {
		ssize_t r = read(fd, req + len, sizeof(req) - 1 - len);
		if (r <= 0)
			return;
		len += (size_t)r;
		req[len] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (!strncmp(req, "GET /ready ", 11)) {
		reply(fd, 200, "{\"ready\":true}");
		return;
	}
	if (strncmp(req, "POST /invoke ", 13)) {
		reply(fd, 404, "{\"error\":\"unknown path\"}");
		return;
	}
	float first = 0, last = 0;
	if (touch() || check(cuMemcpyDtoH_v2(&first, model, 4), "cuMemcpyDtoH_v2") ||
	    check(cuMemcpyDtoH_v2(&last, model + (nfloat - 1) * 4, 4), "cuMemcpyDtoH_v2")) {
		reply(fd, 500, "{\"error\":\"CUDA call failed (see stderr)\"}");
		return;
	}
	char body[160];
	int ok = first == (float)touches && last == (float)touches;
	snprintf(body, sizeof(body), "{\"ok\":%s,\"touches\":%ld,\"first\":%.0f,\"last\":%.0f}", ok ? "true" : "false",
		 touches, (double)first, (double)last);
	reply(fd, ok ? 200 : 500, body);
}

int main(void)
{
	const char *path = getenv("SLUICE_FN_SOCKET");
	const char *mbs = getenv("WARMFN_MB");
	long mb = mbs ? strtol(mbs, NULL, 10) : 0;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (!path || strlen(path) >= sizeof(a.sun_path) || mb <= 0 || mb > 4096) {
		fprintf(stderr, "warmfn: needs SLUICE_FN_SOCKET and WARMFN_MB (1..4096)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (setup(mb))
		return 1;
	strcpy(a.sun_path, path);
	unlink(path);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16)) {
		fprintf(stderr, "warmfn: listen %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "warmfn: accept: %s\n", strerror(errno));
			return 1;
		}
		serve_one(fd);
		close(fd);
	}
}
