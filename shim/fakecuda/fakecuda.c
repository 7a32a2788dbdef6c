/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * Sluice's fake CUDA driver, core: environment, call log, fault injection,
 * cuInit / versions / error strings, devices, contexts, test hooks.
 * Device name: "Sluice Emulated GPU (fake driver)". See docs/FAKECUDA.md.
 */
#include "fakecuda.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fk_global G = {
	.logfd = -1,
	.driver_version = 13000,
	.device_count = 1,
	.concurrent_managed = 1,
	.flops = 20e12,
	.mem_bps = 2e12,
	.kernel_ns = 0,
	.queue_depth = 1024,
	.query_polls = 4,
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.exec = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP,
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------ env */

static long env_long(const char *name, long def, long lo, long hi)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "fakecuda: ignoring %s=%s (want an integer in [%ld, %ld])\n", name, s, lo, hi);
		return def;
	}
	return v;
}

static double env_pos(const char *name, double def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end = NULL;
	double v = strtod(s, &end);
	if (end == s || *end || !(v >= 0)) {
		fprintf(stderr, "fakecuda: ignoring %s=%s (want a non-negative number)\n", name, s);
		return def;
	}
	return v;
}

/* FAKECUDA_FAIL="name:N[+][:code],..." */
static void parse_faults(const char *spec)
{
	if (!spec || !*spec)
		return;
	char *dup = strdup(spec);
	if (!dup)
		return;
	char *save = NULL;
	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (G.nfaults >= (int)(sizeof(G.faults) / sizeof(G.faults[0]))) {
			fprintf(stderr, "fakecuda: FAKECUDA_FAIL: too many entries, ignoring %s\n", tok);
			continue;
		}
		char *c1 = strchr(tok, ':');
		if (!c1 || c1 == tok) {
			fprintf(stderr, "fakecuda: FAKECUDA_FAIL: bad entry '%s' (want name:N[+][:code])\n", tok);
			continue;
		}
		*c1 = 0;
		char *end = NULL;
		unsigned long n = strtoul(c1 + 1, &end, 10);
		struct fk_fault *f = &G.faults[G.nfaults];
		memset(f, 0, sizeof(*f));
		if (end == c1 + 1 || n == 0) {
			fprintf(stderr, "fakecuda: FAKECUDA_FAIL: bad call number in '%s'\n", c1 + 1);
			continue;
		}
		if (*end == '+') {
			f->from_on = 1;
			end++;
		}
		f->code = CUDA_ERROR_OUT_OF_MEMORY;
		if (*end == ':') {
			char *e2 = NULL;
			long code = strtol(end + 1, &e2, 10);
			if (e2 == end + 1 || *e2 || code <= 0) {
				fprintf(stderr, "fakecuda: FAKECUDA_FAIL: bad error code in '%s'\n", end + 1);
				continue;
			}
			f->code = (CUresult)code;
		} else if (*end) {
			fprintf(stderr, "fakecuda: FAKECUDA_FAIL: bad entry suffix '%s'\n", end);
			continue;
		}
		if (!fk_known_symbol(tok))
			fprintf(stderr, "fakecuda: FAKECUDA_FAIL: %s is not an entry point of this driver\n", tok);
		snprintf(f->name, sizeof(f->name), "%s", tok);
		f->nth = n;
		G.nfaults++;
	}
	free(dup);
}

