/* SPDX-License-Identifier: MIT */
/*
 * cvmconv_get_poll_fd(): readable exactly while deferred or failed punches
 * wait, drained by the flush that leaves nothing pending; and an event loop
 * thread (epoll on the fd, cvmconv_flush() when it fires) that keeps up with
 * vCPU threads converting in CVMCONV_DEFER_PUNCH mode, so that the vCPU
 * threads themselves punch nothing below the documented bound.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "conv_util.h" /* stats_of() */

#define BASE (2 * SZ_1G)
#define RSIZE (16 * SZ_2M)

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

struct env {
	struct fake_kvm f;
	struct cvmconv *c;
	int fds[2];
};

static void open_env(struct env *e, uint32_t flags)
{
	struct cvmconv_config cfg;

	fake_kvm_init(&e->f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&e->f, CVMCONV_UNALIGNED_ALLOW);
	cfg.flags = flags;
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	e->fds[0] = cvmconv_memfd_create("poll-shared", RSIZE, SZ_4K);
	e->fds[1] = test_private_fd(RSIZE);
	assert_true(e->fds[0] >= 0 && e->fds[1] >= 0);
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = BASE,
				    .size = RSIZE,
				    .private_fd = e->fds[1],
				    .shared_fd = e->fds[0],
				    .unaligned = -1 };

	assert_int_equal(fake_kvm_add_region(&e->f, e->c, &r), 0);
}

static void close_env(struct env *e)
{
	cvmconv_destroy(e->c);
	close(e->fds[0]);
	close(e->fds[1]);
	fake_kvm_fini(&e->f);
}

static uint64_t pending(struct cvmconv *c)
{
	return stats_of(c).punch_pending_bytes;
}

static void test_poll_fd_states(void **state)
{
	struct env e;
	int fd;

	(void)state;
	assert_int_equal(cvmconv_get_poll_fd(NULL), -EINVAL);
	/* deferred punches */
	open_env(&e, CVMCONV_DEFER_PUNCH);
	fd = cvmconv_get_poll_fd(e.c);
	assert_true(fd >= 0);
	assert_false(readable(fd));
	assert_int_equal(cvmconv_convert(e.c, BASE, SZ_4K, true), 0);
	assert_true(pending(e.c) > 0);
	assert_true(readable(fd));
	assert_int_equal(cvmconv_convert(e.c, BASE + SZ_2M, SZ_4K, true), 0);
	assert_true(readable(fd));
	assert_int_equal(cvmconv_flush(e.c), 0);
	assert_int_equal(pending(e.c), 0);
	assert_false(readable(fd));
	/* there and back before the flush: the shared page is live again, its
	 * private page waits now; still readable until the flush */
	assert_int_equal(cvmconv_convert(e.c, BASE + SZ_4K, SZ_4K, true), 0);
	assert_true(readable(fd));
	assert_int_equal(cvmconv_convert(e.c, BASE + SZ_4K, SZ_4K, false), 0);
	assert_int_equal(pending(e.c), SZ_4K);
	assert_true(readable(fd));
	assert_int_equal(cvmconv_flush(e.c), 0);
	assert_false(readable(fd));
	close_env(&e);

	/* failed punches, default mode: readable until a flush succeeds */
	open_env(&e, 0);
	fd = cvmconv_get_poll_fd(e.c);
	assert_false(readable(fd));
	fake_kvm_fail_nth(&e.f, FAKE_CALL_PUNCH, 1, EIO);
	assert_int_equal(cvmconv_convert(e.c, BASE, SZ_4K, true), 0);
	assert_true(readable(fd));
	fake_kvm_fail_nth(&e.f, FAKE_CALL_PUNCH, 1, EIO);
	assert_int_equal(cvmconv_flush(e.c), -EIO);
	assert_true(readable(fd)); /* still pending */
	assert_int_equal(cvmconv_flush(e.c), 0);
	assert_false(readable(fd));
	/* removing a region with pending memory settles the count */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_PUNCH, 1, EIO);
	assert_int_equal(cvmconv_convert(e.c, BASE + SZ_4K, SZ_4K, true), 0);
	assert_true(readable(fd));
	assert_int_equal(cvmconv_remove_region(e.c, BASE), 0);
	assert_int_equal(cvmconv_flush(e.c), 0);
	assert_false(readable(fd));
	close_env(&e);
}

/* ---- an event loop beside vCPU threads ---- */

struct loop {
	struct cvmconv *c;
	int epfd, stop_fd;
	uint64_t wakeups, flushes;
};

static void *event_loop(void *p)
{
	struct loop *l = p;

	for (;;) {
		struct epoll_event ev[2];
		int n = epoll_wait(l->epfd, ev, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			abort();
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == l->stop_fd)
				return NULL;
			l->wakeups++;
			if (cvmconv_flush(l->c) == 0)
				l->flushes++;
		}
	}
}

struct vcpu {
	struct cvmconv *c;
	unsigned id;
	uint64_t seed, requests;
};

static void *vcpu_thread(void *p)
{
	struct vcpu *v = p;

	for (unsigned i = 0; i < 3000; i++) {
		uint64_t page;

		v->seed = v->seed * 6364136223846793005ULL + 1442695040888963407ULL;
		/* each thread its own half of the region: one page at a time */
		page = v->id * (RSIZE / SZ_4K / 2) + (v->seed >> 33) % (RSIZE / SZ_4K / 2);
		if (cvmconv_convert(v->c, BASE + page * SZ_4K, SZ_4K, (v->seed >> 60) & 1))
			abort();
		v->requests++;
	}
	return NULL;
}

