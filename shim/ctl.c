/*
 * shim/ctl.c - the control channel to the Sluice daemon and the prefetch
 * half of the submission gate.
 *
 * With SLUICE_SOCKET set, the first allocation, cuInit or submission starts
 * one control thread (signals blocked, capture mode relaxed). It connects a
 * SOCK_SEQPACKET socket, sends REGISTER with the usage page's memfd, then
 * blocks in recvmsg (no CPU while idle) and executes COMMANDs one at a time.
 * Anything malformed is dropped; a closed or broken socket means the daemon
 * is gone: the shim carries on standalone, and the control thread waits
 * (timer, optionally inotify; no CPU to speak of) for a daemon to listen on
 * the path again, then registers again with everything it tracks. After
 * fork() the child closes the inherited socket and registers, lazily, on its
 * own.
 *
 * Prefetches run on a private non-blocking stream per context. While one is
 * in flight the gate word has GATE_PREFETCH set, and every submission first
 * makes its own stream wait for the prefetch's event (stream-ordered; the
 * CPU does not block), except on a capturing stream.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

/* helgrind does not model C11 atomics: the prefetch slots' atomic words are
 * excluded from its race checks when the control thread starts (a no-op
 * without valgrind's headers, and never on a submission path). */
#if defined(__has_include)
#if __has_include(<valgrind/helgrind.h>)
#include <valgrind/helgrind.h>
#endif
#endif
#ifndef VALGRIND_HG_DISABLE_CHECKING
#define VALGRIND_HG_DISABLE_CHECKING(addr, len) ((void)(addr), (void)(len))
#endif

#define MAX_SLOTS 16

struct pf_slot {
	CUcontext ctx;
	CUstream stream;
	CUevent ev;
	_Atomic int armed;	/* ev recorded for the prefetch in flight */
};

static struct pf_slot slots[MAX_SLOTS];
static _Atomic int nslots;
static _Atomic int ctl_started;
static _Atomic int ctl_fd = -1;
static _Atomic int ctl_forked;
static int ctl_again;	/* control thread only: a session was lost before */
static pthread_mutex_t fork_mu = PTHREAD_MUTEX_INITIALIZER;

void ctl_atfork_prepare(void)
{
	pthread_mutex_lock(&fork_mu);
}

void ctl_atfork_parent(void)
{
	pthread_mutex_unlock(&fork_mu);
}

/* ---------------------------------------------------------- gate path */

void ctl_prefetch_wait(CUstream s)
{
	cuStreamWaitEvent_fn wait = REAL(cuStreamWaitEvent);
	if (wait == NULL)
		return;
	/* Recorded work is not ordered (the later graph launch is gated).
	 * Asked of the driver every time: this is the slow path, taken only
	 * while a daemon prefetch is in flight. */
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	if (REAL(cuStreamIsCapturing) == NULL ? atomic_load(&shim_captures) > 0
					       : (REAL(cuStreamIsCapturing)(s, &st) != CUDA_SUCCESS ||
						  st != CU_STREAM_CAPTURE_STATUS_NONE))
		return;
	int n = atomic_load_explicit(&nslots, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		int armed = atomic_load_explicit(&slots[i].armed, memory_order_acquire);
		if (armed)
			wait(s, slots[i].ev, 0);
	}
}

/* ------------------------------------------------------------ helpers */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void hdr_init(struct sluice_hdr *h, uint16_t type, uint32_t size)
{
	h->magic = SLUICE_PROTO_MAGIC;
	h->version = SLUICE_PROTO_VERSION;
	h->type = type;
	h->size = size;
	h->reserved = 0;
}

static void usage_copy(uint64_t out[SLUICE_KIND_COUNT])
{
	struct sluice_usage_page *p = atomic_load(&shim_usage);
	for (int k = 0; k < SLUICE_KIND_COUNT; k++)
		out[k] = __atomic_load_n(&p->live_bytes[k], __ATOMIC_RELAXED);
}

