/* SPDX-License-Identifier: MIT */
/*
 * The scenario, defined once: the kvm and native paths assemble it into
 * guest machine code (guest_code.c), the simulate path interprets it
 * (sim_guest.c). The model below says what every page must contain after
 * every step; guest reads and the VMM's host-side checks compare with it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mini-vmm.h"

#define ENC CVMCONV_MAP_GPA_RANGE_ENCRYPTED
#define HINT_2M CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M
#define OFF(x) (GUEST_BASE + (x))

#define SEED_A 0xA1000000u
#define SEED_B 0xB2000000u
#define SEED_C 0xC3000000u
#define SEED_D 0xD4000000u
#define SEED_E 0xE5000000u

/*
 * Offsets are from GUEST_BASE; [0, 2M) holds the code and stays shared.
 * At start the VMM fills the shared side of [2M, 16M) with SEED_HOST and
 * the no-guest_memfd slot with SEED_NOSLOT, and marks one page of that slot
 * private. What each read expects is what the model computes; the comments
 * say why.
 */
const struct step scenario[] = {
	/* aligned: one whole 2 MiB extent, with the 2M hint SEV-SNP sends */
	{ STEP_MAP, OFF(2 * MiB), 2 * MiB, ENC | HINT_2M, 0, false,
	  "aligned 2 MiB: the shared side of [2M,4M) is punched" },
	{ STEP_WRITE, OFF(2 * MiB), 8 * KiB, 0, SEED_A, false, "into two private pages" },
	{ STEP_CHECK, OFF(2 * MiB), 8 * KiB, 0, 0, false, "A comes back from the private side" },
	{ STEP_MAP, OFF(2 * MiB), 2 * MiB, HINT_2M, 0, false,
	  "back to shared: the private side (pattern A) is punched" },
	/* the shared side was punched when the range went private, and the
	 * private data does not come back */
	{ STEP_CHECK, OFF(2 * MiB), 8 * KiB, 0, 0, false,
	  "zeros: the shared side was punched at step 0, A is gone" },
	/* unaligned: a single 4 KiB page */
	{ STEP_MAP, OFF(2 * MiB), 4 * KiB, ENC, 0, false, "unaligned 4 KiB, private again" },
	{ STEP_CHECK, OFF(2 * MiB), 4 * KiB, 0, 0, false,
	  "zeros: its private page was punched at step 3" },
	{ STEP_MAP, OFF(6 * MiB + 4 * KiB), 4 * KiB, ENC, 0, false,
	  "unaligned 4 KiB in the middle of a 2 MiB extent" },
	{ STEP_WRITE, OFF(6 * MiB + 4 * KiB), 4 * KiB, 0, SEED_B, false, "into the private page" },
	{ STEP_WRITE, OFF(6 * MiB + 8 * KiB), 4 * KiB, 0, SEED_C, false,
	  "into its shared neighbour" },
	/* B from guest_memfd; C on the shared side. The host never sees B: on a
	 * huge-page shared backing the page under B keeps SEED_HOST (a huge
	 * page cannot be partly freed), on shmem it reads zeros (punched). */
	{ STEP_CHECK, OFF(6 * MiB + 4 * KiB), 8 * KiB, 0, 0, false,
	  "B from the private side, C from the shared side" },
	/* unaligned: 2 MiB + 4 KiB at a 4 KiB offset leaves two extents mixed */
	{ STEP_MAP, OFF(8 * MiB + 4 * KiB), 2 * MiB + 4 * KiB, ENC, 0, false,
	  "2 MiB + 4 KiB at a 4 KiB offset: two extents left mixed" },
	{ STEP_WRITE, OFF(8 * MiB + 4 * KiB), 4 * KiB, 0, SEED_D, false,
	  "into the first private page" },
	{ STEP_WRITE, OFF(10 * MiB + 4 * KiB), 4 * KiB, 0, SEED_D, false,
	  "into the last private page" },
	{ STEP_CHECK, OFF(8 * MiB + 4 * KiB), 4 * KiB, 0, 0, false, "D, first page" },
	{ STEP_CHECK, OFF(10 * MiB + 4 * KiB), 4 * KiB, 0, 0, false, "D, last page" },
	/* the conversion that makes [8M,10M) wholly private: a huge shared page
	 * is punched now, one exit after the request that left it mixed */
	{ STEP_MAP, OFF(8 * MiB), 4 * KiB, ENC, 0, false,
	  "completes [8M,10M): a huge shared page is punched now, an exit later" },
	{ STEP_MAP, OFF(8 * MiB), 2 * MiB + 8 * KiB, 0, 0, false,
	  "back to shared: the private side is punched" },
	/* shared side of [8M,10M): punched (wholly private at step 16) */
	{ STEP_CHECK, OFF(8 * MiB + 4 * KiB), 4 * KiB, 0, 0, false,
	  "zeros: its shared page was punched" },
	/* shared side of [10M,12M) was never wholly private: on a huge-page
	 * backing it kept SEED_HOST, on shmem the page was punched (zeros) */
	{ STEP_CHECK, OFF(10 * MiB + 4 * KiB), 4 * KiB, 0, 0, false,
	  "huge pages: the host marker ([10M,12M) never went wholly private); shmem: zeros" },
	/* implicit conversion, as SEV-SNP/TDX deliver it: a private access to
	 * a shared page -> KVM_EXIT_MEMORY_FAULT(PRIVATE) -> cvmconv converts */
	{ STEP_FAULT, OFF(12 * MiB), 4 * KiB, ENC, 0, false,
	  "a private access to a shared page: implicit conversion" },
	{ STEP_WRITE, OFF(12 * MiB), 4 * KiB, 0, SEED_E, false, "into the page at 12M" },
	{ STEP_CHECK, OFF(12 * MiB), 4 * KiB, 0, 0, false, "E back" },
	/* the fault cvmconv cannot resolve: the slot has no guest_memfd, so a
	 * private access fails in KVM (kvm_mmu_faultin_pfn: no gmem in the
	 * slot); cvmconv refuses (-EFAULT, not in its regions), the VMM repairs
	 * its own attribute and the read completes from the shared side */
	{ STEP_CHECK, NOSLOT_GPA, 4 * KiB, 0, 0, true,
	  "a private access to a slot without guest_memfd: cvmconv refuses, the VMM repairs" },
	{ STEP_END, 0, 0, 0, 0, false, "the end" },
};
const size_t scenario_len = sizeof(scenario) / sizeof(scenario[0]);

