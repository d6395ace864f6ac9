// SPDX-License-Identifier: GPL-2.0
/*
 * rcprobe.c - the helper program inside the rulectl test VM.  It makes the
 * processes the module tests look for, captures /proc next to the modules'
 * JSON, and hammers the modules' files while processes come and go.
 *
 *   rcprobe weird                      a process whose name and command line
 *                                      hold quotes, backslashes, newlines,
 *                                      control bytes and invalid UTF-8
 *   rcprobe title                      a process that wrote over its argv
 *                                      the way setproctitle() does
 *   rcprobe threads READYFILE          three threads that burn CPU; one exits
 *   rcprobe swarm COUNT READYFILE      COUNT sleeping children, which die
 *                                      with it
 *   rcprobe snap OUTDIR                /proc and both JSON files, back to back
 *   rcprobe resume DIR_A DIR_B OUTFILE a reader resumes after the first
 *                                      record it was refused has exited
 *   rcprobe storm SECONDS STOPFILE     forks short-lived processes until told
 *   rcprobe hammer FILE COUNT OUTDIR   reads FILE COUNT times in odd-sized
 *                                      pieces, checks each read is one valid
 *                                      JSON document, keeps a few copies
 *
 * Built static with the host's gcc; it runs under busybox with no libc.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROCS_FILE	"/proc/rulectl_procs"
#define CONTAINERS_FILE	"/proc/rulectl_containers"

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "rcprobe: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	va_end(ap);
	exit(2);
}

static double now_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- buffers and files ------------------------------------------- */

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

static void buf_reserve(struct buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	b->cap = (b->len + more) * 2;
	b->data = realloc(b->data, b->cap);
	if (!b->data)
		die("out of memory");
}

/*
 * Reads a whole file in pieces of @piece bytes.  Returns -1 (errno set) if
 * open or read fails; b->len is what was read before that.
 */
static int read_file(const char *path, struct buf *b, size_t piece)
{
	ssize_t n;
	int fd;

	b->len = 0;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	for (;;) {
		buf_reserve(b, piece);
		n = read(fd, b->data + b->len, piece);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		b->len += n;
	}
	close(fd);
	return n < 0 ? -1 : 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	if (!f || fwrite(data, 1, len, f) != len || fclose(f))
		die("cannot write %s", path);
}

static void mkdirs(const char *path)
{
	char tmp[4096];
	char *p;

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(tmp, 0755);
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		die("mkdir %s", path);
}

/* ---- a strict JSON checker ---------------------------------------- */

struct json {
	const unsigned char *p;
	const unsigned char *end;
	int depth;
};

static bool json_value(struct json *j);

static void json_ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' ||
				 *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

static bool json_lit(struct json *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n))
		return false;
	j->p += n;
	return true;
}

/* One UTF-8 character, strictly (no overlongs, surrogates, > U+10FFFF). */
static bool json_utf8(struct json *j)
{
	unsigned char c = *j->p;
	unsigned char lo = 0x80, hi = 0xbf;
	int need, i;

	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return false;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (j->end - j->p <= need)
		return false;
	for (i = 1; i <= need; i++) {
		unsigned char d = j->p[i];

		if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xbf))
			return false;
	}
	j->p += need + 1;
	return true;
}

static bool json_string(struct json *j)
{
	if (j->p >= j->end || *j->p != '"')
		return false;
	j->p++;
	while (j->p < j->end) {
		unsigned char c = *j->p;

		if (c == '"') {
			j->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c >= 0x80) {
			if (!json_utf8(j))
				return false;
			continue;
		}
		j->p++;
		if (c != '\\')
			continue;
		if (j->p >= j->end)
			return false;
		c = *j->p++;
		if (c == 'u') {
			int i;

			for (i = 0; i < 4; i++, j->p++)
				if (j->p >= j->end ||
				    !strchr("0123456789abcdefABCDEF", *j->p) ||
				    !*j->p)
					return false;
		} else if (!strchr("\"\\/bfnrt", c) || !c) {
			return false;
		}
	}
	return false;
}

static bool json_digits(struct json *j)
{
	const unsigned char *start = j->p;

	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > start;
}

static bool json_number(struct json *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (!json_digits(j))
		return false;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!json_digits(j))
			return false;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!json_digits(j))
			return false;
	}
	return true;
}

