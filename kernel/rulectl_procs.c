// SPDX-License-Identifier: GPL-2.0
/*
 * rulectl_procs.c - /proc/rulectl_procs: the host's memory totals and every
 * process of the system as one JSON document, read by the rulectl daemon.
 *
 *   {"version":1,"source":"kernel","mem_total_kb":N,"mem_free_kb":N,
 *    "mem_available_kb":N,"mem_buffers_kb":N,"mem_cached_kb":N,
 *    "processes":[{...},...]}
 *
 * One record per thread-group leader, streamed through seq_file, so the
 * document has no size limit.  rulectl_task.h says what each process field
 * means; the file name can be changed with procname=.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/vmstat.h>

#include "rulectl_task.h"

static char *procname = "rulectl_procs";
module_param(procname, charp, 0444);
MODULE_PARM_DESC(procname,
		 "name of the file made in /proc (default rulectl_procs)");

static struct proc_dir_entry *rcp_entry;

static unsigned long rcp_swapcache_pages(void)
{
#ifdef CONFIG_SWAP
	/*
	 * /proc/meminfo uses total_swapcache_pages(), which is not exported;
	 * NR_SWAPCACHE is raised and lowered next to the same page counts.
	 */
	return global_node_page_state(NR_SWAPCACHE);
#else
	return 0;
#endif
}

/* The totals, computed as meminfo_proc_show() in fs/proc/meminfo.c does. */
static void rcp_put_header(struct seq_file *m)
{
	struct sysinfo i;
	long available, cached;

	si_meminfo(&i);
	available = si_mem_available();
	cached = global_node_page_state(NR_FILE_PAGES) -
		 rcp_swapcache_pages() - i.bufferram;
	if (cached < 0)
		cached = 0;

	seq_printf(m,
		   "{\"version\":1,\"source\":\"kernel\","
		   "\"mem_total_kb\":%lu,\"mem_free_kb\":%lu,"
		   "\"mem_available_kb\":%lu,\"mem_buffers_kb\":%lu,"
		   "\"mem_cached_kb\":%lu,\"processes\":[\n",
		   i.totalram << (PAGE_SHIFT - 10),
		   i.freeram << (PAGE_SHIFT - 10),
		   (unsigned long)available << (PAGE_SHIFT - 10),
		   i.bufferram << (PAGE_SHIFT - 10),
		   (unsigned long)cached << (PAGE_SHIFT - 10));
}

static int rcp_show(struct seq_file *m, void *v)
{
	struct rc_iter *it = m->private;
	struct task_struct *task = v;
	struct rc_facts f;

	if (v == SEQ_START_TOKEN) {
		rcp_put_header(m);
		return 0;
	}
	if (v == RC_FOOTER_TOKEN) {
		seq_puts(m, "\n]}\n");
		return 0;
	}
	/* Reaped since the walk found it: it is no longer in /proc either. */
	if (!pid_alive(task))
		return SEQ_SKIP;

	rc_gather(task, it->scratch, &f);
	rc_put_process(m, it, task, &f);
	rc_facts_release(&f);
	return 0;
}

static const struct seq_operations rcp_seq_ops = {
	.start	= rc_seq_start,
	.next	= rc_seq_next,
	.stop	= rc_seq_stop,
	.show	= rcp_show,
};

static int rcp_open(struct inode *inode, struct file *file)
{
	return rc_open(file, &rcp_seq_ops, sizeof(struct rc_iter));
}

static const struct proc_ops rcp_proc_ops = {
	.proc_open	= rcp_open,
	.proc_read_iter	= seq_read_iter,
	.proc_lseek	= seq_lseek,
	.proc_release	= rc_release,
};

static int __init rcp_init(void)
{
	if (!rc_valid_procname(procname)) {
		pr_err("procname must be one file name, not '%s'\n",
		       procname ? procname : "");
		return -EINVAL;
	}

	/* Root only: the command lines of all processes are in it. */
	rcp_entry = proc_create(procname, 0400, NULL, &rcp_proc_ops);
	if (!rcp_entry) {
		pr_err("cannot create /proc/%s (name taken or out of memory)\n",
		       procname);
		return -ENOMEM;
	}

	pr_info("listing processes in /proc/%s\n", procname);
	return 0;
}

static void __exit rcp_exit(void)
{
	/* Waits for readers inside the file; later reads get -EIO. */
	proc_remove(rcp_entry);
	pr_info("removed /proc/%s\n", procname);
}

module_init(rcp_init);
module_exit(rcp_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("rulectl developers");
MODULE_DESCRIPTION("Every process and the memory totals as JSON in /proc");
