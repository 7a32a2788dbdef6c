/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: the op queue, streams, events, stream capture
 * and (minimal) graphs. All submitted work goes into one process-wide FIFO
 * in submission order; see fakecuda.h for the execution model.
 */
#include "fakecuda.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fgraph {
	uint32_t magic;
	int refs;
	struct fop *head, *tail;
	size_t nnodes;
	CUdeviceptr *mem;
	size_t nmem, capmem;
};

struct fgexec {
	uint32_t magic;
	struct fgraph *g;
};

static struct fop *qhead, *qtail;
static unsigned long qlen;
static uint64_t next_seq;
static struct fstream *streams;  /* created streams */
static struct fevent *events;
static struct fstream legacy = {.magic = FK_MAGIC_STREAM, .kind = 1};
static int global_captures;      /* active captures in GLOBAL mode */
static int active_captures;      /* all active captures (fast path of fk_capture_prohibited) */
static uint64_t capture_ids;
static __thread CUstreamCaptureMode tls_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
static __thread struct fstream *tls_stream;
static pthread_key_t pt_key;

/* stream.c keeps the capturing thread's id to apply the thread rules */
struct cap_owner {
	struct fstream *s;
	long tid;
};
#define FK_MAX_CAPTURES 64
static struct cap_owner cap_owners[FK_MAX_CAPTURES];

static long my_tid(void) { return (long)syscall(SYS_gettid); }
static void release_joined_locked(struct fstream *o);
static void unjoin_locked(struct fstream *s);

/* -------------------------------------------------------------- ops */

struct fop *fk_op_new(int type)
{
	struct fop *op = calloc(1, sizeof(*op));
	if (op)
		op->type = type;
	return op;
}

void fk_op_free(struct fop *op)
{
	if (!op)
		return;
	if (op->type == OP_KERNEL)
		free(op->u.k.params);
	free(op);
}

struct fop *fk_op_clone(const struct fop *op)
{
	struct fop *c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	*c = *op;
	c->next = NULL;
	c->seq = 0;
	if (op->type == OP_KERNEL && op->u.k.params) {
		c->u.k.params = fk_dup_params(op->u.k.params, op->u.k.plen);
		if (!c->u.k.params) {
			free(c);
			return NULL;
		}
	}
	return c;
}

static void graph_append(struct fgraph *g, struct fop *op)
{
	op->next = NULL;
	if (g->tail)
		g->tail->next = op;
	else
		g->head = op;
	g->tail = op;
	g->nnodes++;
}

CUresult fk_submit(struct fstream *s, struct fop *op)
{
	if (!op)
		return CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_lock(&G.mu);
	if (s->capture == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
		op->s = s;
		if (op->type == OP_EVENT) { /* a fork point: waiting streams join */
			op->u.ev.e->cap_origin = s->cap_origin ? s->cap_origin : s;
			op->u.ev.e->cap_id = s->capture_id;
		}
		graph_append(s->graph, op);
		pthread_mutex_unlock(&G.mu);
		return CUDA_SUCCESS;
	}
	if (s->capture == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
		pthread_mutex_unlock(&G.mu);
		fk_op_free(op);
		return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
	}
	op->seq = ++next_seq;
	op->s = s;
	op->next = NULL;
	s->last_seq = op->seq;
	s->pending++;
	if (op->type == OP_EVENT) {
		op->u.ev.e->rec_seq = op->seq;
		op->u.ev.e->cap_origin = NULL;
	}
	if (qtail)
		qtail->next = op;
	else
		qhead = op;
	qtail = op;
	qlen++;
	int over = qlen > G.queue_depth;
	pthread_mutex_unlock(&G.mu);
	if (over) {
		/* the "device" is behind: run the oldest work in the caller,
		 * like a driver blocking on a full push buffer */
		pthread_mutex_lock(&G.exec);
		for (;;) {
			pthread_mutex_lock(&G.mu);
			struct fop *h = NULL;
			if (qlen > G.queue_depth && qhead) {
				h = qhead;
				qhead = h->next;
				if (!qhead)
					qtail = NULL;
				qlen--;
			}
			pthread_mutex_unlock(&G.mu);
			if (!h)
				break;
			fk_exec_op(h);
			pthread_mutex_lock(&G.mu);
			if (h->s->pending)
				h->s->pending--;
			pthread_mutex_unlock(&G.mu);
			fk_op_free(h);
		}
		pthread_mutex_unlock(&G.exec);
	}
	return CUDA_SUCCESS;
}

void fk_drain_until(uint64_t seq)
{
	pthread_mutex_lock(&G.exec);
	for (;;) {
		pthread_mutex_lock(&G.mu);
		struct fop *h = qhead;
		if (!h || h->seq > seq) {
			pthread_mutex_unlock(&G.mu);
			break;
		}
		qhead = h->next;
		if (!qhead)
			qtail = NULL;
		qlen--;
		pthread_mutex_unlock(&G.mu);
		fk_exec_op(h);
		pthread_mutex_lock(&G.mu);
		if (h->s->pending)
			h->s->pending--;
		pthread_mutex_unlock(&G.mu);
		fk_op_free(h);
	}
	pthread_mutex_unlock(&G.exec);
}

void fk_drain_all(void) { fk_drain_until(UINT64_MAX); }