/* Parses "open (item (, item)*)? close" where item is a value or a member. */
static bool json_container(struct json *j, char close, bool members)
{
	j->p++;
	json_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return true;
	}
	for (;;) {
		if (members) {
			if (!json_string(j))
				return false;
			json_ws(j);
			if (j->p >= j->end || *j->p++ != ':')
				return false;
		}
		if (!json_value(j))
			return false;
		json_ws(j);
		if (j->p >= j->end)
			return false;
		if (*j->p == close) {
			j->p++;
			return true;
		}
		if (*j->p++ != ',')
			return false;
		json_ws(j);
	}
}

static bool json_value(struct json *j)
{
	bool ok;

	json_ws(j);
	if (j->p >= j->end || ++j->depth > 64)
		return false;
	switch (*j->p) {
	case '{':
		ok = json_container(j, '}', true);
		break;
	case '[':
		ok = json_container(j, ']', false);
		break;
	case '"':
		ok = json_string(j);
		break;
	case 't':
		ok = json_lit(j, "true");
		break;
	case 'f':
		ok = json_lit(j, "false");
		break;
	case 'n':
		ok = json_lit(j, "null");
		break;
	default:
		ok = json_number(j);
	}
	j->depth--;
	return ok;
}

/* True when @b holds exactly one JSON object and nothing but white space. */
static bool json_document_ok(const struct buf *b)
{
	struct json j = {
		.p = (const unsigned char *)b->data,
		.end = (const unsigned char *)b->data + b->len,
	};

	json_ws(&j);
	if (j.p >= j.end || *j.p != '{' || !json_value(&j))
		return false;
	json_ws(&j);
	return j.p == j.end;
}

/* ---- processes for the tests to find ----------------------------- */

static void hold_forever(void)
{
	for (;;)
		pause();
}

/*
 * A quote, a backslash, a newline, a lone 0xff, a valid euro sign, and an
 * e-acute that the kernel's 15-byte limit on names cuts in half.
 */
static const char weird_name[] = "q\"b\\n\n\xff\xe2\x82\xac-xyz\xc3\xa9";

static int cmd_weird(char *self)
{
	char *argv[] = {
		"we\"ird\\argv0",
		"weird-hold",
		"quote\"back\\slash",
		"new\nline",
		"bad\xff\xfeutf8",
		"cut\xe2\x82",
		"ctl\x01\x1f\x7f",
		"",
		"tab\tend \xf0\x9f\x90\xa7",
		NULL,
	};

	execv(self, argv);
	die("exec %s", self);
	return 2;
}

static int cmd_weird_hold(void)
{
	prctl(PR_SET_NAME, weird_name, 0, 0, 0);
	hold_forever();
	return 0;
}

static int cmd_title(char *self)
{
	char *argv[] = { "rcprobe", "title-hold", "0123456789", NULL };
	char *envp[] = { "RCPROBE_TAIL=env", NULL };

	execve(self, argv, envp);
	die("exec %s", self);
	return 2;
}

/*
 * Overwrites the whole argument area, its last NUL included, as
 * setproctitle() implementations do; /proc then reads on into the
 * environment up to the first NUL.
 */
static int cmd_title_hold(int argc, char **argv)
{
	char *start = argv[0];
	char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
	const char *title = "rcprobe: title set by hand ";
	size_t i, n = strlen(title);

	for (i = 0; start + i < end; i++)
		start[i] = title[i % n];
	hold_forever();
	return 0;
}

static void spin_cpu(double seconds)
{
	double until = now_s(CLOCK_THREAD_CPUTIME_ID) + seconds;

	while (now_s(CLOCK_THREAD_CPUTIME_ID) < until)
		;
}

static void *burner(void *arg)
{
	spin_cpu(0.3);
	if (arg)
		return NULL;	/* this one exits: its time moves to signal */
	hold_forever();
	return NULL;
}

static int cmd_threads(const char *ready)
{
	pthread_t t[3];
	int i;

	for (i = 0; i < 3; i++)
		if (pthread_create(&t[i], NULL, burner, i == 2 ? "exit" : NULL))
			die("pthread_create");
	pthread_join(t[2], NULL);
	/* Give the burners that stay a moment to finish their 0.3 s too. */
	while (now_s(CLOCK_PROCESS_CPUTIME_ID) < 0.9)
		usleep(20000);
	write_file(ready, "ready\n", 6);
	hold_forever();
	return 0;
}

