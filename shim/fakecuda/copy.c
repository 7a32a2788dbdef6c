/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: memcpy and memset families. Synchronous
 * variants first run the queued work they are ordered after (legacy stream,
 * or the per-thread stream for _ptds), then copy. Async variants queue an
 * op on their stream. Device pointers must lie inside a known allocation.
 */
#include "fakecuda.h"

#include <string.h>

#define CHK_DST 1u
#define CHK_SRC 2u

static CUresult check(uint64_t dst, uint64_t src, size_t n, unsigned chk)
{
	if (n == 0)
		return CUDA_SUCCESS;
	if (!dst || !src)
		return CUDA_ERROR_INVALID_VALUE;
	if ((chk & CHK_DST) && !fk_range_ok(dst, n))
		return CUDA_ERROR_INVALID_VALUE;
	if ((chk & CHK_SRC) && !fk_range_ok(src, n))
		return CUDA_ERROR_INVALID_VALUE;
	return CUDA_SUCCESS;
}

/* Run the work a synchronous call on the legacy (ptds=0) or per-thread
 * default stream is ordered after. Returns non-zero when prohibited. */
static CUresult sync_point(int ptds)
{
	if (fk_capture_prohibited())
		return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (ptds) {
		CUresult err;
		struct fstream *s = fk_stream(NULL, 1, &err);
		fk_drain_until(s ? s->last_seq : UINT64_MAX);
	} else {
		fk_drain_all();
	}
	return CUDA_SUCCESS;
}

static CUresult copy_sync(const char *nm, uint64_t dst, uint64_t src, size_t n, int ptds, unsigned chk)
{
	FK_NEED_INIT(nm);
	CUresult r = check(dst, src, n, chk);
	if (r == CUDA_SUCCESS)
		r = sync_point(ptds);
	if (r == CUDA_SUCCESS && n)
		memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
	return fk_log(nm, r, "dst=%#llx src=%#llx bytes=%zu", (unsigned long long)dst, (unsigned long long)src, n);
}

static CUresult copy_async(const char *nm, uint64_t dst, uint64_t src, size_t n, CUstream hs, int ptsz,
			   unsigned chk)
{
	FK_NEED_INIT(nm);
	CUresult r = check(dst, src, n, chk);
	if (r != CUDA_SUCCESS)
		return fk_log(nm, r, "dst=%#llx src=%#llx bytes=%zu", (unsigned long long)dst,
			      (unsigned long long)src, n);
	struct fstream *s = fk_stream(hs, ptsz, &r);
	if (!s)
		return fk_log(nm, r, "stream=%p", (void *)hs);
	struct fop *op = fk_op_new(OP_COPY);
	if (op) {
		op->u.copy.dst = (void *)(uintptr_t)dst;
		op->u.copy.src = (const void *)(uintptr_t)src;
		op->u.copy.n = n;
	}
	r = fk_submit(s, op);
	return fk_log(nm, r, "dst=%#llx src=%#llx bytes=%zu stream=%p", (unsigned long long)dst,
		      (unsigned long long)src, n, (void *)hs);
}

#define U(p) ((uint64_t)(uintptr_t)(p))

/* unified / peer */
FK_EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpy");
	return copy_sync("cuMemcpy", dst, src, n, 0, 0);
}
FK_EXPORT CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpy_ptds");
	return copy_sync("cuMemcpy_ptds", dst, src, n, 1, 0);
}
FK_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyAsync");
	return copy_async("cuMemcpyAsync", dst, src, n, s, 0, 0);
}
FK_EXPORT CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyAsync_ptsz");
	return copy_async("cuMemcpyAsync_ptsz", dst, src, n, s, 1, 0);
}
FK_EXPORT CUresult cuMemcpyPeer(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n)
{
	FK_ENTER("cuMemcpyPeer");
	(void)dc, (void)sc;
	return copy_sync("cuMemcpyPeer", dst, src, n, 0, CHK_DST | CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n,
				     CUstream s)
{
	FK_ENTER("cuMemcpyPeerAsync");
	(void)dc, (void)sc;
	return copy_async("cuMemcpyPeerAsync", dst, src, n, s, 0, CHK_DST | CHK_SRC);
}

/* host to device */
FK_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
	FK_ENTER("cuMemcpyHtoD_v2");
	return copy_sync("cuMemcpyHtoD_v2", dst, U(src), n, 0, CHK_DST);
}
FK_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void *src, size_t n)
{
	FK_ENTER("cuMemcpyHtoD_v2_ptds");
	return copy_sync("cuMemcpyHtoD_v2_ptds", dst, U(src), n, 1, CHK_DST);
}
FK_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyHtoDAsync_v2");
	return copy_async("cuMemcpyHtoDAsync_v2", dst, U(src), n, s, 0, CHK_DST);
}
FK_EXPORT CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyHtoDAsync_v2_ptsz");
	return copy_async("cuMemcpyHtoDAsync_v2_ptsz", dst, U(src), n, s, 1, CHK_DST);
}

