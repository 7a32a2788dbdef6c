/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver: cuGetProcAddress, cuGetProcAddress_v2 and
 * cuGetExportTable. Resolution is ABI-exact (see procaddr_table.h): the
 * caller's cudaVersion picks the newest ABI introduced at or before it, the
 * PER_THREAD_DEFAULT_STREAM flag picks _ptsz/_ptds variants, and entries
 * newer than the emulated driver (FAKECUDA_DRIVER_VERSION) do not exist. A
 * request by exact exported name ("cuMemAlloc_v2") returns that symbol.
 */
#include "fakecuda.h"

#include <string.h>

struct fk_proc {
	const char *base;
	const char *sym;
	void *fn;
	int ver;
	int pt;
};

#define X(b, s, v, p) {#b, #s, (void *)s, v, p},
static const struct fk_proc table[] = {
#include "procaddr_table.h"
};
#undef X

#define NTAB (sizeof(table) / sizeof(table[0]))

void *fk_proc_lookup(const char *symbol, int cudaVersion, cuuint64_t flags, int *status)
{
	*status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	if (!symbol)
		return NULL;
	int want_pt = fk_ptds_flag(flags);
	const struct fk_proc *best = NULL, *best_any = NULL;
	int known = 0, have_pt = 0;
	for (size_t i = 0; i < NTAB; i++) {
		const struct fk_proc *e = &table[i];
		if (e->ver > G.driver_version)
			continue; /* not in the emulated driver generation */
		if (strcmp(e->sym, symbol) == 0 && strcmp(e->base, symbol) != 0) {
			*status = CU_GET_PROC_ADDRESS_SUCCESS; /* exact versioned name */
			return e->fn;
		}
		if (strcmp(e->base, symbol) != 0)
			continue;
		known = 1;
		if (e->ver > cudaVersion)
			continue;
		if (e->pt) {
			have_pt = 1;
			if (want_pt && (!best || e->ver > best->ver))
				best = e;
		} else if (!best_any || e->ver > best_any->ver) {
			best_any = e;
		}
	}
	const struct fk_proc *r = (want_pt && have_pt && best) ? best : best_any;
	if (!r) {
		*status = known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
		return NULL;
	}
	*status = CU_GET_PROC_ADDRESS_SUCCESS;
	return r->fn;
}

int fk_known_symbol(const char *name)
{
	for (size_t i = 0; i < NTAB; i++)
		if (strcmp(table[i].sym, name) == 0)
			return 1;
	return 0;
}

static CUresult proc(const char *nm, const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
		     CUdriverProcAddressQueryResult *st)
{
	if (!symbol || !pfn || (flags & ~3ull))
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "symbol=%s", symbol ? symbol : "(null)");
	int status;
	void *fn = fk_proc_lookup(symbol, cudaVersion, flags, &status);
	*pfn = fn;
	if (st)
		*st = (CUdriverProcAddressQueryResult)status;
	const char *resolved = "-";
	for (size_t i = 0; fn && i < NTAB; i++)
		if (table[i].fn == fn) {
			resolved = table[i].sym;
			break;
		}
	return fk_log(nm, fn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND, "symbol=%s version=%d flags=%llu status=%d sym=%s",
		      symbol, cudaVersion, (unsigned long long)flags, status, resolved);
}

FK_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
	FK_ENTER("cuGetProcAddress");
	return proc("cuGetProcAddress", symbol, pfn, cudaVersion, flags, NULL);
}

FK_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
				       CUdriverProcAddressQueryResult *symbolStatus)
{
	FK_ENTER("cuGetProcAddress_v2");
	if (G.driver_version < 12000)
		return fk_log("cuGetProcAddress_v2", CUDA_ERROR_NOT_FOUND, "needs a 12.0 driver");
	return proc("cuGetProcAddress_v2", symbol, pfn, cudaVersion, flags, symbolStatus);
}

FK_EXPORT CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
	FK_ENTER("cuGetExportTable");
	(void)pExportTableId;
	if (ppExportTable)
		*ppExportTable = NULL;
	return fk_log("cuGetExportTable", CUDA_ERROR_NOT_SUPPORTED, "private tables are not emulated");
}