static void do_init(void)
{
	const char *lp = getenv("FAKECUDA_LOG");
	if (lp && *lp) {
		G.logfd = open(lp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (G.logfd < 0)
			fprintf(stderr, "fakecuda: cannot open FAKECUDA_LOG=%s: %s\n", lp, strerror(errno));
	}
	G.driver_version = (int)env_long("FAKECUDA_DRIVER_VERSION", 13000, 11000, 99999);
	G.device_count = (int)env_long("FAKECUDA_DEVICE_COUNT", 1, 0, 8);
	G.concurrent_managed = (int)env_long("FAKECUDA_CONCURRENT_MANAGED", 1, 0, 1);
	G.flops = env_pos("FAKECUDA_TFLOPS", 20.0) * 1e12;
	if (G.flops <= 0)
		G.flops = 1e12;
	G.mem_bps = env_pos("FAKECUDA_MEM_GBPS", 2000.0) * 1e9;
	if (G.mem_bps <= 0)
		G.mem_bps = 1e9;
	G.kernel_ns = (uint64_t)(env_pos("FAKECUDA_KERNEL_US", 0.0) * 1e3);
	G.queue_depth = (unsigned)env_long("FAKECUDA_QUEUE_DEPTH", 1024, 0, 1 << 20);
	G.query_polls = (unsigned)env_long("FAKECUDA_QUERY_POLLS", 4, 1, 1 << 20);
	parse_faults(getenv("FAKECUDA_FAIL"));
}

void fk_init_once(void) { pthread_once(&init_once, do_init); }

__attribute__((constructor)) static void fk_ctor(void) { fk_init_once(); }

__attribute__((destructor)) static void fk_dtor(void)
{
	if (G.emu_ok)
		emu_detach();
}

/* ------------------------------------------------------ log and faults */

int fk_enter(struct fk_counter *c, CUresult *inj)
{
	unsigned long n = __atomic_add_fetch(&c->count, 1, __ATOMIC_RELAXED);
	int idx = __atomic_load_n(&c->fault_idx, __ATOMIC_ACQUIRE);
	if (idx == -2) {
		fk_init_once();
		pthread_mutex_lock(&G.mu);
		if (c->fault_idx == -2) {
			int found = -1;
			for (int i = 0; i < G.nfaults; i++)
				if (strcmp(G.faults[i].name, c->name) == 0) {
					found = i;
					break;
				}
			c->next = G.counters;
			G.counters = c;
			__atomic_store_n(&c->fault_idx, found, __ATOMIC_RELEASE);
		}
		idx = c->fault_idx;
		pthread_mutex_unlock(&G.mu);
	}
	if (idx < 0)
		return 0;
	const struct fk_fault *f = &G.faults[idx];
	if (n == f->nth || (f->from_on && n > f->nth)) {
		*inj = f->code;
		return 1;
	}
	return 0;
}

CUresult fk_log(const char *name, CUresult r, const char *fmt, ...)
{
	if (G.logfd < 0)
		return r;
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "%s rc=%d", name, (int)r);
	if (n < 0)
		return r;
	if (fmt && (size_t)n < sizeof(buf) - 1) {
		buf[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(buf) - 48)
		n = (int)sizeof(buf) - 48;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, " pid=%d tid=%ld\n", (int)getpid(),
		      (long)syscall(SYS_gettid));
	ssize_t w = write(G.logfd, buf, (size_t)n);
	(void)w;
	return r;
}

/* ------------------------------------------------- init, version, errors */

FK_EXPORT CUresult cuInit(unsigned int Flags)
{
	FK_ENTER("cuInit");
	if (Flags != 0)
		return fk_log("cuInit", CUDA_ERROR_INVALID_VALUE, "flags=%u", Flags);
	fk_init_once();
	pthread_mutex_lock(&G.mu);
	if (!G.inited) {
		if (G.device_count > 0) {
			int r = emu_attach();
			G.emu_ok = r == 0;
		}
		G.inited = 1;
	}
	pthread_mutex_unlock(&G.mu);
	if (G.device_count == 0)
		return fk_log("cuInit", CUDA_ERROR_NO_DEVICE, "flags=0");
	return fk_log("cuInit", CUDA_SUCCESS, "flags=0 emu=%d", G.emu_ok);
}

FK_EXPORT CUresult cuDriverGetVersion(int *driverVersion)
{
	FK_ENTER("cuDriverGetVersion");
	if (!driverVersion)
		return fk_log("cuDriverGetVersion", CUDA_ERROR_INVALID_VALUE, NULL);
	*driverVersion = G.driver_version;
	return fk_log("cuDriverGetVersion", CUDA_SUCCESS, "version=%d", G.driver_version);
}

