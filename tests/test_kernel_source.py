"""The kernel modules' files as a facts source, and the fallback to /proc."""

import json
import logging
from pathlib import Path

import pytest

from rulectl.collect import (
    Collector,
    FallbackSource,
    KernelSource,
    ProcfsSource,
    SourceError,
)
from rulectl.kernel import load_modules, vermagic_release

CID = "c0" * 32
STAT = "cpu 100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n"


def process(pid: int, name: str, container_id: str | None = None, **extra) -> dict:
    p = {
        "pid": pid,
        "ppid": 1,
        "name": name,
        "cmdline": f"{name} --flag",
        "state": "S",
        "vsz_kb": 2000,
        "rss_kb": 1000 + pid,
        "cpu_time_ns": 5_000_000_000,
        "start_time_ticks": 100 + pid,
        "cgroup": f"/system.slice/docker-{container_id}.scope" if container_id else "/",
        "cgroup_hierarchy": "v2",
        "container_id": container_id,
    }
    return p | extra


def write_tree(tmp: Path, procs_text: str | None, containers_text: str | None):
    proc = tmp / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(STAT)
    (proc / "meminfo").write_text(
        "MemTotal: 1000000 kB\nMemFree: 600000 kB\nMemAvailable: 700000 kB\n"
    )
    (proc / "1").mkdir(exist_ok=True)
    (proc / "1" / "stat").write_text(
        "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 10 20 0 0 20 0 1 0 5 4096000 250 "
        + " ".join(["0"] * 30)
        + "\n"
    )
    (proc / "1" / "cmdline").write_bytes(b"/sbin/init\0")
    (proc / "1" / "cgroup").write_text("0::/init.scope\n")
    for name, text in (
        ("rulectl_procs", procs_text),
        ("rulectl_containers", containers_text),
    ):
        path = tmp / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
    return KernelSource(tmp / "rulectl_procs", tmp / "rulectl_containers", proc)


def valid_docs() -> tuple[str, str]:
    system = {
        "version": 1,
        "source": "kernel",
        "mem_total_kb": 1000000,
        "mem_free_kb": 600000,
        "mem_available_kb": 700000,
        "mem_buffers_kb": 1,
        "mem_cached_kb": 2,
        "processes": [
            process(1, "init"),
            process(42, 'we"ird\\name', CID),
            process(43, "child", CID),
        ],
    }
    containers = {
        "version": 1,
        "source": "kernel",
        "processes": [process(42, 'we"ird\\name', CID), process(43, "child", CID)],
        "containers": [
            {
                "id": CID,
                "pids": [42, 43],
                "cpu_time_ns": 10_000_000_000,
                "rss_kb": 2085,
                "vsz_kb": 4000,
            }
        ],
    }
    return json.dumps(system), json.dumps(containers)


def clock():
    return 1.0


def test_a_valid_reading_gives_processes_containers_and_host_memory(tmp_path):
    source = write_tree(tmp_path, *valid_docs())
    sample = source.read(clock, clock)
    assert sample.source == "kernel"
    assert (sample.mem.total_kb, sample.mem.free_kb, sample.mem.used_kb) == (
        1000000,
        600000,
        300000,
    )
    assert [(p.pid, p.name, p.container_id, p.rss_kb) for p in sample.processes] == [
        (1, "init", None, 1001),
        (42, 'we"ird\\name', CID, 1042),
        (43, "child", CID, 1043),
    ]
    snapshot = Collector(source, sys_root=tmp_path / "sys").sample()
    assert [(c.id, c.pids, c.mem_rss_kb) for c in snapshot.containers] == [
        (CID, [42, 43], 2085)
    ]


@pytest.mark.parametrize(
    ("procs_text", "why"),
    [
        (None, "cannot read"),
        ("", "is not valid JSON"),
        (
            '{"version":1,"source":"kernel","mem_total_kb":1000000,"processes":[{"pid":1,',
            "is not valid JSON",
        ),
        ('{"version":2,"processes":[]}', "not a version 1 document"),
        (
            '{"version":1,"mem_total_kb":1,"mem_free_kb":1,"mem_available_kb":1,'
            '"processes":[{"pid":"one"}]}',
            "lacks a valid 'pid'",
        ),
        ("\x00\xff garbage", "is not valid JSON"),
    ],
    ids=["missing", "empty", "truncated", "wrong-version", "bad-field", "garbage"],
)
def test_a_broken_file_is_a_source_error(tmp_path, procs_text, why):
    source = write_tree(tmp_path, procs_text, valid_docs()[1])
    with pytest.raises(SourceError, match=why):
        source.read(clock, clock)


def test_fallback_reads_proc_for_a_failing_tick_and_logs_once_per_change(
    tmp_path, caplog
):
    system, containers = valid_docs()
    kernel = write_tree(tmp_path, system, containers)
    fallback = FallbackSource(kernel, ProcfsSource(tmp_path / "proc"))
    caplog.set_level(logging.INFO, logger="rulectl.collect")

    sources = []
    for procs_text in (system, "", "", system, system, None):
        write_tree(tmp_path, procs_text, containers)
        sample = fallback.read(clock, clock)
        sources.append(sample.source)
        assert sample.processes, "a failing source never turns into no processes"

    assert sources == ["kernel", "procfs", "procfs", "kernel", "kernel", "procfs"]
    changes = [
        r.getMessage() for r in caplog.records if "facts source" in r.getMessage()
    ]
    assert len(changes) == 4
    assert changes[1].startswith("facts source: procfs (kernel modules unusable: ")


def test_modules_built_for_another_kernel_are_not_loaded(tmp_path):
    for name in ("rulectl_procs", "rulectl_containers"):
        (tmp_path / f"{name}.ko").write_bytes(
            b"\x7fELF...\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0"
        )
    assert vermagic_release(tmp_path / "rulectl_procs.ko") == "6.1.0-57-amd64"
    results = load_modules(tmp_path, {}, sys_root=tmp_path / "sys", release="6.9.0-x")
    assert [(r.module, r.loaded, r.message) for r in results] == [
        ("rulectl_procs", False, "built for kernel 6.1.0-57-amd64, running 6.9.0-x"),
        (
            "rulectl_containers",
            False,
            "built for kernel 6.1.0-57-amd64, running 6.9.0-x",
        ),
    ]


def test_modules_already_loaded_or_not_built(tmp_path):
    (tmp_path / "sys" / "module" / "rulectl_procs").mkdir(parents=True)
    results = load_modules(tmp_path / "ko", {}, sys_root=tmp_path / "sys", release="x")
    assert [(r.loaded, r.message) for r in results] == [
        (True, "already loaded"),
        (
            False,
            f"not built ({tmp_path / 'ko' / 'rulectl_containers.ko'} is missing; "
            "make -C kernel)",
        ),
    ]
