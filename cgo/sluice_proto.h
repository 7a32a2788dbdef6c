/*
 * cgo/sluice_proto.h - the control protocol between Sluice's CUDA shim
 * (C, in every function process) and the Sluice daemon (Go).
 *
 * Transport: one SOCK_SEQPACKET Unix socket per process, connected by the
 * shim to the path in SLUICE_SOCKET. Every message is one packet holding one
 * of the fixed structs below, little-endian, no implicit padding (asserted
 * here with _Static_assert and in the Go package's tests through cgo).
 *
 *   shim   -> daemon  REGISTER (+ SCM_RIGHTS: the usage page memfd)
 *   daemon -> shim    WELCOME
 *   daemon -> shim    COMMAND (prefetch to device, evict to host,
 *                              set budget, report usage)
 *   shim   -> daemon  RESULT  (one per COMMAND, same id)
 *
 * The daemon takes the process identity (pid, uid, gid) from SO_PEERCRED;
 * what REGISTER claims about the process is informational only.
 *
 * Usage reaches the daemon without a system call per allocation: the shim
 * keeps its counters on a shared page (struct sluice_usage_page) in a
 * sealed memfd (F_SEAL_SHRINK|F_SEAL_GROW) that it passes at registration;
 * it updates the counters with atomics, the daemon reads them with atomics.
 *
 * Numbers are explicit and never reused: this header crosses a process
 * boundary. Only add; a change of any layout (version 2: a seventh memory
 * kind, so every array by kind grew) bumps SLUICE_PROTO_VERSION, and the
 * daemon refuses a shim of another version.
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stdint.h>

#define SLUICE_PROTO_MAGIC 0x45434c53u /* "SLCE" little-endian */
#define SLUICE_PROTO_VERSION 2 /* 2: SLUICE_KIND_GRAPH added (arrays of 7 kinds) */
#define SLUICE_USAGE_MAGIC 0x47534c53u /* "SLSG" */
#define SLUICE_USAGE_PAGE_SIZE 4096
#define SLUICE_FUNCTION_ID_MAX 128
#define SLUICE_MAX_DEVICES 16
#define SLUICE_MAX_MSG 1024 /* no message is larger */

enum sluice_msg_type {
	SLUICE_MSG_REGISTER = 1,
	SLUICE_MSG_WELCOME = 2,
	SLUICE_MSG_COMMAND = 3,
	SLUICE_MSG_RESULT = 4,
};

enum sluice_op {
	SLUICE_OP_PREFETCH_DEVICE = 1, /* all tracked evictable memory to its device */
	SLUICE_OP_EVICT_HOST = 2,      /* tracked evictable memory to the host: all of it
	                                * (arg = 0), or the next arg bytes of it past the
	                                * previous partial evictions since the last move
	                                * of everything (docs/SHIM.md) */
	SLUICE_OP_SET_BUDGET = 3,      /* arg = bytes; 0 removes the budget */
	SLUICE_OP_REPORT_USAGE = 4,    /* RESULT carries the counters */
};

/* RESULT.status: 0 success, > 0 a CUresult from the driver, < 0 below. */
enum sluice_status {
	SLUICE_OK = 0,
	SLUICE_ERR_UNKNOWN_OP = -1,
	SLUICE_ERR_BAD_ARG = -2,
	SLUICE_ERR_UNAVAILABLE = -3, /* the shim cannot do it now (no driver) */
};

/* Kinds of memory the shim accounts, by index into the usage arrays. */
enum sluice_kind {
	SLUICE_KIND_MANAGED = 0,       /* cuMemAlloc/Pitch converted to managed */
	SLUICE_KIND_ASYNC_MANAGED = 1, /* stream-ordered allocations made managed */
	SLUICE_KIND_APP_MANAGED = 2,   /* the application's own cuMemAllocManaged */
	SLUICE_KIND_DEVICE = 3,        /* device memory: IPC pools, no-UVM (and capture without graph-pool queries) */
	SLUICE_KIND_VMM = 4,           /* cuMemCreate on a device location */
	SLUICE_KIND_ARRAY = 5,         /* CUDA arrays */
	SLUICE_KIND_GRAPH = 6,         /* the driver's graph memory pools (reserved bytes) */
	SLUICE_KIND_COUNT = 7,
};
/* Kinds the daemon may move between host and device. */
#define SLUICE_KIND_EVICTABLE(k) ((k) <= SLUICE_KIND_APP_MANAGED)