static volatile sig_atomic_t swarm_stop;

static void swarm_on_term(int sig)
{
	(void)sig;
	swarm_stop = 1;
}

/* On SIGTERM it kills and reaps its children, so no zombie is left over. */
static int cmd_swarm(long count, const char *ready)
{
	pid_t *kids = calloc(count, sizeof(*kids));
	sigset_t term, old;
	long i;

	if (!kids)
		die("out of memory");
	/* Blocked until sigsuspend(), so a SIGTERM cannot slip past it. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	signal(SIGTERM, swarm_on_term);
	for (i = 0; i < count; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			die("fork %ld of %ld", i + 1, count);
		if (kids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
			hold_forever();
		}
	}
	write_file(ready, "ready\n", 6);
	while (!swarm_stop)
		sigsuspend(&old);
	for (i = 0; i < count; i++)
		kill(kids[i], SIGKILL);
	for (i = 0; i < count; i++)
		waitpid(kids[i], NULL, 0);
	return 0;
}

/* ---- capture ------------------------------------------------------- */

static const char *const pid_files[] = { "stat", "status", "cmdline", "cgroup" };
#define NPIDFILES (sizeof(pid_files) / sizeof(pid_files[0]))

struct pid_copy {
	int pid;
	struct buf file[NPIDFILES];
	bool ok[NPIDFILES];
};

struct proc_copy {
	struct pid_copy *pids;
	size_t n;
};

static void copy_proc(struct proc_copy *pc)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	size_t cap = 0, i;

	if (!d)
		die("opendir /proc");
	pc->n = 0;
	while ((de = readdir(d))) {
		char path[64];
		struct pid_copy *c;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		if (pc->n == cap) {
			cap = cap ? cap * 2 : 256;
			pc->pids = realloc(pc->pids, cap * sizeof(*pc->pids));
			if (!pc->pids)
				die("out of memory");
		}
		c = &pc->pids[pc->n++];
		memset(c, 0, sizeof(*c));
		c->pid = atoi(de->d_name);
		for (i = 0; i < NPIDFILES; i++) {
			snprintf(path, sizeof(path), "/proc/%d/%s", c->pid,
				 pid_files[i]);
			c->ok[i] = read_file(path, &c->file[i], 4096) == 0;
		}
	}
	closedir(d);
}

static void save_proc(const struct proc_copy *pc, const char *dir)
{
	char path[4096];
	size_t i, k;

	for (i = 0; i < pc->n; i++) {
		const struct pid_copy *c = &pc->pids[i];

		/* A process gone before its first file was read left nothing. */
		if (!c->ok[0])
			continue;
		snprintf(path, sizeof(path), "%s/%d", dir, c->pid);
		mkdirs(path);
		for (k = 0; k < NPIDFILES; k++) {
			if (!c->ok[k])
				continue;
			snprintf(path, sizeof(path), "%s/%d/%s", dir, c->pid,
				 pid_files[k]);
			write_file(path, c->file[k].data, c->file[k].len);
		}
	}
}

/*
 * Order: /proc/PID files, the system-wide /proc files, both JSON files,
 * then /proc/PID again.  A process that is the same in both copies did not
 * change while the modules were read.
 */
static int cmd_snap(const char *out)
{
	static const char *const sys_files[] = { "meminfo", "stat", "uptime" };
	struct buf sys[3] = {}, procs = {}, containers = {};
	struct proc_copy before = {}, after = {};
	char path[4096], times[256];
	double t0, t1, t2;
	int procs_rc, containers_rc;
	size_t i;

	t0 = now_s(CLOCK_BOOTTIME);
	copy_proc(&before);
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/proc/%s", sys_files[i]);
		if (read_file(path, &sys[i], 4096))
			die("read %s", path);
	}
	t1 = now_s(CLOCK_BOOTTIME);
	procs_rc = read_file(PROCS_FILE, &procs, 65536);
	containers_rc = read_file(CONTAINERS_FILE, &containers, 65536);
	t2 = now_s(CLOCK_BOOTTIME);
	copy_proc(&after);

	snprintf(path, sizeof(path), "%s/proc", out);
	mkdirs(path);
	save_proc(&before, path);
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/proc/%s", out, sys_files[i]);
		write_file(path, sys[i].data, sys[i].len);
	}
	snprintf(path, sizeof(path), "%s/after", out);
	mkdirs(path);
	save_proc(&after, path);
	if (!procs_rc) {
		snprintf(path, sizeof(path), "%s/rulectl_procs.json", out);
		write_file(path, procs.data, procs.len);
	}
	if (!containers_rc) {
		snprintf(path, sizeof(path), "%s/rulectl_containers.json", out);
		write_file(path, containers.data, containers.len);
	}
	snprintf(times, sizeof(times),
		 "proc_copy_start %.6f\njson_start %.6f\njson_end %.6f\n"
		 "page_size %ld\nuser_hz %ld\n",
		 t0, t1, t2, sysconf(_SC_PAGESIZE), sysconf(_SC_CLK_TCK));
	snprintf(path, sizeof(path), "%s/capture.txt", out);
	write_file(path, times, strlen(times));
	return procs_rc || containers_rc;
}

