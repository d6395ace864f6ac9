"""Specifications of the userspace collector in rulectl/collect.py.

Most tests build a small /proc (and /sys) tree in tmp_path with files in the
kernel's own formats, read it through ProcfsSource and Collector with a fake
monotonic clock, and check the exact facts that come out. The last tests read
the real /proc of this machine. Cases Cnn are those of
../shared/cases/README.md.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rulectl import collect
from rulectl.collect import (
    CLOCK_TICKS,
    NS_PER_TICK,
    PAGE_KB,
    Collector,
    ContainerMeta,
    ProcfsSource,
    RawProcess,
    cpu_percent,
    read_cgroup_working_set_kb,
)
from rulectl.model import ContainerFacts, HostFacts, ProcessFacts, Snapshot

CID_A = "210c2951024b62e27d9029f13512bcaf70b2168f93b0d9d0c3f00c89c6618abd"
CID_B = "bb7154fc128906e701bcbec0072011978eb35a86666a5af6bbac294696394b5d"
CID_C = "044de1be26b80a69057736555d60b0ab97178a2c666cd1c6f8d948be1e456a89"

HOST_CGROUP = "0::/user.slice/user-1000.slice/session-2.scope\n"


def v2_cgroup(cid: str) -> str:
    """/proc/PID/cgroup of a container under cgroup v2 and the systemd driver."""
    return f"0::/system.slice/docker-{cid}.scope\n"


def v1_cgroup(cid: str) -> str:
    """/proc/PID/cgroup of a container under cgroup v1 and the cgroupfs driver."""
    return (
        f"12:pids:/docker/{cid}\n"
        f"11:memory:/docker/{cid}\n"
        f"10:cpu,cpuacct:/docker/{cid}\n"
        f"9:blkio:/docker/{cid}\n"
        f"1:name=systemd:/docker/{cid}\n"
    )


# --- fixture /proc trees ----------------------------------------------------


@dataclass
class FakeProcess:
    """What the fixture tree says about one process, in the kernel's units."""

    pid: int
    name: str
    argv: list[str]
    cgroup: str = HOST_CGROUP
    state: str = "S"
    ppid: int = 1
    utime: int = 0  # clock ticks
    stime: int = 0  # clock ticks
    start_ticks: int = 1000
    vsz_bytes: int = 1_536_000
    rss_pages: int = 225
    kernel_thread: bool = False


def stat_line(p: FakeProcess) -> str:
    """/proc/PID/stat as the kernel writes it: 52 fields."""
    if p.kernel_thread:
        flags, code_addrs, data_addrs = 2129984, [0] * 3, [0] * 7
    else:
        flags = 4194560
        code_addrs = [94541027287040, 94541027306921, 140729232839856]
        data_addrs = [
            94541027322928,
            94541027324544,
            94541569114112,
            140729232845529,
            140729232845549,
            140729232845549,
            140729232846827,
        ]
    code = " ".join(str(x) for x in code_addrs)
    data = " ".join(str(x) for x in data_addrs)
    line = (
        # 1-9: pid comm state ppid pgrp session tty_nr tpgid flags
        f"{p.pid} ({p.name}) {p.state} {p.ppid} {p.pid} {p.pid} 0 -1 {flags} "
        # 10-22: faults, utime stime cutime cstime, priority nice threads,
        # itrealvalue starttime
        f"120 0 0 0 {p.utime} {p.stime} 0 0 20 0 1 0 {p.start_ticks} "
        # 23-28: vsize rss rsslim startcode endcode startstack
        f"{p.vsz_bytes} {p.rss_pages} 18446744073709551615 {code} "
        # 29-44: esp eip, signal masks, wchan nswap cnswap, exit_signal
        # processor rt_priority policy delayacct guest_time cguest_time
        "0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 "
        # 45-52: data and argument/environment addresses, exit_code
        f"{data} 0\n"
    )
    assert 2 + len(line[line.rindex(")") + 1 :].split()) == 52
    return line


