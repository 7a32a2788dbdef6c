/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * The emulated GPU shared by every process through a memory-mapped file.
 * See emugpu.h for the layout and docs/FAKECUDA.md for the model.
 *
 * Concurrency: one robust, process-shared mutex in the header protects all
 * mutable state. A process that dies holding it leaves EOWNERDEAD to the
 * next locker, which repairs the counters from the allocation table. A live
 * process holds an fcntl record lock on byte EMU_LIVENESS_BASE + its slot;
 * the kernel drops it when the process dies, which is how dead processes
 * are found (works across PID namespaces that share the file). Waiting for
 * the device uses a futex on dev_seq with a timeout, so a dead owner is
 * noticed within a few milliseconds.
 */
#define _GNU_SOURCE
#include "emugpu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct emu_proc) == EMU_PROC_BYTES, "emu_proc layout");
_Static_assert(sizeof(struct emu_alloc) == EMU_ALLOC_BYTES, "emu_alloc layout");
_Static_assert(sizeof(struct emu_waiter) == EMU_WAITER_BYTES, "emu_waiter layout");
_Static_assert(sizeof(struct emu_hdr) <= EMU_HDR_BYTES, "emu_hdr fits its page");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits its storage");
_Static_assert(offsetof(struct emu_hdr, dev_seq) % 4 == 0, "futex word aligned");
/* the layout documented in docs/FAKECUDA.md (version 1) */
_Static_assert(offsetof(struct emu_hdr, capacity) == 64, "layout v1");
_Static_assert(offsetof(struct emu_hdr, used_device) == 176, "layout v1");
_Static_assert(offsetof(struct emu_hdr, used_resident) == 184, "layout v1");
_Static_assert(offsetof(struct emu_hdr, dev_owner) == 208, "layout v1");
_Static_assert(offsetof(struct emu_hdr, nprocs) == 276, "layout v1");
_Static_assert(offsetof(struct emu_proc, device_bytes) == 56, "layout v1");
_Static_assert(offsetof(struct emu_proc, busy_ns) == 88, "layout v1");
_Static_assert(offsetof(struct emu_proc, last_active_ns) == 160, "layout v1");
_Static_assert(offsetof(struct emu_alloc, size) == 24, "layout v1");
_Static_assert(offsetof(struct emu_alloc, resident) == 32, "layout v1");

#define EMU_PATH_DEFAULT "/dev/shm/sluice-fakecuda-gpu0"

static struct {
	pthread_mutex_t mu; /* guards attach/detach in this process */
	int fd;
	struct emu_hdr *h;
	size_t len;
	int slot;
	pid_t pid;
	uint64_t gen;
	struct emu_config cfg;
} E = {PTHREAD_MUTEX_INITIALIZER, -1, NULL, 0, -1, 0, 0, {{0}, 0, 0, 0, 0, 0, 0}};

uint64_t emu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void emu_sleep_ns(uint64_t ns)
{
	if (ns == 0)
		return;
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
	}
}

/* Parse "16G", "512M", "1048576", "1.5G". Returns def on bad input. */
static uint64_t env_bytes(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end = NULL;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		goto bad;
	double mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0')
		goto bad;
	return (uint64_t)(v * mul);
bad:
	fprintf(stderr, "fakecuda: ignoring %s=%s (want bytes, e.g. 16G)\n", name, s);
	return def;
}

static double env_double(const char *name, double def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end = NULL;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v > 0)) {
		fprintf(stderr, "fakecuda: ignoring %s=%s (want a positive number)\n", name, s);
		return def;
	}
	return v;
}

