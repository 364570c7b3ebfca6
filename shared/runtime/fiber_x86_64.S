/*
 * x86-64 System V context switch.
 *
 * void sp__fiber_switch(void **save_sp, void *load_sp)
 *
 * Saves the callee-saved registers (rbx, rbp, r12-r15), MXCSR and the x87
 * control word on the current stack, stores the stack pointer in *save_sp,
 * then loads load_sp and restores the same set from it.  The resume address
 * is the return address already on the stack.  Caller-saved registers need no
 * saving: the compiler assumes a call clobbers them.
 */
	.text
	.globl	sp__fiber_switch
	.hidden	sp__fiber_switch
	.type	sp__fiber_switch, @function
	.p2align 4
sp__fiber_switch:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)

	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	sp__fiber_switch, .-sp__fiber_switch

/*
 * First code a new fiber runs: sp__fiber_switch "returns" here with the fiber
 * in r12 and its entry function in r13 (set up by fiber.c).  The entry
 * function never returns.
 */
	.globl	sp__fiber_trampoline
	.hidden	sp__fiber_trampoline
	.type	sp__fiber_trampoline, @function
	.p2align 4
sp__fiber_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r12, %rdi
	andq	$-16, %rsp
	xorl	%ebp, %ebp
	callq	*%r13
	ud2
	.cfi_endproc
	.size	sp__fiber_trampoline, .-sp__fiber_trampoline

	.section .note.GNU-stack,"",@progbits