void fk_exec_op(struct fop *op)
{
	switch (op->type) {
	case OP_KERNEL:
		fk_exec_kernel(op);
		break;
	case OP_COPY:
		if (op->u.copy.n)
			memmove(op->u.copy.dst, op->u.copy.src, op->u.copy.n);
		break;
	case OP_SET: {
		unsigned char *d = op->u.set.dst;
		if (op->u.set.esize == 1) {
			memset(d, (int)(op->u.set.val & 0xff), op->u.set.n);
		} else if (op->u.set.esize == 2) {
			uint16_t v = (uint16_t)op->u.set.val;
			for (size_t i = 0; i < op->u.set.n; i++)
				memcpy(d + 2 * i, &v, 2);
		} else {
			uint32_t v = op->u.set.val;
			for (size_t i = 0; i < op->u.set.n; i++)
				memcpy(d + 4 * i, &v, 4);
		}
		break;
	}
	case OP_PREFETCH:
		fk_exec_prefetch(op);
		break;
	case OP_HOSTFN:
		if (op->u.host.fn)
			op->u.host.fn(op->u.host.ud);
		break;
	case OP_CALLBACK:
		if (op->u.cb.fn)
			op->u.cb.fn(op->s->kind == 0 ? (CUstream)op->s : NULL, (int)G.async_err, op->u.cb.ud);
		break;
	case OP_EVENT: {
		struct fevent *e = op->u.ev.e;
		pthread_mutex_lock(&G.mu);
		if (op->seq > e->done_seq)
			e->done_seq = op->seq;
		e->ts_ns = emu_now_ns();
		e->recorded = 1;
		pthread_mutex_unlock(&G.mu);
		break;
	}
	case OP_FREE:
		fk_exec_free(op);
		break;
	case OP_NOP:
		if (op->u.fr.ptr) /* a graph allocation node: allocated now */
			fk_graph_mem_exec_alloc(op->u.fr.ptr);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------- streams */

static void pt_destroy(void *p)
{
	struct fstream *s = p;
	if (!s)
		return;
	fk_drain_until(s->last_seq);
	s->magic = 0;
	free(s);
}

/* created at load, before any thread of the program can use the driver */
__attribute__((constructor)) static void pt_key_init(void) { pthread_key_create(&pt_key, pt_destroy); }

static struct fstream *per_thread(void)
{
	if (tls_stream)
		return tls_stream;
	struct fstream *s = calloc(1, sizeof(*s));
	if (!s)
		return &legacy; /* out of memory: fall back to legacy ordering */
	s->magic = FK_MAGIC_STREAM;
	s->kind = 2;
	s->ctx = fk_current_ctx();
	tls_stream = s;
	pthread_setspecific(pt_key, s);
	return s;
}

struct fstream *fk_stream(CUstream h, int ptsz, CUresult *err)
{
	*err = CUDA_SUCCESS;
	if (h == NULL)
		return ptsz ? per_thread() : &legacy;
	if (h == CU_STREAM_LEGACY)
		return &legacy;
	if (h == CU_STREAM_PER_THREAD)
		return per_thread();
	struct fstream *found = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fstream *s = streams; s; s = s->next)
		if (s == (struct fstream *)h) {
			found = s;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	if (!found || found->magic != FK_MAGIC_STREAM)
		*err = CUDA_ERROR_INVALID_HANDLE;
	return found;
}

/* Resolve a stream for a submission; returns from the caller on error. */
#define GET_STREAM(nm, var, h, ptsz)                                                  \
	CUresult var##_err;                                                           \
	struct fstream *var = fk_stream((h), (ptsz), &var##_err);                     \
	if (!var)                                                                     \
		return fk_log(nm, var##_err ? var##_err : CUDA_ERROR_INVALID_HANDLE,  \
			      "stream=%p", (void *)(h))

static CUresult stream_create(const char *nm, CUstream *ph, unsigned flags, int prio)
{
	NEED_CTX(nm, c);
	if (!ph || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "flags=%#x", flags);
	struct fstream *s = calloc(1, sizeof(*s));
	if (!s)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	s->magic = FK_MAGIC_STREAM;
	s->ctx = c;
	s->flags = flags;
	s->priority = prio > 0 ? 0 : (prio < -5 ? -5 : prio);
	pthread_mutex_lock(&G.mu);
	s->next = streams;
	streams = s;
	pthread_mutex_unlock(&G.mu);
	*ph = (CUstream)s;
	return fk_log(nm, CUDA_SUCCESS, "flags=%#x stream=%p", flags, (void *)s);
}

FK_EXPORT CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
	FK_ENTER("cuStreamCreate");
	return stream_create("cuStreamCreate", phStream, Flags, 0);
}

FK_EXPORT CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
	FK_ENTER("cuStreamCreateWithPriority");
	return stream_create("cuStreamCreateWithPriority", phStream, flags, priority);
}

static CUresult stream_destroy(const char *nm, CUstream h)
{
	FK_NEED_INIT(nm);
	if (h == NULL || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "stream=%p", (void *)h);
	GET_STREAM(nm, s, h, 0);
	fk_drain_until(s->last_seq);
	pthread_mutex_lock(&G.mu);
	for (struct fstream **pp = &streams; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (!s->cap_origin && s->capture != CU_STREAM_CAPTURE_STATUS_NONE &&
	    s->cmode == CU_STREAM_CAPTURE_MODE_GLOBAL && global_captures > 0)
		global_captures--;
	if (!s->cap_origin && s->capture != CU_STREAM_CAPTURE_STATUS_NONE && active_captures > 0)
		__atomic_sub_fetch(&active_captures, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < FK_MAX_CAPTURES; i++)
		if (cap_owners[i].s == s)
			cap_owners[i].s = NULL;
	struct fgraph *owned = NULL;
	if (s->cap_origin) {
		unjoin_locked(s); /* the graph belongs to the origin */
	} else if (s->capture != CU_STREAM_CAPTURE_STATUS_NONE) {
		release_joined_locked(s);
		owned = s->graph;
	}
	pthread_mutex_unlock(&G.mu);
	if (owned)
		cuGraphDestroy((CUgraph)owned);
	s->magic = 0;
	free(s);
	return fk_log(nm, CUDA_SUCCESS, "stream=%p", (void *)h);
}

FK_EXPORT CUresult cuStreamDestroy_v2(CUstream hStream)
{
	FK_ENTER("cuStreamDestroy_v2");
	return stream_destroy("cuStreamDestroy_v2", hStream);
}

FK_EXPORT CUresult cuStreamDestroy(CUstream hStream)
{
	FK_ENTER("cuStreamDestroy");
	return stream_destroy("cuStreamDestroy", hStream);
}

/* Invalidate the capture s takes part in (its origin and every joined
 * stream). Caller holds G.mu. */
static void invalidate_capture_locked(struct fstream *s)
{
	struct fstream *o = s->cap_origin ? s->cap_origin : s;
	o->capture = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
	for (int i = 0; i < o->njoined; i++)
		o->joined[i]->capture = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
}

/* End the joins of a capture's origin. Caller holds G.mu. */
static void release_joined_locked(struct fstream *o)
{
	for (int i = 0; i < o->njoined; i++) {
		struct fstream *j = o->joined[i];
		j->capture = CU_STREAM_CAPTURE_STATUS_NONE;
		j->graph = NULL;
		j->cap_origin = NULL;
	}
	o->njoined = 0;
}

/* Leave the capture a joined stream takes part in. Caller holds G.mu. */
static void unjoin_locked(struct fstream *s)
{
	struct fstream *o = s->cap_origin;
	if (!o)
		return;
	for (int i = 0; i < o->njoined; i++)
		if (o->joined[i] == s) {
			o->joined[i] = o->joined[--o->njoined];
			break;
		}
	s->capture = CU_STREAM_CAPTURE_STATUS_NONE;
	s->graph = NULL;
	s->cap_origin = NULL;
}

/* Invalidate captures a prohibited call breaks. Caller holds G.mu. */
static void invalidate_locked(long tid)
{
	for (int i = 0; i < FK_MAX_CAPTURES; i++) {
		struct fstream *s = cap_owners[i].s;
		if (s && s->capture == CU_STREAM_CAPTURE_STATUS_ACTIVE &&
		    (s->cmode == CU_STREAM_CAPTURE_MODE_GLOBAL ||
		     (cap_owners[i].tid == tid && s->cmode != CU_STREAM_CAPTURE_MODE_RELAXED)))
			invalidate_capture_locked(s);
	}
}

int fk_capture_prohibited(void)
{
	if (tls_mode == CU_STREAM_CAPTURE_MODE_RELAXED || __atomic_load_n(&active_captures, __ATOMIC_ACQUIRE) == 0)
		return 0;
	long tid = my_tid();
	int bad = 0;
	pthread_mutex_lock(&G.mu);
	if (tls_mode == CU_STREAM_CAPTURE_MODE_GLOBAL && global_captures > 0)
		bad = 1;
	for (int i = 0; i < FK_MAX_CAPTURES && !bad; i++) {
		struct fstream *s = cap_owners[i].s;
		if (s && cap_owners[i].tid == tid && s->capture == CU_STREAM_CAPTURE_STATUS_ACTIVE &&
		    s->cmode != CU_STREAM_CAPTURE_MODE_RELAXED)
			bad = 1;
	}
	if (bad)
		invalidate_locked(tid);
	pthread_mutex_unlock(&G.mu);
	return bad;
}

static CUresult stream_sync(const char *nm, CUstream h, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	if (s->capture != CU_STREAM_CAPTURE_STATUS_NONE) {
		pthread_mutex_lock(&G.mu);
		invalidate_capture_locked(s);
		pthread_mutex_unlock(&G.mu);
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "stream=%p capturing", (void *)h);
	}
	if (fk_capture_prohibited())
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "stream=%p", (void *)h);
	fk_drain_until(s->last_seq);
	return fk_log(nm, G.async_err, "stream=%p", (void *)h);
}

