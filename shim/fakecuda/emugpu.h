/*
 * EMULATOR / TEST DOUBLE -- NOT A GPU DRIVER.
 *
 * emugpu: the emulated GPU behind Sluice's fake CUDA driver
 * (build/fakecuda/libcuda.so.1). Every process on the host that loads the
 * fake driver attaches to one shared-memory "device file" (default
 * /dev/shm/sluice-fakecuda-gpu0) that holds the emulated device's state:
 * capacity, which managed allocations are resident on the "device", who
 * holds the device's compute engine right now, and per-process counters.
 *
 * Nothing here computes anything on a GPU: kernels hold the emulated device
 * for a modelled duration (sleeping), prefetches and demand faults cost
 * bytes / configured bandwidth. The file layout is versioned and documented
 * in docs/FAKECUDA.md so that other readers (the daemon) can parse it.
 */
#ifndef SLUICE_EMUGPU_H
#define SLUICE_EMUGPU_H

#include <pthread.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMU_MAGIC 0x47454c53u /* "SLEG" little-endian: Sluice Emulated GPU */
#define EMU_VERSION 1u
#define EMU_MAX_PROCS 128u
#define EMU_MAX_ALLOCS 32768u
#define EMU_MAX_WAITERS 512u
#define EMU_HDR_BYTES 4096u
#define EMU_PROC_BYTES 256u
#define EMU_ALLOC_BYTES 64u
#define EMU_WAITER_BYTES 16u
/* fcntl record locks at EMU_LIVENESS_BASE + slot mark a live process. */
#define EMU_LIVENESS_BASE (1ull << 30)

enum emu_sched_mode {
	EMU_SCHED_TIMESLICE = 0, /* one kernel holds the device at a time, round-robin quanta */
	EMU_SCHED_SHARE = 1,     /* kernels run together, each slowed by the number running */
};

enum emu_alloc_kind {
	EMU_KIND_FREE = 0,
	EMU_KIND_DEVICE = 1,  /* plain device memory: resident, never evicted */
	EMU_KIND_MANAGED = 2, /* unified memory: resident or on the host, evictable */
};

/* One process slot (EMU_PROC_BYTES bytes). All counters are cumulative. */
struct emu_proc {
	int32_t pid;             /* pid as seen by the process itself */
	uint32_t state;          /* 0 free, 1 live */
	uint64_t gen;            /* bumped each time the slot is (re)used */
	uint64_t attach_ns;      /* CLOCK_MONOTONIC at attach */
	char comm[32];           /* program name, NUL-terminated */
	uint64_t device_bytes;   /* live non-evictable device bytes */
	uint64_t managed_bytes;  /* live managed bytes (anywhere) */
	uint64_t resident_bytes; /* managed bytes resident on the device */
	uint64_t kernels;        /* kernels completed */
	uint64_t busy_ns;        /* time this process held the device (kernels incl. faults) */
	uint64_t wait_ns;        /* time its kernels waited for the device */
	uint64_t slices;         /* number of device quanta granted */
	uint64_t fault_bytes;    /* bytes demand-faulted to the device by its kernels */
	uint64_t fault_ns;       /* modelled demand-fault time */
	uint64_t prefetch_h2d_bytes;
	uint64_t prefetch_d2h_bytes;
	uint64_t prefetch_ns;    /* modelled prefetch (and eviction write-back) time */
	uint64_t evicted_bytes;  /* its resident bytes evicted to make room for others or itself */
	uint64_t last_active_ns; /* CLOCK_MONOTONIC of its last kernel or prefetch */
	uint32_t running;        /* its kernels running right now (share mode) */
	uint32_t pad;
	uint8_t reserved[EMU_PROC_BYTES - 176];
};

/* One allocation (EMU_ALLOC_BYTES bytes). Residency is allocation-granular
 * with a byte count: resident <= size bytes of it are on the device. */
struct emu_alloc {
	uint32_t kind;     /* enum emu_alloc_kind */
	uint32_t proc;     /* owning slot */
	uint64_t proc_gen; /* owning slot's gen at allocation */
	uint64_t addr;     /* process-local address (informational) */
	uint64_t size;
	uint64_t resident; /* bytes on the device (size for EMU_KIND_DEVICE) */
	uint64_t lru;      /* device LRU clock at last use */
	uint8_t reserved[EMU_ALLOC_BYTES - 48];
};

