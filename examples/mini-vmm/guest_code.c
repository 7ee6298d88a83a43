/* SPDX-License-Identifier: MIT */
/*
 * The guest: x86 machine code assembled here, byte by byte, from the
 * scenario table. No assembler, no copied code: every encoding below is
 * written out with the instruction it encodes (Intel SDM vol. 2 opcode
 * tables: B8+rd id MOV r32,imm32; 89 /r MOV r/m32,r32; 8B /r MOV r32,r/m32;
 * 35 id XOR EAX,imm32; 25 id AND EAX,imm32; 39 /r CMP r/m32,r32; 85 /r TEST;
 * 83 /0 ib ADD r/m32,imm8; FF /1 DEC r/m32; 7x cb Jcc rel8; EB cb JMP rel8;
 * E7 ib OUT imm8,EAX; F4 HLT; 0F 01 C1 VMCALL).
 *
 * Mode: 32-bit protected mode, flat segments, paging off, CPL 0 (the VMM
 * sets this up with KVM_SET_SREGS; see kvm_vm.c). Why not long mode: it
 * needs identity-mapped page tables in guest memory and KVM_SET_CPUID2 (KVM
 * refuses EFER.LME unless the guest CPUID has LM: __kvm_valid_efer in
 * arch/x86/kvm/x86.c), and buys nothing here. Why not real mode: 16-bit
 * addressing cannot reach the ranges without more setup. KVM accepts
 * KVM_HC_MAP_GPA_RANGE from 32-bit mode: arguments are truncated to 32 bits
 * and the return value in EAX is the low 32 bits of hypercall.ret
 * (arch/x86/kvm/x86.c, __kvm_emulate_hypercall / complete_hypercall_exit).
 * All addresses are below 4 GiB.
 *
 * The code uses no stack, no memory operand with a displacement and no
 * absolute memory form, so the very same bytes are also valid 64-bit code
 * (B8+rd zero-extends, [esi] encodes [rsi]): the native path runs them in
 * this process to check them without KVM.
 *
 * Conventions: a step that fails puts the offending value in EAX and does
 * `out 0x81, eax; hlt` (the VMM reads ESI with KVM_GET_REGS for the
 * address); every finished step does `out 0x80, eax` with EAX = its index.
 */
#include <errno.h>
#include <string.h>

#include "mini-vmm.h"

enum reg { EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESI = 6, EDI = 7 };

struct emitter {
	struct guest_code *gc;
	bool overflow;
};

static void bytes(struct emitter *e, const uint8_t *b, size_t n)
{
	if (e->gc->len + n > sizeof(e->gc->bytes)) {
		e->overflow = true;
		return;
	}
	memcpy(e->gc->bytes + e->gc->len, b, n);
	e->gc->len += n;
}

#define EMIT(e, ...)                                         \
	do {                                                 \
		static const uint8_t b_[] = { __VA_ARGS__ }; \
		bytes((e), b_, sizeof(b_));                  \
	} while (0)

