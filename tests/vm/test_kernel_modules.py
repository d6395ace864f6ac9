"""The kernel modules, checked inside a real 6.1 kernel under QEMU.

Everything here reads what one boot of the test VM recorded (see conftest.py
and init.sh). The JSON of both modules is compared with copies of the VM's own
/proc made just before and just after it was read:

- a process alive in both copies must be in the JSON exactly once;
- a process that looked the same in both copies (name, state, RSS, VSZ,
  command line) must have the same facts in the JSON as in /proc;
- the reference rules below (decoded, cmdline_text, cgroup_view) say how a
  /proc reader gets the same values; rulectl's userspace collector must
  follow them too.

Captures: snapA has cgroup v2 only, snapB adds a cgroup v1 cpu,cpuacct
hierarchy, snapC has 1,500 extra processes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

PF_WQ_WORKER = 0x00000020
PF_KTHREAD = 0x00200000
RUNTIME_PREFIXES = ("docker-", "cri-containerd-", "crio-", "libpod-")
ID_RE = re.compile(r"[0-9a-f]{64}")

# What a kernel log must never hold after our modules ran.
KERNEL_TROUBLE = re.compile(
    r"BUG:|kernel BUG|WARNING:|Oops|Call Trace|general protection fault"
    r"|Unable to handle|RIP:|rcu_\w+ (self-)?detected stall|soft lockup"
    r"|hung_task|scheduling while atomic|Voluntary context switch within RCU"
    r"|list_(add|del) corruption|slab-out-of-bounds|use-after-free"
)

MEMINFO_NAMES = {
    "mem_free_kb": "MemFree",
    "mem_available_kb": "MemAvailable",
    "mem_buffers_kb": "Buffers",
    "mem_cached_kb": "Cached",
}
PROCESS_KEYS = {
    "pid", "ppid", "name", "cmdline", "state", "vsz_kb", "rss_kb",
    "cpu_time_ns", "start_time_ticks", "cgroup", "cgroup_hierarchy",
    "container_id",
}  # fmt: skip


# ---- how a /proc reader gets the same values --------------------------


def decoded(raw: bytes) -> str:
    """Invalid UTF-8 becomes U+FFFD, one per maximal invalid subpart."""
    return raw.decode("utf-8", errors="replace")


def cmdline_text(raw: bytes) -> str:
    """/proc/PID/cmdline with the final NUL dropped and the others as spaces."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return decoded(raw.replace(b"\0", b" "))


def container_id_in(path: str) -> str | None:
    """The innermost path component that names a container."""
    for part in reversed(path.split("/")):
        if len(part) > len(".scope") and part.endswith(".scope"):
            part = part[: -len(".scope")]
        for prefix in RUNTIME_PREFIXES:
            if part.startswith(prefix) and len(part) > len(prefix):
                part = part[len(prefix) :]
                break
        if ID_RE.fullmatch(part):
            return part
    return None


def cgroup_view(proc_pid_cgroup: str) -> tuple[str, str, str | None]:
    """(cgroup, cgroup_hierarchy, container_id) from /proc/PID/cgroup.

    The path of the v1 hierarchy holding the cpu controller when there is
    one, else the unified (v2) path; the container id comes from that path,
    or from the unified path when a v1 path names none.
    """
    v1_cpu, v2 = None, "/"
    for line in proc_pid_cgroup.splitlines():
        hierarchy_id, controllers, path = line.split(":", 2)
        if hierarchy_id == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1_cpu = path
    if v1_cpu is not None:
        return v1_cpu, "v1", container_id_in(v1_cpu) or container_id_in(v2)
    return v2, "v2", container_id_in(v2)


def id_of(name: str) -> str:
    """The container id init.sh derives from a name (sha256 of "name\\n")."""
    return hashlib.sha256(f"{name}\n".encode()).hexdigest()


# ---- comparing one capture ----------------------------------------------


def by_pid(document: dict) -> dict[int, dict]:
    return {p["pid"]: p for p in document["processes"]}


def mismatches(entry: dict, proc) -> list[str]:
    """How a JSON process differs from its /proc copy (empty when it does not)."""
    expected = {
        "ppid": proc.ppid,
        "vsz_kb": proc.vm_size_kb or 0,
        "rss_kb": proc.vm_rss_kb or 0,
        "cmdline": cmdline_text(proc.cmdline or b""),
        "start_time_ticks": proc.start_ticks,
    }
    expected["cgroup"], expected["cgroup_hierarchy"], expected["container_id"] = (
        cgroup_view(proc.cgroup)
    )
    found = [
        f"{key}: json {entry[key]!r}, /proc {value!r}"
        for key, value in expected.items()
        if entry[key] != value
    ]

    name = decoded(proc.name)
    kernel_thread = proc.flags & (PF_KTHREAD | PF_WQ_WORKER)
    # /proc adds the workqueue to a worker's name; modules only see comm.
    if entry["name"] != name and not (kernel_thread and name.startswith(entry["name"])):
        found.append(f"name: json {entry['name']!r}, /proc {name!r}")

    # A kernel thread may be busy for the moment the module looks at it.
    if entry["state"] != proc.state and not (kernel_thread and entry["state"] in "RD"):
        found.append(f"state: json {entry['state']!r}, /proc {proc.state!r}")
    return found