FK_EXPORT CUresult cuStreamSynchronize(CUstream hStream)
{
	FK_ENTER("cuStreamSynchronize");
	return stream_sync("cuStreamSynchronize", hStream, 0);
}

FK_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream hStream)
{
	FK_ENTER("cuStreamSynchronize_ptsz");
	return stream_sync("cuStreamSynchronize_ptsz", hStream, 1);
}

static CUresult stream_query(const char *nm, CUstream h, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	if (s->capture != CU_STREAM_CAPTURE_STATUS_NONE)
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "stream=%p capturing", (void *)h);
	if (fk_capture_prohibited())
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "stream=%p", (void *)h);
	/* Deferred execution: pending work answers NOT_READY for
	 * FAKECUDA_QUERY_POLLS - 1 polls, then the poll runs it (so polling
	 * loops end, and callers see NOT_READY as on a busy GPU). */
	pthread_mutex_lock(&G.mu);
	int busy = s->pending > 0 && ++s->polls < G.query_polls;
	if (!busy)
		s->polls = 0;
	pthread_mutex_unlock(&G.mu);
	if (busy)
		return fk_log(nm, CUDA_ERROR_NOT_READY, "stream=%p", (void *)h);
	fk_drain_until(s->last_seq);
	return fk_log(nm, G.async_err, "stream=%p", (void *)h);
}

FK_EXPORT CUresult cuStreamQuery(CUstream hStream)
{
	FK_ENTER("cuStreamQuery");
	return stream_query("cuStreamQuery", hStream, 0);
}

FK_EXPORT CUresult cuStreamQuery_ptsz(CUstream hStream)
{
	FK_ENTER("cuStreamQuery_ptsz");
	return stream_query("cuStreamQuery_ptsz", hStream, 1);
}

static struct fevent *event_get(CUevent h)
{
	struct fevent *found = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fevent *e = events; e; e = e->next)
		if (e == (struct fevent *)h) {
			found = e;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	return found;
}

static CUresult stream_wait(const char *nm, CUstream h, CUevent ev, unsigned flags, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	struct fevent *e = event_get(ev);
	if (!e)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "event=%p", (void *)ev);
	if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "flags=%#x", flags);
	pthread_mutex_lock(&G.mu);
	struct fstream *o = e->cap_origin;
	if (s->capture == CU_STREAM_CAPTURE_STATUS_NONE && o && o != s && o->capture != CU_STREAM_CAPTURE_STATUS_NONE &&
	    o->capture_id == e->cap_id && o->njoined < 8) {
		/* waiting on an event recorded in a capture joins s to it */
		s->capture = o->capture;
		s->cmode = o->cmode;
		s->capture_id = o->capture_id;
		s->graph = o->graph;
		s->cap_origin = o;
		o->joined[o->njoined++] = s;
	}
	if (s->capture == CU_STREAM_CAPTURE_STATUS_NONE && e->rec_seq > s->last_seq)
		s->last_seq = e->rec_seq; /* later syncs of s also wait for e */
	uint64_t rs = e->rec_seq;
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, CUDA_SUCCESS, "stream=%p event=%p event_seq=%llu", (void *)h, (void *)ev,
		      (unsigned long long)rs);
}

FK_EXPORT CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
	FK_ENTER("cuStreamWaitEvent");
	return stream_wait("cuStreamWaitEvent", hStream, hEvent, Flags, 0);
}

FK_EXPORT CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
	FK_ENTER("cuStreamWaitEvent_ptsz");
	return stream_wait("cuStreamWaitEvent_ptsz", hStream, hEvent, Flags, 1);
}

static CUresult stream_get_ctx(const char *nm, CUstream h, CUcontext *pctx, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	if (!pctx)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	struct fctx *c = s->kind == 0 ? s->ctx : fk_current_ctx();
	if (!c)
		return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, NULL);
	*pctx = (CUcontext)c;
	return fk_log(nm, CUDA_SUCCESS, "stream=%p ctx=%p", (void *)h, (void *)c);
}

FK_EXPORT CUresult cuStreamGetCtx(CUstream hStream, CUcontext *pctx)
{
	FK_ENTER("cuStreamGetCtx");
	return stream_get_ctx("cuStreamGetCtx", hStream, pctx, 0);
}

FK_EXPORT CUresult cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx)
{
	FK_ENTER("cuStreamGetCtx_ptsz");
	return stream_get_ctx("cuStreamGetCtx_ptsz", hStream, pctx, 1);
}

static CUresult stream_flags(const char *nm, CUstream h, unsigned *flags, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	if (!flags)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	*flags = s->flags;
	return fk_log(nm, CUDA_SUCCESS, "stream=%p flags=%#x", (void *)h, s->flags);
}

