#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-made seed inputs of fuzz/corpus/ (already committed; run
this only after changing the input encoding of fuzz_exits (fuzz_exits_input.c), whose reader
it mirrors). Usage: fuzz/seeds.py [OUTDIR]  (default: fuzz/corpus)."""
import os
import struct
import sys

# ---- fuzz_exits geometry (LLVMFuzzerInitialize), in window page indices ----
R0_FIRST, R0_PAGES = 16, 516   # R0 starts 8 KiB below a 2 MiB boundary
R1_FIRST, R1_PAGES = 532, 254
R2_FIRST, R2_PAGES = 1042, 1280
EXTENT0 = 18                   # first whole 2 MiB GPA extent (inside R0)

ERR = {"EINTR": 0, "EAGAIN": 1, "ENOMEM": 2, "EFAULT": 3, "EIO": 4, "EINVAL": 5}


def u16(v):
    return struct.pack("<H", v)


def u64(v):
    return struct.pack("<Q", v & (2**64 - 1))


# pick_gpa
def page(idx):            # a page of the model window (default case)
    return bytes([6, 0]) + u16(idx)


def edge(k, dpages=0):    # k: region k % 3, its end when (k // 3) is odd
    return bytes([1, dpages & 0xff, k])


def raw_gpa(v):
    return bytes([0, 0]) + u64(v)


# pick_npages
def npages(n):            # 1..2048
    return bytes([5, 0]) + u16(n - 1)


def region_npages(r):
    return bytes([3, 0, r])


def raw_npages(v):
    return bytes([0, 0]) + u64(v)


def size_pages(n):        # pick_size: n pages
    return bytes([2]) + npages(n)


PRIVATE, SHARED = bytes([1]), bytes([0])


def hint(to_private, h):
    return bytes([3 if to_private else 4, h])


def cfg(c0=0, c1=0):
    return bytes([c0, c1])


# ---- operations ----
def map_(gpa, np, attrs):
    return bytes([0]) + gpa + np + attrs


def map_run(gpa, np, attrs, garbage=0x1122334455667788):
    return bytes([3]) + gpa + np + attrs + u64(garbage)


def fault(gpa, size, private):
    return bytes([5]) + gpa + size + bytes([1 if private else 2])


def other_exit(reason, nr):
    return bytes([7, 1, reason, 1, nr]) + bytes(range(64))


def convert(gpa, size, private):
    return bytes([8]) + gpa + size + bytes([1 if private else 0])


def batch(guest, entries):
    out = bytes([10, 1 if guest else 2, len(entries)])
    for gpa, n, private in entries:
        s = 0x10 if private else 0x00
        s |= 1  # s % 3 != 0 for s = 1 or 0x11: an explicit gpa follows
        out += bytes([s]) + gpa + size_pages(n)
    return out


def psc_batch(guest, gpa, entries):
    """entries: (gap_pages 0-3, npages 1-8, private)"""
    out = bytes([10, 7 if guest else 6, len(entries)]) + gpa
    for gap, n, private in entries:
        out += bytes([gap | (n - 1) << 2 | (0x20 if private else 0)])
    return out


def flush():
    return bytes([12])


def fail_attr(mask, err):
    return bytes([13, 0]) + u16(mask) + bytes([ERR[err]])


def fail_punch(mask, err):
    return bytes([14, 0]) + u16(mask) + bytes([ERR[err]])


def clear():
    return bytes([15])


def veto(n=1):
    return bytes([16, n - 1])


def is_private(gpa):
    return bytes([17]) + gpa


def stats_json(n):
    return bytes([18]) + u16(n)


def add_region(gpa, size, flags=2):
    return bytes([19]) + gpa + size + bytes([flags])


SEEDS = {
    "basic": cfg(0x40) + map_(page(EXTENT0), npages(512), PRIVATE)
    + map_(page(EXTENT0 + 100), npages(1), SHARED)
    + convert(page(R0_FIRST + 500), size_pages(40), True) + flush(),
    "hugetlb": cfg() + convert(edge(2), bytes([2]) + region_npages(2), True)
    + map_(page(R2_FIRST + 300), npages(1), SHARED)
    + map_(page(R2_FIRST + 300), npages(1), PRIVATE)
    + map_(page(R2_FIRST + 10), npages(3), SHARED) + stats_json(600),
    "punch_fail_hva": cfg(0x04) + fail_punch(1, "EIO")
    + convert(page(R1_FIRST + 10), size_pages(20), True) + flush()
    + fail_punch(1, "EINTR") + map_(page(R1_FIRST + 12), npages(4), SHARED) + flush(),
    "rollback": cfg(0x40) + map_(page(EXTENT0 + 200), npages(1), PRIVATE)
    + fail_attr(2, "ENOMEM") + map_(page(EXTENT0), npages(512), PRIVATE)
    + is_private(page(EXTENT0 + 10)),
    "broken": cfg() + map_(page(EXTENT0 + 100), npages(1), PRIVATE)
    + map_(page(EXTENT0 + 300), npages(1), PRIVATE)
    + fail_attr(0b110, "EIO") + map_(page(EXTENT0), npages(512), PRIVATE)
    + map_(page(EXTENT0), npages(1), SHARED) + flush(),
    "exits": cfg() + other_exit(3, 11) + other_exit(39, 0) + other_exit(2, 12)
    + map_run(page(R1_FIRST), npages(16), PRIVATE, 0)
    + map_run(raw_gpa(2**52 - 4096), raw_npages(2), PRIVATE)
    + map_run(page(R0_FIRST + 1), raw_npages(2**64 - 1), bytes([6]) + u64(0x13)),
    "reject": cfg(0x02, 0x0c) + map_(page(R0_FIRST), npages(3), PRIVATE)
    + map_(page(EXTENT0), npages(512), PRIVATE)
    + map_(page(EXTENT0), npages(512), hint(False, 1))
    + map_(page(R2_FIRST + 1), npages(7), PRIVATE)
    + add_region(page(R0_FIRST), size_pages(4)),
    "batch": cfg(0x40) + batch(True, [(page(R0_FIRST + 510), 6, True),
                                      (page(R1_FIRST), 10, True),
                                      (page(R1_FIRST + 10), 3, False),
                                      (page(R2_FIRST), 512, True)])
    + batch(False, [(page(R1_FIRST + 100), 1, True), (page(R1_FIRST + 99), 1, False)]),
    "psc": cfg(0x40) + psc_batch(True, page(R0_FIRST + 40), [(1, 1, True), (1, 2, True),
                                                             (2, 1, True), (0, 3, False)])
    + psc_batch(False, page(R2_FIRST + 500), [(1, 8, True), (3, 1, False), (1, 1, True)]),
    "faults_private_r2": cfg(0x08, 0x00) + fault(page(R2_FIRST + 256), size_pages(512), False)
    + fault(page(R2_FIRST + 256), size_pages(1), True)
    + fault(raw_gpa(0), size_pages(1), True)
    + fault(page(R2_FIRST + 5), bytes([0]) + u64(0x1800), False),
    "veto": cfg(0x40) + veto() + map_(page(R0_FIRST + 2), npages(20), PRIVATE)
    + veto() + convert(page(R0_FIRST), size_pages(2), True)
    + veto() + fault(page(R0_FIRST), size_pages(2), True)
    + map_(page(R0_FIRST + 2), npages(20), PRIVATE),
    "default_vm": cfg(0x08, 0x80) + convert(page(R0_FIRST), size_pages(4), True)
    + map_(page(R1_FIRST), npages(4), PRIVATE),
    # R1 in place (0x10): a run across R0 and R1, a busy guest_memfd page
    # that outlasts the retries (5 EAGAINs), one the retries absorb, and the
    # in-place piece failing after the VM-wide piece (which is set back)
    "inplace": cfg(0x50) + map_(page(R0_FIRST + 500), npages(40), PRIVATE)
    + map_(page(R1_FIRST + 10), npages(20), SHARED)
    + fail_attr(0b11111, "EAGAIN") + map_(page(R1_FIRST), npages(8), PRIVATE)
    + fail_attr(0b1, "EAGAIN") + map_(page(R1_FIRST), npages(8), PRIVATE)
    + fail_attr(0b10, "EIO") + map_(page(R0_FIRST + 480), npages(60), SHARED)
    + batch(True, [(page(R0_FIRST + 2), 4, True), (page(R1_FIRST + 100), 3, True)])
    + fault(page(R1_FIRST + 200), size_pages(2), True) + flush(),
    # the set-back of the VM-wide piece fails too: broken
    "inplace_broken": cfg(0x10) + fail_attr(0b110, "ENOMEM")
    + map_(page(R0_FIRST + 510), npages(30), PRIVATE)
    + map_(page(R1_FIRST), npages(1), PRIVATE),
}

# ---- fuzz_exits_fast (its own encoding: fuzz/fuzz_exits_fast_input.c run_op) ----
# window page indices: R0 16+516, R1 532+254, gap, R2 1042+1152 (its whole
# huge page: R2 pages 256..767); the first whole 2 MiB GPA extent at 18
F_R0, F_R1, F_R2, F_EXT0 = 16, 532, 1042, 18
F_ERR_ATTR = {"EINTR": 0, "EAGAIN": 1, "ENOMEM": 2, "EFAULT": 3, "EIO": 4, "EINVAL": 5}
F_ERR_PUNCH = {"EINTR": 0, "EIO": 1, "ENOMEM": 2, "EINVAL": 3, "EPERM": 4, "EBUSY": 5}
F_ERR_ALLOC = {"ENOSPC": 0, "ENOMEM": 1, "EINTR": 2, "EIO": 3}


def f_cfg(c0=0, c1=0, c2=0):
    return bytes([c0, c1, c2])


def f_page(idx):
    return bytes([6, 0]) + u16(idx)


def f_np(n):
    return bytes([6]) + u16(n - 1)


def f_size(n):
    return bytes([2]) + f_np(n)


F_PRIV, F_SHARED = bytes([0x0b]), bytes([0x03])


def f_map(gpa, n, attrs, via_run=False):
    return bytes([3 if via_run else 0]) + gpa + f_np(n) + attrs


def f_fault(gpa, n, private):
    return bytes([5]) + gpa + f_size(n) + bytes([1 if private else 2])


def f_convert(gpa, n, private):
    return bytes([8]) + gpa + f_size(n) + bytes([1 if private else 0])


def f_psc(guest, gpa, entries):
    """entries: (gap_pages 0-3, npages 1-8, private)"""
    out = bytes([10, 3 if guest else 2, len(entries)]) + gpa
    for gap, n, private in entries:
        out += bytes([gap | (n - 1) << 2 | (0x20 if private else 0)])
    return out


def f_mask(nth=None, mask=None):  # the nth next call (1-3), or a 16-bit mask
    return bytes([nth]) if nth else bytes([0]) + u16(mask)


def f_fail_attr(err, nth=None, mask=None):
    return bytes([13, F_ERR_ATTR[err]]) + f_mask(nth, mask)


def f_storm(calls, eagain=False):  # 999 are survived, 1000 are not
    return bytes([13, 0xf0 | (calls == 1000) | (2 if eagain else 0)])


def f_fail_punch(err, nth=None, mask=None):
    return bytes([14, F_ERR_PUNCH[err]]) + f_mask(nth, mask)


def f_fail_alloc(err, nth=None, mask=None):
    return bytes([15, F_ERR_ALLOC[err]]) + f_mask(nth, mask)


def f_pool(n):
    return bytes([15, 0x80 | n])


F_FLUSH, F_REPLAY, F_CLEAR = bytes([12]), bytes([17]), bytes([18])


def f_veto(n=1):
    return bytes([16, n - 1])


FAST_SEEDS = {
    "basic": f_cfg(0x80) + f_map(f_page(F_EXT0), 512, F_PRIV)
    + f_map(f_page(F_EXT0 + 100), 1, F_SHARED, True)
    + f_convert(f_page(F_R0 + 500), 40, True) + F_FLUSH + F_REPLAY,
    "alloc_huge": f_cfg(0x10, 0x20) + f_convert(f_page(F_R2 + 256), 512, False)
    + f_pool(2) + f_convert(f_page(F_R2 + 200), 600, False)
    + f_fail_attr("ENOMEM", 1) + f_convert(f_page(F_R2 + 900), 200, False)
    + f_fail_alloc("EINTR", 1) + f_map(f_page(F_R2 + 1000), 4, F_SHARED)
    + f_convert(f_page(F_R2), 1152, True) + F_FLUSH,
    "alloc_4k_defer": f_cfg(0x60, 0x10, 0x80) + f_convert(f_page(F_R0), 516, True)
    + f_fail_alloc("ENOMEM", 2) + f_psc(True, f_page(F_R0 + 3), [(1, 2, False), (1, 3, False)])
    + f_fail_punch("EIO", mask=0xffff) + F_FLUSH + F_CLEAR + F_FLUSH,
    "hva_shared": f_cfg(0x20, 0x07) + f_convert(f_page(F_R1 + 10), 20, True) + F_FLUSH
    + f_fail_punch("EINTR", 1) + f_map(f_page(F_R1 + 12), 4, F_SHARED) + F_FLUSH,
    "hva_private": f_cfg(0x00, 0x0f) + f_fail_punch("EIO", 1)
    + f_convert(f_page(F_R1), 254, True) + F_FLUSH + f_convert(f_page(F_R1 + 1), 3, False),
    "broken": f_cfg(0x80) + f_map(f_page(F_EXT0 + 100), 1, F_PRIV)
    + f_map(f_page(F_EXT0 + 300), 1, F_PRIV) + f_fail_attr("EIO", mask=0b110)
    + f_map(f_page(F_EXT0), 512, F_PRIV) + f_map(f_page(F_EXT0), 1, F_SHARED) + F_FLUSH,
    "storms": f_cfg() + f_storm(999) + f_map(f_page(F_EXT0), 8, F_PRIV)
    + f_storm(1000) + f_map(f_page(F_EXT0), 8, F_SHARED)
    + f_storm(1000, True) + f_convert(f_page(F_R2), 8, True),
    "veto_psc": f_cfg(0x80, 0x40) + f_veto() + f_psc(True, f_page(F_R0 + 40), [(1, 1, True), (1, 2, True)])
    + f_psc(False, f_page(F_R2 + 500), [(1, 8, True), (3, 1, False), (1, 1, True)])
    + f_fault(f_page(F_R2 + 256), 512, True) + f_fault(f_page(F_R2 + 256), 512, True),
    "probe_none": f_cfg(0, 0xe0, 3),
    "probe_enotty": f_cfg(0, 0xe0, 4),
    "probe_eio": f_cfg(0, 0xe0, 5),
    "probe_eintr": f_cfg(0, 0xe0, 1) + f_map(f_page(F_R1), 4, F_PRIV),
}


TRACE_SEEDS = {
    "map": b"map 0x40000000 512 0x11\n",
    "fault": b"fault 0x40200000 0x1000 private\n",
    "convert": b"convert 1073741824 0x200000 shared # host side\n",
    "ftrace": b" qemu-system-x86-1234  [002] .... 123.456789: kvm_hypercall: "
    b"nr 0xc a0 0x40000000 a1 0x200 a2 0x11 a3 0x0\n",
    "perf": b"qemu-kvm  4321 [000]    55.000001: kvm:kvm_hypercall: "
    b"nr 0xc a0 0x100000 a1 0x1 a2 0x0 a3 0x0",
    "comment": b"   # a comment\r\n",
    "malformed": b"map 0x1g 2",
    "overflow": b"fault 0x10000000000000000 1 shared",
    "mem": b"64MiB@0x40000000",
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    for target, seeds in (("fuzz_exits", SEEDS), ("fuzz_exits_fast", FAST_SEEDS),
                          ("fuzz_trace_parse", TRACE_SEEDS)):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
