/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rulectl_task.h - facts about one process and their JSON form, shared by
 * the rulectl_procs and rulectl_containers modules.
 *
 * Both modules include this file so that each .ko stands alone: either can be
 * loaded without the other, and neither exports symbols.  The functions are
 * static; a module that does not call one gets no copy of it.
 *
 * What each JSON field means, where it comes from and which /proc file gives
 * the same number:
 *
 *   pid               task->tgid (initial pid namespace)
 *   ppid              tgid of task->real_parent, 0 for pid 1 and kthreadd
 *                                           /proc/PID/stat field 4
 *   name              task->comm            /proc/PID/stat field 2 (see 1.)
 *   cmdline           argument area of the mm, NUL bytes as spaces and the
 *                     final NUL dropped     /proc/PID/cmdline
 *   state             task_state_index()    /proc/PID/stat field 3
 *   vsz_kb            mm->total_vm in KiB   VmSize in /proc/PID/status
 *   rss_kb            get_mm_rss() in KiB   VmRSS in /proc/PID/status
 *   cpu_time_ns       run time of all threads, live and dead (see 2.)
 *                                           (stat fields 14 + 15) * 10 ms
 *   start_time_ticks  task->start_boottime in USER_HZ ticks
 *                                           /proc/PID/stat field 22
 *   cgroup            cgroup path, see rc_task_cgroup()
 *   cgroup_hierarchy  "v1" or "v2": the hierarchy "cgroup" comes from
 *   container_id      innermost 64-hex component of the cgroup path, or null
 *
 * Strings are JSON strings in ASCII: '"' and '\' are escaped, control bytes
 * become \u00XX, valid UTF-8 is copied, and every invalid UTF-8 sequence is
 * replaced by one U+FFFD, cut the way Python's bytes.decode("utf-8",
 * "replace") cuts it (one U+FFFD per maximal invalid subpart).
 *
 * Known limits:
 * 1. name is task->comm.  For workqueue workers and kernel threads whose name
 *    is longer than 15 bytes, /proc shows more ("kworker/0:1-events"), but the
 *    helpers that build that text (wq_worker_comm, get_kthread_comm) are not
 *    exported to modules.  The name is always a prefix of what /proc shows.
 * 2. cpu_time_ns is the group's sum_exec_runtime, clamped to be no less than
 *    the last utime + stime that /proc handed out (signal->prev_cputime).
 *    That is the total cputime_adjust() splits into utime and stime, so it
 *    is exact in ns where /proc rounds each of the two fields down to a 10 ms
 *    tick.  thread_group_cputime_adjusted() itself is not exported.
 * 3. Pids, start times and cgroup paths are those of the initial pid, time
 *    and cgroup namespaces, whoever reads the file.
 * 4. The command line is read through access_process_vm(), which takes its
 *    own reference on the task's mm.  If the task calls execve() between the
 *    moment the argument bounds are read and the moment the bytes are, the
 *    text may come from the new image, like a /proc reader racing an exec.
 */
#ifndef RULECTL_TASK_H
#define RULECTL_TASK_H

#include <linux/cgroup.h>
#include <linux/ctype.h>
#include <linux/kernfs.h>
#include <linux/limits.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/threads.h>

#define RC_CONTAINER_ID_LEN	64

/*
 * Positions in the seq_file: 0 is the document header, 1..PID_MAX_LIMIT is
 * the first thread-group leader whose tgid is at least that position, and
 * RC_POS_FOOTER closes the document.  Keying positions by tgid lets a reader
 * that stopped in the middle resume at the right process even after others
 * came and went.
 */
#define RC_POS_FOOTER		((loff_t)PID_MAX_LIMIT + 1)
#define RC_FOOTER_TOKEN		((void *)2)

/* Per-open scratch space; big enough that it does not live on the stack. */
struct rc_scratch {
	char cgroup[PATH_MAX];		/* path in the chosen hierarchy */
	char cgroup_v2[PATH_MAX];	/* unified path, for the id fallback */
	char page[PAGE_SIZE];		/* one chunk of a command line */
};

/* The per-open state both modules keep behind seq_file->private. */
struct rc_iter {
	struct rc_scratch *scratch;
	pid_t first_pid;	/* printed without a leading comma, or 0 */
};