FK_EXPORT CUresult cuStreamGetFlags(CUstream hStream, unsigned int *flags)
{
	FK_ENTER("cuStreamGetFlags");
	return stream_flags("cuStreamGetFlags", hStream, flags, 0);
}

FK_EXPORT CUresult cuStreamGetFlags_ptsz(CUstream hStream, unsigned int *flags)
{
	FK_ENTER("cuStreamGetFlags_ptsz");
	return stream_flags("cuStreamGetFlags_ptsz", hStream, flags, 1);
}

static CUresult stream_prio(const char *nm, CUstream h, int *prio, int ptsz)
{
	FK_NEED_INIT(nm);
	GET_STREAM(nm, s, h, ptsz);
	if (!prio)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	*prio = s->priority;
	return fk_log(nm, CUDA_SUCCESS, "stream=%p prio=%d", (void *)h, s->priority);
}

FK_EXPORT CUresult cuStreamGetPriority(CUstream hStream, int *priority)
{
	FK_ENTER("cuStreamGetPriority");
	return stream_prio("cuStreamGetPriority", hStream, priority, 0);
}

FK_EXPORT CUresult cuStreamGetPriority_ptsz(CUstream hStream, int *priority)
{
	FK_ENTER("cuStreamGetPriority_ptsz");
	return stream_prio("cuStreamGetPriority_ptsz", hStream, priority, 1);
}

static CUresult add_callback(const char *nm, CUstream h, CUstreamCallback cb, void *ud, unsigned flags, int ptsz)
{
	FK_NEED_INIT(nm);
	if (!cb || flags != 0)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	GET_STREAM(nm, s, h, ptsz);
	struct fop *op = fk_op_new(OP_CALLBACK);
	if (op) {
		op->u.cb.fn = cb;
		op->u.cb.ud = ud;
	}
	return fk_log(nm, fk_submit(s, op), "stream=%p", (void *)h);
}

FK_EXPORT CUresult cuStreamAddCallback(CUstream hStream, CUstreamCallback callback, void *userData,
				       unsigned int flags)
{
	FK_ENTER("cuStreamAddCallback");
	return add_callback("cuStreamAddCallback", hStream, callback, userData, flags, 0);
}

FK_EXPORT CUresult cuStreamAddCallback_ptsz(CUstream hStream, CUstreamCallback callback, void *userData,
					    unsigned int flags)
{
	FK_ENTER("cuStreamAddCallback_ptsz");
	return add_callback("cuStreamAddCallback_ptsz", hStream, callback, userData, flags, 1);
}

static CUresult host_func(const char *nm, CUstream h, CUhostFn fn, void *ud, int ptsz)
{
	FK_NEED_INIT(nm);
	if (!fn)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	GET_STREAM(nm, s, h, ptsz);
	struct fop *op = fk_op_new(OP_HOSTFN);
	if (op) {
		op->u.host.fn = fn;
		op->u.host.ud = ud;
	}
	return fk_log(nm, fk_submit(s, op), "stream=%p", (void *)h);
}

FK_EXPORT CUresult cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
	FK_ENTER("cuLaunchHostFunc");
	return host_func("cuLaunchHostFunc", hStream, fn, userData, 0);
}

FK_EXPORT CUresult cuLaunchHostFunc_ptsz(CUstream hStream, CUhostFn fn, void *userData)
{
	FK_ENTER("cuLaunchHostFunc_ptsz");
	return host_func("cuLaunchHostFunc_ptsz", hStream, fn, userData, 1);
}

/* ------------------------------------------------------------- capture */

static struct fgraph *graph_new(void)
{
	struct fgraph *g = calloc(1, sizeof(*g));
	if (g) {
		g->magic = FK_MAGIC_GRAPH;
		g->refs = 1;
	}
	return g;
}

static CUresult begin_capture(const char *nm, CUstream h, CUstreamCaptureMode mode, int ptsz)
{
	FK_NEED_INIT(nm);
	if ((unsigned)mode > CU_STREAM_CAPTURE_MODE_RELAXED)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "mode=%d", (int)mode);
	GET_STREAM(nm, s, h, ptsz);
	if (s->kind == 1)
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "legacy stream");
	struct fgraph *g = graph_new();
	if (!g)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	pthread_mutex_lock(&G.mu);
	if (s->capture != CU_STREAM_CAPTURE_STATUS_NONE) {
		pthread_mutex_unlock(&G.mu);
		free(g);
		return fk_log(nm, CUDA_ERROR_ILLEGAL_STATE, "already capturing");
	}
	int slot = -1;
	for (int i = 0; i < FK_MAX_CAPTURES; i++)
		if (!cap_owners[i].s) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pthread_mutex_unlock(&G.mu);
		free(g);
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "too many captures");
	}
	cap_owners[slot].s = s;
	cap_owners[slot].tid = my_tid();
	s->capture = CU_STREAM_CAPTURE_STATUS_ACTIVE;
	s->cmode = mode;
	s->graph = g;
	s->capture_id = ++capture_ids;
	if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL)
		global_captures++;
	__atomic_add_fetch(&active_captures, 1, __ATOMIC_RELEASE);
	uint64_t id = s->capture_id;
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, CUDA_SUCCESS, "stream=%p mode=%d id=%llu", (void *)h, (int)mode, (unsigned long long)id);
}

FK_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
	FK_ENTER("cuStreamBeginCapture_v2");
	return begin_capture("cuStreamBeginCapture_v2", hStream, mode, 0);
}

FK_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
	FK_ENTER("cuStreamBeginCapture_v2_ptsz");
	return begin_capture("cuStreamBeginCapture_v2_ptsz", hStream, mode, 1);
}

FK_EXPORT CUresult cuStreamBeginCapture(CUstream hStream)
{
	FK_ENTER("cuStreamBeginCapture");
	return begin_capture("cuStreamBeginCapture", hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, 0);
}

FK_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
{
	FK_ENTER("cuStreamBeginCapture_ptsz");
	return begin_capture("cuStreamBeginCapture_ptsz", hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, 1);
}

