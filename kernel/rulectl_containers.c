// SPDX-License-Identifier: GPL-2.0
/*
 * rulectl_containers.c - /proc/rulectl_containers: the processes that belong
 * to containers, and each container's totals, as one JSON document.
 *
 *   {"version":1,"source":"kernel","processes":[{...},...],
 *    "containers":[{"id":"<64 hex>","pids":[...],"cpu_time_ns":N,
 *                   "rss_kb":N,"vsz_kb":N},...]}
 *
 * A process belongs to a container when its cgroup path names one (see
 * rc_task_cgroup() in rulectl_task.h).  The container totals are sums over
 * exactly the process records of the same document: while the records
 * stream out, each one's numbers are kept per open file, keyed by pid, and
 * the closing record adds them up.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/xarray.h>

#include "rulectl_task.h"

static char *procname = "rulectl_containers";
module_param(procname, charp, 0444);
MODULE_PARM_DESC(procname,
		 "name of the file made in /proc (default rulectl_containers)");

static struct proc_dir_entry *rcc_entry;

/* What a printed process record adds to its container. */
struct rcc_member {
	char id[RC_CONTAINER_ID_LEN + 1];
	u64 cpu_time_ns;
	u64 rss_kb;
	u64 vsz_kb;
};

/* Per open file; seq_file's mutex serialises every use of it. */
struct rcc_state {
	struct rc_iter it;	/* first: rc_open() and rc_release() use it */
	struct xarray members;	/* tgid -> struct rcc_member */
};

/* A container's totals while the closing record is built. */
struct rcc_container {
	struct list_head node;
	const char *id;		/* points into a struct rcc_member */
	u64 cpu_time_ns;
	u64 rss_kb;
	u64 vsz_kb;
};

/* Drops what was kept for the pids first..last. */
static void rcc_forget(struct rcc_state *st, unsigned long first,
		       unsigned long last)
{
	struct rcc_member *mb;
	unsigned long tgid;

	xa_for_each_range(&st->members, tgid, mb, first, last) {
		xa_erase(&st->members, tgid);
		kfree(mb);
	}
}

static int rcc_remember(struct rcc_state *st, const struct rc_facts *f)
{
	struct rcc_member *mb;
	int err;

	mb = xa_load(&st->members, f->pid);
	if (!mb) {
		mb = kmalloc(sizeof(*mb), GFP_KERNEL);
		if (!mb)
			return -ENOMEM;
		err = xa_err(xa_store(&st->members, f->pid, mb, GFP_KERNEL));
		if (err)
			goto err_free;
	}
	memcpy(mb->id, f->container_id, sizeof(mb->id));
	mb->cpu_time_ns = f->cpu_time_ns;
	mb->rss_kb = f->rss_kb;
	mb->vsz_kb = f->vsz_kb;
	return 0;

err_free:
	kfree(mb);
	return err;
}

/*
 * seq_file may show a record again (when it did not fit) or skip records of
 * processes that exited before a later read() resumed.  Whenever the walk
 * moves from position @from to *pos, nothing kept for the pids in between
 * belongs to this document any more.
 */
static void rcc_forget_skipped(struct seq_file *m, loff_t from, loff_t *pos)
{
	if (*pos > from)
		rcc_forget(m->private, from, *pos - 1);
}

static void *rcc_start(struct seq_file *m, loff_t *pos)
{
	loff_t from = *pos;
	void *v = rc_seq_start(m, pos);

	rcc_forget_skipped(m, from, pos);
	return v;
}

static void *rcc_next(struct seq_file *m, void *v, loff_t *pos)
{
	loff_t from = *pos + 1;

	v = rc_seq_next(m, v, pos);
	rcc_forget_skipped(m, from, pos);
	return v;
}