static const struct {
	CUresult code;
	const char *name, *str;
} errtab[] = {
	{CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
	{CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
	{CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
	{CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
	{CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{CUDA_ERROR_FILE_NOT_FOUND, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
	{CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
	{CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
	{CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	{CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	{CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
	{CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	{CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
	{CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
	{CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", "capture was not initiated in this stream"},
	{CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", "attempt to terminate a thread-local capture sequence from another thread"},
	{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

FK_EXPORT CUresult cuGetErrorString(CUresult error, const char **pStr)
{
	if (!pStr)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].code == error) {
			*pStr = errtab[i].str;
			return CUDA_SUCCESS;
		}
	*pStr = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

FK_EXPORT CUresult cuGetErrorName(CUresult error, const char **pStr)
{
	if (!pStr)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].code == error) {
			*pStr = errtab[i].name;
			return CUDA_SUCCESS;
		}
	*pStr = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

/* ------------------------------------------------------------- devices */

int fk_valid_device(CUdevice d) { return d >= 0 && d < G.device_count; }

#define DEV_CHECK(nm, d)                                                              \
	do {                                                                          \
		FK_NEED_INIT(nm);                                                     \
		if (!fk_valid_device(d))                                              \
			return fk_log(nm, CUDA_ERROR_INVALID_DEVICE, "dev=%d", (int)(d)); \
	} while (0)

FK_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
	FK_ENTER("cuDeviceGet");
	FK_NEED_INIT("cuDeviceGet");
	if (!device)
		return fk_log("cuDeviceGet", CUDA_ERROR_INVALID_VALUE, NULL);
	if (!fk_valid_device(ordinal))
		return fk_log("cuDeviceGet", CUDA_ERROR_INVALID_DEVICE, "ordinal=%d", ordinal);
	*device = ordinal;
	return fk_log("cuDeviceGet", CUDA_SUCCESS, "ordinal=%d", ordinal);
}

FK_EXPORT CUresult cuDeviceGetCount(int *count)
{
	FK_ENTER("cuDeviceGetCount");
	FK_NEED_INIT("cuDeviceGetCount");
	if (!count)
		return fk_log("cuDeviceGetCount", CUDA_ERROR_INVALID_VALUE, NULL);
	*count = G.device_count;
	return fk_log("cuDeviceGetCount", CUDA_SUCCESS, "count=%d", G.device_count);
}

FK_EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
	FK_ENTER("cuDeviceGetName");
	DEV_CHECK("cuDeviceGetName", dev);
	if (!name || len <= 0)
		return fk_log("cuDeviceGetName", CUDA_ERROR_INVALID_VALUE, NULL);
	snprintf(name, (size_t)len, "Sluice Emulated GPU (fake driver)");
	return fk_log("cuDeviceGetName", CUDA_SUCCESS, "dev=%d", dev);
}

static void fill_uuid(CUuuid *u, CUdevice dev)
{
	/* stable, recognisable: "SLUICE-EMU" + ordinal */
	static const char base[16] = {'S', 'L', 'U', 'I', 'C', 'E', '-', 'E', 'M', 'U', '-', 'G', 'P', 'U', 0, 0};
	memcpy(u->bytes, base, 16);
	u->bytes[15] = (char)dev;
}

FK_EXPORT CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
	FK_ENTER("cuDeviceGetUuid");
	DEV_CHECK("cuDeviceGetUuid", dev);
	if (!uuid)
		return fk_log("cuDeviceGetUuid", CUDA_ERROR_INVALID_VALUE, NULL);
	fill_uuid(uuid, dev);
	return fk_log("cuDeviceGetUuid", CUDA_SUCCESS, "dev=%d", dev);
}

FK_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
	FK_ENTER("cuDeviceGetUuid_v2");
	DEV_CHECK("cuDeviceGetUuid_v2", dev);
	if (!uuid)
		return fk_log("cuDeviceGetUuid_v2", CUDA_ERROR_INVALID_VALUE, NULL);
	fill_uuid(uuid, dev);
	return fk_log("cuDeviceGetUuid_v2", CUDA_SUCCESS, "dev=%d", dev);
}

static uint64_t total_mem(void)
{
	uint64_t fr = 0, tot = 0;
	if (G.emu_ok)
		emu_mem_info(&fr, &tot);
	if (!tot) {
		struct emu_config c;
		emu_config_from_env(&c);
		tot = c.capacity;
	}
	return tot;
}

FK_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	FK_ENTER("cuDeviceTotalMem_v2");
	DEV_CHECK("cuDeviceTotalMem_v2", dev);
	if (!bytes)
		return fk_log("cuDeviceTotalMem_v2", CUDA_ERROR_INVALID_VALUE, NULL);
	*bytes = total_mem();
	return fk_log("cuDeviceTotalMem_v2", CUDA_SUCCESS, "dev=%d bytes=%zu", dev, *bytes);
}

FK_EXPORT CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
	FK_ENTER("cuDeviceTotalMem");
	DEV_CHECK("cuDeviceTotalMem", dev);
	if (!bytes)
		return fk_log("cuDeviceTotalMem", CUDA_ERROR_INVALID_VALUE, NULL);
	uint64_t t = total_mem();
	*bytes = t > 0xffffffffull ? 0xffffffffu : (unsigned)t;
	return fk_log("cuDeviceTotalMem", CUDA_SUCCESS, "dev=%d bytes=%u", dev, *bytes);
}

static int attr_value(int a)
{
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
	case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
	case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
	case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
	case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1755000;
	case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
	case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return 132;
	case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: return CU_COMPUTEMODE_DEFAULT;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
	case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
	case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 5120;
	case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 50331648;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
	case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
	case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT: return 32;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
	case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
	case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 1;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: return G.concurrent_managed;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return 232448;
	case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
	case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES: return CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	case CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH: return 1;
	default: return 0;
	}
}

FK_EXPORT CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
	FK_ENTER("cuDeviceGetAttribute");
	DEV_CHECK("cuDeviceGetAttribute", dev);
	if (!pi || (int)attrib <= 0 || (int)attrib > 200)
		return fk_log("cuDeviceGetAttribute", CUDA_ERROR_INVALID_VALUE, "attr=%d", (int)attrib);
	*pi = attr_value((int)attrib);
	return fk_log("cuDeviceGetAttribute", CUDA_SUCCESS, "attr=%d value=%d", (int)attrib, *pi);
}

FK_EXPORT CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
	FK_ENTER("cuDeviceGetPCIBusId");
	DEV_CHECK("cuDeviceGetPCIBusId", dev);
	if (!pciBusId || len <= 0)
		return fk_log("cuDeviceGetPCIBusId", CUDA_ERROR_INVALID_VALUE, NULL);
	snprintf(pciBusId, (size_t)len, "00000000:%02X:00.0", 0xE0 + dev);
	return fk_log("cuDeviceGetPCIBusId", CUDA_SUCCESS, "dev=%d", dev);
}

FK_EXPORT CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
	FK_ENTER("cuDeviceComputeCapability");
	DEV_CHECK("cuDeviceComputeCapability", dev);
	if (!major || !minor)
		return fk_log("cuDeviceComputeCapability", CUDA_ERROR_INVALID_VALUE, NULL);
	*major = 9;
	*minor = 0;
	return fk_log("cuDeviceComputeCapability", CUDA_SUCCESS, "dev=%d", dev);
}

FK_EXPORT CUresult cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev)
{
	FK_ENTER("cuDeviceCanAccessPeer");
	DEV_CHECK("cuDeviceCanAccessPeer", dev);
	if (!canAccessPeer || !fk_valid_device(peerDev))
		return fk_log("cuDeviceCanAccessPeer", CUDA_ERROR_INVALID_VALUE, NULL);
	*canAccessPeer = 0;
	return fk_log("cuDeviceCanAccessPeer", CUDA_SUCCESS, "dev=%d peer=%d", dev, peerDev);
}

/* ------------------------------------------------------------ contexts */

#define FK_MAX_DEV 8
#define FK_CTX_STACK 16

static struct fctx primary[FK_MAX_DEV];
static int primary_refs[FK_MAX_DEV];
static unsigned primary_flags[FK_MAX_DEV];

static __thread struct fctx *tls_stack[FK_CTX_STACK];
static __thread int tls_depth;

struct fctx *fk_current_ctx(void)
{
	if (tls_depth <= 0)
		return NULL;
	struct fctx *c = tls_stack[tls_depth - 1];
	if (!c || c->magic != FK_MAGIC_CTX || c->destroyed)
		return NULL;
	return c;
}

static int ctx_valid(struct fctx *c)
{
	if (!c)
		return 0;
	for (int i = 0; i < FK_MAX_DEV; i++)
		if (c == &primary[i])
			return c->magic == FK_MAGIC_CTX;
	return c->magic == FK_MAGIC_CTX && !c->destroyed;
}

FK_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
	FK_ENTER("cuDevicePrimaryCtxRetain");
	DEV_CHECK("cuDevicePrimaryCtxRetain", dev);
	if (!pctx)
		return fk_log("cuDevicePrimaryCtxRetain", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	struct fctx *c = &primary[dev];
	c->magic = FK_MAGIC_CTX;
	c->dev = dev;
	c->primary = 1;
	c->destroyed = 0;
	c->flags = primary_flags[dev];
	primary_refs[dev]++;
	int refs = primary_refs[dev];
	pthread_mutex_unlock(&G.mu);
	*pctx = (CUcontext)c;
	return fk_log("cuDevicePrimaryCtxRetain", CUDA_SUCCESS, "dev=%d ctx=%p refs=%d", dev, (void *)c, refs);
}

static CUresult primary_release(const char *nm, CUdevice dev)
{
	DEV_CHECK(nm, dev);
	pthread_mutex_lock(&G.mu);
	if (primary_refs[dev] <= 0) {
		pthread_mutex_unlock(&G.mu);
		return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, "dev=%d", dev);
	}
	int refs = --primary_refs[dev];
	pthread_mutex_unlock(&G.mu);
	if (refs == 0)
		fk_drain_all();
	return fk_log(nm, CUDA_SUCCESS, "dev=%d refs=%d", dev, refs);
}

FK_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
	FK_ENTER("cuDevicePrimaryCtxRelease_v2");
	return primary_release("cuDevicePrimaryCtxRelease_v2", dev);
}

FK_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
	FK_ENTER("cuDevicePrimaryCtxRelease");
	return primary_release("cuDevicePrimaryCtxRelease", dev);
}

static CUresult primary_reset(const char *nm, CUdevice dev)
{
	DEV_CHECK(nm, dev);
	fk_drain_all();
	fk_free_ctx_allocs(&primary[dev]); /* a reset frees the context's memory */
	pthread_mutex_lock(&G.mu);
	primary_flags[dev] = 0;
	primary[dev].flags = 0;
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, CUDA_SUCCESS, "dev=%d", dev);
}

FK_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
	FK_ENTER("cuDevicePrimaryCtxReset_v2");
	return primary_reset("cuDevicePrimaryCtxReset_v2", dev);
}

