/* SPDX-License-Identifier: MIT */
#include "pool_hog.h"

#include "kernel_accounting.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HPAGE (2ULL << 20)
#define HOG_FILE (1ULL << 40) /* room for any pool */

struct hog_cmd {
	char op; /* 'L' leave, 'R' race, 'C' calm */
	long a, b;
};

static long free_huge_pages(void)
{
	return meminfo_count("HugePages_Free:");
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* The child's state: pages [0, held) of its memfd are allocated. */
struct hog {
	int fd;
	long held, peak, rounds;
};

static int take_one(struct hog *g)
{
	if (fallocate(g->fd, 0, (off_t)((uint64_t)g->held * HPAGE), (off_t)HPAGE))
		return -errno;
	g->held++;
	if (g->held > g->peak)
		g->peak = g->held;
	return 0;
}

static void give_one(struct hog *g)
{
	g->held--;
	fallocate(g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)((uint64_t)g->held * HPAGE), (off_t)HPAGE);
}

static __attribute__((noreturn)) void hog_main(int sock, int out)
{
	struct hog g = { .fd = memfd_create("pool-hog", MFD_CLOEXEC | MFD_HUGETLB) };
	bool racing = false, grabbing = false;
	unsigned grab_ms = 0, free_ms = 0;
	uint64_t phase_end = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (g.fd < 0 || ftruncate(g.fd, (off_t)HOG_FILE))
		_exit(1);
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		struct hog_cmd c;
		long answer[2];

		if (poll(&p, 1, racing ? 1 : -1) > 0) {
			if (read(sock, &c, sizeof(c)) != sizeof(c))
				_exit(0); /* the parent is gone */
			if (c.op == 'L') {
				long f = free_huge_pages();

				racing = false;
				while (f > c.a && take_one(&g) == 0)
					f = free_huge_pages();
				while (f < c.a && g.held) {
					give_one(&g);
					f = free_huge_pages();
				}
				answer[0] = g.held;
			} else if (c.op == 'R') {
				racing = true;
				grabbing = true;
				grab_ms = (unsigned)c.a;
				free_ms = (unsigned)c.b;
				phase_end = now_ms() + grab_ms;
				g.peak = g.held;
				g.rounds = 0;
				answer[0] = 0;
			} else {
				racing = false;
				while (g.held)
					give_one(&g);
				answer[0] = g.rounds;
			}
			answer[1] = g.peak;
			if (write(out, answer, sizeof(answer)) != sizeof(answer))
				_exit(0);
			continue;
		}
		if (!racing)
			continue;
		if (now_ms() >= phase_end) {
			grabbing = !grabbing;
			phase_end = now_ms() + (grabbing ? grab_ms : free_ms);
			if (!grabbing)
				while (g.held)
					give_one(&g);
		}
		if (grabbing) {
			long before = g.held;

			while (take_one(&g) == 0)
				;
			g.rounds += g.held > before;
		}
	}
}

int pool_hog_start(struct pool_hog *h)
{
	int to_child[2], to_parent[2];

	/* pipes, not a socketpair: the lab kernel has no AF_UNIX */
	if (pipe2(to_child, O_CLOEXEC))
		return -errno;
	if (pipe2(to_parent, O_CLOEXEC)) {
		int err = errno;

		close(to_child[0]);
		close(to_child[1]);
		return -err;
	}
	h->pid = fork();
	if (h->pid < 0) {
		int err = errno;

		close(to_child[0]);
		close(to_child[1]);
		close(to_parent[0]);
		close(to_parent[1]);
		return -err;
	}
	if (h->pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		hog_main(to_child[0], to_parent[1]);
	}
	close(to_child[0]);
	close(to_parent[1]);
	h->cmd = to_child[1];
	h->answer = to_parent[0];
	return 0;
}

static long hog_call(struct pool_hog *h, char op, long a, long b, long *second)
{
	struct hog_cmd c;
	long answer[2];

	memset(&c, 0, sizeof(c)); /* the padding goes down the pipe too */
	c.op = op;
	c.a = a;
	c.b = b;

	if (write(h->cmd, &c, sizeof(c)) != sizeof(c))
		return -EPIPE;
	if (read(h->answer, answer, sizeof(answer)) != sizeof(answer))
		return -EPIPE;
	if (second)
		*second = answer[1];
	return answer[0];
}

long pool_hog_leave(struct pool_hog *h, long leave)
{
	return hog_call(h, 'L', leave, 0, NULL);
}

int pool_hog_race(struct pool_hog *h, unsigned grab_ms, unsigned free_ms)
{
	long r = hog_call(h, 'R', grab_ms, free_ms, NULL);

	return r < 0 ? (int)r : 0;
}

long pool_hog_calm(struct pool_hog *h, long *peak)
{
	return hog_call(h, 'C', 0, 0, peak);
}

void pool_hog_stop(struct pool_hog *h)
{
	if (h->pid <= 0)
		return;
	close(h->cmd);
	close(h->answer);
	kill(h->pid, SIGKILL);
	waitpid(h->pid, NULL, 0);
	h->pid = 0;
}