def cpu_time_mismatch(entry: dict, before, after, user_hz: int) -> str | None:
    """/proc rounds utime and stime down to ticks each: allow two ticks."""
    tick_ns = 1_000_000_000 // user_hz
    low = (before.utime_ticks + before.stime_ticks) * tick_ns
    high = (after.utime_ticks + after.stime_ticks + 2) * tick_ns
    if low <= entry["cpu_time_ns"] < high:
        return None
    return f"cpu_time_ns {entry['cpu_time_ns']} outside [{low}, {high})"


@pytest.fixture(params=["snapA", "snapB", "snapC"])
def capture(request, vm):
    return vm.require().snapshot(request.param)


# ---- loading, unloading, the kernel log ---------------------------------


def test_modules_build_without_warnings(vm):
    vm.require()
    build_lines = [
        line
        for line in vm.build_log.splitlines()
        if re.search("warning|error", line, re.I)
    ]
    assert build_lines == []
    assert "LD [M]" in vm.build_log
    assert (vm.results / "uname.txt").read_text().strip() == vm.env["KVER"]


def test_insmod_and_rmmod_succeed(vm):
    vm.require()
    for step in (
        "insmod_procs",
        "insmod_containers",
        "rmmod_procs",
        "rmmod_containers",
    ):
        assert vm.rc(step) == 0, f"{step}: {vm.out(step)}"
    assert "rulectl" not in vm.out("lsmod_end")


def test_procname_parameter_names_the_file(vm):
    vm.require()
    assert vm.rc("insmod_renamed") == 0, vm.out("insmod_renamed")
    assert vm.rc("cat_renamed") == 0, vm.out("cat_renamed")
    assert vm.out("cat_renamed").startswith('{"version":1,"source":"kernel",')
    assert vm.rc("rmmod_renamed") == 0


def test_procname_with_a_slash_is_refused(vm):
    vm.require()
    assert vm.rc("insmod_bad_name") != 0
    assert "procname must be one file name, not 'a/b'" in vm.console


def test_a_file_held_open_across_rmmod_reads_as_an_io_error(vm):
    vm.require()
    assert vm.rc("rmmod_procs") == 0
    assert vm.rc("read_after_rmmod") != 0
    assert "Input/output error" in vm.out("read_after_rmmod")  # EIO


def test_kernel_log_has_no_bug_warning_or_oops(vm):
    vm.require()
    dmesg = (vm.results / "dmesg.txt").read_text(errors="replace")
    assert "rulectl_procs: listing processes in /proc/rulectl_procs" in dmesg
    assert "rulectl_containers: removed /proc/rulectl_containers" in dmesg
    for text in (dmesg, vm.console):
        assert KERNEL_TROUBLE.findall(text) == []


def test_nothing_at_warning_level_after_the_first_insmod(vm):
    vm.require()
    raw = (vm.results / "dmesg-raw.txt").read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(raw) if "rulectl_procs:" in line)
    urgent = [
        line
        for line in raw[start:]
        if (level := re.match(r"<(\d+)>", line)) and int(level[1]) & 7 <= 4
    ]
    # Expected: the kernel saying once per boot that an unsigned out-of-tree
    # module taints it (true of any module built outside Debian's tree), and
    # the error for the bad procname that init.sh passes on purpose.
    expected = ("loading out-of-tree module taints kernel", "procname must be one")
    assert [line for line in urgent if not any(e in line for e in expected)] == []
    assert sum(expected[0] in line for line in urgent) == 1


# ---- what the files say -------------------------------------------------


def test_both_files_parse_as_the_documented_json(capture):
    procs, containers = capture.procs, capture.containers
    assert {k: procs[k] for k in ("version", "source")} == {
        "version": 1,
        "source": "kernel",
    }
    for key in ("mem_total_kb", *MEMINFO_NAMES):
        assert isinstance(procs[key], int) and procs[key] >= 0
    assert set(containers) == {"version", "source", "processes", "containers"}
    for document in (procs, containers):
        pids = [p["pid"] for p in document["processes"]]
        assert pids == sorted(set(pids)), "one record per process, in pid order"
        for entry in document["processes"]:
            assert set(entry) == PROCESS_KEYS
            assert len(entry["state"]) == 1