STATE_WORDS = {"R": "running", "S": "sleeping", "D": "disk sleep", "Z": "zombie"}


def status_text(p: FakeProcess) -> str:
    """/proc/PID/status; a kernel thread has no Vm* lines at all."""
    head = (
        f"Name:\t{p.name}\n"
        "Umask:\t0022\n"
        f"State:\t{p.state} ({STATE_WORDS[p.state]})\n"
        f"Tgid:\t{p.pid}\n"
        "Ngid:\t0\n"
        f"Pid:\t{p.pid}\n"
        f"PPid:\t{p.ppid}\n"
        "TracerPid:\t0\n"
        "Uid:\t0\t0\t0\t0\n"
        "Gid:\t0\t0\t0\t0\n"
        "FDSize:\t64\n"
        f"Kthread:\t{int(p.kernel_thread)}\n"
    )
    vm = ""
    if not p.kernel_thread:
        vm = (
            f"VmPeak:\t{p.vsz_bytes // 1024:8d} kB\n"
            f"VmSize:\t{p.vsz_bytes // 1024:8d} kB\n"
            f"VmHWM:\t{p.rss_pages * PAGE_KB:8d} kB\n"
            f"VmRSS:\t{p.rss_pages * PAGE_KB:8d} kB\n"
        )
    tail = "Threads:\t1\nSigQ:\t0/96369\n"
    return head + vm + tail


def write_process(proc_root: Path, p: FakeProcess) -> None:
    """Writes (or rewrites) PID/stat, cmdline, cgroup and status."""
    base = proc_root / str(p.pid)
    base.mkdir(parents=True, exist_ok=True)
    (base / "stat").write_text(stat_line(p))
    (base / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in p.argv))
    (base / "cgroup").write_text(p.cgroup)
    (base / "status").write_text(status_text(p))


MEMINFO_4G = (
    "MemTotal:        4000000 kB\n"
    "MemFree:         2500000 kB\n"
    "MemAvailable:    3000000 kB\n"
    "Buffers:          100000 kB\n"
    "Cached:           500000 kB\n"
    "SwapCached:            0 kB\n"
    "SwapTotal:             0 kB\n"
    "SwapFree:              0 kB\n"
)


def proc_stat_text(
    user: int, system: int, idle: int, iowait: int, guest: int, ncpu: int = 4
) -> str:
    """/proc/stat whose "cpu" line is the sum of ncpu equal per-cpu lines."""

    def cpu_line(label: str, n: int) -> str:
        return (
            f"{label} {user * n} 0 {system * n} {idle * n} {iowait * n} "
            f"0 0 0 {guest * n} 0\n"
        )

    lines = [cpu_line("cpu ", ncpu)]
    lines += [cpu_line(f"cpu{i}", 1) for i in range(ncpu)]
    lines += [
        "intr 479719 0 0 0 0\n",
        "ctxt 1127985\n",
        "btime 1733310000\n",
        "processes 12302\n",
        "procs_running 1\n",
        "procs_blocked 0\n",
    ]
    return "".join(lines)


# Per-cpu: user 250 system 50 idle 2000 iowait 25 guest 100; the aggregate is
# C04's line "cpu 1000 0 200 8000 100 0 0 0 400 0".
PROC_STAT_C04 = proc_stat_text(user=250, system=50, idle=2000, iowait=25, guest=100)


