/*
 * AArch64 (AAPCS64) context switch.
 *
 * void sp__fiber_switch(void **save_sp, void *load_sp)
 *
 * Saves x19-x30 (x30 is the resume address), d8-d15 and FPCR on the current
 * stack, stores sp in *save_sp, then restores the same set from load_sp and
 * returns to the loaded x30.
 */
	.text
	.globl	sp__fiber_switch
	.hidden	sp__fiber_switch
	.type	sp__fiber_switch, %function
	.p2align 4
sp__fiber_switch:
	sub	sp, sp, #176
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mrs	x9, fpcr
	str	x9, [sp, #160]
	mov	x9, sp
	str	x9, [x0]

	mov	sp, x1
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	ldr	x9, [sp, #160]
	msr	fpcr, x9
	add	sp, sp, #176
	ret
	.size	sp__fiber_switch, .-sp__fiber_switch

/* First code of a new fiber: the fiber is in x19, its entry function in x20. */
	.globl	sp__fiber_trampoline
	.hidden	sp__fiber_trampoline
	.type	sp__fiber_trampoline, %function
	.p2align 4
sp__fiber_trampoline:
	mov	x0, x19
	mov	x29, #0
	mov	x30, #0
	blr	x20
	brk	#0
	.size	sp__fiber_trampoline, .-sp__fiber_trampoline

	.section .note.GNU-stack,"",%progbits
