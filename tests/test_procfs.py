"""Specifications of the /proc and cgroup parsers in rulectl/procfs.py.

Each test feeds the text of one file, as the kernel writes it, and checks the
named fields that come out. Cases Cnn are those of ../shared/cases/README.md.
"""

from __future__ import annotations

import pytest

from rulectl.procfs import (
    CpuTimes,
    MemInfo,
    StatFields,
    cgroup_path_of,
    container_id_from_cgroup,
    parse_cgroup_memory_kb,
    parse_cmdline,
    parse_meminfo,
    parse_proc_stat,
    parse_stat,
)

# Container ids as Docker prints them with --no-trunc.
CID_A = "210c2951024b62e27d9029f13512bcaf70b2168f93b0d9d0c3f00c89c6618abd"
CID_B = "bb7154fc128906e701bcbec0072011978eb35a86666a5af6bbac294696394b5d"

# Full /proc/PID/stat lines (52 fields). Fields after the name, by number:
# 3 state, 4 ppid, 14 utime, 15 stime, 22 starttime (ticks), 23 vsize (bytes),
# 24 rss (pages).
STAT_MY_JOB = (
    "4242 (my (job) x) S 1 4242 4242 0 -1 4194560 1850 0 3 0 731 269 0 0 20 0 "
    "3 0 83681 148533248 5120 18446744073709551615 94541027287040 "
    "94541027306921 140729232839856 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 "
    "94541027322928 94541027324544 94541569114112 140729232845529 "
    "140729232845549 140729232845549 140729232846827 0\n"
)
STAT_RUNNER = (
    "4243 (runner-(nam) R 1 4243 4243 0 -1 4194304 101 0 0 0 12 8 0 0 20 0 "
    "1 0 90210 3133440 408 18446744073709551615 94541027287040 94541027306921 "
    "140729232839856 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94541027322928 "
    "94541027324544 94541569114112 140729232845529 140729232845549 "
    "140729232845549 140729232846827 0\n"
)


# --- /proc/PID/stat (C01) -------------------------------------------------


def test_stat_fixtures_have_the_kernels_52_fields() -> None:
    for line in (STAT_MY_JOB, STAT_RUNNER):
        after_name = line[line.rindex(")") + 1 :].split()
        assert 2 + len(after_name) == 52


def test_parse_stat_ends_a_name_with_spaces_and_parens_at_the_last_paren() -> None:
    assert parse_stat(STAT_MY_JOB) == StatFields(
        pid=4242,
        name="my (job) x",
        state="S",
        ppid=1,
        cpu_ticks=731 + 269,
        start_ticks=83681,
        vsz_bytes=148533248,
        rss_pages=5120,
    )


def test_parse_stat_accepts_a_name_with_an_unbalanced_parenthesis() -> None:
    assert parse_stat(STAT_RUNNER) == StatFields(
        pid=4243,
        name="runner-(nam",
        state="R",
        ppid=1,
        cpu_ticks=12 + 8,
        start_ticks=90210,
        vsz_bytes=3133440,
        rss_pages=408,
    )


def test_parse_stat_keeps_paren_space_pairs_inside_the_name() -> None:
    line = STAT_RUNNER.replace("(runner-(nam)", "(a) b) c)")

    fields = parse_stat(line)

    assert (fields.pid, fields.name, fields.state, fields.ppid) == (
        4243,
        "a) b) c",
        "R",
        1,
    )


def test_parse_stat_rejects_the_empty_stat_of_a_vanished_process() -> None:
    # The collector skips a process whose stat it cannot parse; the parser's
    # part of that contract is to raise ValueError rather than invent fields.
    with pytest.raises(ValueError):
        parse_stat("")


# --- /proc/PID/cmdline ----------------------------------------------------


def test_parse_cmdline_joins_nul_separated_argv_with_spaces() -> None:
    assert parse_cmdline(b"sleep\0infinity\0") == "sleep infinity"


def test_parse_cmdline_of_a_kernel_thread_is_empty() -> None:
    assert parse_cmdline(b"") == ""


def test_parse_cmdline_replaces_bytes_that_are_not_utf8() -> None:
    assert parse_cmdline(b"cat\0caf\xe9.txt\0") == "cat caf\ufffd.txt"


# --- /proc/PID/cgroup -> container id (C03) ---------------------------------