void emu_config_from_env(struct emu_config *c)
{
	memset(c, 0, sizeof(*c));
	const char *p = getenv("FAKECUDA_DEVICE_FILE");
	snprintf(c->path, sizeof(c->path), "%s", (p && *p) ? p : EMU_PATH_DEFAULT);
	c->capacity = env_bytes("FAKECUDA_CAPACITY", 16ull << 30);
	c->h2d_bps = (uint64_t)(env_double("FAKECUDA_H2D_GBPS", 25.0) * 1e9);
	c->d2h_bps = (uint64_t)(env_double("FAKECUDA_D2H_GBPS", 25.0) * 1e9);
	c->fault_bps = (uint64_t)(env_double("FAKECUDA_FAULT_GBPS", 8.0) * 1e9);
	c->quantum_ns = (uint64_t)(env_double("FAKECUDA_QUANTUM_US", 2000.0) * 1e3);
	if (c->quantum_ns < 10000)
		c->quantum_ns = 10000;
	const char *m = getenv("FAKECUDA_SCHED");
	c->sched_mode = EMU_SCHED_TIMESLICE;
	if (m && strcmp(m, "share") == 0)
		c->sched_mode = EMU_SCHED_SHARE;
	else if (m && *m && strcmp(m, "timeslice") != 0)
		fprintf(stderr, "fakecuda: ignoring FAKECUDA_SCHED=%s (timeslice|share)\n", m);
}

static uint64_t file_bytes(void)
{
	return EMU_HDR_BYTES + (uint64_t)EMU_MAX_PROCS * EMU_PROC_BYTES +
	       (uint64_t)EMU_MAX_WAITERS * EMU_WAITER_BYTES + (uint64_t)EMU_MAX_ALLOCS * EMU_ALLOC_BYTES;
}

static inline pthread_mutex_t *mtx(void) { return (pthread_mutex_t *)(void *)E.h->lock_storage; }
static inline struct emu_proc *procs(void) { return (struct emu_proc *)((char *)E.h + E.h->procs_off); }
static inline struct emu_waiter *waiters(void) { return (struct emu_waiter *)((char *)E.h + E.h->waiters_off); }
static inline struct emu_alloc *allocs(void) { return (struct emu_alloc *)((char *)E.h + E.h->allocs_off); }

static void init_file(struct emu_hdr *h, const struct emu_config *c)
{
	memset(h, 0, EMU_HDR_BYTES);
	h->version = EMU_VERSION;
	h->hdr_bytes = EMU_HDR_BYTES;
	h->max_procs = EMU_MAX_PROCS;
	h->max_allocs = EMU_MAX_ALLOCS;
	h->max_waiters = EMU_MAX_WAITERS;
	h->sched_mode = c->sched_mode;
	h->file_bytes = file_bytes();
	h->procs_off = EMU_HDR_BYTES;
	h->waiters_off = h->procs_off + (uint64_t)EMU_MAX_PROCS * EMU_PROC_BYTES;
	h->allocs_off = h->waiters_off + (uint64_t)EMU_MAX_WAITERS * EMU_WAITER_BYTES;
	h->capacity = c->capacity;
	h->h2d_bps = c->h2d_bps ? c->h2d_bps : 1;
	h->d2h_bps = c->d2h_bps ? c->d2h_bps : 1;
	h->fault_bps = c->fault_bps ? c->fault_bps : 1;
	h->quantum_ns = c->quantum_ns;
	h->created_ns = emu_now_ns();
	h->dev_owner = -1;
	struct emu_waiter *w = (struct emu_waiter *)((char *)h + h->waiters_off);
	for (uint32_t i = 0; i < EMU_MAX_WAITERS; i++)
		w[i].proc = -1;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init((pthread_mutex_t *)(void *)h->lock_storage, &a);
	pthread_mutexattr_destroy(&a);
	__atomic_store_n(&h->magic, EMU_MAGIC, __ATOMIC_RELEASE);
}

static int slot_alive(int s)
{
	struct emu_proc *p = &procs()[s];
	if (p->state != 1)
		return 0;
	if (s == E.slot && p->pid == getpid())
		return 1;
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)(EMU_LIVENESS_BASE + (uint64_t)s);
	fl.l_len = 1;
	if (fcntl(E.fd, F_GETLK, &fl) < 0)
		return 1; /* cannot tell: keep it */
	return fl.l_type != F_UNLCK;
}