struct emu_waiter {
	int32_t proc; /* -1 when empty */
	uint32_t pad;
	uint64_t ticket;
};

/* The header page. Fields up to `lock` are written once at creation. */
struct emu_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t hdr_bytes;
	uint32_t max_procs;
	uint32_t max_allocs;
	uint32_t max_waiters;
	uint32_t sched_mode;
	uint32_t pad0;
	uint64_t file_bytes;
	uint64_t procs_off;
	uint64_t waiters_off;
	uint64_t allocs_off;
	uint64_t capacity;   /* device bytes */
	uint64_t h2d_bps;    /* prefetch host->device bytes/s */
	uint64_t d2h_bps;    /* eviction/prefetch device->host bytes/s */
	uint64_t fault_bps;  /* demand-fault bytes/s */
	uint64_t quantum_ns; /* time slice */
	uint64_t created_ns;
	uint8_t lock_storage[64]; /* pthread_mutex_t, robust, process-shared */
	/* mutable, under the lock */
	uint64_t used_device;   /* non-evictable bytes */
	uint64_t used_resident; /* resident managed bytes */
	uint64_t lru_clock;
	uint64_t ticket;
	int32_t dev_owner;     /* slot holding the device (timeslice mode), -1 free */
	uint32_t dev_seq;      /* futex word: bumped on every device release */
	uint32_t running;      /* kernels running (share mode) or 1/0 (timeslice) */
	uint32_t nwaiters;
	uint64_t owner_since_ns;
	uint64_t total_busy_ns;
	uint64_t evictions;    /* eviction events */
	uint64_t evicted_bytes;
	uint64_t reaped_procs; /* dead processes cleaned up */
	uint64_t repairs;      /* EOWNERDEAD recoveries */
	uint32_t alloc_hwm;    /* highest alloc index used + 1 */
	uint32_t nprocs;       /* live slots */
};

/* Configuration read from the environment at attach (see docs/FAKECUDA.md). */
struct emu_config {
	char path[256];
	uint64_t capacity;
	uint64_t h2d_bps, d2h_bps, fault_bps;
	uint64_t quantum_ns;
	uint32_t sched_mode;
};

void emu_config_from_env(struct emu_config *c);

/* Attach this process (idempotent, fork-aware: a forked child re-attaches
 * with its own slot). Returns 0 or a negative errno. */
int emu_attach(void);
/* Detach: frees this process's allocations in the file and its slot. */
void emu_detach(void);
/* Whether attached (and the file's header, for tests). */
const struct emu_hdr *emu_header(void);
int emu_self_slot(void);

/* Register an allocation. DEVICE kind must fit next to other non-evictable
 * bytes (managed memory is evicted to make room); returns -ENOMEM if not.
 * MANAGED kind always succeeds (it starts on the host). *handle receives an
 * index into the alloc table. */
int emu_alloc(uint64_t addr, uint64_t size, int kind, uint32_t *handle);
void emu_free(uint32_t handle);
/* Prefetch up to `bytes` of an allocation to the device (to_device=1) or the
 * host (0). Sleeps for the modelled transfer time (and any evictions it
 * causes). Returns the bytes moved. */
uint64_t emu_prefetch(uint32_t handle, uint64_t bytes, int to_device);
/* Drop up to `bytes` of an allocation's residency without a write-back
 * (cuMemDiscardBatchAsync: the contents become undefined). Returns bytes. */
uint64_t emu_discard(uint32_t handle, uint64_t bytes);
/* Make the given allocations resident for a kernel: what is not resident
 * demand-faults. Returns the modelled fault time in ns (the kernel pays it
 * while holding the device). */
uint64_t emu_touch(const uint32_t *handles, const uint64_t *bytes, int n);
/* Run a kernel of duration_ns (+ extra_ns of fault time) on the device:
 * blocks while other processes hold it (timeslice) or runs slowed down
 * (share). */
void emu_run_kernel(uint64_t duration_ns, uint64_t extra_ns);
/* Device memory view: free = capacity - non-evictable - resident managed. */
void emu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes);
uint64_t emu_resident(uint32_t handle);
/* Reap dead processes now; returns how many were reaped. */
int emu_reap(void);
/* Test only: lock the file, corrupt a counter, _exit(status) holding the lock. */
void emu_test_die_holding_lock(int status) __attribute__((noreturn));
/* Sleep for ns nanoseconds (modelled time). */
void emu_sleep_ns(uint64_t ns);
uint64_t emu_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
