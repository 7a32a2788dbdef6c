/*
 * Tests of the EMULATED GPU behind Sluice's fake CUDA driver: accounting
 * shared by several processes through the device file (capacity,
 * residency, LRU eviction, demand faults, prefetch cost, time slicing and
 * its fairness, dead-process cleanup, recovery from a process that died
 * holding the lock). Each case runs in a forked child with its own device
 * file. Usage: t_emugpu [case...]; t_emugpu bench prints micro-benchmarks.
 */
#include "ft.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emugpu.h"

#define MB (1ull << 20)

static char dir[256];
static CUmodule mod;
static CUfunction f_spin, f_touch;

static const char *PTX = ".version 7.0\n.target sm_52\n.address_size 64\n"
			 ".visible .entry sluice_spin(.param .u64 ns) { ret; }\n"
			 ".visible .entry sluice_touch(.param .u64 p, .param .u64 n) { ret; }\n";

/* Map the device file read-only. The fd stays open for the life of the
 * process on purpose: closing any fd of the file would drop this process's
 * fcntl liveness lock (POSIX record-lock semantics). */
static const struct emu_hdr *hdr(void)
{
	static const struct emu_hdr *h;
	if (h)
		return h;
	int fd = open(getenv("FAKECUDA_DEVICE_FILE"), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	void *m = mmap(NULL, EMU_HDR_BYTES + EMU_MAX_PROCS * EMU_PROC_BYTES, PROT_READ, MAP_SHARED, fd, 0);
	h = m == MAP_FAILED ? NULL : m;
	return h;
}

static const struct emu_proc *proc_slot(int pid)
{
	const struct emu_hdr *h = hdr();
	const struct emu_proc *P = (const void *)((const char *)h + h->procs_off);
	for (unsigned i = 0; i < h->max_procs; i++)
		if (P[i].pid == pid && P[i].state == 1)
			return &P[i];
	return NULL;
}

static void setup(void)
{
	ft_ctx();
	CHECK_CU(cuModuleLoadData(&mod, PTX));
	CHECK_CU(cuModuleGetFunction(&f_spin, mod, "sluice_spin"));
	CHECK_CU(cuModuleGetFunction(&f_touch, mod, "sluice_touch"));
}

static void spin(unsigned long long ns)
{
	void *a[] = {&ns};
	CHECK_CU(cuLaunchKernel(f_spin, 1, 1, 1, 1, 1, 1, 0, NULL, a, NULL));
}

static double touch_sync(CUdeviceptr p, unsigned long long bytes)
{
	unsigned long long n = bytes / 4;
	void *a[] = {&p, &n};
	double t0 = ft_now();
	CHECK_CU(cuLaunchKernel(f_touch, 1, 1, 1, 1, 1, 1, 0, NULL, a, NULL));
	CHECK_CU(cuCtxSynchronize());
	return ft_now() - t0;
}

/* run fn in a child with a fresh device file and the given env */
static int run_case(const char *name, void (*fn)(void), const char *const *env)
{
	pid_t pid = fork();
	if (pid == 0) {
		char path[320];
		snprintf(path, sizeof(path), "%s/%s.dev", dir, name);
		unlink(path);
		setenv("FAKECUDA_DEVICE_FILE", path, 1);
		setenv("FAKECUDA_CAPACITY", "64M", 1);
		for (int i = 0; env && env[i]; i += 2)
			setenv(env[i], env[i + 1], 1);
		fn();
		_exit(ft_done(name));
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("%s: FAILED (status %#x)\n", name, st);
		return 1;
	}
	return 0;
}

/* wait for a child; returns its exit code or -1 */
static int reap(pid_t pid)
{
	int st = 0;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------- cases */

static void c_residency(void)
{
	setup();
	CUdeviceptr a;
	CHECK_CU(cuMemAllocManaged(&a, 40 * MB, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuMemPrefetchAsync(a, 40 * MB, 0, NULL));
	CHECK_CU(cuCtxSynchronize());
	CHECK(fakecuda_resident_bytes(a) == (long long)(40 * MB), "resident %lld", fakecuda_resident_bytes(a));
	CHECK(hdr() && hdr()->used_resident == 40 * MB, "header used_resident %llu",
	      hdr() ? (unsigned long long)hdr()->used_resident : 0ull);
	pid_t c = fork();
	if (c == 0) {
		/* a second process: its prefetch evicts 16M of ours (LRU) */
		CUdeviceptr b;
		CHECK_CU(cuMemAllocManaged(&b, 40 * MB, CU_MEM_ATTACH_GLOBAL));
		CHECK_CU(cuMemPrefetchAsync(b, 40 * MB, 0, NULL));
		CHECK_CU(cuCtxSynchronize());
		CHECK(fakecuda_resident_bytes(b) == (long long)(40 * MB), "child resident %lld",
		      fakecuda_resident_bytes(b));
		size_t fr, tot;
		CHECK_CU(cuMemGetInfo_v2(&fr, &tot));
		CHECK(fr == 0 && tot == 64 * MB, "child free %zu total %zu", fr, tot);
		const struct emu_proc *me = proc_slot(getpid());
		CHECK(me && me->managed_bytes == 40 * MB && me->resident_bytes == 40 * MB && me->prefetch_h2d_bytes == 40 * MB,
		      "child slot counters");
		exit(ft_done("residency-child")); /* a clean exit detaches */
	}
	CHECK(reap(c) == 0, "child failed");
	CHECK(fakecuda_resident_bytes(a) == (long long)(24 * MB), "after eviction resident %lld",
	      fakecuda_resident_bytes(a));
	const struct emu_proc *me = proc_slot(getpid());
	CHECK(me && me->evicted_bytes == 16 * MB, "evicted_bytes %llu", me ? (unsigned long long)me->evicted_bytes : 0ull);
	CHECK(hdr()->evicted_bytes == 16 * MB && hdr()->used_resident == 24 * MB,
	      "after child exit: evicted %llu used_resident %llu", (unsigned long long)hdr()->evicted_bytes,
	      (unsigned long long)hdr()->used_resident);
	CHECK(hdr()->nprocs == 1, "nprocs %u", hdr()->nprocs);
	/* device memory evicts managed residency but never other device memory */
	CUdeviceptr d;
	CHECK_CU(cuMemAlloc_v2(&d, 50 * MB));
	CHECK(fakecuda_resident_bytes(a) == (long long)(14 * MB), "device alloc did not evict: %lld",
	      fakecuda_resident_bytes(a));
	CUdeviceptr d2;
	CHECK_RC(cuMemAlloc_v2(&d2, 15 * MB), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemAlloc_v2(&d2, 14 * MB));
	CHECK(fakecuda_resident_bytes(a) == 0, "resident %lld", fakecuda_resident_bytes(a));
	CHECK_CU(cuMemFree_v2(d));
	CHECK_CU(cuMemFree_v2(d2));
	CHECK_CU(cuMemFree_v2(a));
	CHECK(hdr()->used_device == 0 && hdr()->used_resident == 0, "not empty after frees");
}

static void c_faults(void)
{
	setup();
	CUdeviceptr a;
	CHECK_CU(cuMemAllocManaged(&a, 16 * MB, CU_MEM_ATTACH_GLOBAL));
	double t1 = touch_sync(a, 16 * MB); /* demand faults 16M at 1 GB/s */
	double t2 = touch_sync(a, 16 * MB); /* resident now */
	CHECK(t1 >= 0.016, "first touch %.4f s, want >= 16.7 ms of faults", t1);
	CHECK(t2 < t1, "second touch %.4f s not faster than first %.4f s", t2, t1);
	const struct emu_proc *me = proc_slot(getpid());
	CHECK(me && me->fault_bytes == 16 * MB, "fault_bytes %llu", me ? (unsigned long long)me->fault_bytes : 0ull);
	/* prefetch pays H2D bandwidth (2 GB/s): 16M >= 8.3 ms */
	CHECK_CU(cuMemPrefetchAsync(a, 16 * MB, CU_DEVICE_CPU, NULL));
	CHECK_CU(cuCtxSynchronize());
	double t0 = ft_now();
	CHECK_CU(cuMemPrefetchAsync(a, 16 * MB, 0, NULL));
	CHECK_CU(cuCtxSynchronize());
	double tp = ft_now() - t0;
	CHECK(tp >= 0.008, "prefetch took %.4f s", tp);
	CHECK_CU(cuMemFree_v2(a));
	/* oversubscription: 96M managed on a 64M device faults every launch */
	CHECK_CU(cuMemAllocManaged(&a, 96 * MB, CU_MEM_ATTACH_GLOBAL));
	touch_sync(a, 96 * MB);
	unsigned long long fb = me->fault_bytes;
	double t3 = touch_sync(a, 96 * MB);
	CHECK(me->fault_bytes - fb == 32 * MB, "oversubscribed refault %llu", me->fault_bytes - fb);
	CHECK(t3 >= 0.032, "oversubscribed launch %.4f s", t3);
	CHECK(fakecuda_resident_bytes(a) == (long long)(64 * MB), "resident %lld", fakecuda_resident_bytes(a));
	CHECK_CU(cuMemFree_v2(a));
}

/* NPROC processes each run NK kernels of KMS ms at the same time */
#define NPROC 3
#define NK 20
#define KMS 5

static void c_timeslice(void)
{
	int go[2], res[2];
	CHECK(pipe(go) == 0 && pipe(res) == 0, "pipe");
	pid_t kids[NPROC];
	for (int i = 0; i < NPROC; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			setup();
			char b;
			CHECK(read(go[0], &b, 1) == 1, "go");
			double t0 = ft_now();
			for (int k = 0; k < NK; k++) {
				spin(KMS * 1000000ull);
				CHECK_CU(cuStreamSynchronize(NULL));
			}
			double el = ft_now() - t0;
			const struct emu_proc *me = proc_slot(getpid());
			double r[3] = {el, me ? (double)me->busy_ns / 1e9 : -1, me ? (double)me->slices : -1};
			CHECK(write(res[1], r, sizeof(r)) == (ssize_t)sizeof(r), "result");
			_exit(t_failures ? 1 : 0);
		}
	}
	usleep(200000); /* everyone attached and waiting */
	double t0 = ft_now();
	CHECK(write(go[1], "xxx", NPROC) == NPROC, "go");
	double mn = 1e9, mx = 0, busy = 0;
	for (int i = 0; i < NPROC; i++) {
		double r[3];
		CHECK(read(res[0], r, sizeof(r)) == (ssize_t)sizeof(r), "read result");
		mn = r[0] < mn ? r[0] : mn;
		mx = r[0] > mx ? r[0] : mx;
		busy += r[1];
		CHECK(r[1] >= NK * KMS / 1000.0 * 0.95, "process busy %.3f s", r[1]);
	}
	double wall = ft_now() - t0;
	for (int i = 0; i < NPROC; i++)
		CHECK(reap(kids[i]) == 0, "child %d failed", i);
	double work = NPROC * NK * KMS / 1000.0;
	/* one device: the kernels serialize (timeslice) or slow each other
	 * down (share); either way the total takes the sum of the work */
	CHECK(wall >= work * 0.95, "wall %.3f s < work %.3f s: kernels did not share one device", wall, work);
	/* fair: everyone finishes near the end (FIFO by process would give 1/NPROC) */
	CHECK(mn >= 0.6 * mx, "unfair: first finished at %.3f s, last at %.3f s", mn, mx);
	CHECK(busy >= work * 0.95, "busy %.3f", busy);
	fflush(stdout);
	printf("timeslice(%s): work %.3f s, wall %.3f s, finish %.3f..%.3f s\n",
	       getenv("FAKECUDA_SCHED") ? getenv("FAKECUDA_SCHED") : "timeslice", work, wall, mn, mx);
}

static void c_dead(void)
{
	setup();
	pid_t c = fork();
	if (c == 0) {
		CUdeviceptr d, m;
		CHECK_CU(cuMemAlloc_v2(&d, 20 * MB));
		CHECK_CU(cuMemAllocManaged(&m, 20 * MB, CU_MEM_ATTACH_GLOBAL));
		CHECK_CU(cuMemPrefetchAsync(m, 20 * MB, 0, NULL));
		CHECK_CU(cuCtxSynchronize());
		raise(SIGKILL); /* no destructor, no detach */
		_exit(0);
	}
	reap(c);
	CHECK(hdr()->used_device == 20 * MB && hdr()->used_resident == 20 * MB && hdr()->nprocs == 2,
	      "dead process state not left behind: dev %llu res %llu procs %u", (unsigned long long)hdr()->used_device,
	      (unsigned long long)hdr()->used_resident, hdr()->nprocs);
	/* a device allocation that does not fit reaps dead processes first */
	CUdeviceptr d;
	CHECK_CU(cuMemAlloc_v2(&d, 60 * MB));
	CHECK(hdr()->reaped_procs == 1 && hdr()->nprocs == 1, "reaped %llu procs %u",
	      (unsigned long long)hdr()->reaped_procs, hdr()->nprocs);
	CHECK(hdr()->used_device == 60 * MB && hdr()->used_resident == 0, "after reap: dev %llu res %llu",
	      (unsigned long long)hdr()->used_device, (unsigned long long)hdr()->used_resident);
	CHECK_CU(cuMemFree_v2(d));
}

static void c_lockdeath(void)
{
	setup();
	CUdeviceptr m;
	CHECK_CU(cuMemAllocManaged(&m, 8 * MB, CU_MEM_ATTACH_GLOBAL));
	CHECK_CU(cuMemPrefetchAsync(m, 8 * MB, 0, NULL));
	CHECK_CU(cuCtxSynchronize());
	pid_t c = fork();
	if (c == 0) {
		CHECK_CU(cuInit(0)); /* attach in this process */
		fakecuda_test_die_holding_lock(0); /* corrupts a counter, exits holding the lock */
	}
	reap(c);
	size_t fr, tot;
	CHECK_CU(cuMemGetInfo_v2(&fr, &tot)); /* takes the lock: EOWNERDEAD -> repair */
	CHECK(hdr()->repairs == 1, "repairs %llu", (unsigned long long)hdr()->repairs);
	CHECK(hdr()->used_resident == 8 * MB, "counter not repaired: %llu", (unsigned long long)hdr()->used_resident);
	CHECK(fr == 56 * MB, "free %zu", fr);
	CHECK_CU(cuMemFree_v2(m));
}

static void c_deadholder(void)
{
	setup();
	pid_t c = fork();
	if (c == 0) {
		spin(3000000000ull); /* 3 s */
		CHECK_CU(cuCtxSynchronize());
		_exit(0);
	}
	usleep(300000);
	kill(c, SIGKILL);
	reap(c);
	double t0 = ft_now();
	spin(10000000ull);
	CHECK_CU(cuCtxSynchronize());
	double el = ft_now() - t0;
	CHECK(el < 2.0, "device held by a dead process for %.3f s", el);
	CHECK(hdr()->reaped_procs >= 1, "dead holder not reaped");
}

/* a process that dies while waiting for the device must not block the
 * processes queued behind it (quantum 2 s: the holder keeps the device for
 * its whole kernel, so b dies while queued) */
static void c_deadwaiter(void)
{
	setup();
	pid_t a = fork();
	if (a == 0) {
		spin(600000000ull); /* holds the device */
		CHECK_CU(cuCtxSynchronize());
		exit(t_failures ? 1 : 0);
	}
	usleep(100000);
	pid_t b = fork();
	if (b == 0) {
		spin(1000000000ull); /* queued behind a, then killed */
		CHECK_CU(cuCtxSynchronize());
		_exit(0);
	}
	usleep(100000);
	pid_t c = fork();
	if (c == 0) {
		alarm(10); /* a stuck queue fails the test instead of hanging it */
		double t0 = ft_now();
		spin(10000000ull);
		CHECK_CU(cuCtxSynchronize());
		double el = ft_now() - t0;
		CHECK(el >= 0.3, "ran before the holder finished: %.3f s", el);
		exit(t_failures ? 1 : 0);
	}
	usleep(100000);
	kill(b, SIGKILL);
	reap(b);
	CHECK(reap(a) == 0, "holder failed");
	CHECK(reap(c) == 0, "waiter behind a dead waiter failed or hung");
}

/* ------------------------------------------------------------- bench */

static void bench(void)
{
	setup();
	CUfunction f = f_spin;
	unsigned long long ns = 0;
	void *a[] = {&ns};
	enum { N = 200000 };
	double t0 = ft_now();
	for (int i = 0; i < N; i++)
		cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, a, NULL);
	cuCtxSynchronize();
	double per = (ft_now() - t0) / N * 1e9;
	printf("BENCH fake cuLaunchKernel+execute (0 ns kernel): %.0f ns/launch\n", per);
	t0 = ft_now();
	for (int i = 0; i < N / 4; i++) {
		CUdeviceptr p;
		cuMemAllocManaged(&p, 4096, CU_MEM_ATTACH_GLOBAL);
		cuMemFree_v2(p);
	}
	printf("BENCH fake cuMemAllocManaged+cuMemFree_v2 (4 KiB): %.0f ns/pair\n", (ft_now() - t0) / (N / 4) * 1e9);
	CUdeviceptr m;
	CHECK_CU(cuMemAllocManaged(&m, 32 * MB, CU_MEM_ATTACH_GLOBAL));
	t0 = ft_now();
	for (int i = 0; i < 20; i++) {
		cuMemPrefetchAsync(m, 32 * MB, 0, NULL);
		cuMemPrefetchAsync(m, 32 * MB, CU_DEVICE_CPU, NULL);
	}
	cuCtxSynchronize();
	double el = ft_now() - t0;
	printf("BENCH emulated prefetch round trips 32 MiB at 25 GB/s model: %.2f GB/s achieved (model 25)\n",
	       40.0 * 32 * MB / el / 1e9);
	cuMemFree_v2(m);
}

int main(int argc, char **argv)
{
	snprintf(dir, sizeof(dir), "%s", getenv("FAKECUDA_TEST_DIR") ? getenv("FAKECUDA_TEST_DIR") : "/tmp");
	static const char *const faults_env[] = {"FAKECUDA_FAULT_GBPS", "1", "FAKECUDA_H2D_GBPS", "2", NULL};
	static const char *const share_env[] = {"FAKECUDA_SCHED", "share", NULL};
	static const char *const ts_env[] = {"FAKECUDA_QUANTUM_US", "2000", NULL};
	static const char *const longq_env[] = {"FAKECUDA_QUANTUM_US", "2000000", NULL};
	static const char *const bench_env[] = {"FAKECUDA_CAPACITY", "1G", NULL};
	struct {
		const char *name;
		void (*fn)(void);
		const char *const *env;
	} cases[] = {
		{"residency", c_residency, NULL},
		{"faults", c_faults, faults_env},
		{"timeslice", c_timeslice, ts_env},
		{"share", c_timeslice, share_env},
		{"dead", c_dead, NULL},
		{"lockdeath", c_lockdeath, NULL},
		{"deadholder", c_deadholder, NULL},
		{"deadwaiter", c_deadwaiter, longq_env},
	};
	if (argc > 1 && !strcmp(argv[1], "bench"))
		return run_case("bench", bench, bench_env);
	int fail = 0, ran = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int want = argc == 1;
		for (int k = 1; k < argc; k++)
			want |= !strcmp(argv[k], cases[i].name);
		if (!want)
			continue;
		ran++;
		fail |= run_case(cases[i].name, cases[i].fn, cases[i].env);
	}
	if (!ran) {
		fprintf(stderr, "no such case\n");
		return 2;
	}
	printf(fail ? "t_emugpu: FAILED\n" : "t_emugpu: ok\n");
	return fail;
}
