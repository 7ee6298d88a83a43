/* SPDX-License-Identifier: MIT */
/* What the benchmarks print about where they run (see perf.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "host_engine.h"
#include "kernel_accounting.h"
#include "perf.h"
#include "private_backing.h"

long perf_hugepages_free(void)
{
	return host_engine_hugepages_free();
}

const char *perf_library_path(void)
{
	static char exe[512];
	Dl_info info;
	ssize_t n;

	if (!dladdr((void *)cvmconv_version, &info) || !info.dli_fname)
		return "(unknown)";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		if (!strcmp(exe, info.dli_fname))
			return "(linked statically)";
	}
	return info.dli_fname;
}

void perf_print_machine(FILE *f)
{
	char line[256], model[128] = "?";
	FILE *c = fopen("/proc/cpuinfo", "re");
	struct utsname u;
	long mem_kb;

	if (c) {
		while (fgets(line, sizeof(line), c))
			if (sscanf(line, "model name : %127[^\n]", model) == 1)
				break;
		fclose(c);
	}
	mem_kb = meminfo_count("MemTotal:");
	uname(&u);
	fprintf(f, "machine: %s, %ld CPUs, %ld GiB RAM, Linux %s\n", model,
		sysconf(_SC_NPROCESSORS_ONLN), (mem_kb + (1 << 19)) >> 20, u.release);
	c = fopen("/proc/loadavg", "re");
	if (c) {
		if (fgets(line, sizeof(line), c))
			fprintf(f, "load average: %s", line);
		fclose(c);
	}
	fprintf(f, "library: cvmconv %s, %s\n", cvmconv_version(), perf_library_path());
	fprintf(f, "private side: %s\n", private_backing_name());
}