static struct rcc_container *rcc_find(struct list_head *containers,
				      const char *id)
{
	struct rcc_container *c;

	list_for_each_entry(c, containers, node)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

static void rcc_put_pids(struct seq_file *m, struct rcc_state *st,
			 const char *id)
{
	struct rcc_member *mb;
	unsigned long tgid;
	bool first = true;

	xa_for_each(&st->members, tgid, mb) {
		if (strcmp(mb->id, id))
			continue;
		seq_printf(m, first ? "%lu" : ",%lu", tgid);
		first = false;
	}
}

/* The closing record: the totals of every container seen in this pass. */
static int rcc_put_containers(struct seq_file *m, struct rcc_state *st)
{
	LIST_HEAD(containers);
	struct rcc_container *c, *tmp;
	struct rcc_member *mb;
	unsigned long tgid;
	int err = 0;

	/* In pid order, so containers come in the order of their first pid. */
	xa_for_each(&st->members, tgid, mb) {
		c = rcc_find(&containers, mb->id);
		if (!c) {
			c = kzalloc(sizeof(*c), GFP_KERNEL);
			if (!c) {
				err = -ENOMEM;
				goto out_free;
			}
			c->id = mb->id;
			list_add_tail(&c->node, &containers);
		}
		c->cpu_time_ns += mb->cpu_time_ns;
		c->rss_kb += mb->rss_kb;
		c->vsz_kb += mb->vsz_kb;
	}

	seq_puts(m, "\n],\"containers\":[");
	list_for_each_entry(c, &containers, node) {
		seq_printf(m, "%s\n{\"id\":\"%s\",\"pids\":[",
			   list_is_first(&c->node, &containers) ? "" : ",",
			   c->id);
		rcc_put_pids(m, st, c->id);
		seq_printf(m,
			   "],\"cpu_time_ns\":%llu,\"rss_kb\":%llu,"
			   "\"vsz_kb\":%llu}",
			   c->cpu_time_ns, c->rss_kb, c->vsz_kb);
	}
	seq_puts(m, "\n]}\n");

out_free:
	list_for_each_entry_safe(c, tmp, &containers, node) {
		list_del(&c->node);
		kfree(c);
	}
	return err;
}

static int rcc_show_process(struct seq_file *m, struct rcc_state *st,
			    struct task_struct *task)
{
	struct rc_facts f;
	int err;

	rc_gather(task, st->it.scratch, &f);
	if (!f.has_container) {
		/* An earlier attempt at this record may have kept it. */
		rcc_forget(st, f.pid, f.pid);
		err = SEQ_SKIP;
		goto out_release;
	}

	err = rcc_remember(st, &f);
	if (err)
		goto out_release;
	rc_put_process(m, &st->it, task, &f);

out_release:
	rc_facts_release(&f);
	return err;
}

static int rcc_show(struct seq_file *m, void *v)
{
	struct rcc_state *st = m->private;
	struct task_struct *task = v;

	if (v == SEQ_START_TOKEN) {
		/* A new pass over the processes, also after an lseek(). */
		rcc_forget(st, 0, ULONG_MAX);
		seq_puts(m, "{\"version\":1,\"source\":\"kernel\","
			    "\"processes\":[\n");
		return 0;
	}
	if (v == RC_FOOTER_TOKEN)
		return rcc_put_containers(m, st);
	if (!pid_alive(task)) {
		rcc_forget(st, task->tgid, task->tgid);
		return SEQ_SKIP;
	}
	return rcc_show_process(m, st, task);
}

static const struct seq_operations rcc_seq_ops = {
	.start	= rcc_start,
	.next	= rcc_next,
	.stop	= rc_seq_stop,
	.show	= rcc_show,
};

static int rcc_open(struct inode *inode, struct file *file)
{
	struct rcc_state *st;
	int err;

	err = rc_open(file, &rcc_seq_ops, sizeof(*st));
	if (err)
		return err;

	st = ((struct seq_file *)file->private_data)->private;
	xa_init(&st->members);
	return 0;
}

static int rcc_release(struct inode *inode, struct file *file)
{
	struct rcc_state *st = ((struct seq_file *)file->private_data)->private;

	rcc_forget(st, 0, ULONG_MAX);
	xa_destroy(&st->members);
	return rc_release(inode, file);
}

static const struct proc_ops rcc_proc_ops = {
	.proc_open	= rcc_open,
	.proc_read_iter	= seq_read_iter,
	.proc_lseek	= seq_lseek,
	.proc_release	= rcc_release,
};

static int __init rcc_init(void)
{
	if (!rc_valid_procname(procname)) {
		pr_err("procname must be one file name, not '%s'\n",
		       procname ? procname : "");
		return -EINVAL;
	}

	/* Root only: the command lines of all processes are in it. */
	rcc_entry = proc_create(procname, 0400, NULL, &rcc_proc_ops);
	if (!rcc_entry) {
		pr_err("cannot create /proc/%s (name taken or out of memory)\n",
		       procname);
		return -ENOMEM;
	}

	pr_info("listing container processes in /proc/%s\n", procname);
	return 0;
}

static void __exit rcc_exit(void)
{
	/* Waits for readers inside the file; later reads get -EIO. */
	proc_remove(rcc_entry);
	pr_info("removed /proc/%s\n", procname);
}

module_init(rcc_init);
module_exit(rcc_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("rulectl developers");
MODULE_DESCRIPTION("Container processes and their totals as JSON in /proc");
