/* sluice_types.h: the few kernel types Sluice's BPF programs need, written
 * for Sluice so that `make generate` needs no vmlinux.h. Only libbpf's
 * bpf_helpers.h, bpf_tracing.h and bpf_core_read.h (Debian: libbpf-dev) are
 * included besides this file.
 *
 * Kernel structs used through CO-RE are declared with only the fields we read
 * and preserve_access_index, so the loader relocates them against the running
 * kernel's BTF. */
#ifndef SLUICE_TYPES_H
#define SLUICE_TYPES_H

/* Tells bpf_tracing.h to use the kernel's pt_regs field names. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u64 __be64;

typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;

typedef _Bool bool;
#define true 1
#define false 0

/* Values of enum bpf_map_type and the update flags (include/uapi/linux/bpf.h). */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* Map flags. */
enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#if defined(__TARGET_ARCH_x86)
/* arch/x86/include/asm/ptrace.h, x86-64 layout. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));
#elif defined(__TARGET_ARCH_arm64)
/* arch/arm64/include/uapi/asm/ptrace.h; the kernel's pt_regs starts with it. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
struct pt_regs {
	struct user_pt_regs user_regs;
} __attribute__((preserve_access_index));
#else
#error "sluice BPF programs support x86-64 and arm64 only"
#endif

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live;
} __attribute__((preserve_access_index));

struct task_struct {
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

#endif /* SLUICE_TYPES_H */