/* an opcode byte followed by a 32-bit immediate, little-endian */
static void op_imm32(struct emitter *e, uint8_t op, uint32_t v)
{
	uint8_t b[5] = { op, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	bytes(e, b, sizeof(b));
}

/* B8+rd id: mov r32, imm32 */
static void mov_imm(struct emitter *e, enum reg r, uint32_t v)
{
	op_imm32(e, (uint8_t)(0xB8 + r), v);
}

/* mov eax, index; out 0x80, eax */
static void report_done(struct emitter *e, uint32_t index)
{
	mov_imm(e, EAX, index);	       /* B8 id        mov eax, index */
	EMIT(e, 0xE7, PORT_STEP_DONE); /* E7 80        out 0x80, eax     -> KVM_EXIT_IO */
}

/* KVM_HC_MAP_GPA_RANGE: RAX = 12, RBX = gpa, RCX = npages, RDX = attrs, then
 * vmcall; KVM rewrites it to vmmcall on AMD (its hypercall patching) and
 * exits with KVM_EXIT_HYPERCALL; the guest finds hypercall.ret in EAX. */
static void map_gpa_range(struct emitter *e, uint32_t gpa, uint32_t npages, uint32_t attrs)
{
	mov_imm(e, EAX, KVM_HC_MAP_GPA_RANGE); /* B8 0C000000  mov eax, 12 */
	mov_imm(e, EBX, gpa);		       /* BB id        mov ebx, gpa */
	mov_imm(e, ECX, npages);	       /* B9 id        mov ecx, npages (4 KiB units) */
	mov_imm(e, EDX, attrs);		       /* BA id        mov edx, attrs */
	if (e->gc->nhypercall_sites < MAX_HYPERCALL_SITES)
		e->gc->hypercall_site[e->gc->nhypercall_sites++] = (uint32_t)e->gc->len;
	else
		e->overflow = true;
	EMIT(e, 0x0F, 0x01, 0xC1);	/* 0F 01 C1     vmcall            -> KVM_EXIT_HYPERCALL */
	EMIT(e, 0x85, 0xC0);		/* 85 C0        test eax, eax */
	EMIT(e, 0x74, 0x03);		/* 74 03        jz +3             (over the report) */
	EMIT(e, 0xE7, PORT_CHECK_FAIL); /* E7 81        out 0x81, eax     RAX != 0: report it */
	EMIT(e, 0xF4);			/* F4           hlt */
}

/* for (edi = gpa; ecx; edi += 4, ecx--) [edi] = edi ^ seed */
static void write_pattern(struct emitter *e, uint32_t gpa, uint32_t dwords, uint32_t seed)
{
	mov_imm(e, EDI, gpa);	   /* BF id        mov edi, gpa */
	mov_imm(e, ECX, dwords);   /* B9 id        mov ecx, dwords */
	EMIT(e, 0x89, 0xF8);	   /* 89 F8        loop: mov eax, edi   (loop: 16 bytes) */
	op_imm32(e, 0x35, seed);   /* 35 id        xor eax, seed */
	EMIT(e, 0x89, 0x07);	   /* 89 07        mov [edi], eax */
	EMIT(e, 0x83, 0xC7, 0x04); /* 83 C7 04     add edi, 4 */
	EMIT(e, 0xFF, 0xC9);	   /* FF C9        dec ecx */
	EMIT(e, 0x75, 0xF0);	   /* 75 F0        jnz loop          (-16) */
}

/* for (esi = gpa; ecx; esi += 4, ecx--) if ([esi] != ((esi ^ seed) & mask)) fail
 * mask 0 checks for zeros. On failure EAX = the value read, ESI = address. */
static void check_pattern(struct emitter *e, uint32_t gpa, uint32_t dwords, uint32_t seed,
			  uint32_t mask)
{
	mov_imm(e, ESI, gpa);	   /* BE id        mov esi, gpa */
	mov_imm(e, ECX, dwords);   /* B9 id        mov ecx, dwords */
	EMIT(e, 0x89, 0xF0);	   /* 89 F0        loop: mov eax, esi   (loop: 23 bytes) */
	op_imm32(e, 0x35, seed);   /* 35 id        xor eax, seed */
	op_imm32(e, 0x25, mask);   /* 25 id        and eax, mask */
	EMIT(e, 0x39, 0x06);	   /* 39 06        cmp [esi], eax    (may exit: memory fault) */
	EMIT(e, 0x75, 0x09);	   /* 75 09        jne fail          (+9) */
	EMIT(e, 0x83, 0xC6, 0x04); /* 83 C6 04     add esi, 4 */
	EMIT(e, 0xFF, 0xC9);	   /* FF C9        dec ecx */
	EMIT(e, 0x75, 0xE9);	   /* 75 E9        jnz loop          (-23) */
	EMIT(e, 0xEB, 0x05);	   /* EB 05        jmp done          (+5) */
	EMIT(e, 0x8B, 0x06);	   /* 8B 06        fail: mov eax, [esi] */
	EMIT(e, 0xE7, PORT_CHECK_FAIL); /* E7 81        out 0x81, eax */
	EMIT(e, 0xF4);			/* F4           hlt               done: (next) */
}

/* One loop per run of pages that must read the same pattern. */
static void check_range(struct emitter *e, const struct model *m, uint64_t gpa, uint64_t size)
{
	uint64_t end = gpa + size;

	while (gpa < end) {
		uint32_t seed = model_read_seed(m, gpa);
		uint64_t run = gpa + PAGE_SIZE_4K;

		while (run < end && model_read_seed(m, run) == seed)
			run += PAGE_SIZE_4K;
		check_pattern(e, (uint32_t)gpa, (uint32_t)((run - gpa) / 4), seed,
			      seed ? 0xFFFFFFFFu : 0);
		gpa = run;
	}
}

int guest_code_build(struct guest_code *gc, enum path p, uint64_t shared_page)
{
	static struct model m; /* a dry run: what each read will find */
	struct emitter e = { gc, false };

	gc->len = 0;
	gc->nhypercall_sites = 0;
	model_init(&m, shared_page);
	for (size_t i = 0; i < scenario_len; i++) {
		const struct step *s = &scenario[i];

		switch (s->kind) {
		case STEP_MAP:
			map_gpa_range(&e, (uint32_t)s->gpa, (uint32_t)(s->size / PAGE_SIZE_4K),
				      (uint32_t)s->attrs);
			break;
		case STEP_WRITE:
			write_pattern(&e, (uint32_t)s->gpa, (uint32_t)(s->size / 4), s->seed);
			break;
		case STEP_CHECK:
			check_range(&e, &m, s->gpa, s->size);
			break;
		case STEP_FAULT:
			/* Nothing to execute: a SW_PROTECTED guest has no way to make
			 * an access private or shared, KVM takes it from the attribute
			 * (see path_has_implicit_faults()). */
			break;
		case STEP_END:
			EMIT(&e, 0xF4);	      /* F4     hlt         -> KVM_EXIT_HLT */
			EMIT(&e, 0xEB, 0xFD); /* EB FD  jmp -3      (back to hlt if woken) */
			break;
		}
		model_apply(&m, s, p);
		if (s->kind != STEP_END)
			report_done(&e, (uint32_t)i);
	}
	return e.overflow ? -E2BIG : 0;
}