/*
 * Starts a child in the cgroup directory @dir.  With @bigargs it execs
 * rcprobe with an 8 KiB argument, so that its record does not fit in the
 * page seq_file starts with; it returns once the exec has happened.
 */
static pid_t child_in_cgroup(const char *dir, bool bigargs, char *self)
{
	static char big[8192];
	char path[4096], pidtext[32];
	int sync[2];
	char c;
	pid_t pid;

	if (pipe2(sync, O_CLOEXEC))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		snprintf(pidtext, sizeof(pidtext), "%d\n", getpid());
		write_file(path, pidtext, strlen(pidtext));
		if (bigargs) {
			char *argv[] = { "rcprobe", "hold", big, NULL };

			memset(big, 'x', sizeof(big) - 1);
			execv(self, argv);
			die("exec %s", self);
		}
		close(sync[1]);
		hold_forever();
	}
	close(sync[1]);
	/* EOF once the child has exec'd or closed its end. */
	while (read(sync[0], &c, 1) > 0)
		;
	close(sync[0]);
	return pid;
}

/*
 * The first container process has a record too big for seq_file's first
 * page, so a 4096-byte read returns only the document's header.  That
 * process is then killed and reaped before the rest is read: the document
 * must still be valid JSON, without it.
 */
static int cmd_resume(const char *dir_a, const char *dir_b, const char *out,
		      char *self)
{
	pid_t first = child_in_cgroup(dir_a, true, self);
	pid_t second = child_in_cgroup(dir_b, false, self);
	struct buf b = {};
	ssize_t n;
	int fd;

	fd = open(CONTAINERS_FILE, O_RDONLY);
	if (fd < 0)
		die("open %s", CONTAINERS_FILE);
	buf_reserve(&b, 4096);
	n = read(fd, b.data, 4096);
	if (n < 0)
		die("read %s", CONTAINERS_FILE);
	b.len = n;
	printf("first read %zd bytes; first pid %d, second pid %d\n", n, first,
	       second);

	kill(first, SIGKILL);
	waitpid(first, NULL, 0);
	for (;;) {
		buf_reserve(&b, 65536);
		n = read(fd, b.data + b.len, 65536);
		if (n <= 0)
			break;
		b.len += n;
	}
	if (n < 0)
		die("read %s", CONTAINERS_FILE);
	close(fd);
	kill(second, SIGKILL);
	waitpid(second, NULL, 0);

	write_file(out, b.data, b.len);
	printf("valid=%d\n", json_document_ok(&b));
	return !json_document_ok(&b);
}

/* ---- stress --------------------------------------------------------- */

static void *short_thread(void *arg)
{
	return arg;
}

/* Each child does something slightly different before it goes away. */
static void storm_child(unsigned long i)
{
	pthread_t t;

	switch (i % 4) {
	case 0:
		_exit(0);
	case 1:
		execl("/bin/true", "true", (char *)NULL);
		_exit(1);
	case 2:
		if (!pthread_create(&t, NULL, short_thread, NULL))
			usleep(100);
		_exit(0);	/* exit_group with the thread still there */
	default:
		prctl(PR_SET_NAME, "storm\"\\\n\xff", 0, 0, 0);
		usleep(500);
		_exit(0);
	}
}

