// SPDX-License-Identifier: MIT
/*
 * workload.c - test load for rulectl: sleep, burn one core, or hold memory.
 *
 *	workload low		sleep until a signal
 *	workload cpu		keep one core busy until a signal
 *	workload mem [MIB]	make MIB MiB (default 256) resident, then sleep
 *
 * With no arguments the mode comes from $WORKLOAD_MODE, which the image sets
 * at build time, so each image does its job when run bare.
 *
 * The program runs as PID 1 of its container. The kernel drops signals that
 * PID 1 has not asked for, so without handlers `docker stop` would wait out
 * its whole grace period and then SIGKILL us. SIGTERM and SIGINT therefore
 * only set a flag, and every loop below checks it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define pr_fmt(fmt) "workload: " fmt

#define DEFAULT_MEM_MIB	256UL
#define MAX_MEM_MIB	(1UL << 20)	/* 1 TiB: anything above is a typo */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/*
 * Install the handlers with the stop signals blocked; they are unblocked
 * only inside sigsuspend() or the busy loop, so a signal can never slip in
 * between checking the flag and going to sleep.
 */
static int install_handlers(sigset_t *unblocked)
{
	struct sigaction sa;
	sigset_t stop_set;

	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &stop_set, unblocked) < 0)
		return -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGINT, &sa, NULL) < 0)
		return -1;
	return 0;
}

static void sleep_until_stopped(const sigset_t *unblocked)
{
	while (!stop_requested)
		sigsuspend(unblocked);
}

static void burn_until_stopped(const sigset_t *unblocked)
{
	volatile unsigned long counter = 0;

	sigprocmask(SIG_SETMASK, unblocked, NULL);
	while (!stop_requested)
		counter++;
}

/*
 * Map the block privately and write one non-zero byte per page: a read
 * would map the shared zero page and leave nothing resident.
 */
static int hold_memory(unsigned long mib, const sigset_t *unblocked)
{
	size_t len = mib << 20;
	long page_size = sysconf(_SC_PAGESIZE);
	unsigned char *block;
	size_t off;

	block = mmap(NULL, len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (block == MAP_FAILED) {
		fprintf(stderr, pr_fmt("cannot map %lu MiB: %s\n"), mib,
			strerror(errno));
		return -1;
	}

	for (off = 0; off < len; off += (size_t)page_size)
		block[off] = 1;

	printf(pr_fmt("holding %lu MiB resident\n"), mib);
	fflush(stdout);
	sleep_until_stopped(unblocked);
	munmap(block, len);
	return 0;
}

static int parse_mib(const char *arg, unsigned long *mib)
{
	char *end;

	errno = 0;
	*mib = strtoul(arg, &end, 10);
	if (errno || end == arg || *end != '\0' || arg[0] == '-' ||
	    *mib == 0 || *mib > MAX_MEM_MIB)
		return -1;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: workload low|cpu|mem [MIB]\n");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : getenv("WORKLOAD_MODE");
	const char *mib_arg = argc > 2 ? argv[2] : NULL;
	unsigned long mib = DEFAULT_MEM_MIB;
	sigset_t unblocked;

	if (!mode || argc > 3) {
		usage();
		return 2;
	}
	if (mib_arg && parse_mib(mib_arg, &mib) < 0) {
		fprintf(stderr, pr_fmt("bad size '%s': want 1..%lu MiB\n"),
			mib_arg, MAX_MEM_MIB);
		return 2;
	}
	if (install_handlers(&unblocked) < 0) {
		perror(pr_fmt("signal handlers"));
		return 1;
	}

	if (strcmp(mode, "low") == 0) {
		printf(pr_fmt("sleeping\n"));
		fflush(stdout);
		sleep_until_stopped(&unblocked);
	} else if (strcmp(mode, "cpu") == 0) {
		printf(pr_fmt("burning one core\n"));
		fflush(stdout);
		burn_until_stopped(&unblocked);
	} else if (strcmp(mode, "mem") == 0) {
		if (hold_memory(mib, &unblocked) < 0)
			return 1;
	} else {
		usage();
		return 2;
	}

	printf(pr_fmt("stopping on signal\n"));
	return 0;
}