def make_proc_tree(
    root: Path,
    processes: list[FakeProcess],
    meminfo: str = MEMINFO_4G,
    proc_stat: str = PROC_STAT_C04,
) -> Path:
    """A /proc tree in root with host files and one directory per process."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "meminfo").write_text(meminfo)
    (root / "stat").write_text(proc_stat)
    (root / "self").mkdir(exist_ok=True)  # non-numeric entries are not pids
    (root / "sys").mkdir(exist_ok=True)
    for p in processes:
        write_process(root, p)
    return root


def write_cgroup_memory(
    base: Path, usage_file: str, usage_bytes: int, stat: str
) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / usage_file).write_text(f"{usage_bytes}\n")
    (base / "memory.stat").write_text(stat)


# C06: usage 2.9e9 bytes of which 2.7e9 is inactive page cache.
MEMORY_STAT_V2 = (
    "anon 150000000\n"
    "file 2750000000\n"
    "kernel_stack 16384\n"
    "inactive_anon 150000000\n"
    "active_anon 0\n"
    "inactive_file 2700000000\n"
    "active_file 50000000\n"
    "unevictable 0\n"
)
MEMORY_STAT_V1 = (
    "cache 2750000000\n"
    "rss 150000000\n"
    "inactive_anon 150000000\n"
    "active_anon 0\n"
    "inactive_file 2700000000\n"
    "active_file 50000000\n"
    "hierarchical_memory_limit 4000000000\n"
    "total_cache 2750000000\n"
    "total_rss 150000000\n"
    "total_inactive_anon 150000000\n"
    "total_active_anon 0\n"
    "total_inactive_file 2700000000\n"
    "total_active_file 50000000\n"
)
WORKING_SET_KB_C06 = 200_000_000 // 1024  # 195312


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now_s: float = 5000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


WALL_S = 1733318400.5


def make_collector(
    proc_root: Path,
    sys_root: Path,
    clock: FakeClock,
    list_containers: Callable[[], list[ContainerMeta]] | None = None,
) -> Collector:
    return Collector(
        ProcfsSource(proc_root),
        list_containers=list_containers,
        sys_root=sys_root,
        hostname="node-1",
        clock=clock,
        wall=lambda: WALL_S,
    )


@dataclass
class Tree:
    proc: Path
    sys: Path
    clock: FakeClock = field(default_factory=FakeClock)

    def collector(
        self, list_containers: Callable[[], list[ContainerMeta]] | None = None
    ) -> Collector:
        return make_collector(self.proc, self.sys, self.clock, list_containers)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Empty proc and sys roots; sys_root never falls through to the real /sys."""
    sys_root = tmp_path / "sys"
    (sys_root / "fs" / "cgroup").mkdir(parents=True)
    return Tree(proc=tmp_path / "proc", sys=sys_root)


def pids_of(snapshot: Snapshot) -> list[int]:
    return sorted(p.pid for p in snapshot.processes)


def process(snapshot: Snapshot, pid: int) -> ProcessFacts:
    (found,) = [p for p in snapshot.processes if p.pid == pid]
    return found


def container(snapshot: Snapshot, cid: str) -> ContainerFacts:
    found = snapshot.container(cid)
    assert found is not None, f"no container {cid[:12]} in the snapshot"
    return found


# --- ProcfsSource: one process ----------------------------------------------


def test_read_process_takes_each_field_from_its_proc_file(tree: Tree) -> None:
    worker = FakeProcess(
        pid=4242,
        name="my (job) x",
        argv=["/usr/bin/python3", "-m", "job", "--name", "x"],
        cgroup=v2_cgroup(CID_A),
        ppid=4200,
        utime=731,
        stime=269,
        start_ticks=83681,
        vsz_bytes=148_533_248,
        rss_pages=5120,
    )
    make_proc_tree(tree.proc, [worker])

    assert ProcfsSource(tree.proc).read_process(4242) == RawProcess(
        pid=4242,
        ppid=4200,
        name="my (job) x",
        cmdline="/usr/bin/python3 -m job --name x",
        state="S",
        container_id=CID_A,
        vsz_kb=145_052,
        rss_kb=5120 * PAGE_KB,
        cpu_time_ns=1000 * NS_PER_TICK,
        start_ticks=83681,
        cgroup=f"/system.slice/docker-{CID_A}.scope",
    )