/* device to host */
FK_EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpyDtoH_v2");
	return copy_sync("cuMemcpyDtoH_v2", U(dst), src, n, 0, CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpyDtoH_v2_ptds");
	return copy_sync("cuMemcpyDtoH_v2_ptds", U(dst), src, n, 1, CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyDtoHAsync_v2");
	return copy_async("cuMemcpyDtoHAsync_v2", U(dst), src, n, s, 0, CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyDtoHAsync_v2_ptsz");
	return copy_async("cuMemcpyDtoHAsync_v2_ptsz", U(dst), src, n, s, 1, CHK_SRC);
}

/* device to device */
FK_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpyDtoD_v2");
	return copy_sync("cuMemcpyDtoD_v2", dst, src, n, 0, CHK_DST | CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	FK_ENTER("cuMemcpyDtoD_v2_ptds");
	return copy_sync("cuMemcpyDtoD_v2_ptds", dst, src, n, 1, CHK_DST | CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyDtoDAsync_v2");
	return copy_async("cuMemcpyDtoDAsync_v2", dst, src, n, s, 0, CHK_DST | CHK_SRC);
}
FK_EXPORT CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	FK_ENTER("cuMemcpyDtoDAsync_v2_ptsz");
	return copy_async("cuMemcpyDtoDAsync_v2_ptsz", dst, src, n, s, 1, CHK_DST | CHK_SRC);
}

/* ------------------------------------------------------------ 2D / 3D */

static CUresult side(CUmemorytype t, const void *host, CUdeviceptr dev, size_t x, size_t y, size_t z, size_t pitch,
		     size_t height, size_t span, unsigned char **out)
{
	uint64_t base;
	switch (t) {
	case CU_MEMORYTYPE_HOST: base = U(host); break;
	case CU_MEMORYTYPE_DEVICE:
	case CU_MEMORYTYPE_UNIFIED: base = dev; break;
	default: return CUDA_ERROR_NOT_SUPPORTED; /* arrays: not emulated */
	}
	if (!base)
		return CUDA_ERROR_INVALID_VALUE;
	uint64_t start = base + (z * height + y) * pitch + x;
	if (t != CU_MEMORYTYPE_HOST && span && !fk_range_ok(start, span))
		return CUDA_ERROR_INVALID_VALUE;
	*out = (unsigned char *)(uintptr_t)start;
	return CUDA_SUCCESS;
}

static CUresult do_3d(const CUDA_MEMCPY3D *c, int ptds, CUstream hs, int async)
{
	if (!c)
		return CUDA_ERROR_INVALID_VALUE;
	size_t w = c->WidthInBytes, h = c->Height ? c->Height : 1, d = c->Depth ? c->Depth : 1;
	size_t sp = c->srcPitch ? c->srcPitch : w, dp = c->dstPitch ? c->dstPitch : w;
	size_t sh = c->srcHeight ? c->srcHeight : h, dh = c->dstHeight ? c->dstHeight : h;
	if (sp < w || dp < w || sh < h || dh < h)
		return CUDA_ERROR_INVALID_VALUE;
	if (w == 0)
		return CUDA_SUCCESS;
	size_t sspan = ((d - 1) * sh + (h - 1)) * sp + w, dspan = ((d - 1) * dh + (h - 1)) * dp + w;
	unsigned char *s, *t;
	CUresult r = side(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY, c->srcZ, sp, sh,
			  sspan, &s);
	if (r == CUDA_SUCCESS)
		r = side(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY, c->dstZ, dp, dh, dspan,
			 &t);
	if (r != CUDA_SUCCESS)
		return r;
	if (async) {
		struct fstream *st = fk_stream(hs, ptds, &r);
		if (!st)
			return r;
		if (st->capture != CU_STREAM_CAPTURE_STATUS_NONE)
			return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; /* not recorded by the fake */
		fk_drain_until(st->last_seq);
	} else if ((r = sync_point(ptds)) != CUDA_SUCCESS) {
		return r;
	}
	for (size_t z = 0; z < d; z++)
		for (size_t y = 0; y < h; y++)
			memmove(t + (z * dh + y) * dp, s + (z * sh + y) * sp, w);
	return CUDA_SUCCESS;
}

static CUresult do_2d(const CUDA_MEMCPY2D *c, int ptds, CUstream hs, int async)
{
	if (!c)
		return CUDA_ERROR_INVALID_VALUE;
	CUDA_MEMCPY3D t;
	memset(&t, 0, sizeof(t));
	t.srcXInBytes = c->srcXInBytes;
	t.srcY = c->srcY;
	t.srcMemoryType = c->srcMemoryType;
	t.srcHost = c->srcHost;
	t.srcDevice = c->srcDevice;
	t.srcArray = c->srcArray;
	t.srcPitch = c->srcPitch;
	t.dstXInBytes = c->dstXInBytes;
	t.dstY = c->dstY;
	t.dstMemoryType = c->dstMemoryType;
	t.dstHost = c->dstHost;
	t.dstDevice = c->dstDevice;
	t.dstArray = c->dstArray;
	t.dstPitch = c->dstPitch;
	t.WidthInBytes = c->WidthInBytes;
	t.Height = c->Height;
	t.Depth = 1;
	t.srcHeight = c->Height;
	t.dstHeight = c->Height;
	return do_3d(&t, ptds, hs, async);
}

#define C2D(name, ptds)                                                                    \
	FK_EXPORT CUresult name(const CUDA_MEMCPY2D *p)                                    \
	{                                                                                  \
		FK_ENTER(#name);                                                           \
		FK_NEED_INIT(#name);                                                       \
		return fk_log(#name, do_2d(p, ptds, NULL, 0), "w=%zu h=%zu",               \
			      p ? p->WidthInBytes : 0, p ? p->Height : 0);                 \
	}
C2D(cuMemcpy2D_v2, 0)
C2D(cuMemcpy2D_v2_ptds, 1)
C2D(cuMemcpy2DUnaligned_v2, 0)
C2D(cuMemcpy2DUnaligned_v2_ptds, 1)

#define C2DA(name, ptsz)                                                                   \
	FK_EXPORT CUresult name(const CUDA_MEMCPY2D *p, CUstream s)                        \
	{                                                                                  \
		FK_ENTER(#name);                                                           \
		FK_NEED_INIT(#name);                                                       \
		return fk_log(#name, do_2d(p, ptsz, s, 1), "w=%zu h=%zu stream=%p",        \
			      p ? p->WidthInBytes : 0, p ? p->Height : 0, (void *)s);      \
	}
C2DA(cuMemcpy2DAsync_v2, 0)
C2DA(cuMemcpy2DAsync_v2_ptsz, 1)

#define C3D(name, ptds)                                                                    \
	FK_EXPORT CUresult name(const CUDA_MEMCPY3D *p)                                    \
	{                                                                                  \
		FK_ENTER(#name);                                                           \
		FK_NEED_INIT(#name);                                                       \
		return fk_log(#name, do_3d(p, ptds, NULL, 0), "w=%zu h=%zu d=%zu",         \
			      p ? p->WidthInBytes : 0, p ? p->Height : 0, p ? p->Depth : 0); \
	}
C3D(cuMemcpy3D_v2, 0)
C3D(cuMemcpy3D_v2_ptds, 1)

#define C3DA(name, ptsz)                                                                   \
	FK_EXPORT CUresult name(const CUDA_MEMCPY3D *p, CUstream s)                        \
	{                                                                                  \
		FK_ENTER(#name);                                                           \
		FK_NEED_INIT(#name);                                                       \
		return fk_log(#name, do_3d(p, ptsz, s, 1), "w=%zu h=%zu d=%zu stream=%p",  \
			      p ? p->WidthInBytes : 0, p ? p->Height : 0, p ? p->Depth : 0, \
			      (void *)s);                                                  \
	}
C3DA(cuMemcpy3DAsync_v2, 0)
C3DA(cuMemcpy3DAsync_v2_ptsz, 1)

/* -------------------------------------------------------------- memset */

static CUresult set_check(CUdeviceptr d, unsigned esize, size_t n)
{
	if (d % esize)
		return CUDA_ERROR_INVALID_VALUE;
	if (n && (n > SIZE_MAX / esize || !fk_range_ok(d, n * esize)))
		return CUDA_ERROR_INVALID_VALUE;
	return CUDA_SUCCESS;
}

static void fill(unsigned char *p, uint32_t v, unsigned esize, size_t n)
{
	struct fop op;
	memset(&op, 0, sizeof(op));
	op.type = OP_SET;
	op.u.set.dst = p;
	op.u.set.val = v;
	op.u.set.esize = esize;
	op.u.set.n = n;
	fk_exec_op(&op);
}

static CUresult set_sync(const char *nm, CUdeviceptr d, uint32_t v, unsigned esize, size_t n, int ptds)
{
	FK_NEED_INIT(nm);
	CUresult r = set_check(d, esize, n);
	if (r == CUDA_SUCCESS)
		r = sync_point(ptds);
	if (r == CUDA_SUCCESS && n)
		fill((unsigned char *)(uintptr_t)d, v, esize, n);
	return fk_log(nm, r, "dst=%#llx value=%#x n=%zu", (unsigned long long)d, v, n);
}

static CUresult set_async(const char *nm, CUdeviceptr d, uint32_t v, unsigned esize, size_t n, CUstream hs, int ptsz)
{
	FK_NEED_INIT(nm);
	CUresult r = set_check(d, esize, n);
	if (r != CUDA_SUCCESS)
		return fk_log(nm, r, "dst=%#llx n=%zu", (unsigned long long)d, n);
	struct fstream *s = fk_stream(hs, ptsz, &r);
	if (!s)
		return fk_log(nm, r, "stream=%p", (void *)hs);
	struct fop *op = fk_op_new(OP_SET);
	if (op) {
		op->u.set.dst = (void *)(uintptr_t)d;
		op->u.set.val = v;
		op->u.set.esize = esize;
		op->u.set.n = n;
	}
	r = fk_submit(s, op);
	return fk_log(nm, r, "dst=%#llx value=%#x n=%zu stream=%p", (unsigned long long)d, v, n, (void *)hs);
}

FK_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n)
{
	FK_ENTER("cuMemsetD8_v2");
	return set_sync("cuMemsetD8_v2", d, v, 1, n, 0);
}
FK_EXPORT CUresult cuMemsetD8_v2_ptds(CUdeviceptr d, unsigned char v, size_t n)
{
	FK_ENTER("cuMemsetD8_v2_ptds");
	return set_sync("cuMemsetD8_v2_ptds", d, v, 1, n, 1);
}
FK_EXPORT CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n)
{
	FK_ENTER("cuMemsetD16_v2");
	return set_sync("cuMemsetD16_v2", d, v, 2, n, 0);
}
FK_EXPORT CUresult cuMemsetD16(CUdeviceptr d, unsigned short v, size_t n)
{
	FK_ENTER("cuMemsetD16");
	return set_sync("cuMemsetD16", d, v, 2, n, 0);
}
FK_EXPORT CUresult cuMemsetD16_v2_ptds(CUdeviceptr d, unsigned short v, size_t n)
{
	FK_ENTER("cuMemsetD16_v2_ptds");
	return set_sync("cuMemsetD16_v2_ptds", d, v, 2, n, 1);
}
FK_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n)
{
	FK_ENTER("cuMemsetD32_v2");
	return set_sync("cuMemsetD32_v2", d, v, 4, n, 0);
}
FK_EXPORT CUresult cuMemsetD32_v2_ptds(CUdeviceptr d, unsigned int v, size_t n)
{
	FK_ENTER("cuMemsetD32_v2_ptds");
	return set_sync("cuMemsetD32_v2_ptds", d, v, 4, n, 1);
}
FK_EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD8Async");
	return set_async("cuMemsetD8Async", d, v, 1, n, s, 0);
}
FK_EXPORT CUresult cuMemsetD8Async_ptsz(CUdeviceptr d, unsigned char v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD8Async_ptsz");
	return set_async("cuMemsetD8Async_ptsz", d, v, 1, n, s, 1);
}
FK_EXPORT CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD16Async");
	return set_async("cuMemsetD16Async", d, v, 2, n, s, 0);
}
FK_EXPORT CUresult cuMemsetD16Async_ptsz(CUdeviceptr d, unsigned short v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD16Async_ptsz");
	return set_async("cuMemsetD16Async_ptsz", d, v, 2, n, s, 1);
}
FK_EXPORT CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD32Async");
	return set_async("cuMemsetD32Async", d, v, 4, n, s, 0);
}
FK_EXPORT CUresult cuMemsetD32Async_ptsz(CUdeviceptr d, unsigned int v, size_t n, CUstream s)
{
	FK_ENTER("cuMemsetD32Async_ptsz");
	return set_async("cuMemsetD32Async_ptsz", d, v, 4, n, s, 1);
}

static CUresult set_2d(const char *nm, CUdeviceptr d, size_t pitch, uint32_t v, unsigned esize, size_t w, size_t h)
{
	FK_NEED_INIT(nm);
	CUresult r = CUDA_SUCCESS;
	if (w && h) {
		if (d % esize || pitch < w * esize || !fk_range_ok(d, (h - 1) * pitch + w * esize))
			r = CUDA_ERROR_INVALID_VALUE;
		if (r == CUDA_SUCCESS)
			r = sync_point(0);
		if (r == CUDA_SUCCESS)
			for (size_t y = 0; y < h; y++)
				fill((unsigned char *)(uintptr_t)(d + y * pitch), v, esize, w);
	}
	return fk_log(nm, r, "dst=%#llx pitch=%zu w=%zu h=%zu", (unsigned long long)d, pitch, w, h);
}

FK_EXPORT CUresult cuMemsetD2D8_v2(CUdeviceptr d, size_t pitch, unsigned char v, size_t w, size_t h)
{
	FK_ENTER("cuMemsetD2D8_v2");
	return set_2d("cuMemsetD2D8_v2", d, pitch, v, 1, w, h);
}

FK_EXPORT CUresult cuMemsetD2D32_v2(CUdeviceptr d, size_t pitch, unsigned int v, size_t w, size_t h)
{
	FK_ENTER("cuMemsetD2D32_v2");
	return set_2d("cuMemsetD2D32_v2", d, pitch, v, 4, w, h);
}

/* Batched copies: each pointer-to-pointer copy becomes one queued copy on
 * the stream, in array order (the real driver leaves the order within a
 * batch open). Attributes are checked for presence only. A failure names
 * the copy in *failIdx (12.8 ABI), SIZE_MAX when no copy is to blame. */
/* A pointer into a known allocation must have n bytes left in it; other
 * pointers are host memory the driver does not know (pageable, allowed). */
static int batch_fits(uint64_t p, size_t n)
{
	struct fk_range r;
	if (!fk_find_range(p, &r))
		return 1;
	return n <= r.size - (p - r.base);
}

static CUresult batch_copy(const char *nm, CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
			   CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs, size_t *failIdx, CUstream hs,
			   int ptsz)
{
	FK_NEED_INIT(nm);
	if (failIdx)
		*failIdx = SIZE_MAX;
	if (!count || !dsts || !srcs || !sizes || !attrs || !attrsIdxs || !numAttrs || numAttrs > count ||
	    attrsIdxs[0] != 0)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "count=%zu numAttrs=%zu", count, numAttrs);
	if (hs == NULL && !ptsz)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "the legacy NULL stream");
	for (size_t i = 0; i < count; i++) {
		CUresult r = check(dsts[i], srcs[i], sizes[i], 0);
		if (r == CUDA_SUCCESS && (!batch_fits(dsts[i], sizes[i]) || !batch_fits(srcs[i], sizes[i])))
			r = CUDA_ERROR_INVALID_VALUE;
		if (r != CUDA_SUCCESS) {
			if (failIdx)
				*failIdx = i;
			return fk_log(nm, r, "copy=%zu", i);
		}
	}
	CUresult r;
	struct fstream *s = fk_stream(hs, ptsz, &r);
	if (!s)
		return fk_log(nm, r, "stream=%p", (void *)hs);
	size_t bytes = 0;
	for (size_t i = 0; i < count; i++) {
		if (!sizes[i])
			continue;
		struct fop *op = fk_op_new(OP_COPY);
		if (op) {
			op->u.copy.dst = (void *)(uintptr_t)dsts[i];
			op->u.copy.src = (const void *)(uintptr_t)srcs[i];
			op->u.copy.n = sizes[i];
		}
		r = fk_submit(s, op);
		if (r != CUDA_SUCCESS) {
			if (failIdx)
				*failIdx = i;
			return fk_log(nm, r, "copy=%zu", i);
		}
		bytes += sizes[i];
	}
	return fk_log(nm, CUDA_SUCCESS, "count=%zu bytes=%zu stream=%p", count, bytes, (void *)hs);
}

FK_EXPORT CUresult cuMemcpyBatchAsync(CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
				      CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs, size_t *failIdx,
				      CUstream hStream)
{
	FK_ENTER("cuMemcpyBatchAsync");
	return batch_copy("cuMemcpyBatchAsync", dsts, srcs, sizes, count, attrs, attrsIdxs, numAttrs, failIdx, hStream,
			  0);
}
FK_EXPORT CUresult cuMemcpyBatchAsync_ptsz(CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
					   CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs,
					   size_t *failIdx, CUstream hStream)
{
	FK_ENTER("cuMemcpyBatchAsync_ptsz");
	return batch_copy("cuMemcpyBatchAsync_ptsz", dsts, srcs, sizes, count, attrs, attrsIdxs, numAttrs, failIdx,
			  hStream, 1);
}
FK_EXPORT CUresult cuMemcpyBatchAsync_v2(CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
					 CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs, CUstream hStream)
{
	FK_ENTER("cuMemcpyBatchAsync_v2");
	return batch_copy("cuMemcpyBatchAsync_v2", dsts, srcs, sizes, count, attrs, attrsIdxs, numAttrs, NULL, hStream,
			  0);
}
FK_EXPORT CUresult cuMemcpyBatchAsync_v2_ptsz(CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
					      CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs,
					      CUstream hStream)
{
	FK_ENTER("cuMemcpyBatchAsync_v2_ptsz");
	return batch_copy("cuMemcpyBatchAsync_v2_ptsz", dsts, srcs, sizes, count, attrs, attrsIdxs, numAttrs, NULL,
			  hStream, 1);
}

/* 3D batches (arrays and pitched operands): not emulated. */
FK_EXPORT CUresult cuMemcpy3DBatchAsync(size_t numOps, CUDA_MEMCPY3D_BATCH_OP *opList, size_t *failIdx,
					unsigned long long flags, CUstream hStream)
{
	FK_ENTER("cuMemcpy3DBatchAsync");
	(void)opList, (void)flags, (void)hStream;
	if (failIdx)
		*failIdx = SIZE_MAX;
	return fk_log("cuMemcpy3DBatchAsync", CUDA_ERROR_NOT_SUPPORTED, "ops=%zu not emulated", numOps);
}
FK_EXPORT CUresult cuMemcpy3DBatchAsync_ptsz(size_t numOps, CUDA_MEMCPY3D_BATCH_OP *opList, size_t *failIdx,
					     unsigned long long flags, CUstream hStream)
{
	FK_ENTER("cuMemcpy3DBatchAsync_ptsz");
	(void)opList, (void)flags, (void)hStream;
	if (failIdx)
		*failIdx = SIZE_MAX;
	return fk_log("cuMemcpy3DBatchAsync_ptsz", CUDA_ERROR_NOT_SUPPORTED, "ops=%zu not emulated", numOps);
}
FK_EXPORT CUresult cuMemcpy3DBatchAsync_v2(size_t numOps, CUDA_MEMCPY3D_BATCH_OP *opList, unsigned long long flags,
					   CUstream hStream)
{
	FK_ENTER("cuMemcpy3DBatchAsync_v2");
	(void)opList, (void)flags, (void)hStream;
	return fk_log("cuMemcpy3DBatchAsync_v2", CUDA_ERROR_NOT_SUPPORTED, "ops=%zu not emulated", numOps);
}
FK_EXPORT CUresult cuMemcpy3DBatchAsync_v2_ptsz(size_t numOps, CUDA_MEMCPY3D_BATCH_OP *opList,
						unsigned long long flags, CUstream hStream)
{
	FK_ENTER("cuMemcpy3DBatchAsync_v2_ptsz");
	(void)opList, (void)flags, (void)hStream;
	return fk_log("cuMemcpy3DBatchAsync_v2_ptsz", CUDA_ERROR_NOT_SUPPORTED, "ops=%zu not emulated", numOps);
}
