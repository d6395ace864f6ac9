// SPDX-License-Identifier: MIT
/*
 * swarm.c - N sleeping processes for the collector benchmarks.
 *
 *   swarm COUNT READYFILE
 *
 * Forks COUNT children that sleep until the parent goes away, writes
 * READYFILE once all of them exist, and sleeps until it is sent SIGTERM;
 * then it kills its children and waits for every one of them.  A child also
 * dies on its own when the parent dies (PR_SET_PDEATHSIG), so no process of
 * the benchmark outlives it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

int main(int argc, char **argv)
{
	long count, i;
	pid_t *pids;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: swarm COUNT READYFILE\n");
		return 2;
	}
	count = strtol(argv[1], NULL, 10);
	pids = calloc(count > 0 ? count : 1, sizeof(*pids));
	if (!pids)
		return 2;
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);

	for (i = 0; i < count && !stopping; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("swarm: fork");
			break;
		}
		if (pids[i] == 0) {
			signal(SIGTERM, SIG_DFL);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(0);
			for (;;)
				pause();
		}
	}
	count = i;

	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		dprintf(fd, "%ld\n", count);
		close(fd);
	}
	while (!stopping)
		pause();

	for (i = 0; i < count; i++)
		kill(pids[i], SIGKILL);
	for (i = 0; i < count; i++)
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	return 0;
}
