/* SPDX-License-Identifier: MIT */
/*
 * Logging through the VMM's callback. Anything a guest can trigger goes
 * through log_guest(), which lets at most LOG_BURST lines out per
 * LOG_WINDOW_NS and counts the rest, so a guest cannot flood the host log
 * or make the VMM spend time formatting. Silent when no callback is set.
 */
#include <stdio.h>
#include <syslog.h>

#include "internal.h"

#define LOG_BURST 10
#define LOG_WINDOW_NS 1000000000LL

static void emit(struct cvmconv *c, int level, const char *fmt, va_list ap)
{
	char msg[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	c->log_fn(c->log_opaque, level, msg);
}

static void emit_fmt(struct cvmconv *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void emit_fmt(struct cvmconv *c, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(c, level, fmt, ap);
	va_end(ap);
}

void log_msg(struct cvmconv *c, int level, const char *fmt, ...)
{
	va_list ap;

	if (!c->log_fn)
		return;
	pthread_mutex_lock(&c->log_lock);
	va_start(ap, fmt);
	emit(c, level, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&c->log_lock);
}

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

void log_guest(struct cvmconv *c, int level, const char *fmt, ...)
{
	struct timespec now;
	va_list ap;

	if (!c->log_fn)
		return;
	pthread_mutex_lock(&c->log_lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ns_between(&c->rl.window_start, &now) >= LOG_WINDOW_NS) {
		uint64_t dropped = c->rl.suppressed - c->rl.suppressed_reported;

		c->rl.window_start = now;
		c->rl.in_window = 0;
		if (dropped) {
			c->rl.suppressed_reported = c->rl.suppressed;
			c->rl.in_window++;
			emit_fmt(c, LOG_WARNING, "%llu guest-triggered messages suppressed",
				 (unsigned long long)dropped);
		}
	}
	if (c->rl.in_window >= LOG_BURST) {
		c->rl.suppressed++;
		pthread_mutex_unlock(&c->log_lock);
		return;
	}
	c->rl.in_window++;
	va_start(ap, fmt);
	emit(c, level, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&c->log_lock);
}
