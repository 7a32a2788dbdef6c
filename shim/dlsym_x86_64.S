/*
 * shim/dlsym_x86_64.S - the interposed dlsym entry.
 *
 * glibc's dlsym resolves RTLD_NEXT relative to its caller's return address.
 * A C wrapper that calls the real dlsym would make every RTLD_NEXT lookup
 * relative to the shim and send other interposers into recursion. So this
 * entry asks shim_dlsym_hook() whether the name is ours; if not, it jumps
 * (not calls) to the real dlsym with the caller's return address intact.
 *
 * One body, two versioned names: dlsym@GLIBC_2.2.5 (binaries linked before
 * glibc 2.34) and dlsym@@GLIBC_2.34.
 */
	.text
	.globl	sluice_dlsym_new
	.type	sluice_dlsym_new, @function
	.globl	sluice_dlsym_old
	.type	sluice_dlsym_old, @function
	.p2align 4
sluice_dlsym_new:
sluice_dlsym_old:
	.cfi_startproc
	pushq	%rdi
	.cfi_adjust_cfa_offset 8
	pushq	%rsi
	.cfi_adjust_cfa_offset 8
	subq	$24, %rsp		/* 16-byte aligned call, 8 bytes for *out */
	.cfi_adjust_cfa_offset 24
	movq	%rsp, %rdx
	call	shim_dlsym_hook		/* int (void *handle, const char *name, void **out) */
	testl	%eax, %eax
	jz	1f
	movq	(%rsp), %rax
	addq	$24, %rsp
	.cfi_adjust_cfa_offset -24
	popq	%rsi
	.cfi_adjust_cfa_offset -8
	popq	%rdi
	.cfi_adjust_cfa_offset -8
	ret
	.cfi_adjust_cfa_offset 40
1:	addq	$24, %rsp
	.cfi_adjust_cfa_offset -24
	popq	%rsi
	.cfi_adjust_cfa_offset -8
	popq	%rdi
	.cfi_adjust_cfa_offset -8
	jmpq	*real_dlsym_ptr(%rip)
	.cfi_endproc
	.size	sluice_dlsym_new, .-sluice_dlsym_new
	.size	sluice_dlsym_old, .-sluice_dlsym_old

	.symver	sluice_dlsym_new, dlsym@@GLIBC_2.34
	.symver	sluice_dlsym_old, dlsym@GLIBC_2.2.5

	.section .note.GNU-stack,"",@progbits