def test_a_host_process_has_no_container_id(tree: Tree) -> None:
    make_proc_tree(tree.proc, [FakeProcess(pid=800, name="sshd", argv=["sshd"])])

    raw = ProcfsSource(tree.proc).read_process(800)

    assert raw is not None
    assert raw.container_id is None


# --- ProcfsSource: processes that vanish or lack fields (C02) ---------------


def test_pids_without_a_readable_stat_are_skipped_and_the_snapshot_completes(
    tree: Tree,
) -> None:
    sleeper = FakeProcess(pid=4242, name="sleep", argv=["sleep", "infinity"])
    kthread = FakeProcess(
        pid=2,
        name="kthreadd",
        argv=[],
        cgroup="0::/\n",
        ppid=0,
        vsz_bytes=0,
        rss_pages=0,
        kernel_thread=True,
    )
    gone = FakeProcess(pid=4300, name="short", argv=["short"])
    zombie = FakeProcess(pid=4301, name="defunct", argv=[], state="Z")
    make_proc_tree(tree.proc, [sleeper, kthread, gone, zombie])
    (tree.proc / "4300" / "stat").unlink()  # /proc/4300 exists, stat is gone
    (tree.proc / "4301" / "stat").write_text("")  # read as empty

    snapshot = tree.collector().sample()

    assert pids_of(snapshot) == [2, 4242]


def test_a_kernel_thread_without_vm_lines_has_rss_0_and_an_empty_cmdline(
    tree: Tree,
) -> None:
    kthread = FakeProcess(
        pid=2,
        name="kthreadd",
        argv=[],
        cgroup="0::/\n",
        ppid=0,
        vsz_bytes=0,
        rss_pages=0,
        kernel_thread=True,
    )
    make_proc_tree(tree.proc, [kthread])
    assert "VmRSS" not in (tree.proc / "2" / "status").read_text()

    snapshot = tree.collector().sample()

    facts = process(snapshot, 2)
    assert (facts.name, facts.cmdline, facts.rss_kb, facts.vsz_kb) == (
        "kthreadd",
        "",
        0,
        0,
    )
    assert facts.mem_percent == 0.0


