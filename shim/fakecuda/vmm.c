/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: virtual memory management (cuMemCreate /
 * cuMemAddressReserve / cuMemMap ...) and CUDA arrays. A physical
 * allocation is a memfd; a reservation is a PROT_NONE anonymous mapping;
 * cuMemMap maps the memfd into the reservation, so several mappings of one
 * handle really alias. Device-located physical memory is accounted as
 * non-evictable in the emulated GPU.
 */
#include "fakecuda.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define VMM_GRAN (2ull << 20)
#define FK_MAGIC_PHYS 0x50485946u
#define FK_MAGIC_ARRAY 0x41525246u

struct fphys {
	uint32_t magic;
	int fd;
	uint64_t size;
	int has_emu;
	uint32_t emu;
	struct fphys *next;
};

struct fresv {
	uint64_t base, size;
	struct fresv *next;
};

struct farray {
	uint32_t magic;
	void *mem;
	uint64_t bytes;
	int has_emu;
	uint32_t emu;
	struct farray *next;
};

static struct fphys *physs;
static struct fresv *resvs;
static struct farray *arrays;

static struct fphys *phys_get(CUmemGenericAllocationHandle h)
{
	struct fphys *found = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fphys *p = physs; p; p = p->next)
		if ((CUmemGenericAllocationHandle)(uintptr_t)p == h) {
			found = p;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	return found;
}

/* 1 if [p, p+n) lies in one reservation */
static int in_resv(uint64_t p, uint64_t n)
{
	int ok = 0;
	pthread_mutex_lock(&G.mu);
	for (struct fresv *r = resvs; r && !ok; r = r->next)
		if (p >= r->base && n <= r->size && p - r->base <= r->size - n)
			ok = 1;
	pthread_mutex_unlock(&G.mu);
	return ok;
}