struct sluice_hdr {
	uint32_t magic;   /* SLUICE_PROTO_MAGIC */
	uint16_t version; /* SLUICE_PROTO_VERSION */
	uint16_t type;    /* enum sluice_msg_type */
	uint32_t size;    /* size of the whole message, header included */
	uint32_t reserved;
};

struct sluice_register {
	struct sluice_hdr hdr;
	int32_t claimed_pid;    /* informational; the daemon uses SO_PEERCRED */
	int32_t driver_version; /* cuDriverGetVersion, 0 if unknown */
	uint32_t device_count;  /* entries used in uuids */
	uint32_t flags;         /* SLUICE_REG_* */
	char function_id[SLUICE_FUNCTION_ID_MAX]; /* SLUICE_FUNCTION, NUL-padded */
	uint8_t uuids[SLUICE_MAX_DEVICES][16];
	uint64_t bytes[SLUICE_KIND_COUNT]; /* live bytes by kind at registration */
};
#define SLUICE_REG_USAGE_PAGE 0x1u /* an SCM_RIGHTS memfd accompanies this message */
#define SLUICE_REG_CONVERTING 0x2u /* the shim converts allocations to managed */
#define SLUICE_REG_FORKED 0x4u     /* registered from a fork()ed child */
#define SLUICE_REG_AGAIN 0x8u      /* registered again after losing the daemon
                                    * (a restart); bytes include older allocations */

struct sluice_welcome {
	struct sluice_hdr hdr;
	uint64_t session_id;
	uint64_t budget; /* bytes, 0 = none */
};

struct sluice_command {
	struct sluice_hdr hdr;
	uint64_t id; /* echoed in the RESULT */
	uint32_t op; /* enum sluice_op */
	uint32_t reserved;
	uint64_t arg;
};

struct sluice_result {
	struct sluice_hdr hdr;
	uint64_t id;
	uint32_t op;
	int32_t status;       /* enum sluice_status or a CUresult */
	uint64_t bytes;       /* bytes moved (prefetch/evict), budget (set) */
	uint64_t duration_ns; /* time the shim spent on the command */
	uint64_t usage[SLUICE_KIND_COUNT]; /* live bytes by kind after the command */
};

/* The shared usage page. The shim writes with atomic adds; readers load each
 * field atomically (8-byte aligned). seq grows on every change. */
struct sluice_usage_page {
	uint32_t magic;   /* SLUICE_USAGE_MAGIC */
	uint32_t version; /* SLUICE_PROTO_VERSION */
	uint64_t seq;
	uint64_t live_bytes[SLUICE_KIND_COUNT];
	uint64_t peak_bytes; /* high-water mark of the sum of live_bytes */
	uint64_t allocs[SLUICE_KIND_COUNT];
	uint64_t frees;
	uint64_t budget;      /* the budget the shim enforces, 0 = none */
	uint64_t oom_refused; /* allocations refused by the budget */
	uint64_t prefetches;  /* commands completed */
	uint64_t evictions;
	uint64_t prefetch_inflight; /* 1 while submissions wait for a daemon prefetch */
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct sluice_hdr) == 16, "sluice_hdr layout");
_Static_assert(sizeof(struct sluice_register) == 16 + 16 + SLUICE_FUNCTION_ID_MAX + 16 * 16 + 8 * SLUICE_KIND_COUNT,
	       "sluice_register layout");
_Static_assert(sizeof(struct sluice_welcome) == 32, "sluice_welcome layout");
_Static_assert(sizeof(struct sluice_command) == 40, "sluice_command layout");
_Static_assert(sizeof(struct sluice_result) == 48 + 8 * SLUICE_KIND_COUNT, "sluice_result layout");
_Static_assert(sizeof(struct sluice_usage_page) <= SLUICE_USAGE_PAGE_SIZE, "usage page size");
#endif

#endif