const char *path_name(enum path p)
{
	switch (p) {
	case PATH_KVM:
		return "kvm";
	case PATH_SIMULATE:
		return "simulate";
	case PATH_NATIVE:
		return "native";
	}
	return "?";
}

bool path_has_implicit_faults(enum path p)
{
	/* kvm: SW_PROTECTED derives the access type from the attribute;
	 * native emulates exactly that. Only the simulated guest plays a
	 * SEV-SNP/TDX guest whose access carries its own private bit. */
	return p == PATH_SIMULATE;
}

static bool in_ram(uint64_t gpa)
{
	return gpa >= GUEST_BASE && gpa < GUEST_BASE + RAM_SIZE;
}

void model_init(struct model *m, uint64_t shared_page)
{
	memset(m, 0, sizeof(*m));
	m->shared_page = shared_page;
	for (uint64_t gpa = TEST_GPA; gpa < GUEST_BASE + RAM_SIZE; gpa += PAGE_SIZE_4K)
		m->shared_seed[model_page(gpa)] = SEED_HOST;
	for (uint64_t gpa = NOSLOT_GPA; gpa < NOSLOT_GPA + NOSLOT_SIZE; gpa += PAGE_SIZE_4K)
		m->shared_seed[model_page(gpa)] = SEED_NOSLOT;
	/* the VMM marks the first page of the slot private at start */
	m->private_[model_page(NOSLOT_GPA)] = 1;
}

uint32_t model_read_seed(const struct model *m, uint64_t gpa)
{
	uint64_t p = model_page(gpa);

	if (!in_ram(gpa))
		return m->shared_seed[p]; /* only a shared side (after the repair) */
	return m->private_[p] ? m->private_seed[p] : m->shared_seed[p];
}