FK_EXPORT CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
						 CUmemAllocationGranularity_flags option)
{
	FK_ENTER("cuMemGetAllocationGranularity");
	FK_NEED_INIT("cuMemGetAllocationGranularity");
	if (!granularity || !prop || (unsigned)option > CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
		return fk_log("cuMemGetAllocationGranularity", CUDA_ERROR_INVALID_VALUE, NULL);
	*granularity = VMM_GRAN;
	return fk_log("cuMemGetAllocationGranularity", CUDA_SUCCESS, "gran=%llu", (unsigned long long)VMM_GRAN);
}

static struct fphys *phys_from_fd(int fd, uint64_t size)
{
	struct fphys *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->magic = FK_MAGIC_PHYS;
	p->fd = fd;
	p->size = size;
	pthread_mutex_lock(&G.mu);
	p->next = physs;
	physs = p;
	pthread_mutex_unlock(&G.mu);
	return p;
}

FK_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
			       unsigned long long flags)
{
	FK_ENTER("cuMemCreate");
	FK_NEED_INIT("cuMemCreate");
	if (!handle || !prop || flags || !size || size % VMM_GRAN || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED)
		return fk_log("cuMemCreate", CUDA_ERROR_INVALID_VALUE, "size=%zu", size);
	int on_dev = prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
	if (on_dev && !fk_valid_device(prop->location.id))
		return fk_log("cuMemCreate", CUDA_ERROR_INVALID_DEVICE, "dev=%d", prop->location.id);
	if (!on_dev && prop->location.type != CU_MEM_LOCATION_TYPE_HOST &&
	    prop->location.type != CU_MEM_LOCATION_TYPE_HOST_NUMA)
		return fk_log("cuMemCreate", CUDA_ERROR_INVALID_VALUE, "location=%d", (int)prop->location.type);
	uint32_t h = 0;
	int has_emu = 0;
	if (on_dev && G.emu_ok) {
		int r = emu_alloc(0, size, EMU_KIND_DEVICE, &h);
		if (r == -ENOMEM)
			return fk_log("cuMemCreate", CUDA_ERROR_OUT_OF_MEMORY, "size=%zu", size);
		has_emu = r == 0;
	}
	int fd = memfd_create("fakecuda-vmm", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		if (fd >= 0)
			close(fd);
		if (has_emu)
			emu_free(h);
		return fk_log("cuMemCreate", CUDA_ERROR_OUT_OF_MEMORY, "memfd: %s", strerror(errno));
	}
	struct fphys *p = phys_from_fd(fd, size);
	if (!p) {
		close(fd);
		if (has_emu)
			emu_free(h);
		return fk_log("cuMemCreate", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	p->has_emu = has_emu;
	p->emu = h;
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
	return fk_log("cuMemCreate", CUDA_SUCCESS, "size=%zu loc=%d:%d handle=%p", size, (int)prop->location.type,
		      prop->location.id, (void *)p);
}

FK_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	FK_ENTER("cuMemRelease");
	FK_NEED_INIT("cuMemRelease");
	struct fphys *p = phys_get(handle);
	if (!p)
		return fk_log("cuMemRelease", CUDA_ERROR_INVALID_VALUE, "handle=%#llx", handle);
	pthread_mutex_lock(&G.mu);
	for (struct fphys **pp = &physs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	/* existing mappings keep the pages alive (as on a GPU, where the
	 * memory is freed when the last mapping goes) */
	close(p->fd);
	if (p->has_emu)
		emu_free(p->emu);
	p->magic = 0;
	free(p);
	return fk_log("cuMemRelease", CUDA_SUCCESS, "handle=%#llx", handle);
}

FK_EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
				       unsigned long long flags)
{
	FK_ENTER("cuMemAddressReserve");
	FK_NEED_INIT("cuMemAddressReserve");
	if (!ptr || !size || size % VMM_GRAN || flags || (alignment & (alignment - 1)))
		return fk_log("cuMemAddressReserve", CUDA_ERROR_INVALID_VALUE, "size=%zu", size);
	uint64_t al = alignment > VMM_GRAN ? alignment : VMM_GRAN;
	size_t span = size + al;
	void *m = mmap((void *)(uintptr_t)addr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return fk_log("cuMemAddressReserve", CUDA_ERROR_OUT_OF_MEMORY, "size=%zu", size);
	uint64_t b = ((uint64_t)(uintptr_t)m + al - 1) / al * al;
	uint64_t head = b - (uint64_t)(uintptr_t)m, tail = span - head - size;
	if (head)
		munmap(m, head);
	if (tail)
		munmap((void *)(uintptr_t)(b + size), tail);
	struct fresv *r = calloc(1, sizeof(*r));
	if (!r) {
		munmap((void *)(uintptr_t)b, size);
		return fk_log("cuMemAddressReserve", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	r->base = b;
	r->size = size;
	pthread_mutex_lock(&G.mu);
	r->next = resvs;
	resvs = r;
	pthread_mutex_unlock(&G.mu);
	*ptr = b;
	return fk_log("cuMemAddressReserve", CUDA_SUCCESS, "size=%zu ptr=%#llx", size, (unsigned long long)b);
}

FK_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	FK_ENTER("cuMemAddressFree");
	FK_NEED_INIT("cuMemAddressFree");
	struct fresv *found = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct fresv **pp = &resvs; *pp; pp = &(*pp)->next)
		if ((*pp)->base == ptr && (*pp)->size == size) {
			found = *pp;
			*pp = found->next;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	if (!found)
		return fk_log("cuMemAddressFree", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)ptr);
	fk_drain_all();
	/* drop any mapping ranges still registered inside it */
	for (uint64_t off = 0; off < size; off += VMM_GRAN)
		fk_range_del(ptr + off);
	munmap((void *)(uintptr_t)ptr, size);
	free(found);
	return fk_log("cuMemAddressFree", CUDA_SUCCESS, "ptr=%#llx size=%zu", (unsigned long long)ptr, size);
}

FK_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
			    unsigned long long flags)
{
	FK_ENTER("cuMemMap");
	FK_NEED_INIT("cuMemMap");
	struct fphys *p = phys_get(handle);
	if (!p || flags || !size || size % VMM_GRAN || offset % VMM_GRAN || offset > p->size ||
	    size > p->size - offset || !in_resv(ptr, size))
		return fk_log("cuMemMap", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx size=%zu", (unsigned long long)ptr, size);
	if (fk_find_range(ptr, NULL) || fk_find_range(ptr + size - 1, NULL))
		return fk_log("cuMemMap", CUDA_ERROR_ALREADY_MAPPED, "ptr=%#llx", (unsigned long long)ptr);
	void *m = mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, p->fd, (off_t)offset);
	if (m == MAP_FAILED)
		return fk_log("cuMemMap", CUDA_ERROR_OUT_OF_MEMORY, "mmap: %s", strerror(errno));
	if (fk_range_add(ptr, size, FA_VMM) < 0)
		return fk_log("cuMemMap", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	return fk_log("cuMemMap", CUDA_SUCCESS, "ptr=%#llx size=%zu handle=%#llx", (unsigned long long)ptr, size,
		      handle);
}

FK_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	FK_ENTER("cuMemUnmap");
	FK_NEED_INIT("cuMemUnmap");
	struct fk_range r;
	if (!size || !fk_find_range(ptr, &r) || r.kind != FA_VMM || r.base != ptr || !in_resv(ptr, size))
		return fk_log("cuMemUnmap", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)ptr);
	fk_drain_all();
	fk_range_del(ptr);
	mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	return fk_log("cuMemUnmap", CUDA_SUCCESS, "ptr=%#llx size=%zu", (unsigned long long)ptr, size);
}