static CUresult end_capture(const char *nm, CUstream h, CUgraph *pg, int ptsz)
{
	FK_NEED_INIT(nm);
	if (!pg)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	GET_STREAM(nm, s, h, ptsz);
	pthread_mutex_lock(&G.mu);
	CUstreamCaptureStatus st = s->capture;
	if (st == CU_STREAM_CAPTURE_STATUS_NONE) {
		pthread_mutex_unlock(&G.mu);
		return fk_log(nm, CUDA_ERROR_ILLEGAL_STATE, "stream=%p not capturing", (void *)h);
	}
	if (s->cap_origin) {
		pthread_mutex_unlock(&G.mu);
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "stream=%p joined another stream's capture",
			      (void *)h);
	}
	long tid = my_tid();
	for (int i = 0; i < FK_MAX_CAPTURES; i++)
		if (cap_owners[i].s == s) {
			if (s->cmode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL && cap_owners[i].tid != tid) {
				pthread_mutex_unlock(&G.mu);
				return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, NULL);
			}
			cap_owners[i].s = NULL;
		}
	if (s->cmode == CU_STREAM_CAPTURE_MODE_GLOBAL && global_captures > 0)
		global_captures--;
	if (active_captures > 0)
		__atomic_sub_fetch(&active_captures, 1, __ATOMIC_RELEASE);
	struct fgraph *g = s->graph;
	s->graph = NULL;
	s->capture = CU_STREAM_CAPTURE_STATUS_NONE;
	release_joined_locked(s);
	pthread_mutex_unlock(&G.mu);
	if (st == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
		*pg = NULL;
		cuGraphDestroy((CUgraph)g);
		return fk_log(nm, CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "stream=%p", (void *)h);
	}
	*pg = (CUgraph)g;
	return fk_log(nm, CUDA_SUCCESS, "stream=%p graph=%p nodes=%zu", (void *)h, (void *)g, g->nnodes);
}

FK_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
	FK_ENTER("cuStreamEndCapture");
	return end_capture("cuStreamEndCapture", hStream, phGraph, 0);
}

FK_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
	FK_ENTER("cuStreamEndCapture_ptsz");
	return end_capture("cuStreamEndCapture_ptsz", hStream, phGraph, 1);
}

static CUresult capture_info(const char *nm, CUstream h, int ptsz, CUstreamCaptureStatus *st, cuuint64_t *id,
			     CUgraph *graph, const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *ndeps)
{
	FK_NEED_INIT(nm);
	if (!st)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	GET_STREAM(nm, s, h, ptsz);
	pthread_mutex_lock(&G.mu);
	*st = s->capture;
	if (id && s->capture != CU_STREAM_CAPTURE_STATUS_NONE)
		*id = s->capture_id;
	if (graph)
		*graph = s->capture == CU_STREAM_CAPTURE_STATUS_ACTIVE ? (CUgraph)s->graph : NULL;
	pthread_mutex_unlock(&G.mu);
	if (deps)
		*deps = NULL;
	if (edges)
		*edges = NULL;
	if (ndeps)
		*ndeps = 0;
	return fk_log(nm, CUDA_SUCCESS, "stream=%p status=%d", (void *)h, (int)*st);
}

FK_EXPORT CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
	FK_ENTER("cuStreamIsCapturing");
	return capture_info("cuStreamIsCapturing", hStream, 0, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

FK_EXPORT CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
	FK_ENTER("cuStreamIsCapturing_ptsz");
	return capture_info("cuStreamIsCapturing_ptsz", hStream, 1, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus, cuuint64_t *id)
{
	FK_ENTER("cuStreamGetCaptureInfo");
	return capture_info("cuStreamGetCaptureInfo", hStream, 0, captureStatus, id, NULL, NULL, NULL, NULL);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus,
					       cuuint64_t *id)
{
	FK_ENTER("cuStreamGetCaptureInfo_ptsz");
	return capture_info("cuStreamGetCaptureInfo_ptsz", hStream, 1, captureStatus, id, NULL, NULL, NULL, NULL);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
					     cuuint64_t *id_out, CUgraph *graph_out,
					     const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
	FK_ENTER("cuStreamGetCaptureInfo_v2");
	return capture_info("cuStreamGetCaptureInfo_v2", hStream, 0, captureStatus_out, id_out, graph_out,
			    dependencies_out, NULL, numDependencies_out);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
						  cuuint64_t *id_out, CUgraph *graph_out,
						  const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
	FK_ENTER("cuStreamGetCaptureInfo_v2_ptsz");
	return capture_info("cuStreamGetCaptureInfo_v2_ptsz", hStream, 1, captureStatus_out, id_out, graph_out,
			    dependencies_out, NULL, numDependencies_out);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
					     cuuint64_t *id_out, CUgraph *graph_out,
					     const CUgraphNode **dependencies_out, const CUgraphEdgeData **edgeData_out,
					     size_t *numDependencies_out)
{
	FK_ENTER("cuStreamGetCaptureInfo_v3");
	return capture_info("cuStreamGetCaptureInfo_v3", hStream, 0, captureStatus_out, id_out, graph_out,
			    dependencies_out, edgeData_out, numDependencies_out);
}

FK_EXPORT CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
						  cuuint64_t *id_out, CUgraph *graph_out,
						  const CUgraphNode **dependencies_out,
						  const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
	FK_ENTER("cuStreamGetCaptureInfo_v3_ptsz");
	return capture_info("cuStreamGetCaptureInfo_v3_ptsz", hStream, 1, captureStatus_out, id_out, graph_out,
			    dependencies_out, edgeData_out, numDependencies_out);
}

FK_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
	FK_ENTER("cuThreadExchangeStreamCaptureMode");
	FK_NEED_INIT("cuThreadExchangeStreamCaptureMode");
	if (!mode || (unsigned)*mode > CU_STREAM_CAPTURE_MODE_RELAXED)
		return fk_log("cuThreadExchangeStreamCaptureMode", CUDA_ERROR_INVALID_VALUE, NULL);
	CUstreamCaptureMode old = tls_mode;
	tls_mode = *mode;
	*mode = old;
	return fk_log("cuThreadExchangeStreamCaptureMode", CUDA_SUCCESS, "mode=%d old=%d", (int)tls_mode, (int)old);
}

/* -------------------------------------------------------------- events */

FK_EXPORT CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
	FK_ENTER("cuEventCreate");
	NEED_CTX("cuEventCreate", c);
	(void)c;
	if (!phEvent || (Flags & ~0xfu))
		return fk_log("cuEventCreate", CUDA_ERROR_INVALID_VALUE, "flags=%#x", Flags);
	struct fevent *e = calloc(1, sizeof(*e));
	if (!e)
		return fk_log("cuEventCreate", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	e->magic = FK_MAGIC_EVENT;
	e->flags = Flags;
	pthread_mutex_lock(&G.mu);
	e->next = events;
	events = e;
	pthread_mutex_unlock(&G.mu);
	*phEvent = (CUevent)e;
	return fk_log("cuEventCreate", CUDA_SUCCESS, "flags=%#x event=%p", Flags, (void *)e);
}