/* The slot for ctx, created (stream + event in ctx) on first use. Only the
 * control thread calls this. */
static struct pf_slot *slot_for(CUcontext ctx)
{
	int n = atomic_load(&nslots);
	for (int i = 0; i < n; i++)
		if (slots[i].ctx == ctx)
			return &slots[i];
	if (n == MAX_SLOTS || REAL(cuCtxPushCurrent_v2) == NULL || REAL(cuCtxPopCurrent_v2) == NULL ||
	    REAL(cuStreamCreate) == NULL || REAL(cuEventCreate) == NULL)
		return NULL;
	if (REAL(cuCtxPushCurrent_v2)(ctx) != CUDA_SUCCESS)
		return NULL;
	struct pf_slot *s = &slots[n];
	CUcontext popped;
	int ok = REAL(cuStreamCreate)(&s->stream, CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS;
	if (ok && REAL(cuEventCreate)(&s->ev, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
		ok = 0;
	REAL(cuCtxPopCurrent_v2)(&popped);
	if (!ok)
		return NULL;
	s->ctx = ctx;
	atomic_store_explicit(&nslots, n + 1, memory_order_release);
	return s;
}

CUresult shim_prefetch(CUdeviceptr p, size_t n, int to_device, CUdevice dev, CUstream s)
{
	cuMemPrefetchAsync_v2_fn v2 = REAL(cuMemPrefetchAsync_v2);
	if (v2 != NULL) {
		CUmemLocation loc = {to_device ? CU_MEM_LOCATION_TYPE_DEVICE : CU_MEM_LOCATION_TYPE_HOST,
				     to_device ? dev : 0};
		CUresult r = v2(p, n, loc, 0, s);
		if (r != CUDA_ERROR_NOT_SUPPORTED && r != CUDA_ERROR_NOT_FOUND)
			return r;
	}
	cuMemPrefetchAsync_fn v1 = REAL(cuMemPrefetchAsync);
	if (v1 == NULL)
		return CUDA_ERROR_NOT_SUPPORTED;
	return v1(p, n, to_device ? dev : CU_DEVICE_CPU, s);
}

/* Partial evictions (EVICT_HOST with a byte limit) walk the tracked
 * evictable ranges as one sequence, in move_all's order, and send the next
 * limit bytes of it to the host: evict_cursor is how far they have got since
 * the last move of everything. Only the control thread touches it. Cut
 * points fall on EVICT_ALIGN boundaries of their range (unified memory
 * migrates whole pages; 2 MiB is the driver's large page). */
#define EVICT_ALIGN (2ull << 20)
static uint64_t evict_cursor;

/* Move every tracked evictable range to its context's device (or to the
 * host). To the host with limit > 0: only the next limit bytes of the
 * sequence past evict_cursor (rounded up to EVICT_ALIGN within a range).
 * Returns 0 or the first driver error; *moved counts the bytes whose
 * prefetch was accepted. */
static int32_t move_all(int to_device, uint64_t limit, uint64_t *moved)
{
	*moved = 0;
	if (to_device)
		limit = 0;
	uint64_t lo = limit ? evict_cursor : 0;
	uint64_t hi = limit && limit < UINT64_MAX - lo ? lo + limit : UINT64_MAX;
	uint64_t pos = 0; /* where the current range starts in the sequence */
	struct mem_range *r;
	size_t n;
	if (REAL(cuCtxPushCurrent_v2) == NULL || REAL(cuCtxPopCurrent_v2) == NULL ||
	    REAL(cuCtxGetDevice) == NULL || REAL(cuEventRecord) == NULL ||
	    REAL(cuEventSynchronize) == NULL)
		return SLUICE_ERR_UNAVAILABLE;
	if (mem_snapshot(&r, &n) != 0)
		return SLUICE_ERR_UNAVAILABLE;
	int32_t status = SLUICE_OK;
	struct pf_slot *used[MAX_SLOTS];
	int nused = 0;
	CUcontext seen_ctx[MAX_SLOTS + 1];
	int nseen = 0;
	for (size_t i = 0; i < n; i++) {
		if (r[i].ctx == NULL)
			continue;
		int seen = 0;
		for (int j = 0; j < nseen; j++)
			if (seen_ctx[j] == r[i].ctx)
				seen = 1;
		if (seen)
			continue;
		if (nseen == MAX_SLOTS + 1) {
			status = SLUICE_ERR_UNAVAILABLE; /* more contexts than slots */
			continue;
		}
		seen_ctx[nseen++] = r[i].ctx;
		struct pf_slot *s = slot_for(r[i].ctx);
		if (s == NULL) {
			status = SLUICE_ERR_UNAVAILABLE;
			continue;
		}
		CUcontext popped;
		if (REAL(cuCtxPushCurrent_v2)(s->ctx) != CUDA_SUCCESS) {
			status = SLUICE_ERR_UNAVAILABLE;
			continue;
		}
		CUdevice dev = 0;
		REAL(cuCtxGetDevice)(&dev);
		for (size_t k = i; k < n; k++) {
			if (r[k].ctx != s->ctx)
				continue;
			uint64_t start = pos, size = r[k].size;
			pos += size;
			if (pos <= lo || start >= hi)
				continue;
			/* the part of this range inside [lo, hi) */
			uint64_t off = lo > start ? lo - start : 0;
			uint64_t end = hi - start < size ? hi - start : size;
			if (end < size) {
				end = (end + EVICT_ALIGN - 1) / EVICT_ALIGN * EVICT_ALIGN;
				if (end > size)
					end = size;
			}
			if (end <= off)
				continue;
			CUresult e = shim_prefetch(r[k].ptr + off, (size_t)(end - off), to_device, dev, s->stream);
			if (e == CUDA_SUCCESS) {
				*moved += end - off;
				if (limit && start + end > hi)
					hi = start + end; /* the rounding moved the window's end */
			} else if (status == SLUICE_OK) {
				status = (int32_t)e;
			}
		}
		if (REAL(cuEventRecord)(s->ev, s->stream) == CUDA_SUCCESS)
			used[nused++] = s;
		REAL(cuCtxPopCurrent_v2)(&popped);
	}
	free(r);
	/* a partial eviction moves the cursor to where it stopped; moving
	 * everything to the device starts the sequence again, moving
	 * everything to the host leaves nothing for a partial one */
	evict_cursor = limit ? (hi < pos ? hi : pos) : (to_device ? 0 : pos);
	/* Submissions from now on order themselves after the prefetch. */
	struct sluice_usage_page *page = atomic_load(&shim_usage);
	if (to_device && nused > 0) {
		for (int j = 0; j < nused; j++) {
			atomic_store_explicit(&used[j]->armed, 1, memory_order_release);
		}
		atomic_fetch_or(&shim_gate, GATE_PREFETCH);
		__atomic_store_n(&page->prefetch_inflight, 1, __ATOMIC_RELEASE);
	}
	for (int j = 0; j < nused; j++)
		REAL(cuEventSynchronize)(used[j]->ev);
	if (to_device && nused > 0) {
		atomic_fetch_and(&shim_gate, ~GATE_PREFETCH);
		__atomic_store_n(&page->prefetch_inflight, 0, __ATOMIC_RELEASE);
		for (int j = 0; j < nused; j++) {
			atomic_store(&used[j]->armed, 0);
		}
	}
	return status;
}

/* ----------------------------------------------------------- messages */

static int send_msg(int fd, const void *m, size_t len, int pass_fd)
{
	struct iovec iov = {(void *)m, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	if (pass_fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	ssize_t w;
	do
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	return w == (ssize_t)len ? 0 : -1;
}

static int send_register(int fd)
{
	struct sluice_register m;
	memset(&m, 0, sizeof(m));
	hdr_init(&m.hdr, SLUICE_MSG_REGISTER, sizeof(m));
	m.claimed_pid = (int32_t)getpid();
	int v = 0;
	if (REAL(cuDriverGetVersion) && REAL(cuDriverGetVersion)(&v) == CUDA_SUCCESS)
		m.driver_version = v;
	int count = 0;
	if (REAL(cuDeviceGetCount) && REAL(cuDeviceGet) &&
	    REAL(cuDeviceGetCount)(&count) == CUDA_SUCCESS && count > 0) {
		if (count > SLUICE_MAX_DEVICES)
			count = SLUICE_MAX_DEVICES;
		cuDeviceGetUuid_fn uuid = REAL(cuDeviceGetUuid_v2) ? REAL(cuDeviceGetUuid_v2)
								   : REAL(cuDeviceGetUuid);
		for (int i = 0; i < count; i++) {
			CUdevice d;
			CUuuid u;
			if (REAL(cuDeviceGet)(&d, i) == CUDA_SUCCESS && uuid && uuid(&u, d) == CUDA_SUCCESS)
				memcpy(m.uuids[i], u.bytes, 16);
		}
		m.device_count = (uint32_t)count;
	}
	memcpy(m.function_id, shim_cfg.function, strnlen(shim_cfg.function, sizeof(m.function_id) - 1));
	mem_graph_refresh();
	usage_copy(m.bytes);
	int pfd = mem_usage_page_fd();
	m.flags = (pfd >= 0 ? SLUICE_REG_USAGE_PAGE : 0) | (shim_cfg.convert ? SLUICE_REG_CONVERTING : 0) |
		  (atomic_load(&ctl_forked) ? SLUICE_REG_FORKED : 0) | (ctl_again ? SLUICE_REG_AGAIN : 0);
	return send_msg(fd, &m, sizeof(m), pfd);
}

static void set_budget(uint64_t b)
{
	atomic_store(&shim_budget, b);
	struct sluice_usage_page *p = atomic_load(&shim_usage);
	__atomic_store_n(&p->budget, b, __ATOMIC_RELAXED);
	__atomic_fetch_add(&p->seq, 1, __ATOMIC_RELEASE);
}

static void run_command(int fd, const struct sluice_command *c)
{
	struct sluice_result res;
	memset(&res, 0, sizeof(res));
	hdr_init(&res.hdr, SLUICE_MSG_RESULT, sizeof(res));
	res.id = c->id;
	res.op = c->op;
	uint64_t t0 = now_ns();
	struct sluice_usage_page *p = atomic_load(&shim_usage);
	switch (c->op) {
	case SLUICE_OP_PREFETCH_DEVICE:
		res.status = move_all(1, 0, &res.bytes);
		__atomic_fetch_add(&p->prefetches, 1, __ATOMIC_RELAXED);
		break;
	case SLUICE_OP_EVICT_HOST:
		res.status = move_all(0, c->arg, &res.bytes);
		__atomic_fetch_add(&p->evictions, 1, __ATOMIC_RELAXED);
		break;
	case SLUICE_OP_SET_BUDGET:
		set_budget(c->arg);
		res.bytes = c->arg;
		break;
	case SLUICE_OP_REPORT_USAGE:
		res.bytes = mem_live_bytes();
		break;
	default:
		res.status = SLUICE_ERR_UNKNOWN_OP;
		break;
	}
	res.duration_ns = now_ns() - t0;
	mem_graph_refresh(); /* graph memory changes at launches: read it now */
	if (c->op == SLUICE_OP_REPORT_USAGE)
		res.bytes = mem_live_bytes();
	usage_copy(res.usage);
	SHIM_LOG("command %llu op %u: status %d, %llu bytes, %llu ns", (unsigned long long)c->id,
		 c->op, res.status, (unsigned long long)res.bytes, (unsigned long long)res.duration_ns);
	send_msg(fd, &res, sizeof(res), -1);
}

/* Validate a received packet: 1 if it is a well-formed message of type. */
static int valid(const void *buf, ssize_t n, int flags, uint16_t *type)
{
	const struct sluice_hdr *h = buf;
	if (n < (ssize_t)sizeof(*h) || (flags & MSG_TRUNC))
		return 0;
	if (h->magic != SLUICE_PROTO_MAGIC || h->version != SLUICE_PROTO_VERSION || h->size != (uint32_t)n)
		return 0;
	switch (h->type) {
	case SLUICE_MSG_WELCOME:
		if (n != sizeof(struct sluice_welcome))
			return 0;
		break;
	case SLUICE_MSG_COMMAND:
		if (n != sizeof(struct sluice_command))
			return 0;
		break;
	default:
		return 0;
	}
	*type = h->type;
	return 1;
}

/* ------------------------------------------------- descriptors and fork */

/* Descriptors the control thread owns are created, published and closed
 * under fork_mu, so a fork() never copies one its child handler does not
 * know about (the child closes whatever is published). */
static int fd_open_published(_Atomic int *slot, int fd)
{
	atomic_store(slot, fd);
	return fd;
}

static void fd_close_published(_Atomic int *slot)
{
	pthread_mutex_lock(&fork_mu);
	int fd = atomic_exchange(slot, -1);
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&fork_mu);
}

/* ------------------------------------------------------------ session */

/* Connect and register. Returns 0 with ctl_fd set, or -1 (errno kept). */
static int try_register(void)
{
	pthread_mutex_lock(&fork_mu);
	int fd = fd_open_published(&ctl_fd, socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	pthread_mutex_unlock(&fork_mu);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, shim_cfg.socket, strnlen(shim_cfg.socket, sizeof(sa.sun_path) - 1));
	int rc;
	do
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (rc < 0 && errno == EINTR);
	if (rc < 0 || send_register(fd) != 0) {
		int e = errno;
		fd_close_published(&ctl_fd);
		errno = e;
		return -1;
	}
	return 0;
}

/* Serve one registered session until the daemon closes it or the socket
 * breaks. Blocks in recvmsg: no CPU while idle. */
static void serve(int fd)
{
	union {
		char buf[SLUICE_MAX_MSG];
		uint64_t align;
	} u;
	for (;;) {
		struct iovec iov = {u.buf, sizeof(u.buf)};
		/* No control buffer: any descriptors a peer sends are closed by
		 * the kernel, never installed here. */
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		uint16_t type;
		if (!valid(u.buf, n, mh.msg_flags, &type)) {
			SHIM_LOG("dropped a malformed %zd-byte message", n);
			continue;
		}
		if (type == SLUICE_MSG_WELCOME) {
			struct sluice_welcome w;
			memcpy(&w, u.buf, sizeof(w));
			set_budget(w.budget);
			SHIM_LOG("welcome: session %llu, budget %llu", (unsigned long long)w.session_id,
				 (unsigned long long)w.budget);
		} else {
			struct sluice_command c;
			memcpy(&c, u.buf, sizeof(c));
			run_command(fd, &c);
		}
	}
}

/* ------------------------------------------------- waiting for a daemon */

/*
 * While no daemon is reachable the control thread sleeps on a timer that
 * backs off from RETRY_MIN_MS to RETRY_MAX_MS, and at each wake-up tries to
 * connect only if a socket file is there (one access() otherwise): at most
 * one cheap wake-up every 2 s, nothing on the application's threads.
 *
 * With SLUICE_RECONNECT_WATCH=1 it also blocks on an inotify watch of the
 * socket's directory, which wakes it as soon as a file of the socket's name
 * is created, moved in or changed (a restarted daemon binds the path again);
 * the timer is then only a safety net (RETRY_MAX_WATCH_MS). Not the default:
 * inotify instances are limited per user (128 on many hosts) and hundreds of
 * containers running as the same uid, all waiting at once, would exhaust
 * them for every other program of that user.
 *
 * A daemon that ends our session at once (it does not want us) is asked
 * again less and less often, up to once a minute; a session that lasted
 * resets that.
 */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 2000
#define RETRY_MAX_WATCH_MS 60000
#define REJECT_MAX_MS 60000
#define SETTLE_TRIES 6		/* bind() happens before listen(): retry briefly */

static _Atomic int ino_fd = -1;
static int ino_wd = -1;

static const char *sock_base(void)
{
	const char *b = strrchr(shim_cfg.socket, '/');
	return b ? b + 1 : shim_cfg.socket;
}

/* Make sure the directory watch exists; 1 if it does. */
static int watch_dir(void)
{
	if (atomic_load(&ino_fd) < 0) {
		pthread_mutex_lock(&fork_mu);
		fd_open_published(&ino_fd, inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
		pthread_mutex_unlock(&fork_mu);
		ino_wd = -1;
		if (atomic_load(&ino_fd) < 0)
			return 0;
	}
	if (ino_wd >= 0)
		return 1;
	char dir[sizeof(shim_cfg.socket)];
	const char *slash = strrchr(shim_cfg.socket, '/');
	if (slash == NULL) {
		strcpy(dir, ".");
	} else if (slash == shim_cfg.socket) {
		strcpy(dir, "/");
	} else {
		size_t n = (size_t)(slash - shim_cfg.socket);
		memcpy(dir, shim_cfg.socket, n);
		dir[n] = '\0';
	}
	ino_wd = inotify_add_watch(atomic_load(&ino_fd), dir,
				   IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
					   IN_ONLYDIR);
	return ino_wd >= 0;
}

static void unwatch_dir(void)
{
	fd_close_published(&ino_fd);
	ino_wd = -1;
}

/* Read queued events: 1 if one concerns the socket's name. A watch that
 * went away (directory deleted or moved) is forgotten, to be re-added. */
static int drain_events(void)
{
	int fd = atomic_load(&ino_fd);
	int hit = 0;
	union {
		char buf[4096];
		struct inotify_event align;
	} u;
	for (;;) {
		ssize_t n = read(fd, u.buf, sizeof(u.buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return hit;
		for (char *p = u.buf; p + sizeof(struct inotify_event) <= u.buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) {
				if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
					ino_wd = -1;
				hit = 1; /* look again, cheaply */
			} else if (e->len > 0 && strncmp(e->name, sock_base(), e->len) == 0) {
				hit = 1;
			}
			p += sizeof(struct inotify_event) + e->len;
		}
	}
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Block until the socket may be back or *wait_ms passed; grows *wait_ms on
 * a plain timeout, up to the cap (at least floor_ms). Returns 1 when an
 * event says the socket (re)appeared. */
static int wait_for_daemon(int *wait_ms, int floor_ms)
{
	int watched = shim_cfg.reconnect_watch && watch_dir();
	int max = watched ? RETRY_MAX_WATCH_MS : RETRY_MAX_MS;
	if (max < floor_ms)
		max = floor_ms;
	if (*wait_ms < floor_ms)
		*wait_ms = floor_ms;
	if (*wait_ms > max)
		*wait_ms = max;
	int fd = atomic_load(&ino_fd);
	int hit = 0;
	if (watched) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r;
		do
			r = poll(&pfd, 1, *wait_ms);
		while (r < 0 && errno == EINTR);
		if (r > 0)
			hit = drain_events();
	} else {
		sleep_ms(*wait_ms);
	}
	if (!hit && *wait_ms < max)
		*wait_ms = *wait_ms * 2 > max ? max : *wait_ms * 2;
	return hit;
}

static void *ctl_main(void *arg)
{
	(void)arg;
	/* Our own calls must not be "unsafe" for another thread's capture. */
	if (REAL(cuThreadExchangeStreamCaptureMode)) {
		CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
		REAL(cuThreadExchangeStreamCaptureMode)(&m);
	}
	int sessions = 0, warned = 0, hit = 0;
	int wait_ms = RETRY_MIN_MS, reject_ms = 0;
	for (;;) {
		/* After a socket event, a few quick tries: the daemon may have
		 * bound the path but not yet called listen(). */
		ctl_again = sessions > 0;
		for (int i = 0; i < (hit ? SETTLE_TRIES : 1); i++) {
			if (i > 0)
				sleep_ms(5 << i);
			if (try_register() == 0 || errno != ECONNREFUSED)
				break;
		}
		int fd = atomic_load(&ctl_fd);
		if (fd >= 0) {
			unwatch_dir(); /* no extra descriptor while connected */
			if (sessions++ > 0)
				shim_warn("daemon at %s is back: registered again", shim_cfg.socket);
			SHIM_LOG("registered with %s as %s", shim_cfg.socket, shim_cfg.function);
			uint64_t t0 = now_ns();
			serve(fd);
			fd_close_published(&ctl_fd);
			/* Daemon gone: standalone until it returns. Conversion and
			 * tracking go on; no budget. */
			set_budget(0);
			shim_warn("daemon at %s went away; running standalone until it returns",
				  shim_cfg.socket);
			warned = 1;
			/* A session that lasted resets the back-off; one the daemon
			 * ends at once (it does not want us) backs off further. */
			if (now_ns() - t0 > 10ull * 1000000000ull)
				reject_ms = 0;
			else
				reject_ms = reject_ms == 0 ? 1000
					    : reject_ms * 2 > REJECT_MAX_MS ? REJECT_MAX_MS
									: reject_ms * 2;
			wait_ms = RETRY_MIN_MS;
		} else if (!warned) {
			shim_warn("cannot register with the daemon at %s (%s); running standalone until it appears",
				  shim_cfg.socket, strerror(errno));
			warned = 1;
		}
		/* Sleep until an event, or until the timer fires and a socket
		 * file is there to try. */
		while (!(hit = wait_for_daemon(&wait_ms, reject_ms)) && access(shim_cfg.socket, F_OK) != 0)
			;
	}
	return NULL;
}

void ctl_kick(void)
{
	if (!(atomic_load(&shim_gate) & GATE_REGISTER))
		return;
	int expected = 0;
	if (!atomic_compare_exchange_strong(&ctl_started, &expected, 1))
		return;
	atomic_fetch_and(&shim_gate, ~GATE_REGISTER);
	VALGRIND_HG_DISABLE_CHECKING(&nslots, sizeof(nslots));
	for (int i = 0; i < MAX_SLOTS; i++)
		VALGRIND_HG_DISABLE_CHECKING(&slots[i].armed, sizeof(slots[i].armed));
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	pthread_t t;
	int e = pthread_create(&t, &at, ctl_main, NULL);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0)
		shim_warn("cannot start the control thread (%s); running standalone", strerror(e));
}

void ctl_atfork_child(void)
{
	pthread_mutex_unlock(&fork_mu);
	int fd = atomic_exchange(&ctl_fd, -1);
	if (fd >= 0)
		close(fd);
	fd = atomic_exchange(&ino_fd, -1);
	if (fd >= 0)
		close(fd);
	ino_wd = -1;
	atomic_store(&nslots, 0);
	for (int i = 0; i < MAX_SLOTS; i++)
		atomic_store(&slots[i].armed, 0);
	atomic_fetch_and(&shim_gate, ~GATE_PREFETCH);
	atomic_store(&ctl_started, 0);
	atomic_store(&ctl_forked, 1);
	atomic_store(&shim_budget, 0);
	if (shim_cfg.socket[0] && !(atomic_load(&shim_gate) & GATE_INIT))
		atomic_fetch_or(&shim_gate, GATE_REGISTER);
}