FK_EXPORT CUresult cuDevicePrimaryCtxReset(CUdevice dev)
{
	FK_ENTER("cuDevicePrimaryCtxReset");
	return primary_reset("cuDevicePrimaryCtxReset", dev);
}

FK_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
	FK_ENTER("cuDevicePrimaryCtxGetState");
	DEV_CHECK("cuDevicePrimaryCtxGetState", dev);
	if (!flags || !active)
		return fk_log("cuDevicePrimaryCtxGetState", CUDA_ERROR_INVALID_VALUE, NULL);
	pthread_mutex_lock(&G.mu);
	*flags = primary_flags[dev];
	*active = primary_refs[dev] > 0;
	pthread_mutex_unlock(&G.mu);
	return fk_log("cuDevicePrimaryCtxGetState", CUDA_SUCCESS, "dev=%d active=%d", dev, *active);
}

static CUresult primary_set_flags(const char *nm, CUdevice dev, unsigned flags)
{
	DEV_CHECK(nm, dev);
	if (flags & ~(unsigned)CU_CTX_FLAGS_MASK)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, "flags=%#x", flags);
	pthread_mutex_lock(&G.mu);
	primary_flags[dev] = flags;
	primary[dev].flags = flags;
	pthread_mutex_unlock(&G.mu);
	return fk_log(nm, CUDA_SUCCESS, "dev=%d flags=%#x", dev, flags);
}