static int cmd_storm(double seconds, const char *stopfile)
{
	double until = now_s(CLOCK_MONOTONIC) + seconds;
	unsigned long forks = 0, failed = 0;
	int running = 0;

	while (now_s(CLOCK_MONOTONIC) < until && access(stopfile, F_OK)) {
		pid_t pid;

		while (running >= 32 && wait(NULL) > 0)
			running--;
		pid = fork();
		if (pid == 0)
			storm_child(forks);
		if (pid < 0) {
			failed++;
			usleep(1000);
			continue;
		}
		forks++;
		running++;
		while (running && waitpid(-1, NULL, WNOHANG) > 0)
			running--;
	}
	while (wait(NULL) > 0)
		;
	printf("storm forks=%lu failed=%lu\n", forks, failed);
	return 0;
}

/*
 * Reads @file @count times.  The piece size changes every read, and every
 * fifth read first takes a small piece, seeks back to 0 and starts over,
 * which makes seq_file rewind.  Every read must be one valid document.
 */
static int cmd_hammer(const char *file, long count, const char *out)
{
	static const size_t pieces[] = { 1, 3, 17, 100, 511, 4095, 4096,
					 4097, 65536, 1 << 20 };
	const long keep_every = count / 8 > 0 ? count / 8 : 1;
	struct buf b = {};
	long i, invalid = 0, errors = 0, bad_saved = 0;
	size_t most = 0;
	char path[4096];

	mkdirs(out);
	for (i = 0; i < count; i++) {
		size_t piece = pieces[i % (sizeof(pieces) / sizeof(pieces[0]))];
		bool ok;
		int rc;

		if (i % 5 == 4) {
			int fd = open(file, O_RDONLY);
			char head[64];

			if (fd < 0 || read(fd, head, sizeof(head)) < 0 ||
			    lseek(fd, 0, SEEK_SET) != 0)
				errors++;
			b.len = 0;
			for (;;) {
				ssize_t n;

				buf_reserve(&b, 4096);
				n = read(fd, b.data + b.len, 4096);
				if (n <= 0) {
					if (n < 0)
						errors++;
					break;
				}
				b.len += n;
			}
			if (fd >= 0)
				close(fd);
			rc = 0;
		} else {
			rc = read_file(file, &b, piece);
			if (rc)
				errors++;
		}
		ok = !rc && json_document_ok(&b);
		if (!ok)
			invalid++;
		if (b.len > most)
			most = b.len;
		if (i % keep_every == 0 || (!ok && bad_saved++ < 3)) {
			snprintf(path, sizeof(path), "%s/%s-%04ld.json", out,
				 ok ? "read" : "invalid", i);
			write_file(path, b.data, b.len);
		}
	}
	printf("hammer file=%s reads=%ld invalid=%ld errors=%ld largest=%zu\n",
	       file, count, invalid, errors, most);
	return invalid || errors;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rcprobe weird | title | threads READYFILE |\n"
		"       swarm COUNT READYFILE | resume DIR_A DIR_B OUTFILE |\n"
		"       snap OUTDIR | storm SECONDS STOPFILE |\n"
		"       hammer FILE COUNT OUTDIR\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	static char self[4096];

	/* exec by real path: the new comm is the file name, not "exe" */
	if (readlink("/proc/self/exe", self, sizeof(self) - 1) < 0)
		die("readlink /proc/self/exe");

	if (!strcmp(cmd, "weird"))
		return cmd_weird(self);
	if (!strcmp(cmd, "weird-hold"))
		return cmd_weird_hold();
	if (!strcmp(cmd, "title"))
		return cmd_title(self);
	if (!strcmp(cmd, "title-hold"))
		return cmd_title_hold(argc, argv);
	if (!strcmp(cmd, "threads") && argc == 3)
		return cmd_threads(argv[2]);
	if (!strcmp(cmd, "hold"))
		hold_forever();
	if (!strcmp(cmd, "resume") && argc == 5)
		return cmd_resume(argv[2], argv[3], argv[4], self);
	if (!strcmp(cmd, "swarm") && argc == 4)
		return cmd_swarm(atol(argv[2]), argv[3]);
	if (!strcmp(cmd, "snap") && argc == 3)
		return cmd_snap(argv[2]);
	if (!strcmp(cmd, "storm") && argc == 4)
		return cmd_storm(atof(argv[2]), argv[3]);
	if (!strcmp(cmd, "hammer") && argc == 5)
		return cmd_hammer(argv[2], atol(argv[3]), argv[4]);
	usage();
	return 2;
}