/* 1 if every byte of [p, p+n) is mapped (possibly by several mappings) */
static int all_mapped(uint64_t p, uint64_t n)
{
	while (n > 0) {
		struct fk_range r;
		if (!fk_find_range(p, &r))
			return 0;
		uint64_t left = r.base + r.size - p;
		if (left >= n)
			return 1;
		p += left;
		n -= left;
	}
	return 1;
}

FK_EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	FK_ENTER("cuMemSetAccess");
	FK_NEED_INIT("cuMemSetAccess");
	if (!desc || !count || !size || !all_mapped(ptr, size))
		return fk_log("cuMemSetAccess", CUDA_ERROR_INVALID_VALUE, "ptr=%#llx", (unsigned long long)ptr);
	int prot = PROT_NONE;
	for (size_t i = 0; i < count; i++) {
		if (desc[i].flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
			prot = PROT_READ | PROT_WRITE;
		else if (desc[i].flags == CU_MEM_ACCESS_FLAGS_PROT_READ && prot == PROT_NONE)
			prot = PROT_READ;
	}
	if (mprotect((void *)(uintptr_t)ptr, size, prot) < 0)
		return fk_log("cuMemSetAccess", CUDA_ERROR_INVALID_VALUE, "mprotect: %s", strerror(errno));
	return fk_log("cuMemSetAccess", CUDA_SUCCESS, "ptr=%#llx size=%zu prot=%d", (unsigned long long)ptr, size,
		      prot);
}

FK_EXPORT CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
						CUmemAllocationHandleType handleType, unsigned long long flags)
{
	FK_ENTER("cuMemExportToShareableHandle");
	FK_NEED_INIT("cuMemExportToShareableHandle");
	struct fphys *p = phys_get(handle);
	if (!p || !shareableHandle || flags)
		return fk_log("cuMemExportToShareableHandle", CUDA_ERROR_INVALID_VALUE, NULL);
	if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return fk_log("cuMemExportToShareableHandle", CUDA_ERROR_NOT_SUPPORTED, "type=%d", (int)handleType);
	int fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return fk_log("cuMemExportToShareableHandle", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	*(int *)shareableHandle = fd;
	return fk_log("cuMemExportToShareableHandle", CUDA_SUCCESS, "fd=%d", fd);
}

FK_EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
						  CUmemAllocationHandleType shHandleType)
{
	FK_ENTER("cuMemImportFromShareableHandle");
	FK_NEED_INIT("cuMemImportFromShareableHandle");
	if (!handle)
		return fk_log("cuMemImportFromShareableHandle", CUDA_ERROR_INVALID_VALUE, NULL);
	if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return fk_log("cuMemImportFromShareableHandle", CUDA_ERROR_NOT_SUPPORTED, "type=%d", (int)shHandleType);
	int src = (int)(intptr_t)osHandle;
	struct stat st;
	if (src < 0 || fstat(src, &st) < 0 || st.st_size <= 0)
		return fk_log("cuMemImportFromShareableHandle", CUDA_ERROR_INVALID_VALUE, "fd=%d", src);
	int fd = fcntl(src, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return fk_log("cuMemImportFromShareableHandle", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	struct fphys *p = phys_from_fd(fd, (uint64_t)st.st_size);
	if (!p) {
		close(fd);
		return fk_log("cuMemImportFromShareableHandle", CUDA_ERROR_OUT_OF_MEMORY, NULL);
	}
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
	return fk_log("cuMemImportFromShareableHandle", CUDA_SUCCESS, "fd=%d size=%lld", src, (long long)st.st_size);
}

/* -------------------------------------------------------------- arrays */

static unsigned fmt_bytes(CUarray_format f)
{
	switch (f) {
	case CU_AD_FORMAT_UNSIGNED_INT8:
	case CU_AD_FORMAT_SIGNED_INT8: return 1;
	case CU_AD_FORMAT_UNSIGNED_INT16:
	case CU_AD_FORMAT_SIGNED_INT16:
	case CU_AD_FORMAT_HALF: return 2;
	case CU_AD_FORMAT_UNSIGNED_INT32:
	case CU_AD_FORMAT_SIGNED_INT32:
	case CU_AD_FORMAT_FLOAT: return 4;
	default: return 0;
	}
}

static CUresult array_new(const char *nm, void **out, size_t w, size_t h, size_t d, CUarray_format f, unsigned ch)
{
	NEED_CTX(nm, c);
	(void)c;
	unsigned eb = fmt_bytes(f);
	if (!out || !w || !eb || (ch != 1 && ch != 2 && ch != 4))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "w=%zu fmt=%d ch=%u", w, (int)f, ch);
	uint64_t bytes = (uint64_t)w * (h ? h : 1) * (d ? d : 1) * eb * ch;
	struct farray *a = calloc(1, sizeof(*a));
	void *mem = a ? calloc(1, bytes) : NULL;
	if (!mem) {
		free(a);
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "bytes=%llu", (unsigned long long)bytes);
	}
	if (G.emu_ok) {
		int r = emu_alloc((uint64_t)(uintptr_t)mem, bytes, EMU_KIND_DEVICE, &a->emu);
		if (r == -ENOMEM) {
			free(mem);
			free(a);
			return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "bytes=%llu", (unsigned long long)bytes);
		}
		a->has_emu = r == 0;
	}
	a->magic = FK_MAGIC_ARRAY;
	a->mem = mem;
	a->bytes = bytes;
	pthread_mutex_lock(&G.mu);
	a->next = arrays;
	arrays = a;
	pthread_mutex_unlock(&G.mu);
	*out = a;
	return fk_log(nm, CUDA_SUCCESS, "bytes=%llu array=%p", (unsigned long long)bytes, (void *)a);
}