FK_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
	FK_ENTER("cuDevicePrimaryCtxSetFlags_v2");
	return primary_set_flags("cuDevicePrimaryCtxSetFlags_v2", dev, flags);
}

FK_EXPORT CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{
	FK_ENTER("cuDevicePrimaryCtxSetFlags");
	return primary_set_flags("cuDevicePrimaryCtxSetFlags", dev, flags);
}

static CUresult ctx_create(const char *nm, CUcontext *pctx, unsigned flags, CUdevice dev)
{
	DEV_CHECK(nm, dev);
	if (!pctx)
		return fk_log(nm, CUDA_ERROR_INVALID_VALUE, NULL);
	if (tls_depth >= FK_CTX_STACK)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "ctx stack full");
	struct fctx *c = calloc(1, sizeof(*c));
	if (!c)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, NULL);
	c->magic = FK_MAGIC_CTX;
	c->dev = dev;
	c->flags = flags & (unsigned)CU_CTX_FLAGS_MASK;
	tls_stack[tls_depth++] = c;
	*pctx = (CUcontext)c;
	return fk_log(nm, CUDA_SUCCESS, "dev=%d flags=%#x ctx=%p", dev, flags, (void *)c);
}

FK_EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	FK_ENTER("cuCtxCreate_v2");
	return ctx_create("cuCtxCreate_v2", pctx, flags, dev);
}

