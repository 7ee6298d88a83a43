/* SPDX-License-Identifier: MIT */
/* fuzz_exits: the input decoding (value pickers biased towards region
 * edges, extent edges and the contract's limits), the per-input
 * configuration and the operation dispatch. The byte encoding is mirrored
 * by fuzz/seeds.py. */
#include "fuzz_exits.h"

static const int errnos[] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };

static const uint64_t special_gpas[] = {
	0,
	PG,
	GPA_LIMIT,
	GPA_LIMIT - PG,
	GPA_LIMIT - HPG,
	UINT64_MAX,
	UINT64_MAX & ~(PG - 1),
	1ULL << 63,
	1ULL << 40,
	(1ULL << 30),
	UINT64_MAX - HPG + 1,
};

static const uint64_t special_npages[] = {
	0,
	1,
	512,
	262144, /* 1 GiB */
	1ULL << 40,
	(1ULL << 40) + 1,
	(1ULL << 40) - 1,
	1ULL << 52,
	GPA_LIMIT / PG,
	UINT64_MAX,
	1ULL << 63,
	UINT64_MAX / PG + 1,
};

static uint64_t edge(unsigned k)
{
	const struct fz_region *r = &R[k % NREG];

	return (k / NREG) % 2 ? r->gpa + r->size : r->gpa;
}

static uint64_t pick_gpa(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r);

	switch (s % 8) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return edge(u8(r)) + (uint64_t)(d * (int64_t)PG);
	case 3: /* 2 MiB extent edges of the window */
		return (win_lo & ~(HPG - 1)) + (u8(r) % 12) * HPG + (uint64_t)(d * (int64_t)PG);
	case 4: /* misaligned by a few bytes */
		return edge(u8(r)) + (uint64_t)d;
	case 5:
		return special_gpas[u8(r) % (sizeof(special_gpas) / sizeof(special_gpas[0]))] +
		       (uint64_t)(d * (int64_t)PG);
	default:
		return win_lo + (u16(r) % win_pages) * PG;
	}
}

static uint64_t pick_npages(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r) / 16;

	switch (s % 8) {
	case 0:
		return u64(r);
	case 1:
		return 1 + u8(r) % 16;
	case 2:
		return 512 * (1 + u8(r) % 4) + (uint64_t)d;
	case 3:
		return R[u8(r) % NREG].npages + (uint64_t)d;
	case 4:
		return special_npages[u8(r) % (sizeof(special_npages) / sizeof(special_npages[0]))];
	default:
		return 1 + u16(r) % 2048;
	}
}

static uint64_t pick_size(struct rd *r)
{
	uint8_t s = u8(r);

	if (s % 8 == 0)
		return u64(r);
	if (s % 8 == 1)
		return pick_npages(r) * PG + (uint64_t)(int8_t)u8(r);
	return pick_npages(r) * PG;
}

static uint64_t pick_attrs(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s % 8) {
	case 0:
		return 0;
	case 1:
	case 2:
		return CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	case 3:
		return CVMCONV_MAP_GPA_RANGE_ENCRYPTED | (u8(r) % 4);
	case 4:
		return u8(r) % 4;
	case 5:
		return 1ULL << (u8(r) % 64);
	case 6:
		return u64(r);
	default:
		return (u8(r) & 1) ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
	}
}

/* ---- one input ---- */