static CUresult event_destroy(const char *nm, CUevent h)
{
	FK_NEED_INIT(nm);
	struct fevent *e = event_get(h);
	if (!e)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "event=%p", (void *)h);
	fk_drain_until(e->rec_seq); /* a queued record must not touch freed memory */
	pthread_mutex_lock(&G.mu);
	for (struct fevent **pp = &events; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	e->magic = 0;
	free(e);
	return fk_log(nm, CUDA_SUCCESS, "event=%p", (void *)h);
}

FK_EXPORT CUresult cuEventDestroy_v2(CUevent hEvent)
{
	FK_ENTER("cuEventDestroy_v2");
	return event_destroy("cuEventDestroy_v2", hEvent);
}

FK_EXPORT CUresult cuEventDestroy(CUevent hEvent)
{
	FK_ENTER("cuEventDestroy");
	return event_destroy("cuEventDestroy", hEvent);
}

static CUresult event_record(const char *nm, CUevent h, CUstream hs, unsigned flags, int ptsz)
{
	FK_NEED_INIT(nm);
	struct fevent *e = event_get(h);
	if (!e)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "event=%p", (void *)h);
	if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "flags=%#x", flags);
	GET_STREAM(nm, s, hs, ptsz);
	struct fop *op = fk_op_new(OP_EVENT);
	if (op)
		op->u.ev.e = e;
	return fk_log(nm, fk_submit(s, op), "event=%p stream=%p", (void *)h, (void *)hs);
}

FK_EXPORT CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
{
	FK_ENTER("cuEventRecord");
	return event_record("cuEventRecord", hEvent, hStream, 0, 0);
}

FK_EXPORT CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
	FK_ENTER("cuEventRecord_ptsz");
	return event_record("cuEventRecord_ptsz", hEvent, hStream, 0, 1);
}

FK_EXPORT CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
	FK_ENTER("cuEventRecordWithFlags");
	return event_record("cuEventRecordWithFlags", hEvent, hStream, flags, 0);
}

FK_EXPORT CUresult cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags)
{
	FK_ENTER("cuEventRecordWithFlags_ptsz");
	return event_record("cuEventRecordWithFlags_ptsz", hEvent, hStream, flags, 1);
}

FK_EXPORT CUresult cuEventQuery(CUevent hEvent)
{
	FK_ENTER("cuEventQuery");
	FK_NEED_INIT("cuEventQuery");
	struct fevent *e = event_get(hEvent);
	if (!e)
		return fk_log("cuEventQuery", CUDA_ERROR_INVALID_HANDLE, "event=%p", (void *)hEvent);
	if (fk_capture_prohibited())
		return fk_log("cuEventQuery", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "event=%p", (void *)hEvent);
	/* as for cuStreamQuery: NOT_READY for a few polls, then progress */
	pthread_mutex_lock(&G.mu);
	int busy = e->done_seq < e->rec_seq && ++e->polls < G.query_polls;
	if (!busy)
		e->polls = 0;
	pthread_mutex_unlock(&G.mu);
	if (busy)
		return fk_log("cuEventQuery", CUDA_ERROR_NOT_READY, "event=%p", (void *)hEvent);
	fk_drain_until(e->rec_seq);
	return fk_log("cuEventQuery", CUDA_SUCCESS, "event=%p", (void *)hEvent);
}

FK_EXPORT CUresult cuEventSynchronize(CUevent hEvent)
{
	FK_ENTER("cuEventSynchronize");
	FK_NEED_INIT("cuEventSynchronize");
	struct fevent *e = event_get(hEvent);
	if (!e)
		return fk_log("cuEventSynchronize", CUDA_ERROR_INVALID_HANDLE, "event=%p", (void *)hEvent);
	if (fk_capture_prohibited())
		return fk_log("cuEventSynchronize", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "event=%p", (void *)hEvent);
	fk_drain_until(e->rec_seq);
	return fk_log("cuEventSynchronize", G.async_err, "event=%p", (void *)hEvent);
}

static CUresult elapsed(const char *nm, float *ms, CUevent a, CUevent b)
{
	FK_NEED_INIT(nm);
	if (!ms)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	struct fevent *s = event_get(a), *e = event_get(b);
	if (!s || !e)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, NULL);
	if ((s->flags | e->flags) & CU_EVENT_DISABLE_TIMING)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "timing disabled");
	if (!s->rec_seq || !e->rec_seq)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "not recorded");
	if (s->done_seq < s->rec_seq || e->done_seq < e->rec_seq)
		return fk_log(nm, CUDA_ERROR_NOT_READY, NULL);
	*ms = (float)(((double)e->ts_ns - (double)s->ts_ns) / 1e6);
	return fk_log(nm, CUDA_SUCCESS, "ms=%.3f", (double)*ms);
}

FK_EXPORT CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
	FK_ENTER("cuEventElapsedTime");
	return elapsed("cuEventElapsedTime", pMilliseconds, hStart, hEnd);
}

FK_EXPORT CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
	FK_ENTER("cuEventElapsedTime_v2");
	return elapsed("cuEventElapsedTime_v2", pMilliseconds, hStart, hEnd);
}