FK_EXPORT CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	FK_ENTER("cuCtxCreate");
	return ctx_create("cuCtxCreate", pctx, flags, dev);
}

FK_EXPORT CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams, unsigned int flags,
				  CUdevice dev)
{
	FK_ENTER("cuCtxCreate_v3");
	if (numParams < 0 || (numParams > 0 && !paramsArray))
		return fk_log("cuCtxCreate_v3", CUDA_ERROR_INVALID_VALUE, NULL);
	return ctx_create("cuCtxCreate_v3", pctx, flags, dev);
}

FK_EXPORT CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags,
				  CUdevice dev)
{
	FK_ENTER("cuCtxCreate_v4");
	(void)ctxCreateParams; /* execution affinity / CIG: not emulated */
	return ctx_create("cuCtxCreate_v4", pctx, flags, dev);
}

static CUresult ctx_destroy(const char *nm, CUcontext ctx)
{
	FK_NEED_INIT(nm);
	struct fctx *c = (struct fctx *)ctx;
	for (int i = 0; i < FK_MAX_DEV; i++)
		if (c == &primary[i])
			return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, "primary ctx=%p", (void *)c);
	if (!ctx_valid(c))
		return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, "ctx=%p", (void *)c);
	fk_drain_all();
	fk_free_ctx_allocs(c); /* a real driver frees the context's memory */
	/* pop it from this thread's stack; other threads keep a dangling
	 * pointer that fk_current_ctx rejects (destroyed). The object is
	 * kept (never reused) so stale handles stay detectable. */
	c->destroyed = 1;
	for (int i = 0; i < tls_depth; i++)
		if (tls_stack[i] == c) {
			memmove(&tls_stack[i], &tls_stack[i + 1], (size_t)(tls_depth - i - 1) * sizeof(tls_stack[0]));
			tls_depth--;
			break;
		}
	return fk_log(nm, CUDA_SUCCESS, "ctx=%p", (void *)c);
}

FK_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx)
{
	FK_ENTER("cuCtxDestroy_v2");
	return ctx_destroy("cuCtxDestroy_v2", ctx);
}

FK_EXPORT CUresult cuCtxDestroy(CUcontext ctx)
{
	FK_ENTER("cuCtxDestroy");
	return ctx_destroy("cuCtxDestroy", ctx);
}

FK_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
	FK_ENTER("cuCtxSetCurrent");
	FK_NEED_INIT("cuCtxSetCurrent");
	struct fctx *c = (struct fctx *)ctx;
	if (c && !ctx_valid(c))
		return fk_log("cuCtxSetCurrent", CUDA_ERROR_INVALID_CONTEXT, "ctx=%p", (void *)c);
	if (!c) {
		if (tls_depth > 0)
			tls_depth--;
	} else if (tls_depth == 0) {
		tls_stack[tls_depth++] = c;
	} else {
		tls_stack[tls_depth - 1] = c;
	}
	return fk_log("cuCtxSetCurrent", CUDA_SUCCESS, "ctx=%p", (void *)c);
}

FK_EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx)
{
	FK_ENTER("cuCtxGetCurrent");
	FK_NEED_INIT("cuCtxGetCurrent");
	if (!pctx)
		return fk_log("cuCtxGetCurrent", CUDA_ERROR_INVALID_VALUE, NULL);
	*pctx = (CUcontext)fk_current_ctx();
	return fk_log("cuCtxGetCurrent", CUDA_SUCCESS, "ctx=%p", (void *)*pctx);
}

static CUresult ctx_push(const char *nm, CUcontext ctx)
{
	FK_NEED_INIT(nm);
	struct fctx *c = (struct fctx *)ctx;
	if (!ctx_valid(c))
		return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, "ctx=%p", (void *)c);
	if (tls_depth >= FK_CTX_STACK)
		return fk_log(nm, CUDA_ERROR_OUT_OF_MEMORY, "ctx stack full");
	tls_stack[tls_depth++] = c;
	return fk_log(nm, CUDA_SUCCESS, "ctx=%p", (void *)c);
}

FK_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
	FK_ENTER("cuCtxPushCurrent_v2");
	return ctx_push("cuCtxPushCurrent_v2", ctx);
}

FK_EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
{
	FK_ENTER("cuCtxPushCurrent");
	return ctx_push("cuCtxPushCurrent", ctx);
}