static CUresult array_free(const char *nm, void *h)
{
	FK_NEED_INIT(nm);
	struct farray *a = NULL;
	pthread_mutex_lock(&G.mu);
	for (struct farray **pp = &arrays; *pp; pp = &(*pp)->next)
		if ((void *)*pp == h) {
			a = *pp;
			*pp = a->next;
			break;
		}
	pthread_mutex_unlock(&G.mu);
	if (!a)
		return fk_log(nm, CUDA_ERROR_INVALID_HANDLE, "array=%p", h);
	if (a->has_emu)
		emu_free(a->emu);
	free(a->mem);
	a->magic = 0;
	free(a);
	return fk_log(nm, CUDA_SUCCESS, "array=%p", h);
}

FK_EXPORT CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *d)
{
	FK_ENTER("cuArrayCreate_v2");
	if (!d)
		return fk_log("cuArrayCreate_v2", CUDA_ERROR_INVALID_VALUE, NULL);
	return array_new("cuArrayCreate_v2", (void **)pHandle, d->Width, d->Height, 1, d->Format, d->NumChannels);
}

FK_EXPORT CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
	FK_ENTER("cuArray3DCreate_v2");
	if (!d)
		return fk_log("cuArray3DCreate_v2", CUDA_ERROR_INVALID_VALUE, NULL);
	return array_new("cuArray3DCreate_v2", (void **)pHandle, d->Width, d->Height, d->Depth, d->Format,
			 d->NumChannels);
}

FK_EXPORT CUresult cuArrayDestroy(CUarray hArray)
{
	FK_ENTER("cuArrayDestroy");
	return array_free("cuArrayDestroy", (void *)hArray);
}

FK_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *d,
					  unsigned int numMipmapLevels)
{
	FK_ENTER("cuMipmappedArrayCreate");
	if (!d || !numMipmapLevels)
		return fk_log("cuMipmappedArrayCreate", CUDA_ERROR_INVALID_VALUE, NULL);
	/* accounted as the base level x 2 (the full mip chain is < 2x) */
	return array_new("cuMipmappedArrayCreate", (void **)pHandle, d->Width * 2, d->Height, d->Depth, d->Format,
			 d->NumChannels);
}

FK_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
	FK_ENTER("cuMipmappedArrayDestroy");
	return array_free("cuMipmappedArrayDestroy", (void *)hMipmappedArray);
}