void setup_input(struct rd *in)
{
	uint8_t c0 = u8(in), c1 = u8(in);
	static const uint64_t granules[4] = { 0, PG, 1ULL << 30, 64 * 1024 };
	struct cvmconv_config cfg;

	memset(H.held, 0, sizeof(H.held));
	H.alloc0 = false;
	H.last_fault.valid = false;
	H.changed_since_fault = false;
	H.broken = false;
	H.punch_failed_ever = false;
	H.attr_fail_mask = H.punch_fail_mask = 0;
	H.attr_errno = H.punch_errno = EIO;
	H.busy_streak = 0;
	H.veto_armed = 0;
	H.kernel_calls = 0;
	H.log_lines = 0;
	H.policy = (enum cvmconv_unaligned)((c0 & 3) == 3 ? 0 : (c0 & 3));
	H.granule = granules[(c1 >> 4) & 3];
	fake_kvm_init(&H.fake, (c1 & 0x80) ? FAKE_VM_DEFAULT : FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&H.fake, H.policy);
	cfg.ops = &fz_ops;
	cfg.granule = H.granule;
	cfg.log = (c1 & 0x40) ? NULL : fz_log;
	H.defer = c0 & 0x20;
	cfg.flags = H.defer ? CVMCONV_DEFER_PUNCH : 0;
	CHECK(cvmconv_create(&cfg, &H.c) == 0, "create");
	fake_kvm_attach_gmem(&H.fake, &G1);
	trace("config: policy %d granule 0x%llx vm %s log %d listener-before %d hva %d "
	      "R2-private %d R1/R2 policy %d/%d defer %d R1-in-place %d",
	      H.policy, (unsigned long long)H.granule, (c1 & 0x80) ? "default" : "sw-protected",
	      !(c1 & 0x40), !!(c0 & 0x40), !!(c0 & 0x04), !!(c0 & 0x08), (int)(c1 & 3) - 1,
	      (int)((c1 >> 2) & 3) - 1, H.defer, !!(c0 & 0x10));
	if (!H.granule)
		H.granule = HPG;
	H.has_before = c0 & 0x40;
	if (H.has_before) {
		struct cvmconv_listener l = { sizeof(l), fz_before, fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	} else {
		struct cvmconv_listener l = { sizeof(l), NULL, fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	}

	memset(H.priv, 0, win_pages);
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];
		bool start_private = i == 2 && (c0 & 0x08);
		struct cvmconv_region reg = {
			.sz = sizeof(reg),
			.gpa = r->gpa,
			.size = r->size,
			.private_fd = r->private_fd,
			.shared_fd = r->shared_fd,
			.shared_offset = r->shared_offset,
			.flags = start_private ? CVMCONV_REGION_PRIVATE : 0,
		};
		int ret;

		r->inplace = i == 1 && (c0 & 0x10);
		r->by_hva = i == 1 && (c0 & 0x04) && !r->inplace;
		r->policy = i == 0 ? -1 : (int)((c1 >> (2 * (i - 1))) & 3) - 1;
		reg.unaligned = r->policy;
		if (r->inplace) {
			/* a fresh guest_memfd: all shared, nothing pinned or held */
			memset(G1.priv, 0, G1.size / PG);
			memset(G1.pins, 0, G1.size / PG * sizeof(*G1.pins));
			CHECK(fallocate(G1.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
					(off_t)G1.size) == 0,
			      "reset punch: %s", strerror(errno));
			reg.private_fd = G1.fd;
			reg.shared_fd = -1;
			reg.shared_hva = G1.map;
			reg.flags |= CVMCONV_REGION_INPLACE;
			reg.content_mode = CVMCONV_CONTENT_PRESERVE;
		} else if (r->by_hva) {
			reg.shared_fd = -1;
			reg.shared_hva = r->shared_map;
		} else if (i == 0 && (c0 & 0x80)) {
			H.alloc0 = true;
			/* pages turning shared are allocated at once; a live
			 * page is written anyway, so the accounting holds */
			reg.flags |= CVMCONV_REGION_ALLOC_SHARED;
		}
		/* start of input: private sides empty, live sides tagged */
		CHECK(fallocate(r->private_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				(off_t)r->size) == 0,
		      "reset punch: %s", strerror(errno));
		for (uint64_t p = 0; p < r->npages; p++) {
			uint64_t w = r->first + p;
			uint8_t *page = side_page(r, start_private, p);

			H.priv[w] = start_private;
			H.tag[0][w] = H.tag[1][w] = 0;
			H.pend[0][w] = H.pend[1][w] = 0;
			if (page) {
				H.tag[start_private][w] = new_tag(start_private, w);
				write_tag(page, H.tag[start_private][w]);
			}
		}
		ret = fake_kvm_add_region(&H.fake, H.c, &reg);
		r->present = ret == 0;
		if (!r->present) {
			/* only a VM without private memory refuses a private region */
			CHECK(start_private && (c1 & 0x80) && ret == -EINVAL, "add_region R%d: %d",
			      i, ret);
			for (uint64_t p = 0; p < r->npages; p++)
				H.priv[r->first + p] = 0;
			fallocate(r->private_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				  (off_t)r->size);
		}
	}
	/* R2's shared huge pages: all held when it starts shared */
	if (R[2].shared_huge) {
		H.nheld = (R[2].shared_offset + R[2].size + HPG - 1) / HPG;
		for (uint64_t h = 0; h < H.nheld; h++)
			H.held[h] = R[2].present && !(c0 & 0x08) && h >= R[2].shared_offset / HPG;
	}
	begin_op();
	end_op();
}

