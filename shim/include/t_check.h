/*
 * shim/include/t_check.h - the assertion macros shared by Sluice's C test
 * programs: the shim's (shim/tests/t.h) and the fake CUDA driver's
 * (shim/fakecuda/tests/ft.h). Test code only; never included by the shim or
 * the fake driver themselves.
 *
 * A failed CHECK prints "FAIL file:line: condition: message" on stderr and
 * counts the failure in t_failures; the program's done function reports the
 * count and gives the exit status. t_graph_alloc_params() is the graph
 * allocation node both test suites make.
 */
#ifndef SLUICE_T_CHECK_H
#define SLUICE_T_CHECK_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cuda_min.h"

static int t_failures;

/* Where the crashing thread's last CHECK was, for the crash report below. */
static _Thread_local volatile int t_last_line;
static _Thread_local const char *volatile t_last_file = "(no check yet)";

/* A test program that crashes (on a real driver, where a debugger may not be
 * at hand) says at or after which check (CHECK records its place before it
 * evaluates its condition): async-signal-safe writes only, on an alternate
 * stack so that a stack overflow is reported too, then the default action. */
static size_t t_put(char *buf, size_t n, size_t cap, const char *str)
{
	while (*str && n < cap)
		buf[n++] = *str++;
	return n;
}

static size_t t_put_uint(char *buf, size_t n, size_t cap, unsigned v)
{
	char d[12];
	int k = 0;
	do
		d[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < 12);
	while (k > 0 && n < cap)
		buf[n++] = d[--k];
	return n;
}

static void t_crash(int sig)
{
	char buf[256];
	size_t cap = sizeof(buf) - 1, n = 0;
	n = t_put(buf, n, cap, "CRASH: signal ");
	n = t_put_uint(buf, n, cap, (unsigned)sig);
	n = t_put(buf, n, cap, " at or after the check at ");
	n = t_put(buf, n, cap, t_last_file);
	n = t_put(buf, n, cap, ":");
	n = t_put_uint(buf, n, cap, (unsigned)t_last_line);
	buf[n++] = '\n';
	if (write(2, buf, n) < 0) {
	}
	signal(sig, SIG_DFL); /* SA_RESETHAND did so already; kept for clarity */
	raise(sig);
}

__attribute__((constructor, unused)) static void t_crash_handlers(void)
{
	static char altstack[64 * 1024];
	stack_t ss;
	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = altstack;
	ss.ss_size = sizeof(altstack);
	int onstack = sigaltstack(&ss, NULL) == 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = t_crash;
	sa.sa_flags = SA_RESETHAND | (onstack ? SA_ONSTACK : 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
}

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		t_last_file = __FILE__;                                           \
		t_last_line = __LINE__;                                           \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			t_failures++;                                             \
		}                                                                 \
	} while (0)

#define CHECK_CU(call)                                                            \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == CUDA_SUCCESS, "%s returned %d", #call, (int)r_);      \
	} while (0)

#define CHECK_RC(call, want)                                                      \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		CHECK(r_ == (want), "%s returned %d, want %d", #call, (int)r_, (int)(want)); \
	} while (0)

/* Parameters of a graph allocation node: bytes of device 0's memory
 * (pinned, device-located pool properties, everything else zero). */
static inline CUDA_MEM_ALLOC_NODE_PARAMS t_graph_alloc_params(size_t bytes)
{
	CUDA_MEM_ALLOC_NODE_PARAMS ap;
	memset(&ap, 0, sizeof(ap));
	ap.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	ap.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	ap.poolProps.location.id = 0;
	ap.bytesize = bytes;
	return ap;
}

#endif