def test_every_process_in_proc_is_listed(capture):
    listed = set(by_pid(capture.procs))
    alive_throughout = capture.before.keys() & capture.after.keys()
    assert alive_throughout - listed == set()
    # Nothing forked during a capture: every listed pid is a process
    # (a thread-group leader) that one of the two /proc copies saw.
    assert listed - (capture.before.keys() | capture.after.keys()) == set()


def test_process_facts_match_proc(capture):
    listed = by_pid(capture.procs)
    stable = capture.stable_pids()
    assert len(stable) > 0.8 * len(capture.before)
    problems = {
        pid: found
        for pid in sorted(stable)
        if (found := mismatches(listed[pid], capture.before[pid]))
    }
    assert problems == {}


def test_cpu_time_matches_proc_stat_to_the_tick(capture):
    listed = by_pid(capture.procs)
    problems = {
        pid: found
        for pid in sorted(capture.before.keys() & capture.after.keys())
        if (
            found := cpu_time_mismatch(
                listed[pid], capture.before[pid], capture.after[pid], capture.user_hz
            )
        )
    }
    assert problems == {}


def test_cpu_time_counts_every_thread_including_exited_ones(vm):
    snap = vm.require().snapshot("snapA")
    pid, _ = snap.layout["threads"]
    # Three threads burnt 0.3 s each; one of them has exited since.
    assert by_pid(snap.procs)[pid]["cpu_time_ns"] >= 900_000_000


def test_memory_totals_match_meminfo(capture):
    procs, meminfo = capture.procs, capture.meminfo_kb
    assert procs["mem_total_kb"] == meminfo["MemTotal"]
    # Read a few milliseconds apart in a quiet VM.
    for key, name in MEMINFO_NAMES.items():
        assert abs(procs[key] - meminfo[name]) <= 4096, key


# ---- cgroups and containers ------------------------------------------


V2_EXPECTED_IDS = {
    "docker-v2": id_of("docker-v2"),
    "kubepods-v2": id_of("kubepods-v2"),
    "libpod-v2": id_of("libpod-v2"),
    "crio-v2": id_of("crio-v2"),
    "nested-v2": id_of("nested-v2"),  # /docker/<outer>/sub/<inner>: inner
    "weird": id_of("weird"),
    "threads": id_of("threads"),
    "short-v2": None,  # 63 digits
    "upper-v2": None,  # upper-case digits
    "service-v2": None,  # cron.service
    "title": None,  # the root cgroup
}


@pytest.mark.parametrize("role", sorted(V2_EXPECTED_IDS))
def test_cgroup_v2_layouts_give_the_container_id(vm, role):
    snap = vm.require().snapshot("snapA")
    pid, directory = snap.layout[role]
    entry = by_pid(snap.procs)[pid]
    path = directory.removeprefix("/sys/fs/cgroup") or "/"
    assert (entry["cgroup"], entry["cgroup_hierarchy"], entry["container_id"]) == (
        path,
        "v2",
        V2_EXPECTED_IDS[role],
    )


def test_cgroup_v1_cpu_hierarchy_gives_the_container_id(vm):
    snap = vm.require().snapshot("snapB")
    listed = by_pid(snap.procs)
    for role in ("docker-v1", "kubepods-v1"):
        pid, directory = snap.layout[role]
        entry = listed[pid]
        assert entry["cgroup"] == directory.removeprefix("/cgroup-v1")
        assert entry["cgroup_hierarchy"] == "v1"
        assert entry["container_id"] == id_of(role)


def test_v2_scope_still_names_the_container_when_cpu_is_on_v1(vm):
    snap = vm.require().snapshot("snapB")
    pid, _ = snap.layout["docker-v2"]
    entry = by_pid(snap.procs)[pid]
    assert (entry["cgroup"], entry["cgroup_hierarchy"], entry["container_id"]) == (
        "/",
        "v1",
        id_of("docker-v2"),
    )


def test_children_of_a_container_process_belong_to_it(vm):
    snap = vm.require().snapshot("snapA")
    pid, _ = snap.layout["docker-v2"]
    children = [p for p in snap.procs["processes"] if p["ppid"] == pid]
    assert [c["cmdline"] for c in children] == ["sleep 1001"]
    assert children[0]["container_id"] == id_of("docker-v2")
    totals = {c["id"]: c for c in snap.containers["containers"]}
    assert totals[id_of("docker-v2")]["pids"] == [pid, children[0]["pid"]]


def test_containers_file_lists_exactly_the_container_processes(capture):
    in_containers = {
        pid: entry
        for pid, entry in by_pid(capture.procs).items()
        if entry["container_id"]
    }
    listed = by_pid(capture.containers)
    assert listed.keys() == in_containers.keys()
    for pid, entry in listed.items():
        assert entry["container_id"] == in_containers[pid]["container_id"]
        assert entry["cgroup"] == in_containers[pid]["cgroup"]