void model_convert(struct model *m, uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t first = model_page(gpa), n = size / PAGE_SIZE_4K;
	uint64_t per_huge = m->shared_page / PAGE_SIZE_4K;

	for (uint64_t p = first; p < first + n; p++) {
		if (m->private_[p] == to_private)
			continue; /* already there: nothing happens to this page */
		m->private_[p] = to_private;
		if (!to_private)
			m->private_seed[p] = SEED_ZERO; /* guest_memfd: 4 KiB punch */
		else if (per_huge == 1)
			m->shared_seed[p] = SEED_ZERO; /* shmem: 4 KiB punch */
	}
	if (!to_private || per_huge == 1)
		return;
	/* huge shared pages: punched once every page in them is private, and
	 * only when they lie wholly inside RAM (a 1 GiB page holding the
	 * 16 MiB of RAM is never punched: the rest of it is not the region's) */
	for (uint64_t h = first / per_huge * per_huge; h < first + n; h += per_huge) {
		bool all = h + per_huge <= RAM_PAGES;

		for (uint64_t p = h; all && p < h + per_huge; p++)
			all = all && m->private_[p];
		if (all)
			for (uint64_t p = h; p < h + per_huge; p++)
				m->shared_seed[p] = SEED_ZERO;
	}
}

void model_apply(struct model *m, const struct step *s, enum path p)
{
	switch (s->kind) {
	case STEP_MAP:
		model_convert(m, s->gpa, s->size, (s->attrs & ENC) != 0);
		break;
	case STEP_FAULT:
		if (path_has_implicit_faults(p))
			model_convert(m, s->gpa, s->size, (s->attrs & ENC) != 0);
		break;
	case STEP_WRITE:
		for (uint64_t gpa = s->gpa; gpa < s->gpa + s->size; gpa += PAGE_SIZE_4K) {
			uint64_t pg = model_page(gpa);

			if (m->private_[pg])
				m->private_seed[pg] = s->seed;
			else
				m->shared_seed[pg] = s->seed;
		}
		break;
	case STEP_CHECK:
		if (s->refused_fault)
			m->private_[model_page(s->gpa)] = 0; /* the VMM's repair */
		break;
	case STEP_END:
		break;
	}
}

unsigned step_expected_hypercalls(const struct step *s)
{
	return s->kind == STEP_MAP ? 1 : 0;
}

unsigned step_expected_faults(const struct step *s, enum path p)
{
	if (s->kind == STEP_FAULT)
		return path_has_implicit_faults(p) ? 1 : 0;
	return s->refused_fault ? 1 : 0;
}

const char *model_seed_name(uint32_t seed)
{
	switch (seed) {
	case SEED_ZERO:
		return "zeros";
	case SEED_HOST:
		return "host marker";
	case SEED_NOSLOT:
		return "slot marker";
	case SEED_A:
		return "A";
	case SEED_B:
		return "B";
	case SEED_C:
		return "C";
	case SEED_D:
		return "D";
	case SEED_E:
		return "E";
	}
	return "?";
}

/* 2M, 6M+4K, 8K: an offset from GUEST_BASE */
static void fmt_off(char *buf, size_t len, uint64_t off)
{
	if (off && off % MiB == 0)
		snprintf(buf, len, "%" PRIu64 "M", off / MiB);
	else if (off >= MiB)
		snprintf(buf, len, "%" PRIu64 "M+%" PRIu64 "K", off / MiB, off % MiB / KiB);
	else
		snprintf(buf, len, "%" PRIu64 "K", off / KiB);
}

/* "map   +2M..+4M -> private, 2M hint" */
void step_describe(const struct step *s, char *buf, size_t len)
{
	char from[24], to[24];

	fmt_off(from, sizeof(from), s->gpa - GUEST_BASE);
	fmt_off(to, sizeof(to), s->gpa + s->size - GUEST_BASE);
	switch (s->kind) {
	case STEP_MAP:
		snprintf(buf, len, "map   +%s..+%s -> %s%s", from, to,
			 (s->attrs & ENC) ? "private" : "shared",
			 (s->attrs & HINT_2M) ? ", 2M hint" : "");
		break;
	case STEP_FAULT:
		snprintf(buf, len, "fault +%s..+%s, %s access", from, to,
			 (s->attrs & ENC) ? "private" : "shared");
		break;
	case STEP_WRITE:
		snprintf(buf, len, "write +%s..+%s pattern %s", from, to, model_seed_name(s->seed));
		break;
	case STEP_CHECK:
		snprintf(buf, len, "read  +%s..+%s%s", from, to,
			 s->gpa >= NOSLOT_GPA ? " (slot 1)" : "");
		break;
	case STEP_END:
		snprintf(buf, len, "hlt");
		break;
	}
}