void run_op(struct rd *in)
{
	uint8_t op = u8(in);

	begin_op();
	trace("op %u%s", op % 20, H.broken ? " (broken)" : "");
	switch (op % 20) {
	case 0:
	case 1:
	case 2: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);

		op_map_gpa_range(gpa, np, attrs, false, 0, 0);
		break;
	}
	case 3:
	case 4: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);
		uint64_t garbage = u64(in);

		op_map_gpa_range(gpa, np, attrs, true, op & 1 ? 0 : garbage, garbage);
		break;
	}
	case 5:
	case 6: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);
		uint64_t flags = f % 4 == 0 ? u64(in) : (f & 1 ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0);

		op_memory_fault(gpa, size, flags);
		break;
	}
	case 7: {
		uint32_t reason = u8(in) % 4 ? u8(in) % 48 : (uint32_t)u64(in);
		uint64_t nr = u8(in) % 2 ? u8(in) : u64(in);

		op_other_exit(reason, nr, in);
		break;
	}
	case 8:
	case 9: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);

		op_convert(gpa, size, u8(in) & 1);
		break;
	}
	case 10:
	case 11: {
		struct fz_batch b;
		uint8_t f = u8(in);
		unsigned flags = f % 8 == 0 ? (unsigned)u8(in) : (f & 1 ? CVMCONV_BATCH_GUEST : 0);

		memset(&b, 0, sizeof(b));
		b.n = u8(in) % 13;
		if ((f & 6) == 6) {
			/* the shape of an SEV-SNP page state change buffer: small
			 * ascending entries with small gaps, each one direction */
			uint64_t at = pick_gpa(in) & ~(PG - 1);

			for (size_t i = 0; i < b.n; i++) {
				uint8_t s = u8(in);

				at += (s & 3) * PG;
				b.r[i].gpa = at;
				b.r[i].size = (1 + (s >> 2 & 7)) * PG;
				b.r[i].to_private = s >> 5 & 1;
				at += b.r[i].size;
			}
		}
		for (size_t i = 0; (f & 6) != 6 && i < b.n; i++) {
			uint8_t s = u8(in);

			/* often: continue where the previous entry ended */
			b.r[i].gpa =
				(i && s % 3 == 0) ? b.r[i - 1].gpa + b.r[i - 1].size : pick_gpa(in);
			b.r[i].size = pick_size(in);
			b.r[i].to_private = s & 0x10 ? (s & 0x20 ? (uint32_t)u8(in) : 1) : 0;
			b.r[i].reserved = (s & 0xc0) == 0xc0 ? u8(in) : 0;
		}
		op_batch(&b, flags, f == 0xff);
		break;
	}
	case 12:
		op_flush();
		break;
	case 13: {
		uint8_t s = u8(in);

		H.attr_fail_mask = s % 4 == 0 ? (uint32_t)u16(in) : 1u << (s % 4);
		H.attr_errno = errnos[u8(in) % 6];
		trace("attribute failures 0x%x errno %d", H.attr_fail_mask, H.attr_errno);
		break;
	}
	case 14: {
		uint8_t s = u8(in);

		H.punch_fail_mask = s % 4 == 0 ? (uint32_t)u16(in) : 1u << (s % 4);
		H.punch_errno = errnos[u8(in) % 6];
		trace("punch failures 0x%x errno %d", H.punch_fail_mask, H.punch_errno);
		break;
	}
	case 15:
		H.attr_fail_mask = H.punch_fail_mask = 0;
		H.veto_armed = 0;
		break;
	case 16:
		H.veto_armed = 1 + u8(in) % 3;
		break;
	case 17: {
		uint8_t f = u8(in);

		if (f & 1) {
			op_is_private(pick_gpa(in));
		} else if ((f & 6) == 6) {
			op_replay_listener();
		} else {
			uint64_t gpa = pick_gpa(in), size = pick_size(in);

			op_for_each_range(gpa, size, f & 2 ? u8(in) % 8 : 0);
		}
		check_poll_fd();
		break;
	}
	case 18:
		op_stats_json(u16(in) % 1024);
		break;
	default: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);

		/* the VMM's own input: keep the tracker it allocates small */
		if (size > (1ULL << 36) && size <= GPA_LIMIT)
			size &= (1ULL << 36) - 1;
		op_add_region(gpa, size, f % 4 == 0 ? f : (f & 1 ? CVMCONV_REGION_PRIVATE : 0));
		break;
	}
	}
	end_op();
}