static CUresult ctx_pop(const char *nm, CUcontext *pctx)
{
	FK_NEED_INIT(nm);
	if (tls_depth <= 0)
		return fk_log(nm, CUDA_ERROR_INVALID_CONTEXT, "empty stack");
	struct fctx *c = tls_stack[--tls_depth];
	if (pctx)
		*pctx = (CUcontext)c;
	return fk_log(nm, CUDA_SUCCESS, "ctx=%p", (void *)c);
}

FK_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
	FK_ENTER("cuCtxPopCurrent_v2");
	return ctx_pop("cuCtxPopCurrent_v2", pctx);
}

FK_EXPORT CUresult cuCtxPopCurrent(CUcontext *pctx)
{
	FK_ENTER("cuCtxPopCurrent");
	return ctx_pop("cuCtxPopCurrent", pctx);
}

FK_EXPORT CUresult cuCtxGetDevice(CUdevice *device)
{
	FK_ENTER("cuCtxGetDevice");
	NEED_CTX("cuCtxGetDevice", c);
	if (!device)
		return fk_log("cuCtxGetDevice", CUDA_ERROR_INVALID_VALUE, NULL);
	*device = c->dev;
	return fk_log("cuCtxGetDevice", CUDA_SUCCESS, "dev=%d", c->dev);
}

FK_EXPORT CUresult cuCtxGetFlags(unsigned int *flags)
{
	FK_ENTER("cuCtxGetFlags");
	NEED_CTX("cuCtxGetFlags", c);
	if (!flags)
		return fk_log("cuCtxGetFlags", CUDA_ERROR_INVALID_VALUE, NULL);
	*flags = c->flags;
	return fk_log("cuCtxGetFlags", CUDA_SUCCESS, "flags=%#x", c->flags);
}

FK_EXPORT CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
	FK_ENTER("cuCtxGetApiVersion");
	FK_NEED_INIT("cuCtxGetApiVersion");
	struct fctx *c = ctx ? (struct fctx *)ctx : fk_current_ctx();
	if (!version)
		return fk_log("cuCtxGetApiVersion", CUDA_ERROR_INVALID_VALUE, NULL);
	if (!ctx_valid(c))
		return fk_log("cuCtxGetApiVersion", CUDA_ERROR_INVALID_CONTEXT, NULL);
	*version = 3020;
	return fk_log("cuCtxGetApiVersion", CUDA_SUCCESS, "version=3020");
}

FK_EXPORT CUresult cuCtxSynchronize(void)
{
	FK_ENTER("cuCtxSynchronize");
	NEED_CTX("cuCtxSynchronize", c);
	(void)c;
	if (fk_capture_prohibited())
		return fk_log("cuCtxSynchronize", CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, NULL);
	fk_drain_all();
	return fk_log("cuCtxSynchronize", G.async_err, NULL);
}

FK_EXPORT CUresult cuCtxSetLimit(CUlimit limit, size_t value)
{
	FK_ENTER("cuCtxSetLimit");
	NEED_CTX("cuCtxSetLimit", c);
	if ((unsigned)limit >= 8)
		return fk_log("cuCtxSetLimit", CUDA_ERROR_UNSUPPORTED_LIMIT, "limit=%d", (int)limit);
	c->limits[limit] = value;
	return fk_log("cuCtxSetLimit", CUDA_SUCCESS, "limit=%d value=%zu", (int)limit, value);
}

FK_EXPORT CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
	FK_ENTER("cuCtxGetLimit");
	NEED_CTX("cuCtxGetLimit", c);
	if (!pvalue || (unsigned)limit >= 8)
		return fk_log("cuCtxGetLimit", CUDA_ERROR_INVALID_VALUE, "limit=%d", (int)limit);
	static const size_t defaults[8] = {1024, 1048576, 8388608, 2, 2048, 64, 0, 0};
	*pvalue = c->limits[limit] ? c->limits[limit] : defaults[limit];
	return fk_log("cuCtxGetLimit", CUDA_SUCCESS, "limit=%d value=%zu", (int)limit, *pvalue);
}

/* ------------------------------------------------------------ test hooks */

FK_EXPORT unsigned long fakecuda_call_count(const char *name)
{
	if (!name)
		return 0;
	unsigned long n = 0;
	pthread_mutex_lock(&G.mu);
	for (struct fk_counter *c = G.counters; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			n += __atomic_load_n(&c->count, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&G.mu);
	return n;
}

FK_EXPORT void fakecuda_test_die_holding_lock(int status) { emu_test_die_holding_lock(status); }