@pytest.mark.parametrize(
    ("cgroup_text", "expected"),
    [
        pytest.param(
            f"0::/system.slice/docker-{CID_A}.scope\n",
            CID_A,
            id="v2-systemd-driver",
        ),
        pytest.param(f"4:cpuacct:/docker/{CID_A}\n", CID_A, id="v1-cgroupfs"),
        pytest.param(
            f"5:cpu,cpuacct:/docker/{CID_A}/docker/{CID_B}\n",
            CID_B,
            id="nested-docker-innermost",
        ),
        pytest.param(
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"cri-containerd-{CID_A}.scope\n",
            CID_A,
            id="kubepods-containerd",
        ),
        pytest.param(
            "0::/kubepods.slice/kubepods-besteffort.slice/"
            "kubepods-besteffort-pod0f9a1c2e_4b7d_4e21_9c3a_1d2e3f4a5b6c.slice/"
            f"crio-{CID_A}.scope\n",
            CID_A,
            id="kubepods-crio",
        ),
        pytest.param(
            f"0::/machine.slice/libpod-{CID_A}.scope\n", CID_A, id="podman-libpod"
        ),
        pytest.param(
            f"0::/system.slice/docker-{CID_A}.scope/init.scope\n",
            CID_A,
            id="systemd-inside-container",
        ),
        pytest.param("0::/system.slice/containerd.service\n", None, id="containerd"),
        pytest.param("0::/\n", None, id="v2-root"),
        pytest.param(
            "0::/user.slice/user-1000.slice/session-2.scope\n", None, id="login"
        ),
        pytest.param("", None, id="empty-file"),
    ],
)
def test_container_id_from_cgroup_is_the_innermost_64_hex_component(
    cgroup_text: str, expected: str | None
) -> None:
    assert container_id_from_cgroup(cgroup_text) == expected


def test_container_id_from_cgroup_scans_every_line_of_a_hybrid_host() -> None:
    # cgroup v1 controllers name the container; the unified line only names
    # containerd.service (needrestart#234).
    text = (
        f"12:pids:/docker/{CID_A}\n"
        f"11:memory:/docker/{CID_A}\n"
        f"10:cpu,cpuacct:/docker/{CID_A}\n"
        f"9:blkio:/docker/{CID_A}\n"
        f"1:name=systemd:/docker/{CID_A}\n"
        "0::/system.slice/containerd.service\n"
    )

    assert container_id_from_cgroup(text) == CID_A


def test_container_id_is_found_on_a_v1_line_after_the_unified_line() -> None:
    text = f"0::/system.slice/containerd.service\n4:cpuacct:/docker/{CID_A}\n"

    assert container_id_from_cgroup(text) == CID_A


def test_a_65_hex_component_is_not_a_container_id() -> None:
    assert container_id_from_cgroup(f"0::/docker/{CID_A}f\n") is None


def test_cgroup_path_of_a_v2_process_is_its_unified_path() -> None:
    text = f"0::/system.slice/docker-{CID_A}.scope\n"

    assert cgroup_path_of(text) == f"/system.slice/docker-{CID_A}.scope"


def test_cgroup_path_of_a_v1_process_is_its_memory_controller_path() -> None:
    text = (
        f"12:pids:/docker/{CID_A}\n"
        f"11:memory:/docker/{CID_B}\n"
        f"4:cpu,cpuacct:/docker/{CID_A}\n"
    )

    assert cgroup_path_of(text) == f"/docker/{CID_B}"


# --- /proc/meminfo (C04) --------------------------------------------------


def test_parse_meminfo_uses_mem_available_when_the_kernel_has_it() -> None:
    text = (
        "MemTotal:       24683792 kB\n"
        "MemFree:        23195652 kB\n"
        "MemAvailable:   23650188 kB\n"
        "Buffers:           15352 kB\n"
        "Cached:           597708 kB\n"
        "SwapCached:            0 kB\n"
        "HugePages_Total:       0\n"
    )

    mem = parse_meminfo(text)

    assert mem == MemInfo(total_kb=24683792, free_kb=23195652, available_kb=23650188)
    assert mem.used_kb == 24683792 - 23650188