/* Everything printed for one process except the command line. */
struct rc_facts {
	pid_t pid;
	pid_t ppid;
	char comm[TASK_COMM_LEN];
	char state;
	u64 vsz_kb;
	u64 rss_kb;
	u64 cpu_time_ns;
	u64 start_time_ticks;
	const char *cgroup;		/* NULL when the path is too long */
	bool cgroup_v1;
	bool has_container;
	char container_id[RC_CONTAINER_ID_LEN + 1];
	struct mm_struct *mm;		/* mmget() reference, or NULL */
};

/* ---- JSON strings -------------------------------------------------- */

/* A UTF-8 sequence being checked, byte by byte. */
struct rc_utf8 {
	u8 buf[4];
	u8 len;		/* bytes held in buf */
	u8 need;	/* length of the sequence that buf starts */
};

static void rc_json_ascii(struct seq_file *m, u8 c)
{
	switch (c) {
	case '"':
		seq_puts(m, "\\\"");
		break;
	case '\\':
		seq_puts(m, "\\\\");
		break;
	default:
		if (c < 0x20 || c == 0x7f)
			seq_printf(m, "\\u%04x", c);
		else
			seq_putc(m, c);
	}
}

static void rc_utf8_reject(struct seq_file *m, struct rc_utf8 *u)
{
	seq_puts(m, "\\ufffd");
	u->len = 0;
}

/*
 * The allowed range of the second byte depends on the first one (no
 * overlong forms, no surrogates, nothing above U+10FFFF); every later byte
 * is a plain continuation byte.
 */
static bool rc_utf8_continues(const struct rc_utf8 *u, u8 c)
{
	u8 lo = 0x80, hi = 0xbf;

	if (u->len == 1) {
		switch (u->buf[0]) {
		case 0xe0:
			lo = 0xa0;
			break;
		case 0xed:
			hi = 0x9f;
			break;
		case 0xf0:
			lo = 0x90;
			break;
		case 0xf4:
			hi = 0x8f;
			break;
		}
	}
	return c >= lo && c <= hi;
}

static void rc_utf8_feed(struct seq_file *m, struct rc_utf8 *u, u8 c)
{
	if (u->len) {
		if (rc_utf8_continues(u, c)) {
			u->buf[u->len++] = c;
			if (u->len == u->need) {
				seq_write(m, u->buf, u->len);
				u->len = 0;
			}
			return;
		}
		/* The bytes so far are a maximal invalid subpart. */
		rc_utf8_reject(m, u);
	}

	if (c < 0x80) {
		rc_json_ascii(m, c);
		return;
	}
	if (c >= 0xc2 && c <= 0xdf)
		u->need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		u->need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		u->need = 4;
	else {
		seq_puts(m, "\\ufffd");
		return;
	}
	u->buf[0] = c;
	u->len = 1;
}

static void rc_utf8_finish(struct seq_file *m, struct rc_utf8 *u)
{
	if (u->len)
		rc_utf8_reject(m, u);
}

static void rc_json_string(struct seq_file *m, const char *s, size_t len)
{
	struct rc_utf8 u = {};
	size_t i;

	seq_putc(m, '"');
	for (i = 0; i < len; i++)
		rc_utf8_feed(m, &u, s[i]);
	rc_utf8_finish(m, &u);
	seq_putc(m, '"');
}

/* ---- cgroup path and container id --------------------------------- */

/*
 * Finds a container id in one path component: "<64 hex>", optionally with
 * one of the runtimes' prefixes and a ".scope" suffix, as systemd-managed
 * runtimes name their scopes.
 */
