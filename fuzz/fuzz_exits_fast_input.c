/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: the operation dispatch and the per-input configuration
 * (the values themselves: fuzz_exits_fast_picks.c). Its own encoding,
 * mirrored by fuzz/seeds.py. */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

static const int attr_errnos[] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };
static const int punch_errnos[] = { EINTR, EIO, ENOMEM, EINVAL, EPERM, EBUSY };
static const int alloc_errnos[] = { ENOSPC, ENOMEM, EINTR, EIO };

void run_op(struct rd *in)
{
	uint8_t op = u8(in);

	begin_op();
	switch (op % 20) {
	case 0:
	case 1:
	case 2:
	case 3:
	case 4: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);

		op_map(gpa, np, attrs, op % 20 >= 3, op % 20 == 4 ? u64(in) : 0);
		break;
	}
	case 5:
	case 6: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);

		op_fault(gpa, size, f % 8 == 0 ? u64(in) : (f & 1) * KVM_MEMORY_EXIT_FLAG_PRIVATE);
		break;
	}
	case 7:
		op_other_exit(in);
		break;
	case 8:
	case 9: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);

		op_convert(gpa, size, u8(in) & 1);
		break;
	}
	case 10:
	case 11:
		op_batch(in);
		break;
	case 12:
		op_flush();
		break;
	case 13: {
		uint8_t s = u8(in);

		if (s >= 0xf0) { /* a signal storm: 999 calls are survived, 1000 are not */
			H.storm = RETRY_MAX - 1 + (s & 1);
			H.storm_errno = s & 2 ? EAGAIN : EINTR;
		} else {
			H.attr_mask = pick_mask(in);
			H.attr_errno = attr_errnos[s % ARRAY_LEN(attr_errnos)];
		}
		break;
	}
	case 14: {
		uint8_t s = u8(in);

		H.punch_mask = pick_mask(in);
		H.punch_errno = punch_errnos[s % ARRAY_LEN(punch_errnos)];
		break;
	}
	case 15: {
		uint8_t s = u8(in);

		if (s & 0x80) {
			H.pool_free = s & 3;
		} else {
			H.alloc_mask = pick_mask(in);
			H.alloc_errno = alloc_errnos[s % ARRAY_LEN(alloc_errnos)];
		}
		break;
	}
	case 16:
		H.veto_armed = 1 + u8(in) % 3;
		break;
	case 17:
		op_replay();
		break;
	case 18:
		H.attr_mask = H.punch_mask = H.alloc_mask = 0;
		H.storm = 0;
		H.veto_armed = 0;
		break;
	default:
		op_query(pick_gpa(in));
		break;
	}
	end_op();
}

/* ---- one input ---- */

int setup_input(struct rd *in)
{
	uint8_t c0 = u8(in), c1 = u8(in), c2 = u8(in);
	static const uint64_t granules[4] = { 0, PG, 1ULL << 30, 64 * 1024 };
	static const enum probe_kind probes[8] = { PROBE_OK,	PROBE_EINTR,  PROBE_EXTRA,
						   PROBE_NONE,	PROBE_ENOTTY, PROBE_EIO,
						   PROBE_EINTR, PROBE_OK };
	struct cvmconv_config cfg = { .sz = sizeof(cfg) };
	bool r2_private = c0 & 0x10;
	int ret, want;

	memset(&H, 0, sizeof(H));
	H.policy = (enum cvmconv_unaligned)((c0 & 3) % 3);
	H.granule = granules[(c0 >> 2) & 3];
	H.defer = c0 & 0x20;
	H.listener = (c0 >> 6) % 3;
	H.probe = (c1 & 0xe0) == 0xe0 ? probes[c2 & 7] : PROBE_OK;
	H.pool_free = (c2 >> 3) & 3;
	fake_kvm_init(&H.fake, FAKE_VM_SW_PROTECTED);

	cfg.vm_fd = vm_fd;
	cfg.granule = H.granule;
	cfg.unaligned = H.policy;
	cfg.log = c2 & 0x80 ? fz_log : NULL;
	cfg.flags = H.defer ? CVMCONV_DEFER_PUNCH : 0;
	ret = cvmconv_create(&cfg, &H.c);
	want = H.probe == PROBE_EIO				  ? -EIO
	       : H.probe == PROBE_NONE || H.probe == PROBE_ENOTTY ? -EOPNOTSUPP
								  : 0;
	CHECK(ret == want, "create with probe %d: %d", H.probe, ret);
	if (ret)
		return ret;
	if (!H.granule)
		H.granule = HPG;
	if (H.listener) {
		struct cvmconv_listener l = { sizeof(l), H.listener == 2 ? fz_before : NULL,
					      fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	}
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = r->gpa,
					      .size = r->npages * PG,
					      .private_fd = r->private_fd,
					      .shared_fd = r->shared_fd,
					      .shared_offset = r->shared_offset };

		r->kind = SH_FD;
		if (i == 1 && (c1 & 7) == 7)
			r->kind = c1 & 8 ? SH_HVA_PRIVATE : SH_HVA_SHARED;
		r->alloc_shared = r->kind == SH_FD && (c1 >> (4 + (i == 2))) & 1 && i != 1;
		/* R1: any policy; R2: the context's or REJECT */
		r->policy = i == 0   ? -1
			    : i == 1 ? (int)((c2 >> 5) & 3) - 1
				     : (int)(c1 >> 6 & 1) * 3 - 1;
		if (r->kind != SH_FD) {
			reg.shared_fd = -1;
			reg.shared_offset = 0;
			reg.shared_hva = r->kind == SH_HVA_SHARED ? hva_shared : hva_private;
		}
		reg.flags = (r->alloc_shared ? CVMCONV_REGION_ALLOC_SHARED : 0) |
			    (i == 2 && r2_private ? CVMCONV_REGION_PRIVATE : 0);
		reg.unaligned = r->policy;
		ret = cvmconv_add_region(H.c, &reg);
		CHECK(ret == 0, "add_region R%d: %d", i, ret);
		fake_kvm_bind_region(&H.fake, &reg);
	}
	/* live sides hold data; R2's shared huge pages are held where live */
	if (r2_private)
		bm_set(H.ref, R[2].first, R[2].first + R[2].npages, true);
	for (int w = 0; w < NW; w++) {
		uint64_t sh = regions_bm[w] & ~H.ref[w];

		H.alloc[1][w] = H.acct[1][w] = H.data[1][w] = H.ref[w];
		H.alloc[0][w] = H.acct[0][w] = sh & shared4k_bm[w];
		H.data[0][w] = sh;
	}
	for (unsigned h = 0; h < 3; h++)
		H.hp_alloc[h] = H.hp_acct[h] = R[2].huge && !r2_private;
	begin_op();
	end_op();
	return 0;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
