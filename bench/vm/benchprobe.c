// SPDX-License-Identifier: MIT
/*
 * benchprobe.c - times one snapshot inside the benchmark VM, both ways.
 *
 *   benchprobe kernel ROUNDS   reads /proc/rulectl_procs and
 *                              /proc/rulectl_containers whole, ROUNDS times
 *   benchprobe proc ROUNDS     lists /proc and reads every process's stat,
 *                              cmdline and cgroup whole, ROUNDS times: the
 *                              files rulectl's userspace reader opens for a
 *                              process it sees for the first time
 *   benchprobe stat ROUNDS     the same with stat only: what that reader
 *                              opens for a process it saw before
 *
 * Prints one line per round, "BENCH <mode> <ns> <bytes> <processes>", on
 * standard output; a kernel round adds the time and bytes of the first file. Built static; the VM has busybox and no libc.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Reads a whole file; returns its size, or -1 if it could not be opened. */
static long read_whole(const char *path)
{
	long total = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	close(fd);
	return total;
}

static void kernel_round(void)
{
	long long start = now_ns(), middle;
	long a = read_whole("/proc/rulectl_procs");
	long b;

	middle = now_ns();
	b = read_whole("/proc/rulectl_containers");
	printf("BENCH kernel %lld %ld 0 %lld %ld\n", now_ns() - start, a + b,
	       middle - start, a);
}

static void proc_round(int nfiles, const char *mode)
{
	static const char *const files[] = { "stat", "cmdline", "cgroup" };
	long long start = now_ns();
	long bytes = 0, procs = 0;
	struct dirent *d;
	char path[300];
	DIR *dir;
	int i;

	dir = opendir("/proc");
	if (!dir)
		return;
	while ((d = readdir(dir))) {
		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		for (i = 0; i < nfiles; i++) {
			long n;

			snprintf(path, sizeof(path), "/proc/%s/%s", d->d_name,
				 files[i]);
			n = read_whole(path);
			if (n > 0)
				bytes += n;
		}
		procs++;
	}
	closedir(dir);
	printf("BENCH %s %lld %ld %ld\n", mode, now_ns() - start, bytes, procs);
}

int main(int argc, char **argv)
{
	int rounds, i;

	if (argc != 3) {
		fprintf(stderr, "usage: benchprobe kernel|proc ROUNDS\n");
		return 2;
	}
	rounds = atoi(argv[2]);
	for (i = 0; i < rounds; i++) {
		if (!strcmp(argv[1], "kernel"))
			kernel_round();
		else if (!strcmp(argv[1], "stat"))
			proc_round(1, "stat");
		else
			proc_round(3, "proc");
		fflush(stdout);
	}
	return 0;
}