static bool rc_component_id(const char *s, size_t len, char *id)
{
	static const char * const prefixes[] = {
		"docker-", "cri-containerd-", "crio-", "libpod-",
	};
	size_t i;

	if (len > 6 && !memcmp(s + len - 6, ".scope", 6))
		len -= 6;
	for (i = 0; i < ARRAY_SIZE(prefixes); i++) {
		size_t plen = strlen(prefixes[i]);

		if (len > plen && !memcmp(s, prefixes[i], plen)) {
			s += plen;
			len -= plen;
			break;
		}
	}
	if (len != RC_CONTAINER_ID_LEN)
		return false;
	for (i = 0; i < len; i++)
		if (!isdigit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	memcpy(id, s, len);
	id[len] = '\0';
	return true;
}

/* Looks for the innermost component that names a container. */
static bool rc_path_container_id(const char *path, char *id)
{
	const char *end = path + strlen(path);

	while (end > path) {
		const char *start = end;

		while (start > path && start[-1] != '/')
			start--;
		if (rc_component_id(start, end - start, id))
			return true;
		end = start > path ? start - 1 : start;
	}
	return false;
}

/*
 * Which hierarchy "cgroup" reports:
 *  - "v1" when the cpu controller is bound to a cgroup v1 hierarchy (a v1 or
 *    hybrid host, where Docker's cgroupfs driver makes /docker/<id>): the
 *    path in that hierarchy, as in the "cpu" line of /proc/PID/cgroup;
 *  - "v2" otherwise: the path in the unified hierarchy, the "0::" line.
 * container_id comes from that path; on a "v1" path without one, the unified
 * path is tried as well, so a process that systemd placed in a docker-*.scope
 * is found on hybrid hosts too.
 *
 * Lock: rcu_read_lock() keeps the css_set and its cgroups alive;
 * kernfs_path() only takes a spinlock, so nothing here sleeps.
 */
static void rc_task_cgroup(struct task_struct *task, struct rc_scratch *s,
			   struct rc_facts *f)
{
	struct cgroup *dfl, *v1 = NULL;
	int len = 0, v2_len;

	rcu_read_lock();
	dfl = task_dfl_cgroup(task);
#if IS_ENABLED(CONFIG_CGROUP_SCHED)
	v1 = task_css(task, cpu_cgrp_id)->cgroup;
	if (v1->root == dfl->root)
		v1 = NULL;
#endif
	v2_len = cgroup_path(dfl, s->cgroup_v2, sizeof(s->cgroup_v2));
	if (v1)
		len = cgroup_path(v1, s->cgroup, sizeof(s->cgroup));
	rcu_read_unlock();

	/* Like /proc/PID/cgroup, a path that does not fit is an error. */
	if (v2_len < 0 || v2_len >= sizeof(s->cgroup_v2))
		s->cgroup_v2[0] = '\0';
	if (!v1) {
		memcpy(s->cgroup, s->cgroup_v2, sizeof(s->cgroup));
		len = v2_len;
	}
	f->cgroup_v1 = v1 != NULL;
	f->cgroup = len >= 0 && len < sizeof(s->cgroup) ? s->cgroup : NULL;

	f->has_container = f->cgroup &&
			   rc_path_container_id(f->cgroup, f->container_id);
	if (!f->has_container && v1)
		f->has_container = rc_path_container_id(s->cgroup_v2,
							f->container_id);
}

/* ---- the other facts ------------------------------------------------ */

/*
 * Run time of the whole thread group, read the way thread_group_cputime()
 * reads it: the dead threads' total plus every live thread, retried under
 * signal->stats_lock if an exit changed the totals meanwhile.
 */
static u64 rc_group_cpu_ns(struct task_struct *task)
{
	struct signal_struct *sig = task->signal;
	struct task_struct *t;
	unsigned long flags;
	int seq, nextseq = 0;
	u64 rtime, given;

	rcu_read_lock();
	do {
		seq = nextseq;
		flags = read_seqbegin_or_lock_irqsave(&sig->stats_lock, &seq);
		rtime = sig->sum_sched_runtime;
		for_each_thread(task, t)
			rtime += READ_ONCE(t->se.sum_exec_runtime);
		nextseq = 1;	/* a second round takes the lock */
	} while (need_seqretry(&sig->stats_lock, seq));
	done_seqretry_irqrestore(&sig->stats_lock, seq, flags);
	rcu_read_unlock();

	/* /proc never goes below what it showed once; neither do we. */
	raw_spin_lock_irqsave(&sig->prev_cputime.lock, flags);
	given = sig->prev_cputime.utime + sig->prev_cputime.stime;
	raw_spin_unlock_irqrestore(&sig->prev_cputime.lock, flags);

	return max(rtime, given);
}

/* The same conversion as nsec_to_clock_t(), which is not exported. */
static u64 rc_ns_to_user_ticks(u64 ns)
{
#if (NSEC_PER_SEC % USER_HZ) == 0
	return div_u64(ns, NSEC_PER_SEC / USER_HZ);
#else
#error "USER_HZ does not divide NSEC_PER_SEC; port nsec_to_clock_t()"
#endif
}

/*
 * Gathers what rc_put_process() prints.  Each fact is read under its own
 * lock: the parent under RCU, the comm under task_lock (inside
 * get_task_comm), the thread totals under RCU and stats_lock, the cgroup
 * under RCU.  The mm reference taken here is dropped by rc_facts_release().
 */
static void rc_gather(struct task_struct *task, struct rc_scratch *s,
		      struct rc_facts *f)
{
	struct mm_struct *mm;

	f->pid = task->tgid;

	rcu_read_lock();
	f->ppid = pid_alive(task) ? rcu_dereference(task->real_parent)->tgid :
				    0;
	rcu_read_unlock();

	get_task_comm(f->comm, task);
	f->state = task_index_to_char(task_state_index(task));
	f->cpu_time_ns = rc_group_cpu_ns(task);
	f->start_time_ticks = rc_ns_to_user_ticks(task->start_boottime);

	/* NULL for kernel threads and for processes that have left exit_mm. */
	mm = get_task_mm(task);
	f->mm = mm;
	f->vsz_kb = 0;
	f->rss_kb = 0;
	if (mm) {
		f->vsz_kb = (u64)READ_ONCE(mm->total_vm) << (PAGE_SHIFT - 10);
		f->rss_kb = (u64)get_mm_rss(mm) << (PAGE_SHIFT - 10);
	}

	rc_task_cgroup(task, s, f);
}

static void rc_facts_release(struct rc_facts *f)
{
	if (f->mm)
		mmput(f->mm);
	f->mm = NULL;
}

/*
 * Prints the command line as a JSON string, following get_mm_cmdline() in
 * fs/proc/base.c: the bytes between arg_start and arg_end, or, when the last
 * of them is not a NUL (setproctitle() wrote over it), up to one page from
 * arg_start that may run into the environment and stops at the first NUL.
 * NUL separators become spaces and the terminating NUL is dropped.
 *
 * Called with no lock held: access_process_vm() takes the mmap lock and may
 * sleep.  The chunks go through one UTF-8 checker so that a character split
 * across two chunks is kept whole.
 */
static void rc_put_cmdline(struct seq_file *m, struct task_struct *task,
			   struct mm_struct *mm, char *page)
{
	unsigned long arg_start, arg_end, env_start, env_end, pos;
	struct rc_utf8 u = {};
	size_t i, n;
	char last;
	int got;

	seq_putc(m, '"');
	if (!mm || !READ_ONCE(mm->env_end))
		goto out;

	spin_lock(&mm->arg_lock);
	arg_start = mm->arg_start;
	arg_end = mm->arg_end;
	env_start = mm->env_start;
	env_end = mm->env_end;
	spin_unlock(&mm->arg_lock);

	if (arg_start >= arg_end)
		goto out;
	if (env_start != arg_end || env_end < env_start)
		env_end = arg_end;

	if (access_process_vm(task, arg_end - 1, &last, 1, FOLL_ANON) == 1 &&
	    last) {
		n = min_t(unsigned long, PAGE_SIZE, env_end - arg_start);
		got = access_process_vm(task, arg_start, page, n, FOLL_ANON);
		n = got > 0 ? strnlen(page, got) : 0;
		for (i = 0; i < n; i++)
			rc_utf8_feed(m, &u, page[i]);
		goto out;
	}

	for (pos = arg_start; pos < arg_end; pos += got) {
		n = min_t(unsigned long, PAGE_SIZE, arg_end - pos);
		got = access_process_vm(task, pos, page, n, FOLL_ANON);
		if (got <= 0)
			break;
		n = got;
		if (pos + n == arg_end && page[n - 1] == '\0')
			n--;
		for (i = 0; i < n; i++)
			rc_utf8_feed(m, &u, page[i] ? page[i] : ' ');
	}
out:
	rc_utf8_finish(m, &u);
	seq_putc(m, '"');
}

/* Prints one process object; the caller has gathered @f for @task. */
static void rc_put_process(struct seq_file *m, struct rc_iter *it,
			   struct task_struct *task, const struct rc_facts *f)
{
	if (it->first_pid && it->first_pid != f->pid)
		seq_puts(m, ",\n");
	else
		it->first_pid = f->pid;

	seq_printf(m, "{\"pid\":%d,\"ppid\":%d,\"name\":", f->pid, f->ppid);
	rc_json_string(m, f->comm, strnlen(f->comm, sizeof(f->comm)));
	seq_puts(m, ",\"cmdline\":");
	rc_put_cmdline(m, task, f->mm, it->scratch->page);
	seq_printf(m,
		   ",\"state\":\"%c\",\"vsz_kb\":%llu,\"rss_kb\":%llu,"
		   "\"cpu_time_ns\":%llu,\"start_time_ticks\":%llu,"
		   "\"cgroup\":",
		   f->state, f->vsz_kb, f->rss_kb, f->cpu_time_ns,
		   f->start_time_ticks);
	if (f->cgroup)
		rc_json_string(m, f->cgroup, strlen(f->cgroup));
	else
		seq_puts(m, "null");
	seq_printf(m, ",\"cgroup_hierarchy\":\"%s\",\"container_id\":",
		   f->cgroup_v1 ? "v1" : "v2");
	if (f->has_container)
		seq_printf(m, "\"%s\"}", f->container_id);
	else
		seq_puts(m, "null}");
}

/* ---- walking the processes ------------------------------------------ */

/*
 * Returns the thread-group leader with the lowest tgid >= *nr, with a
 * reference held, and sets *nr to its tgid; NULL when there is none.
 * Lock: rcu_read_lock() around find_ge_pid() and pid_task(); the reference
 * is taken before the lock is dropped.
 */
static struct task_struct *rc_next_leader(pid_t *nr)
{
	struct task_struct *task = NULL;
	struct pid *pid;

	rcu_read_lock();
	while ((pid = find_ge_pid(*nr, &init_pid_ns))) {
		*nr = pid_nr(pid);
		task = pid_task(pid, PIDTYPE_TGID);
		if (task) {
			get_task_struct(task);
			break;
		}
		(*nr)++;
	}
	rcu_read_unlock();
	return task;
}

static bool rc_is_task(void *v)
{
	return v && v != SEQ_START_TOKEN && v != RC_FOOTER_TOKEN;
}

/* The record at *pos or, if that process is gone, the next one. */
static void *rc_seek(loff_t *pos)
{
	struct task_struct *task;
	pid_t nr;

	if (*pos == 0)
		return SEQ_START_TOKEN;
	if (*pos < RC_POS_FOOTER) {
		nr = *pos;
		task = rc_next_leader(&nr);
		if (task) {
			*pos = nr;
			return task;
		}
		*pos = RC_POS_FOOTER;
	}
	return *pos == RC_POS_FOOTER ? RC_FOOTER_TOKEN : NULL;
}

/*
 * seq_file start: each task handed out holds a reference until next/stop.
 *
 * seq_file calls start at the position of the first record it has not
 * handed to the reader yet: everything before *pos has been delivered,
 * nothing after it has.  If the record taken as the first process sits at
 * or after *pos, its text was thrown away (it did not fit) and the process
 * may be gone by now, so the next process printed is the first again.
 */
static void *rc_seq_start(struct seq_file *m, loff_t *pos)
{
	struct rc_iter *it = m->private;

	if (it->first_pid >= *pos)
		it->first_pid = 0;
	return rc_seek(pos);
}

static void *rc_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	if (rc_is_task(v))
		put_task_struct(v);
	++*pos;
	return rc_seek(pos);
}

static void rc_seq_stop(struct seq_file *m, void *v)
{
	if (rc_is_task(v))
		put_task_struct(v);
}

/* ---- open and release ---------------------------------------------- */

/*
 * Opens the seq_file with a private state of @size bytes that starts with a
 * struct rc_iter, and gives that iterator its scratch space.
 */
static int rc_open(struct file *file, const struct seq_operations *ops,
		   size_t size)
{
	struct rc_iter *it;
	int err;

	it = __seq_open_private(file, ops, size);
	if (!it)
		return -ENOMEM;

	it->scratch = kvmalloc(sizeof(*it->scratch), GFP_KERNEL);
	if (!it->scratch) {
		err = -ENOMEM;
		goto err_release;
	}
	return 0;

err_release:
	seq_release_private(file_inode(file), file);
	return err;
}

static int rc_release(struct inode *inode, struct file *file)
{
	struct rc_iter *it = ((struct seq_file *)file->private_data)->private;

	kvfree(it->scratch);
	return seq_release_private(inode, file);
}

/* A /proc file name given as a module parameter: one plain component. */
static bool rc_valid_procname(const char *name)
{
	return name && name[0] && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..") && strlen(name) <= NAME_MAX;
}

#endif /* RULECTL_TASK_H */
