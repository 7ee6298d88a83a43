/* SPDX-License-Identifier: MIT */
/*
 * USDT probes (provider "cvmconv") for bpftrace, perf and SystemTap: a nop
 * in the code and a note in the ELF file (<sys/sdt.h>, Debian's
 * systemtap-sdt-dev), used when the build found the header; without it
 * every probe compiles to nothing (-DCVMCONV_USDT=OFF does the same).
 * docs/tracing.md lists them with their arguments. Arguments must be cheap:
 * they are computed whether or not anyone traces (the probe names their
 * registers or memory), so the _done probes carry only the result (their
 * range is in the probe before, on the same thread): that kept the 4 KiB
 * exit at 1,000 instructions instead of 1,014 (docs/performance.md).
 * Semaphores (arguments computed only while traced) were tried and cost
 * more here: a volatile load and a branch per probe.
 */
#ifndef CVMCONV_PROBES_H
#define CVMCONV_PROBES_H

#ifdef CVMCONV_HAVE_SDT
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>
#define PROBE(name, ...) STAP_PROBEV(cvmconv, name, __VA_ARGS__)
#else
#define PROBE(name, ...) \
	do {             \
	} while (0)
#endif

#endif