FK_EXPORT CUresult cuIpcGetEventHandle(CUipcEventHandle *pHandle, CUevent event)
{
	FK_ENTER("cuIpcGetEventHandle");
	(void)pHandle;
	(void)event;
	return fk_log("cuIpcGetEventHandle", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

FK_EXPORT CUresult cuIpcOpenEventHandle(CUevent *phEvent, CUipcEventHandle handle)
{
	FK_ENTER("cuIpcOpenEventHandle");
	(void)phEvent;
	(void)handle;
	return fk_log("cuIpcOpenEventHandle", CUDA_ERROR_NOT_SUPPORTED, "not emulated");
}

/* -------------------------------------------------------------- graphs */

void fk_graph_add_mem(struct fgraph *g, CUdeviceptr p)
{
	pthread_mutex_lock(&G.mu);
	if (g->nmem == g->capmem) {
		size_t nc = g->capmem ? g->capmem * 2 : 8;
		CUdeviceptr *nm = realloc(g->mem, nc * sizeof(*nm));
		if (!nm) {
			pthread_mutex_unlock(&G.mu);
			return; /* leaks the graph memory, never frees it early */
		}
		g->mem = nm;
		g->capmem = nc;
	}
	g->mem[g->nmem++] = p;
	pthread_mutex_unlock(&G.mu);
}

static void graph_unref(struct fgraph *g)
{
	pthread_mutex_lock(&G.mu);
	int left = --g->refs;
	pthread_mutex_unlock(&G.mu);
	if (left > 0)
		return;
	fk_drain_all(); /* queued clones may still use graph memory */
	for (struct fop *op = g->head, *n; op; op = n) {
		n = op->next;
		fk_op_free(op);
	}
	for (size_t i = 0; i < g->nmem; i++)
		fk_graph_mem_release(g->mem[i]);
	free(g->mem);
	g->magic = 0;
	free(g);
}

static struct fgraph *graph_get(CUgraph h)
{
	struct fgraph *g = (struct fgraph *)h;
	return (g && g->magic == FK_MAGIC_GRAPH) ? g : NULL;
}

FK_EXPORT CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
	FK_ENTER("cuGraphCreate");
	FK_NEED_INIT("cuGraphCreate");
	if (!phGraph || flags)
		return fk_log("cuGraphCreate", CUDA_ERROR_INVALID_VALUE, NULL);
	struct fgraph *g = graph_new();
	if (!g)
		return fk_log("cuGraphCreate", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	*phGraph = (CUgraph)g;
	return fk_log("cuGraphCreate", CUDA_SUCCESS, "graph=%p", (void *)g);
}

FK_EXPORT CUresult cuGraphDestroy(CUgraph hGraph)
{
	FK_ENTER("cuGraphDestroy");
	struct fgraph *g = graph_get(hGraph);
	if (!g)
		return fk_log("cuGraphDestroy", CUDA_ERROR_INVALID_VALUE, "graph=%p", (void *)hGraph);
	graph_unref(g);
	return fk_log("cuGraphDestroy", CUDA_SUCCESS, "graph=%p", (void *)hGraph);
}

static CUresult instantiate(const char *nm, CUgraphExec *pe, CUgraph hg)
{
	FK_NEED_INIT(nm);
	struct fgraph *g = graph_get(hg);
	if (!pe || !g)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	struct fgexec *x = calloc(1, sizeof(*x));
	if (!x)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	x->magic = FK_MAGIC_GEXEC;
	x->g = g;
	pthread_mutex_lock(&G.mu);
	g->refs++;
	pthread_mutex_unlock(&G.mu);
	*pe = (CUgraphExec)x;
	return fk_log(nm, CUDA_SUCCESS, "graph=%p exec=%p nodes=%zu", (void *)g, (void *)x, g->nnodes);
}

FK_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
	FK_ENTER("cuGraphInstantiateWithFlags");
	(void)flags;
	return instantiate("cuGraphInstantiateWithFlags", phGraphExec, hGraph);
}

FK_EXPORT CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
					 char *logBuffer, size_t bufferSize)
{
	FK_ENTER("cuGraphInstantiate_v2");
	if (phErrorNode)
		*phErrorNode = NULL;
	if (logBuffer && bufferSize)
		logBuffer[0] = 0;
	return instantiate("cuGraphInstantiate_v2", phGraphExec, hGraph);
}

FK_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
	FK_ENTER("cuGraphExecDestroy");
	struct fgexec *x = (struct fgexec *)hGraphExec;
	if (!x || x->magic != FK_MAGIC_GEXEC)
		return fk_log("cuGraphExecDestroy", CUDA_ERROR_INVALID_VALUE, NULL);
	fk_log("cuGraphExecDestroy", CUDA_SUCCESS, "exec=%p", (void *)hGraphExec);
	x->magic = 0;
	graph_unref(x->g);
	free(x);
	return CUDA_SUCCESS;
}

static CUresult graph_launch(const char *nm, CUgraphExec hx, CUstream hs, int ptsz)
{
	FK_NEED_INIT(nm);
	struct fgexec *x = (struct fgexec *)hx;
	if (!x || x->magic != FK_MAGIC_GEXEC)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "exec=%p", (void *)hx);
	GET_STREAM(nm, s, hs, ptsz);
	/* allocation nodes get their memory from the graph pool now */
	for (struct fop *op = x->g->head; op; op = op->next) {
		if (op->type != OP_NOP || op->u.fr.ptr == 0)
			continue;
		/* held: the graph does not free it, the application must */
		int held = 1;
		for (struct fop *f = x->g->head; f && held; f = f->next)
			if (f->type == OP_FREE && f->u.fr.ptr == op->u.fr.ptr)
				held = 0;
		CUresult r = fk_graph_mem_launch(op->u.fr.ptr, held);
		if (r != CUDA_SUCCESS) {
			for (struct fop *u = x->g->head; u != op; u = u->next)
				if (u->type == OP_NOP && u->u.fr.ptr)
					fk_graph_mem_unlaunch(u->u.fr.ptr);
			return fk_log(nm, r, "exec=%p graph allocation %#llx %s", (void *)hx,
				      (unsigned long long)op->u.fr.ptr,
				      r == CUDA_ERROR_INVALID_VALUE ? "still allocated (not freed since the last launch)"
								    : "out of memory");
		}
	}
	size_t n = 0;
	for (struct fop *op = x->g->head; op; op = op->next, n++) {
		CUresult r = fk_submit(s, fk_op_clone(op));
		if (r != CUDA_SUCCESS)
			return fk_log(nm, r, "exec=%p node=%zu", (void *)hx, n);
	}
	return fk_log(nm, CUDA_SUCCESS, "exec=%p stream=%p nodes=%zu", (void *)hx, (void *)hs, n);
}

FK_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
	FK_ENTER("cuGraphLaunch");
	return graph_launch("cuGraphLaunch", hGraphExec, hStream, 0);
}

FK_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
	FK_ENTER("cuGraphLaunch_ptsz");
	return graph_launch("cuGraphLaunch_ptsz", hGraphExec, hStream, 1);
}

static CUresult graph_upload(const char *nm, CUgraphExec hx, CUstream hs, int ptsz)
{
	FK_NEED_INIT(nm);
	struct fgexec *x = (struct fgexec *)hx;
	if (!x || x->magic != FK_MAGIC_GEXEC)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	GET_STREAM(nm, s, hs, ptsz);
	(void)s;
	return fk_log(nm, CUDA_SUCCESS, "exec=%p", (void *)hx);
}

FK_EXPORT CUresult cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream)
{
	FK_ENTER("cuGraphUpload");
	return graph_upload("cuGraphUpload", hGraphExec, hStream, 0);
}

FK_EXPORT CUresult cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
	FK_ENTER("cuGraphUpload_ptsz");
	return graph_upload("cuGraphUpload_ptsz", hGraphExec, hStream, 1);
}

FK_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
{
	FK_ENTER("cuGraphGetNodes");
	struct fgraph *g = graph_get(hGraph);
	if (!g || !numNodes)
		return fk_log("cuGraphGetNodes", CUDA_ERROR_INVALID_VALUE, NULL);
	size_t i = 0;
	if (nodes) {
		for (struct fop *op = g->head; op && i < *numNodes; op = op->next)
			nodes[i++] = (CUgraphNode)op;
		*numNodes = i;
	} else {
		*numNodes = g->nnodes;
	}
	return fk_log("cuGraphGetNodes", CUDA_SUCCESS, "graph=%p n=%zu", (void *)g, *numNodes);
}