def test_a_process_whose_read_raises_process_lookup_error_is_skipped(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_proc_tree(
        tree.proc,
        [
            FakeProcess(pid=4242, name="sleep", argv=["sleep", "infinity"]),
            FakeProcess(pid=4300, name="exiting", argv=["exiting"]),
        ],
    )
    vanishing = tree.proc / "4300" / "cgroup"
    real_open = open

    def open_or_esrch(path, *args, **kwargs):
        if Path(path) == vanishing:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(collect, "open", open_or_esrch, raising=False)

    snapshot = tree.collector().sample()

    assert pids_of(snapshot) == [4242]


def test_a_process_that_exits_between_listing_and_reading_is_skipped(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_proc_tree(
        tree.proc,
        [
            FakeProcess(pid=4242, name="sleep", argv=["sleep", "infinity"]),
            FakeProcess(pid=4300, name="exiting", argv=["exiting"]),
        ],
    )
    exiting_dir = tree.proc / "4300"
    real_open = open

    def exit_just_before_open(path, *args, **kwargs):
        # /proc was listed with 4300 in it; the process dies now.
        if Path(path).parent == exiting_dir:
            shutil.rmtree(exiting_dir, ignore_errors=True)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(collect, "open", exit_just_before_open, raising=False)

    snapshot = tree.collector().sample()

    assert pids_of(snapshot) == [4242]
    assert not exiting_dir.exists()


def test_a_truncated_stat_line_is_skipped(tree: Tree) -> None:
    make_proc_tree(
        tree.proc,
        [
            FakeProcess(pid=4242, name="sleep", argv=["sleep", "infinity"]),
            FakeProcess(pid=4300, name="cut", argv=["cut"]),
        ],
    )
    (tree.proc / "4300" / "stat").write_text("4300 (cut) S 1 4300 4300 0 -1\n")

    assert pids_of(tree.collector().sample()) == [4242]


# --- host totals (C04) ------------------------------------------------------


def test_host_facts_name_cpus_and_memory_from_meminfo(tree: Tree) -> None:
    make_proc_tree(tree.proc, [])

    snapshot = tree.collector().sample()

    assert snapshot.time == WALL_S
    assert snapshot.source == "procfs"
    assert snapshot.host == HostFacts(
        name="node-1",
        ncpu=4,
        mem_total_kb=4_000_000,
        mem_free_kb=2_500_000,
        mem_used_kb=1_000_000,
        cpu_percent=None,
    )


def test_host_used_memory_without_mem_available_leaves_page_cache_out(
    tree: Tree,
) -> None:
    meminfo = (
        "MemTotal:        1000000 kB\n"
        "MemFree:          100000 kB\n"
        "Buffers:           50000 kB\n"
        "Cached:           350000 kB\n"
        "SwapCached:            0 kB\n"
    )
    make_proc_tree(tree.proc, [], meminfo=meminfo)

    host = tree.collector().sample().host

    assert host.mem_used_kb == 500_000
    assert host.mem_used_percent == 50.0


def test_host_cpu_percent_is_unknown_on_the_first_sample(tree: Tree) -> None:
    make_proc_tree(tree.proc, [])

    assert tree.collector().sample().host.cpu_percent is None


def test_host_cpu_percent_is_busy_share_times_cpus_with_guest_inside_user(
    tree: Tree,
) -> None:
    make_proc_tree(tree.proc, [])
    collector = tree.collector()
    collector.sample()

    # Over all 4 cpus: user +200 (of which guest +100), system +100,
    # idle +800, iowait +100. Total 1200 ticks, busy 300: a quarter of 4 cores.
    (tree.proc / "stat").write_text(
        proc_stat_text(user=300, system=75, idle=2200, iowait=50, guest=125)
    )
    tree.clock.advance(3.0)
    host = collector.sample().host

    assert host.cpu_percent == 100.0 * 4 * 300 / 1200
    assert host.cpu_percent == 100.0


# --- CPU % of processes and containers (C05) --------------------------------


def test_cpu_percent_counts_one_full_core_as_100() -> None:
    # 0.4 s of CPU time in 2 s of wall time.
    assert cpu_percent(400_000_000, 2.0) == 20.0


def test_cpu_percent_of_one_core_is_a_quarter_of_a_4_cpu_host() -> None:
    ncpu = 4

    assert cpu_percent(400_000_000, 2.0) / ncpu == 5.0
    assert cpu_percent(4 * 2_000_000_000, 2.0) == 400.0


def test_cpu_percent_is_unknown_without_elapsed_time_or_after_a_reset() -> None:
    assert cpu_percent(400_000_000, 0.0) is None
    assert cpu_percent(-10_000_000, 2.0) is None


def test_first_sample_of_a_process_and_its_container_has_no_cpu_percent(
    tree: Tree,
) -> None:
    worker = FakeProcess(
        pid=4242, name="stress", argv=["stress"], cgroup=v2_cgroup(CID_A), utime=500
    )
    make_proc_tree(tree.proc, [worker])

    snapshot = tree.collector().sample()

    assert process(snapshot, 4242).cpu_percent is None
    assert container(snapshot, CID_A).cpu_percent is None


def test_container_using_0_4_s_of_cpu_in_2_s_is_at_20_percent(tree: Tree) -> None:
    ticks_in_0_4_s = 40 * CLOCK_TICKS // 100
    worker = FakeProcess(
        pid=4242,
        name="stress",
        argv=["stress", "--cpu", "1"],
        cgroup=v2_cgroup(CID_A),
        utime=9000,
        stime=1000,
    )
    make_proc_tree(tree.proc, [worker])
    collector = tree.collector()
    collector.sample()

    worker.utime += ticks_in_0_4_s * 3 // 4
    worker.stime += ticks_in_0_4_s - ticks_in_0_4_s * 3 // 4
    write_process(tree.proc, worker)
    tree.clock.advance(2.0)
    snapshot = collector.sample()

    assert process(snapshot, 4242).cpu_percent == 20.0
    assert container(snapshot, CID_A).cpu_percent == 20.0
    assert snapshot.host.ncpu == 4
    assert container(snapshot, CID_A).cpu_percent / snapshot.host.ncpu == 5.0


def test_a_reused_pid_is_a_new_process_with_no_cpu_percent(tree: Tree) -> None:
    old = FakeProcess(pid=4242, name="old", argv=["old"], start_ticks=83681, utime=100)
    make_proc_tree(tree.proc, [old])
    collector = tree.collector()
    collector.sample()

    new = FakeProcess(pid=4242, name="new", argv=["new"], start_ticks=90210, utime=300)
    shutil.rmtree(tree.proc / "4242")
    write_process(tree.proc, new)
    tree.clock.advance(2.0)
    snapshot = collector.sample()

    facts = process(snapshot, 4242)
    assert (facts.name, facts.cpu_percent) == ("new", None)


def test_a_container_whose_processes_are_all_new_has_no_cpu_percent(
    tree: Tree,
) -> None:
    # The container was seen before, but it restarted: none of its processes
    # has a previous reading, so its CPU % is unknown, not 0.
    before = FakeProcess(
        pid=4242,
        name="app",
        argv=["app"],
        cgroup=v2_cgroup(CID_A),
        start_ticks=83681,
        utime=100,
    )
    make_proc_tree(tree.proc, [before])
    collector = tree.collector()
    collector.sample()

    after = FakeProcess(
        pid=4400,
        name="app",
        argv=["app"],
        cgroup=v2_cgroup(CID_A),
        start_ticks=90210,
        utime=150,
    )
    shutil.rmtree(tree.proc / "4242")
    write_process(tree.proc, after)
    tree.clock.advance(2.0)
    snapshot = collector.sample()

    assert process(snapshot, 4400).cpu_percent is None
    assert container(snapshot, CID_A).cpu_percent is None


# --- containers: sums and Docker metadata -----------------------------------


def test_container_cpu_and_memory_are_sums_over_parent_and_child(
    tree: Tree,
) -> None:
    parent = FakeProcess(
        pid=4300,
        name="sh",
        argv=["sh", "-c", "stress --cpu 1"],
        cgroup=v2_cgroup(CID_A),
        ppid=4280,
        utime=10,
        vsz_bytes=2_048_000,
        rss_pages=250,
    )
    child = FakeProcess(
        pid=4301,
        name="stress",
        argv=["stress", "--cpu", "1"],
        cgroup=v2_cgroup(CID_A),
        ppid=4300,
        utime=20,
        vsz_bytes=4_096_000,
        rss_pages=750,
    )
    make_proc_tree(tree.proc, [parent, child])
    collector = tree.collector()
    collector.sample()

    parent.utime += 10 * CLOCK_TICKS // 100  # 0.1 s
    child.utime += 30 * CLOCK_TICKS // 100  # 0.3 s
    write_process(tree.proc, parent)
    write_process(tree.proc, child)
    tree.clock.advance(2.0)
    snapshot = collector.sample()

    assert process(snapshot, 4300).cpu_percent == 5.0
    assert process(snapshot, 4301).cpu_percent == 15.0
    facts = container(snapshot, CID_A)
    assert facts.pids == [4300, 4301]
    assert facts.cpu_percent == 20.0
    assert facts.mem_rss_kb == 1000 * PAGE_KB
    assert facts.mem_percent == 100.0 * 1000 * PAGE_KB / 4_000_000
    assert facts.vsz_kb == 2000 + 4000


def test_process_mem_percent_is_rss_over_total_ram(tree: Tree) -> None:
    make_proc_tree(
        tree.proc,
        [FakeProcess(pid=4242, name="cache", argv=["cache"], rss_pages=100_000)],
    )

    facts = process(tree.collector().sample(), 4242)

    assert facts.rss_kb == 100_000 * PAGE_KB
    assert facts.mem_percent == 100.0 * 100_000 * PAGE_KB / 4_000_000


def test_docker_metadata_names_the_container_and_unlisted_ids_still_appear(
    tree: Tree,
) -> None:
    make_proc_tree(
        tree.proc,
        [
            FakeProcess(
                pid=4242, name="sleep", argv=["sleep"], cgroup=v2_cgroup(CID_A)
            ),
            FakeProcess(
                pid=4500, name="nginx", argv=["nginx"], cgroup=v1_cgroup(CID_B)
            ),
            FakeProcess(pid=800, name="sshd", argv=["sshd"]),
        ],
    )
    listed = ContainerMeta(
        id=CID_A,
        name="low-7",
        image="rulectl/workload:low",
        labels={"rulectl.type": "low"},
        created=1733318300.0,
    )

    snapshot = tree.collector(lambda: [listed]).sample()

    assert sorted(c.id for c in snapshot.containers) == sorted([CID_A, CID_B])
    a = container(snapshot, CID_A)
    assert (a.name, a.image, a.labels, a.created, a.status, a.pids) == (
        "low-7",
        "rulectl/workload:low",
        {"rulectl.type": "low"},
        1733318300.0,
        "running",
        [4242],
    )
    b = container(snapshot, CID_B)
    assert (b.name, b.image, b.labels, b.created, b.pids) == (
        CID_B[:12],
        "",
        {},
        0.0,
        [4500],
    )


def test_a_listed_container_without_visible_processes_has_empty_sums(
    tree: Tree,
) -> None:
    make_proc_tree(tree.proc, [])
    listed = ContainerMeta(
        id=CID_C, name="idle", image="busybox", labels={}, created=1733318000.0
    )

    facts = container(tree.collector(lambda: [listed]).sample(), CID_C)

    assert (facts.pids, facts.mem_rss_kb, facts.vsz_kb, facts.cpu_percent) == (
        [],
        0,
        0,
        None,
    )
    assert facts.mem_working_set_kb is None


# --- cgroup working set (C06) -----------------------------------------------


def test_working_set_v2_is_memory_current_less_inactive_file(tmp_path: Path) -> None:
    cgroup_root = tmp_path / "fs" / "cgroup"
    path = f"/system.slice/docker-{CID_A}.scope"
    write_cgroup_memory(
        cgroup_root / path.lstrip("/"),
        "memory.current",
        2_900_000_000,
        MEMORY_STAT_V2,
    )

    assert read_cgroup_working_set_kb(cgroup_root, path) == WORKING_SET_KB_C06


def test_working_set_v1_is_usage_less_total_inactive_file(tmp_path: Path) -> None:
    cgroup_root = tmp_path / "fs" / "cgroup"
    path = f"/docker/{CID_A}"
    write_cgroup_memory(
        cgroup_root / "memory" / path.lstrip("/"),
        "memory.usage_in_bytes",
        2_900_000_000,
        MEMORY_STAT_V1,
    )

    assert read_cgroup_working_set_kb(cgroup_root, path) == WORKING_SET_KB_C06


def test_working_set_of_a_cgroup_without_memory_files_is_unknown(
    tmp_path: Path,
) -> None:
    cgroup_root = tmp_path / "fs" / "cgroup"
    (cgroup_root / "system.slice" / f"docker-{CID_A}.scope").mkdir(parents=True)

    path = f"/system.slice/docker-{CID_A}.scope"
    assert read_cgroup_working_set_kb(cgroup_root, path) is None


def test_collector_reports_the_v2_container_working_set(tree: Tree) -> None:
    make_proc_tree(
        tree.proc,
        [FakeProcess(pid=4242, name="app", argv=["app"], cgroup=v2_cgroup(CID_A))],
    )
    write_cgroup_memory(
        tree.sys / "fs" / "cgroup" / "system.slice" / f"docker-{CID_A}.scope",
        "memory.current",
        2_900_000_000,
        MEMORY_STAT_V2,
    )

    facts = container(tree.collector().sample(), CID_A)

    assert facts.mem_working_set_kb == WORKING_SET_KB_C06


def test_collector_reports_the_v1_container_working_set(tree: Tree) -> None:
    make_proc_tree(
        tree.proc,
        [FakeProcess(pid=4242, name="app", argv=["app"], cgroup=v1_cgroup(CID_A))],
    )
    write_cgroup_memory(
        tree.sys / "fs" / "cgroup" / "memory" / "docker" / CID_A,
        "memory.usage_in_bytes",
        2_900_000_000,
        MEMORY_STAT_V1,
    )

    facts = container(tree.collector().sample(), CID_A)

    assert facts.mem_working_set_kb == WORKING_SET_KB_C06


def test_collector_reads_the_v1_memory_cgroup_on_a_hybrid_host(tree: Tree) -> None:
    # C03's hybrid host: the v1 controllers hold the container, the unified
    # line names containerd.service, which has a memory cgroup of its own.
    hybrid = v1_cgroup(CID_A) + "0::/system.slice/containerd.service\n"
    make_proc_tree(
        tree.proc, [FakeProcess(pid=4242, name="app", argv=["app"], cgroup=hybrid)]
    )
    memory_root = tree.sys / "fs" / "cgroup" / "memory"
    write_cgroup_memory(
        memory_root / "docker" / CID_A,
        "memory.usage_in_bytes",
        2_900_000_000,
        MEMORY_STAT_V1,
    )
    write_cgroup_memory(
        memory_root / "system.slice" / "containerd.service",
        "memory.usage_in_bytes",
        104_857_600,
        "total_inactive_file 0\n",
    )

    facts = container(tree.collector().sample(), CID_A)

    assert facts.mem_working_set_kb == WORKING_SET_KB_C06


# --- the real /proc of this machine -----------------------------------------


PR_SET_NAME = 15
PR_GET_NAME = 16


@pytest.fixture
def own_name() -> str:
    """Renames this (main) thread to a C01-style name and restores it after."""
    libc = ctypes.CDLL(None, use_errno=True)
    saved = ctypes.create_string_buffer(16)
    assert libc.prctl(PR_GET_NAME, saved, 0, 0, 0) == 0
    name = "rt (my) job)"
    assert libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0) == 0
    yield name
    libc.prctl(PR_SET_NAME, saved.value, 0, 0, 0)


def test_real_proc_shows_this_test_process_with_its_name_and_rss(
    own_name: str,
) -> None:
    raw = ProcfsSource("/proc").read_process(os.getpid())

    assert raw is not None
    assert raw.pid == os.getpid()
    assert raw.ppid == os.getppid()
    assert raw.name == own_name
    assert raw.state == "R"  # it is running: it is reading its own stat
    assert raw.cmdline == " ".join(sys.orig_argv)
    assert raw.rss_kb > 0
    assert raw.rss_kb % PAGE_KB == 0


def test_real_proc_snapshot_includes_this_process(tmp_path: Path) -> None:
    collector = Collector(
        ProcfsSource("/proc"), sys_root=tmp_path / "sys", hostname="this-host"
    )

    snapshot = collector.sample()

    assert os.getpid() in {p.pid for p in snapshot.processes}
    assert snapshot.host.mem_total_kb > 0
    assert 0 < snapshot.host.mem_used_kb < snapshot.host.mem_total_kb
    assert snapshot.host.ncpu >= 1
    assert abs(snapshot.time - time.time()) < 60