def test_parse_meminfo_without_mem_available_counts_cache_as_available() -> None:
    # Kernels before 3.14: no MemAvailable line.
    text = (
        "MemTotal:        1000000 kB\n"
        "MemFree:          100000 kB\n"
        "Buffers:           50000 kB\n"
        "Cached:           350000 kB\n"
        "SwapCached:            0 kB\n"
        "Active:           400000 kB\n"
        "Inactive:         300000 kB\n"
        "SwapTotal:             0 kB\n"
        "SwapFree:              0 kB\n"
    )

    mem = parse_meminfo(text)

    assert mem == MemInfo(total_kb=1000000, free_kb=100000, available_kb=500000)
    assert mem.used_kb == 500000
    assert 100 * mem.used_kb / mem.total_kb == 50.0


# --- /proc/stat (C04) -----------------------------------------------------


PROC_STAT_4_CPUS = (
    "cpu  1000 0 200 8000 100 0 0 0 400 0\n"
    "cpu0 250 0 50 2000 25 0 0 0 100 0\n"
    "cpu1 250 0 50 2000 25 0 0 0 100 0\n"
    "cpu2 250 0 50 2000 25 0 0 0 100 0\n"
    "cpu3 250 0 50 2000 25 0 0 0 100 0\n"
    "intr 479719 0 0 0 0\n"
    "ctxt 1127985\n"
    "btime 1733310000\n"
    "processes 12302\n"
    "procs_running 1\n"
    "procs_blocked 0\n"
    "softirq 512345 0 1 2 3 4 5 6 7 8 9\n"
)


def test_parse_proc_stat_leaves_guest_time_out_of_the_total() -> None:
    # guest (400) is already inside user (1000): total 9300, not 9700.
    assert parse_proc_stat(PROC_STAT_4_CPUS) == CpuTimes(
        total_ticks=9300, busy_ticks=1200, ncpu=4
    )


def test_parse_proc_stat_counts_idle_and_iowait_as_the_only_idle_time() -> None:
    text = "cpu  100 20 30 500 40 5 5 10 0 0\ncpu0 100 20 30 500 40 5 5 10 0 0\n"

    assert parse_proc_stat(text) == CpuTimes(total_ticks=710, busy_ticks=170, ncpu=1)


def test_parse_proc_stat_reads_an_old_kernels_four_field_cpu_line() -> None:
    text = "cpu  100 0 50 850\ncpu0 50 0 25 425\ncpu1 50 0 25 425\n"

    assert parse_proc_stat(text) == CpuTimes(total_ticks=1000, busy_ticks=150, ncpu=2)


# --- cgroup memory (C06) --------------------------------------------------


def test_parse_cgroup_memory_kb_v2_subtracts_inactive_file() -> None:
    stat = (
        "anon 150000000\n"
        "file 2750000000\n"
        "kernel_stack 16384\n"
        "shmem 0\n"
        "file_mapped 40000000\n"
        "inactive_anon 150000000\n"
        "active_anon 0\n"
        "inactive_file 2700000000\n"
        "active_file 50000000\n"
        "unevictable 0\n"
        "workingset_refault_file 0\n"
    )

    assert parse_cgroup_memory_kb(2_900_000_000, stat) == 200_000_000 // 1024
    assert parse_cgroup_memory_kb(2_900_000_000, stat) == 195312


def test_parse_cgroup_memory_kb_v1_subtracts_total_inactive_file() -> None:
    # The local inactive_file (2.6e9) leaves out child cgroups; the
    # hierarchical total_inactive_file (2.7e9) is the one that counts.
    stat = (
        "cache 2750000000\n"
        "rss 150000000\n"
        "rss_huge 0\n"
        "shmem 0\n"
        "mapped_file 40000000\n"
        "inactive_anon 150000000\n"
        "active_anon 0\n"
        "inactive_file 2600000000\n"
        "active_file 50000000\n"
        "unevictable 0\n"
        "hierarchical_memory_limit 4000000000\n"
        "total_cache 2750000000\n"
        "total_rss 150000000\n"
        "total_inactive_anon 150000000\n"
        "total_active_anon 0\n"
        "total_inactive_file 2700000000\n"
        "total_active_file 50000000\n"
        "total_unevictable 0\n"
    )

    assert parse_cgroup_memory_kb(2_900_000_000, stat) == 195312


def test_parse_cgroup_memory_kb_never_goes_below_zero() -> None:
    assert parse_cgroup_memory_kb(1_000_000, "inactive_file 2000000\n") == 0


def test_parse_cgroup_memory_kb_without_inactive_file_is_the_whole_usage() -> None:
    assert parse_cgroup_memory_kb(4_096_000, "anon 4096000\n") == 4000