def test_container_totals_are_sums_over_their_processes(capture):
    members: dict[str, list[dict]] = {}
    for entry in capture.containers["processes"]:
        members.setdefault(entry["container_id"], []).append(entry)
    totals = capture.containers["containers"]
    assert [c["id"] for c in totals] == list(members), "ordered by first pid"
    for container in totals:
        mine = members[container["id"]]
        assert container["pids"] == [p["pid"] for p in mine]
        for key in ("cpu_time_ns", "rss_kb", "vsz_kb"):
            assert container[key] == sum(p[key] for p in mine), key


# ---- strings that could break the JSON -----------------------------------


def test_name_and_cmdline_with_quotes_newlines_and_bad_utf8(vm):
    snap = vm.require().snapshot("snapA")
    pid, _ = snap.layout["weird"]
    entry = by_pid(snap.procs)[pid]
    # rcprobe.c sets these bytes; the kernel cuts the name to 15 bytes.
    assert entry["name"] == decoded(b'q"b\\n\n\xff\xe2\x82\xac-xyz\xc3')
    assert entry["name"] == 'q"b\\n\n\ufffd\u20ac-xyz\ufffd'
    assert entry["cmdline"] == (
        'we"ird\\argv0 weird-hold quote"back\\slash new\nline '
        "bad\ufffd\ufffdutf8 cut\ufffd ctl\x01\x1f\x7f  tab\tend \U0001f427"
    )
    raw = (snap.path / "rulectl_procs.json").read_bytes()
    assert b"\\ufffd" in raw and b"\\u000a" in raw and b'\\"' in raw


def test_setproctitle_style_cmdline_reads_like_proc(vm):
    snap = vm.require().snapshot("snapA")
    pid, _ = snap.layout["title"]
    entry = by_pid(snap.procs)[pid]
    assert entry["cmdline"] == cmdline_text(snap.before[pid].cmdline)
    assert entry["cmdline"] == "rcprobe: title set by hand rcpRCPROBE_TAIL=env"


# ---- size and churn ------------------------------------------------------


def test_reader_resumes_cleanly_after_the_refused_record_exits(vm):
    vm.require()
    report = vm.out("resume")
    assert vm.rc("resume") == 0, report
    first_read, first, second = map(int, re.findall(r"\d+", report.splitlines()[0]))
    # Only the header came back; the first process's record did not fit.
    assert first_read < 100
    document = vm.parse_json(vm.results / "resume.json")
    assert [p["pid"] for p in document["processes"]] == [second]
    assert [c["pids"] for c in document["containers"]] == [[second]]
    assert document["containers"][0]["id"] == id_of("resume-b")
    assert first < second


def test_a_large_process_table_is_listed_whole(vm):
    snap = vm.require().snapshot("snapC")
    swarm_pid, _ = snap.layout["swarm"]
    listed = by_pid(snap.procs)
    children = [p for p in listed.values() if p["ppid"] == swarm_pid]
    assert len(children) == 1500
    assert len((snap.path / "rulectl_procs.json").read_bytes()) > 256 * 1024
    totals = {c["id"]: c for c in snap.containers["containers"]}
    assert len(totals[id_of("swarm")]["pids"]) == 1501


@pytest.mark.parametrize("name", ["procs", "containers"])
def test_reads_while_thousands_of_processes_fork_and_exit(vm, name):
    vm.require()
    storm = re.fullmatch(r"storm forks=(\d+) failed=0\n", vm.out("storm"))
    assert storm and int(storm[1]) >= 1000, vm.out("storm")
    report = vm.out(f"hammer_{name}")
    assert vm.rc(f"hammer_{name}") == 0, report
    assert re.match(
        rf"hammer file=/proc/rulectl_{name} reads=500 invalid=0 errors=0 ", report
    )
    # rcprobe checked every read; the kept copies are parsed here as well.
    kept = sorted((vm.results / f"hammer-{name}").glob("*.json"))
    assert [p.name.startswith("read-") for p in kept] == [True] * len(kept)
    assert len(kept) >= 8
    for path in kept:
        pids = [p["pid"] for p in vm.parse_json(path)["processes"]]
        assert pids == sorted(set(pids))


# ---- the committed fixtures ---------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    if FIXTURES.exists()
    else [],
)
def test_committed_fixture_agrees_with_its_proc_copy(load_capture, fixture):
    snap = load_capture(FIXTURES / fixture)
    listed = by_pid(snap.procs)
    assert len(snap.before) >= 5
    for pid, proc in snap.before.items():
        assert mismatches(listed[pid], proc) == [], pid