FK_EXPORT CUresult cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
	FK_ENTER("cuGraphNodeGetType");
	struct fop *op = (struct fop *)hNode;
	if (!op || !type)
		return fk_log("cuGraphNodeGetType", CUDA_ERROR_INVALID_VALUE, NULL);
	switch (op->type) {
	case OP_KERNEL: *type = CU_GRAPH_NODE_TYPE_KERNEL; break;
	case OP_COPY: *type = CU_GRAPH_NODE_TYPE_MEMCPY; break;
	case OP_SET: *type = CU_GRAPH_NODE_TYPE_MEMSET; break;
	case OP_HOSTFN:
	case OP_CALLBACK: *type = CU_GRAPH_NODE_TYPE_HOST; break;
	case OP_EVENT: *type = CU_GRAPH_NODE_TYPE_EVENT_RECORD; break;
	case OP_FREE: *type = CU_GRAPH_NODE_TYPE_MEM_FREE; break;
	case OP_NOP: *type = CU_GRAPH_NODE_TYPE_MEM_ALLOC; break;
	default: *type = CU_GRAPH_NODE_TYPE_EMPTY; break;
	}
	return fk_log("cuGraphNodeGetType", CUDA_SUCCESS, "type=%d", (int)*type);
}

/* Explicit memory nodes. Fake graphs are linear: nodes run in the order they
 * were added, which satisfies any dependency list given. */
static CUresult add_alloc_node(const char *nm, CUgraphNode *phGraphNode, CUgraph hGraph,
			       const CUgraphNode *dependencies, size_t numDependencies,
			       CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
	FK_NEED_INIT(nm);
	struct fgraph *g = graph_get(hGraph);
	if (!phGraphNode || !g || !nodeParams || nodeParams->bytesize == 0 || (numDependencies && !dependencies) ||
	    nodeParams->poolProps.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    nodeParams->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "graph=%p", (void *)hGraph);
	if (!fk_valid_device(nodeParams->poolProps.location.id))
		return fk_log(nm, CUDA_ERROR_INVALID_DEVICE, "dev=%d", nodeParams->poolProps.location.id);
	struct fop *op = fk_op_new(OP_NOP);
	if (!op)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	CUdeviceptr p = 0;
	CUresult r = fk_alloc_graph_mem(&p, nodeParams->bytesize, nodeParams->poolProps.location.id);
	if (r != CUDA_SUCCESS) {
		fk_op_free(op);
		return fk_log(nm, r, "bytes=%zu", nodeParams->bytesize);
	}
	op->u.fr.ptr = p;
	fk_graph_add_mem(g, p);
	pthread_mutex_lock(&G.mu);
	graph_append(g, op);
	pthread_mutex_unlock(&G.mu);
	nodeParams->dptr = p;
	*phGraphNode = (CUgraphNode)op;
	return fk_log(nm, CUDA_SUCCESS, "graph=%p dev=%d bytes=%zu ptr=%#llx", (void *)g,
		      nodeParams->poolProps.location.id, nodeParams->bytesize, (unsigned long long)p);
}

static CUresult add_free_node(const char *nm, CUgraphNode *phGraphNode, CUgraph hGraph,
			      const CUgraphNode *dependencies, size_t numDependencies, CUdeviceptr dptr)
{
	FK_NEED_INIT(nm);
	struct fgraph *g = graph_get(hGraph);
	/* only graph memory can be freed by a graph */
	if (!phGraphNode || !g || (numDependencies && !dependencies) || !fk_is_graph_mem(dptr))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "graph=%p ptr=%#llx", (void *)hGraph, (unsigned long long)dptr);
	struct fop *op = fk_op_new(OP_FREE);
	if (!op)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	op->u.fr.ptr = dptr;
	pthread_mutex_lock(&G.mu);
	graph_append(g, op);
	pthread_mutex_unlock(&G.mu);
	*phGraphNode = (CUgraphNode)op;
	return fk_log(nm, CUDA_SUCCESS, "graph=%p ptr=%#llx", (void *)g, (unsigned long long)dptr);
}

FK_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
					  size_t numDependencies, CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
	FK_ENTER("cuGraphAddMemAllocNode");
	return add_alloc_node("cuGraphAddMemAllocNode", phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

FK_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
					 size_t numDependencies, CUdeviceptr dptr)
{
	FK_ENTER("cuGraphAddMemFreeNode");
	return add_free_node("cuGraphAddMemFreeNode", phGraphNode, hGraph, dependencies, numDependencies, dptr);
}

/* The generic entry points: memory nodes only (other node types are not
 * emulated: add them by capture). */
static CUresult add_node(const char *nm, CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
			 size_t numDependencies, CUgraphNodeParams *nodeParams)
{
	if (!nodeParams)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "params=NULL");
	if (nodeParams->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC)
		return add_alloc_node(nm, phGraphNode, hGraph, dependencies, numDependencies, &nodeParams->alloc);
	if (nodeParams->type == CU_GRAPH_NODE_TYPE_MEM_FREE)
		return add_free_node(nm, phGraphNode, hGraph, dependencies, numDependencies, nodeParams->free.dptr);
	return fk_log(nm, CUDA_ERROR_NOT_SUPPORTED, "node type %d not emulated", (int)nodeParams->type);
}

FK_EXPORT CUresult cuGraphAddNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
				  size_t numDependencies, CUgraphNodeParams *nodeParams)
{
	FK_ENTER("cuGraphAddNode");
	return add_node("cuGraphAddNode", phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

FK_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
				     const CUgraphEdgeData *dependencyData, size_t numDependencies,
				     CUgraphNodeParams *nodeParams)
{
	FK_ENTER("cuGraphAddNode_v2");
	(void)dependencyData; /* edge types are not emulated */
	return add_node("cuGraphAddNode_v2", phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

_Static_assert(sizeof(CUgraphNodeParams) == 256, "CUgraphNodeParams layout");
_Static_assert(offsetof(CUgraphNodeParams, alloc) == 16, "CUgraphNodeParams union offset");

/* ---------------------------------------------------------- test hooks */

FK_EXPORT unsigned long fakecuda_stream_pending(CUstream h)
{
	CUresult err;
	struct fstream *s = fk_stream(h, 0, &err);
	if (!s)
		return 0;
	pthread_mutex_lock(&G.mu);
	unsigned long n = s->pending;
	pthread_mutex_unlock(&G.mu);
	return n;
}
