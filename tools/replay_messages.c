/* SPDX-License-Identifier: MIT */
/* cvmconv-replay's messages: the progress line and per-kind message budgets
 * (see replay.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "replay.h"

bool progress_enabled;
static bool progress_shown;
struct timespec progress_last;

/* ---- messages ---- */

void clear_progress(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = false;
	}
}

void note(const char *fmt, ...)
{
	va_list ap;

	clear_progress();
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* True when one more message of this kind may be printed. */
bool spend(struct budget *b, const char *kind)
{
	if (opt.out.verbose || b->used < MESSAGES_PER_KIND) {
		b->used++;
		return true;
	}
	if (!b->announced) {
		note("cvmconv-replay: further %s not shown (-v shows all)", kind);
		b->announced = true;
	}
	return false;
}

double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

void progress(const char *what, uint64_t line, uint64_t done, uint64_t total)
{
	if (!progress_enabled || (line & 1023) || seconds_since(&progress_last) < 0.5)
		return;
	clock_gettime(CLOCK_MONOTONIC, &progress_last);
	if (total)
		fprintf(stderr, "\r\033[Kcvmconv-replay: %s line %" PRIu64 " (%.0f%%)", what, line,
			100.0 * (double)done / (double)total);
	else
		fprintf(stderr, "\r\033[Kcvmconv-replay: %s line %" PRIu64, what, line);
	progress_shown = true;
}