static void wake_all(void)
{
	__atomic_add_fetch(&E.h->dev_seq, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &E.h->dev_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void drop_alloc_locked(struct emu_alloc *a)
{
	struct emu_hdr *h = E.h;
	struct emu_proc *p = &procs()[a->proc];
	int owner_ok = a->proc < EMU_MAX_PROCS && p->gen == a->proc_gen && p->state == 1;
	if (a->kind == EMU_KIND_DEVICE) {
		h->used_device -= a->size <= h->used_device ? a->size : h->used_device;
		if (owner_ok)
			p->device_bytes -= a->size <= p->device_bytes ? a->size : p->device_bytes;
	} else if (a->kind == EMU_KIND_MANAGED) {
		h->used_resident -= a->resident <= h->used_resident ? a->resident : h->used_resident;
		if (owner_ok) {
			p->managed_bytes -= a->size <= p->managed_bytes ? a->size : p->managed_bytes;
			p->resident_bytes -= a->resident <= p->resident_bytes ? a->resident : p->resident_bytes;
		}
	}
	memset(a, 0, sizeof(*a));
}

/* Free everything a dead slot owned. */
static void release_slot_locked(int s)
{
	struct emu_hdr *h = E.h;
	struct emu_alloc *A = allocs();
	for (uint32_t i = 0; i < h->alloc_hwm; i++)
		if (A[i].kind != EMU_KIND_FREE && A[i].proc == (uint32_t)s)
			drop_alloc_locked(&A[i]);
	struct emu_waiter *W = waiters();
	for (uint32_t i = 0; i < EMU_MAX_WAITERS; i++)
		if (W[i].proc == s) {
			W[i].proc = -1;
			if (h->nwaiters)
				h->nwaiters--;
		}
	struct emu_proc *p = &procs()[s];
	if (h->dev_owner == s) {
		h->dev_owner = -1;
		h->running = 0;
	}
	if (h->sched_mode == EMU_SCHED_SHARE)
		h->running -= p->running <= h->running ? p->running : h->running;
	p->state = 0;
	p->running = 0;
	if (h->nprocs)
		h->nprocs--;
	wake_all();
}

static int reap_locked(void)
{
	int n = 0;
	for (uint32_t s = 0; s < EMU_MAX_PROCS; s++) {
		struct emu_proc *p = &procs()[s];
		if (p->state == 1 && !slot_alive((int)s)) {
			release_slot_locked((int)s);
			E.h->reaped_procs++;
			n++;
		}
	}
	return n;
}

/* After EOWNERDEAD: reap, then recompute every derived counter. */
static void repair_locked(void)
{
	struct emu_hdr *h = E.h;
	reap_locked();
	struct emu_proc *P = procs();
	for (uint32_t s = 0; s < EMU_MAX_PROCS; s++) {
		P[s].device_bytes = P[s].managed_bytes = P[s].resident_bytes = 0;
	}
	h->used_device = h->used_resident = 0;
	struct emu_alloc *A = allocs();
	for (uint32_t i = 0; i < h->alloc_hwm; i++) {
		struct emu_alloc *a = &A[i];
		if (a->kind == EMU_KIND_FREE)
			continue;
		if (a->proc >= EMU_MAX_PROCS || P[a->proc].state != 1 || P[a->proc].gen != a->proc_gen) {
			memset(a, 0, sizeof(*a));
			continue;
		}
		if (a->resident > a->size)
			a->resident = a->size;
		if (a->kind == EMU_KIND_DEVICE) {
			h->used_device += a->size;
			P[a->proc].device_bytes += a->size;
		} else {
			h->used_resident += a->resident;
			P[a->proc].managed_bytes += a->size;
			P[a->proc].resident_bytes += a->resident;
		}
	}
	uint32_t nw = 0;
	struct emu_waiter *W = waiters();
	for (uint32_t i = 0; i < EMU_MAX_WAITERS; i++)
		if (W[i].proc >= 0)
			nw++;
	h->nwaiters = nw;
	uint32_t np = 0, running = 0;
	for (uint32_t s = 0; s < EMU_MAX_PROCS; s++)
		if (P[s].state == 1) {
			np++;
			running += P[s].running;
		}
	h->nprocs = np;
	if (h->sched_mode == EMU_SCHED_SHARE)
		h->running = running;
	else
		h->running = h->dev_owner >= 0;
	h->repairs++;
	wake_all();
}

static int lock_dev(void)
{
	int r = pthread_mutex_lock(mtx());
	if (r == EOWNERDEAD) {
		repair_locked();
		pthread_mutex_consistent(mtx());
		return 0;
	}
	return r == 0 ? 0 : -r;
}

static void unlock_dev(void) { pthread_mutex_unlock(mtx()); }

static int map_file(const struct emu_config *c)
{
	int fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct stat st;
	int err = 0;
	void *m = MAP_FAILED;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	uint64_t want = file_bytes();
	int fresh = 0;
	/* Initialize only an empty file (new, or created empty by Sluice to be
	 * bind-mounted) or one of the right size whose header is all zeros (a
	 * creator died before writing it). Never clobber anything else. */
	if (st.st_size == 0) {
		if (ftruncate(fd, (off_t)want) < 0) {
			err = -errno;
			goto out;
		}
		fchmod(fd, 0666);
		fresh = 1;
	} else if ((uint64_t)st.st_size != want) {
		uint32_t hv[2] = {0, 0};
		if (pread(fd, hv, sizeof(hv), 0) == (ssize_t)sizeof(hv) && hv[0] == EMU_MAGIC) {
			fprintf(stderr, "fakecuda: %s: device file version %u, this driver speaks %u\n", c->path,
				hv[1], EMU_VERSION);
			err = -EPROTO;
		} else {
			fprintf(stderr, "fakecuda: %s: not an emulated GPU device file (%lld bytes), left alone\n",
				c->path, (long long)st.st_size);
			err = -EINVAL;
		}
		goto out;
	}
	m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	struct emu_hdr *h = m;
	uint32_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
	static const unsigned char zero[EMU_HDR_BYTES];
	if (fresh || (magic == 0 && memcmp(h, zero, sizeof(zero)) == 0)) {
		init_file(h, c); /* we hold the flock: nobody else is initializing */
	} else if (magic != EMU_MAGIC || h->version != EMU_VERSION || h->file_bytes != want) {
		if (magic != EMU_MAGIC)
			fprintf(stderr, "fakecuda: %s: not an emulated GPU device file, left alone\n", c->path);
		else
			fprintf(stderr, "fakecuda: %s: device file version %u, this driver speaks %u\n", c->path,
				h->version, EMU_VERSION);
		munmap(m, want);
		err = magic != EMU_MAGIC ? -EINVAL : -EPROTO;
		goto out;
	}
	E.h = h;
	E.len = want;
	E.fd = fd;
out:
	flock(fd, LOCK_UN);
	if (err) {
		close(fd);
		return err;
	}
	return 0;
}

static int register_slot(void)
{
	if (lock_dev() < 0)
		return -ENOTRECOVERABLE;
	reap_locked();
	struct emu_proc *P = procs();
	int s = -1;
	for (uint32_t i = 0; i < EMU_MAX_PROCS; i++)
		if (P[i].state == 0) {
			s = (int)i;
			break;
		}
	if (s < 0) {
		unlock_dev();
		return -EBUSY;
	}
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)(EMU_LIVENESS_BASE + (uint64_t)s);
	fl.l_len = 1;
	if (fcntl(E.fd, F_SETLK, &fl) < 0) {
		int e = errno;
		unlock_dev();
		return -e;
	}
	struct emu_proc *p = &P[s];
	uint64_t gen = p->gen + 1;
	memset(p, 0, sizeof(*p));
	p->gen = gen;
	p->pid = getpid();
	p->attach_ns = emu_now_ns();
	char comm[32] = {0};
	int cfd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (cfd >= 0) {
		ssize_t n = read(cfd, comm, sizeof(comm) - 1);
		close(cfd);
		if (n > 0 && comm[n - 1] == '\n')
			comm[n - 1] = 0;
	}
	memcpy(p->comm, comm, sizeof(p->comm));
	p->state = 1;
	E.h->nprocs++;
	E.slot = s;
	E.gen = gen;
	E.pid = getpid();
	unlock_dev();
	return 0;
}

int emu_attach(void)
{
	pthread_mutex_lock(&E.mu);
	int r = 0;
	if (E.h && E.pid == getpid() && E.slot >= 0)
		goto out;
	if (!E.h) {
		emu_config_from_env(&E.cfg);
		r = map_file(&E.cfg);
		if (r < 0) {
			fprintf(stderr, "fakecuda: cannot attach emulated GPU file %s: %s\n", E.cfg.path, strerror(-r));
			goto out;
		}
	}
	/* fresh process, or a forked child whose parent's slot is not its own */
	E.slot = -1;
	r = register_slot();
	if (r < 0)
		fprintf(stderr, "fakecuda: cannot register with emulated GPU %s: %s\n", E.cfg.path, strerror(-r));
out:
	pthread_mutex_unlock(&E.mu);
	return r;
}

void emu_detach(void)
{
	pthread_mutex_lock(&E.mu);
	if (E.h && E.slot >= 0 && E.pid == getpid()) {
		if (lock_dev() == 0) {
			release_slot_locked(E.slot);
			unlock_dev();
		}
		struct flock fl;
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_UNLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = (off_t)(EMU_LIVENESS_BASE + (uint64_t)E.slot);
		fl.l_len = 1;
		fcntl(E.fd, F_SETLK, &fl);
		E.slot = -1;
	}
	pthread_mutex_unlock(&E.mu);
}

const struct emu_hdr *emu_header(void) { return E.h; }
int emu_self_slot(void) { return (E.h && E.pid == getpid()) ? E.slot : -1; }

/* Attached in this process. A forked child (whose parent's slot is not its
 * own) attaches with a slot of its own on first use. */
static int ready(void)
{
	if (!E.h)
		return 0;
	if (E.pid != getpid() || E.slot < 0)
		return emu_attach() == 0;
	return 1;
}

static struct emu_alloc *my_alloc(uint32_t handle)
{
	if (handle >= EMU_MAX_ALLOCS)
		return NULL;
	struct emu_alloc *a = &allocs()[handle];
	if (a->kind == EMU_KIND_FREE || a->proc != (uint32_t)E.slot || a->proc_gen != E.gen)
		return NULL;
	return a;
}

static uint64_t dev_free_locked(void)
{
	uint64_t used = E.h->used_device + E.h->used_resident;
	return used >= E.h->capacity ? 0 : E.h->capacity - used;
}

static int pinned(uint32_t i, const uint32_t *pin, int npin)
{
	for (int k = 0; k < npin; k++)
		if (pin[k] == i)
			return 1;
	return 0;
}

/* Evict least-recently-used resident managed bytes (any process) until
 * `need` bytes are free or nothing evictable is left. Returns bytes evicted. */
static uint64_t evict_locked(uint64_t need, const uint32_t *pin, int npin)
{
	struct emu_hdr *h = E.h;
	struct emu_alloc *A = allocs();
	struct emu_proc *P = procs();
	uint64_t evicted = 0;
	while (dev_free_locked() < need) {
		uint64_t best_lru = UINT64_MAX;
		int best = -1;
		for (uint32_t i = 0; i < h->alloc_hwm; i++)
			if (A[i].kind == EMU_KIND_MANAGED && A[i].resident > 0 && A[i].lru < best_lru &&
			    !pinned(i, pin, npin)) {
				best_lru = A[i].lru;
				best = (int)i;
			}
		if (best < 0)
			break;
		struct emu_alloc *a = &A[best];
		uint64_t want = need - dev_free_locked();
		uint64_t n = a->resident < want ? a->resident : want;
		a->resident -= n;
		h->used_resident -= n;
		struct emu_proc *p = &P[a->proc];
		if (p->gen == a->proc_gen) {
			p->resident_bytes -= n <= p->resident_bytes ? n : p->resident_bytes;
			p->evicted_bytes += n;
		}
		h->evictions++;
		h->evicted_bytes += n;
		evicted += n;
	}
	return evicted;
}

static uint64_t xfer_ns(uint64_t bytes, uint64_t bps)
{
	if (bytes == 0 || bps == 0)
		return 0;
	return (uint64_t)((double)bytes * 1e9 / (double)bps);
}

int emu_alloc(uint64_t addr, uint64_t size, int kind, uint32_t *handle)
{
	if (!handle || (kind != EMU_KIND_DEVICE && kind != EMU_KIND_MANAGED))
		return -EINVAL;
	if (!ready() && emu_attach() < 0)
		return -ENODEV;
	if (lock_dev() < 0)
		return -ENOTRECOVERABLE;
	struct emu_hdr *h = E.h;
	uint64_t evicted = 0;
	if (kind == EMU_KIND_DEVICE) {
		if (h->used_device + size > h->capacity) {
			reap_locked();
			if (h->used_device + size > h->capacity) {
				unlock_dev();
				return -ENOMEM;
			}
		}
		if (dev_free_locked() < size)
			reap_locked();
		evicted = evict_locked(size, NULL, 0);
	}
	struct emu_alloc *A = allocs();
	uint32_t i;
	for (i = 0; i < h->alloc_hwm; i++)
		if (A[i].kind == EMU_KIND_FREE)
			break;
	if (i == h->alloc_hwm) {
		if (h->alloc_hwm >= EMU_MAX_ALLOCS) {
			unlock_dev();
			return -ENOSPC;
		}
		h->alloc_hwm++;
	}
	struct emu_alloc *a = &A[i];
	memset(a, 0, sizeof(*a));
	a->kind = (uint32_t)kind;
	a->proc = (uint32_t)E.slot;
	a->proc_gen = E.gen;
	a->addr = addr;
	a->size = size;
	a->lru = ++h->lru_clock;
	struct emu_proc *p = &procs()[E.slot];
	if (kind == EMU_KIND_DEVICE) {
		a->resident = size;
		h->used_device += size;
		p->device_bytes += size;
	} else {
		p->managed_bytes += size;
	}
	p->prefetch_ns += xfer_ns(evicted, h->d2h_bps);
	uint64_t ns = xfer_ns(evicted, h->d2h_bps);
	unlock_dev();
	*handle = i;
	emu_sleep_ns(ns);
	return 0;
}

void emu_free(uint32_t handle)
{
	if (!ready() || lock_dev() < 0)
		return;
	struct emu_alloc *a = my_alloc(handle);
	if (a)
		drop_alloc_locked(a);
	unlock_dev();
}

uint64_t emu_resident(uint32_t handle)
{
	if (!ready() || lock_dev() < 0)
		return 0;
	struct emu_alloc *a = my_alloc(handle);
	uint64_t r = a ? a->resident : 0;
	unlock_dev();
	return r;
}

uint64_t emu_prefetch(uint32_t handle, uint64_t bytes, int to_device)
{
	if (!ready() || lock_dev() < 0)
		return 0;
	struct emu_hdr *h = E.h;
	struct emu_alloc *a = my_alloc(handle);
	if (!a || a->kind != EMU_KIND_MANAGED) {
		unlock_dev();
		return 0;
	}
	struct emu_proc *p = &procs()[E.slot];
	uint64_t moved = 0, evicted = 0, ns = 0;
	if (to_device) {
		uint64_t want = a->size - a->resident;
		if (bytes < want)
			want = bytes;
		if (dev_free_locked() < want) {
			reap_locked(); /* dead processes' memory first */
			evicted = evict_locked(want, &handle, 1);
		}
		uint64_t fr = dev_free_locked();
		moved = want < fr ? want : fr;
		a->resident += moved;
		h->used_resident += moved;
		p->resident_bytes += moved;
		p->prefetch_h2d_bytes += moved;
		a->lru = ++h->lru_clock;
		ns = xfer_ns(moved, h->h2d_bps) + xfer_ns(evicted, h->d2h_bps);
	} else {
		moved = a->resident < bytes ? a->resident : bytes;
		a->resident -= moved;
		h->used_resident -= moved;
		p->resident_bytes -= moved;
		p->prefetch_d2h_bytes += moved;
		ns = xfer_ns(moved, h->d2h_bps);
	}
	p->prefetch_ns += ns;
	p->last_active_ns = emu_now_ns();
	unlock_dev();
	emu_sleep_ns(ns);
	return moved;
}

uint64_t emu_discard(uint32_t handle, uint64_t bytes)
{
	if (!ready() || lock_dev() < 0)
		return 0;
	struct emu_alloc *a = my_alloc(handle);
	uint64_t moved = 0;
	if (a && a->kind == EMU_KIND_MANAGED) {
		struct emu_proc *p = &procs()[E.slot];
		moved = a->resident < bytes ? a->resident : bytes;
		a->resident -= moved;
		E.h->used_resident -= moved;
		p->resident_bytes -= moved <= p->resident_bytes ? moved : p->resident_bytes;
	}
	unlock_dev();
	return moved;
}

uint64_t emu_touch(const uint32_t *handles, const uint64_t *bytes, int n)
{
	if (n <= 0 || !handles || !ready() || lock_dev() < 0)
		return 0;
	struct emu_hdr *h = E.h;
	struct emu_proc *p = &procs()[E.slot];
	uint64_t faulted = 0, evicted = 0;
	for (int k = 0; k < n; k++) {
		struct emu_alloc *a = my_alloc(handles[k]);
		if (!a)
			continue;
		a->lru = ++h->lru_clock;
		if (a->kind != EMU_KIND_MANAGED)
			continue;
		uint64_t want = bytes ? bytes[k] : a->size;
		if (want > a->size)
			want = a->size;
		if (want <= a->resident)
			continue;
		uint64_t need = want - a->resident;
		if (dev_free_locked() < need) {
			reap_locked();
			evicted += evict_locked(need, handles, n);
		}
		uint64_t fr = dev_free_locked();
		uint64_t fit = need < fr ? need : fr;
		a->resident += fit;
		h->used_resident += fit;
		p->resident_bytes += fit;
		/* what does not fit faults on every access: charged every launch */
		faulted += need;
	}
	uint64_t ns = xfer_ns(faulted, h->fault_bps) + xfer_ns(evicted, h->d2h_bps);
	p->fault_bytes += faulted;
	p->fault_ns += ns;
	unlock_dev();
	return ns;
}

static int add_waiter_locked(uint64_t ticket)
{
	struct emu_waiter *W = waiters();
	for (uint32_t i = 0; i < EMU_MAX_WAITERS; i++)
		if (W[i].proc < 0) {
			W[i].proc = E.slot;
			W[i].ticket = ticket;
			E.h->nwaiters++;
			return (int)i;
		}
	return -1;
}

static uint64_t min_ticket_locked(int *who)
{
	struct emu_waiter *W = waiters();
	uint64_t m = UINT64_MAX;
	*who = -1;
	for (uint32_t i = 0; i < EMU_MAX_WAITERS; i++)
		if (W[i].proc >= 0 && W[i].ticket < m) {
			m = W[i].ticket;
			*who = W[i].proc;
		}
	return m;
}

static void futex_wait_seq(uint32_t seen, uint64_t timeout_ns)
{
	struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
	syscall(SYS_futex, &E.h->dev_seq, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/* Timeslice mode: take the device in ticket order. Returns 0 or -1. */
static int acquire_device(struct emu_proc *p)
{
	if (lock_dev() < 0)
		return -1;
	struct emu_hdr *h = E.h;
	uint64_t t = ++h->ticket;
	int w;
	while ((w = add_waiter_locked(t)) < 0) {
		uint32_t seq = h->dev_seq;
		unlock_dev();
		futex_wait_seq(seq, 2000000);
		if (lock_dev() < 0)
			return -1;
	}
	uint64_t t0 = emu_now_ns();
	for (int spins = 0;; spins++) {
		struct emu_waiter *W = waiters();
		if (W[w].proc != E.slot || W[w].ticket != t) {
			/* our entry was cleared by a repair: re-enqueue */
			w = add_waiter_locked(t);
			if (w < 0) {
				unlock_dev();
				return -1;
			}
		}
		if (h->dev_owner >= 0 && h->dev_owner != E.slot && spins > 0 && !slot_alive(h->dev_owner))
			reap_locked();
		int first;
		uint64_t mt = min_ticket_locked(&first);
		/* a waiter ahead of us that died would block the queue */
		if (h->dev_owner < 0 && mt != t && first >= 0 && first != E.slot && spins > 0 && !slot_alive(first)) {
			reap_locked();
			mt = min_ticket_locked(&first);
		}
		if (h->dev_owner < 0 && mt == t) {
			W[w].proc = -1;
			h->nwaiters--;
			h->dev_owner = E.slot;
			h->running = 1;
			h->owner_since_ns = emu_now_ns();
			p->slices++;
			p->wait_ns += h->owner_since_ns - t0;
			unlock_dev();
			return 0;
		}
		uint32_t seq = __atomic_load_n(&h->dev_seq, __ATOMIC_ACQUIRE);
		unlock_dev();
		futex_wait_seq(seq, 5000000);
		if (lock_dev() < 0)
			return -1;
	}
}

static void release_device(struct emu_proc *p)
{
	if (lock_dev() < 0)
		return;
	struct emu_hdr *h = E.h;
	if (h->dev_owner == E.slot) {
		uint64_t held = emu_now_ns() - h->owner_since_ns;
		p->busy_ns += held;
		h->total_busy_ns += held;
		h->dev_owner = -1;
		h->running = 0;
	}
	unlock_dev();
	wake_all();
}

static void run_timeslice(struct emu_proc *p, uint64_t total)
{
	uint64_t remaining = total;
	while (remaining > 0) {
		if (acquire_device(p) < 0) {
			emu_sleep_ns(remaining); /* file unusable: still take the time */
			return;
		}
		for (;;) {
			uint64_t q = remaining < E.h->quantum_ns ? remaining : E.h->quantum_ns;
			emu_sleep_ns(q);
			remaining -= q;
			if (remaining == 0)
				break;
			/* keep the device while nobody waits */
			uint32_t nw = __atomic_load_n(&E.h->nwaiters, __ATOMIC_ACQUIRE);
			if (nw > 0)
				break;
		}
		release_device(p);
	}
}

static void run_share(struct emu_proc *p, uint64_t total)
{
	struct emu_hdr *h = E.h;
	if (lock_dev() < 0)
		return;
	h->running++;
	p->running++;
	unlock_dev();
	uint64_t t0 = emu_now_ns();
	double remaining = (double)total;
	while (remaining > 0) {
		uint32_t n = __atomic_load_n(&h->running, __ATOMIC_ACQUIRE);
		if (n == 0)
			n = 1;
		double step = remaining * n;
		if (step > 1e6)
			step = 1e6;
		emu_sleep_ns((uint64_t)step + 1);
		remaining -= step / n;
	}
	if (lock_dev() < 0)
		return;
	if (h->running)
		h->running--;
	if (p->running)
		p->running--;
	uint64_t el = emu_now_ns() - t0;
	p->busy_ns += el;
	h->total_busy_ns += el;
	p->slices++;
	unlock_dev();
}

void emu_run_kernel(uint64_t duration_ns, uint64_t extra_ns)
{
	if (!ready()) {
		emu_sleep_ns(duration_ns + extra_ns);
		return;
	}
	struct emu_proc *p = &procs()[E.slot];
	uint64_t total = duration_ns + extra_ns;
	if (total > 0) {
		if (E.h->sched_mode == EMU_SCHED_SHARE)
			run_share(p, total);
		else
			run_timeslice(p, total);
	}
	__atomic_add_fetch(&p->kernels, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&p->last_active_ns, emu_now_ns(), __ATOMIC_RELAXED);
}

void emu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes)
{
	uint64_t fr = 0, tot = 0;
	static uint64_t last_reap;
	if (ready() && lock_dev() == 0) {
		uint64_t now = emu_now_ns();
		if (now - __atomic_load_n(&last_reap, __ATOMIC_RELAXED) > 50000000ull) {
			__atomic_store_n(&last_reap, now, __ATOMIC_RELAXED);
			reap_locked(); /* a crashed process's memory is free again */
		}
		tot = E.h->capacity;
		fr = dev_free_locked();
		unlock_dev();
	}
	if (free_bytes)
		*free_bytes = fr;
	if (total_bytes)
		*total_bytes = tot;
}

int emu_reap(void)
{
	if (!ready() || lock_dev() < 0)
		return 0;
	int n = reap_locked();
	unlock_dev();
	return n;
}

void emu_test_die_holding_lock(int status)
{
	if (ready() && lock_dev() == 0) {
		/* leave a visible inconsistency for the repair to fix */
		E.h->used_resident += 12345;
		_exit(status);
	}
	_exit(status);
}