static void test_poll_fd_event_loop(void **state)
{
	struct env e;
	struct loop l;
	struct vcpu v[2];
	pthread_t lt, vt[2];
	struct epoll_event ev = { .events = EPOLLIN };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t punches_before, one = 1;

	(void)state;
	open_env(&e, CVMCONV_DEFER_PUNCH);
	l = (struct loop){ .c = e.c, .epfd = epoll_create1(EPOLL_CLOEXEC) };
	l.stop_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(l.epfd >= 0 && l.stop_fd >= 0);
	ev.data.fd = cvmconv_get_poll_fd(e.c);
	assert_int_equal(epoll_ctl(l.epfd, EPOLL_CTL_ADD, ev.data.fd, &ev), 0);
	ev.data.fd = l.stop_fd;
	assert_int_equal(epoll_ctl(l.epfd, EPOLL_CTL_ADD, l.stop_fd, &ev), 0);
	assert_int_equal(pthread_create(&lt, NULL, event_loop, &l), 0);
	punches_before = e.f.calls[FAKE_CALL_PUNCH];
	for (unsigned i = 0; i < 2; i++) {
		v[i] = (struct vcpu){ e.c, i, 100 + i, 0 };
		assert_int_equal(pthread_create(&vt[i], NULL, vcpu_thread, &v[i]), 0);
	}
	for (unsigned i = 0; i < 2; i++)
		pthread_join(vt[i], NULL);
	/* the loop catches up with the last conversions */
	for (int spin = 0; spin < 2000 && pending(e.c); spin++)
		usleep(1000);
	assert_int_equal(pending(e.c), 0);
	assert_int_equal(write(l.stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(lt, NULL);
	assert_false(readable(cvmconv_get_poll_fd(e.c)));
	assert_int_equal(cvmconv_get_stats(e.c, &st), 0);
	print_message("event loop: %llu wake-ups, %llu flushes for %llu + %llu conversions, %llu "
		      "punches\n",
		      (unsigned long long)l.wakeups, (unsigned long long)l.flushes,
		      (unsigned long long)v[0].requests, (unsigned long long)v[1].requests,
		      (unsigned long long)(e.f.calls[FAKE_CALL_PUNCH] - punches_before));
	assert_true(l.wakeups > 0 && l.flushes > 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, BASE, RSIZE), 0);
	close(l.stop_fd);
	close(l.epfd);
	close_env(&e);
}

/* ---- a flush punching while vCPU threads make its memory live ---- */

/* cvmconv_flush() punches without the region lock; a conversion that makes
 * memory it is punching live must wait for the punch. The punch op here is
 * slow and asks the oracle only after its delay: a conversion that slipped
 * in meanwhile (attributes changed, the pages live) is a live punch. */
static int slow_punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	usleep(200);
	return fake_kvm_ops.punch(opaque, fd, offset, len);
}

struct racer {
	struct cvmconv *c;
	_Atomic bool stop;
	uint64_t flushes;
};

static void *flusher(void *p)
{
	struct racer *r = p;

	while (!atomic_load(&r->stop)) {
		if (cvmconv_flush(r->c))
			abort();
		r->flushes++;
	}
	return NULL;
}

static void test_flush_inflight_waits(void **state)
{
	static struct cvmconv_ops ops;
	struct env e;
	struct racer r;
	pthread_t t;
	uint64_t seed = 7;
	struct cvmconv_stats st = { .sz = sizeof(st) };

	(void)state;
	fake_kvm_init(&e.f, FAKE_VM_SW_PROTECTED);
	e.f.abort_on_live = false; /* counted: the assertion names it */
	struct cvmconv_config cfg = fake_kvm_config(&e.f, CVMCONV_UNALIGNED_ALLOW);

	ops = fake_kvm_ops;
	ops.punch = slow_punch;
	cfg.ops = &ops;
	cfg.flags = CVMCONV_DEFER_PUNCH;
	assert_int_equal(cvmconv_create(&cfg, &e.c), 0);
	e.fds[0] = cvmconv_memfd_create("inflight-shared", RSIZE, SZ_4K);
	e.fds[1] = test_private_fd(RSIZE);
	assert_true(e.fds[0] >= 0 && e.fds[1] >= 0);
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = BASE,
				      .size = RSIZE,
				      .private_fd = e.fds[1],
				      .shared_fd = e.fds[0],
				      .unaligned = -1 };

	assert_int_equal(fake_kvm_add_region(&e.f, e.c, &reg), 0);
	r = (struct racer){ .c = e.c };
	assert_int_equal(pthread_create(&t, NULL, flusher, &r), 0);
	/* a vCPU converting the same few ranges back and forth: what it made
	 * stale a moment ago is what the flush is punching when it converts
	 * it back */
	for (unsigned i = 0; i < 4000; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t page = (seed >> 33) % 64, n = 1 + (seed >> 50) % 16;

		assert_int_equal(
			cvmconv_convert(e.c, BASE + page * SZ_4K, n * SZ_4K, (seed >> 62) & 1), 0);
		if (i % 4 == 0)
			usleep(50); /* the guest runs: the flush gets memory to punch */
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(cvmconv_flush(e.c), 0);
	assert_int_equal(cvmconv_get_stats(e.c, &st), 0);
	print_message("%llu flushes, %llu punches beside 4000 conversions\n",
		      (unsigned long long)r.flushes, (unsigned long long)st.punches);
	assert_true(st.punches > 100);
	assert_int_equal(e.f.live_punches, 0);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, BASE, RSIZE), 0);
	close_env(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poll_fd_states),
		cmocka_unit_test(test_poll_fd_event_loop),
		cmocka_unit_test(test_flush_inflight_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
