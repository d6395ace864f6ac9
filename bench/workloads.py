"""Synthetic inputs for the engine and store rows: a rule set and a host.

`rule_file(n)` writes n rules in rulectl's YAML (loaded through the real
loader, so they are valid rules): keep rules by type, threshold rules with
`when` and `for`, name, image and label selections, in the proportions a
real policy has. `snapshot(n_containers, n_processes, seed, tick)` is a
host whose containers keep their ids from tick to tick while their numbers
move, with first sightings (no CPU %) and protected names among them.
"""

from __future__ import annotations

import random

from rulectl.model import ContainerFacts, HostFacts, ProcessFacts, Snapshot

TYPES = ("low", "high-cpu", "high-mem", "batch", "web")
CONDITIONS = (
    "mem_percent > 40 and cpu_percent > 5",
    "cpu_percent > 90",
    "mem_rss_kb > 200000 or n_pids > 20",
    "not (cpu_percent < 1) and age_s > 600",
    'type == "batch" and cpu_percent >= 50',
    "mem_percent >= 10 and (cpu_percent > 20 or n_pids > 5)",
    "host_mem_used_percent > 90 and mem_percent > 5",
    "age_s > 3600 and cpu_percent < 0.5",
)


def rule_file(n_rules: int) -> str:
    types = "\n".join(f"  {t}: {{label: {{app.kind: {t}}}}}" for t in TYPES)
    rules = []
    for i in range(n_rules):
        kind = i % 4
        lines = [f"  - name: rule-{i:02d}"]
        if kind == 0:  # keep N of one or two types, heaviest acted on first
            chosen = [TYPES[i % 5], TYPES[(i + 2) % 5]][: 1 + i % 2]
            lines += [
                f"    select: {{type: [{', '.join(chosen)}]}}",
                f"    keep: {3 + i % 7}",
                "    order_by: [-mem_percent, -cpu_percent]",
                "    action: remove",
            ]
        elif kind == 1:  # a threshold over every container, held for N ticks
            lines += [
                "    select: {}",
                f"    when: '{CONDITIONS[i % len(CONDITIONS)]}'",
                f"    for: {1 + i % 3}",
                "    action: stop",
            ]
        elif kind == 2:  # a name glob with a threshold
            lines += [
                f"    select: {{name: 'svc-{i % 10}*'}}",
                f"    when: '{CONDITIONS[(i + 3) % len(CONDITIONS)]}'",
                "    action: kill",
            ]
        else:  # a label and an image glob, keep by CPU
            lines += [
                f"    select: {{label: {{team: t{i % 4}}}, image: 'registry/app-*'}}",
                f"    keep: {10 + i % 5}",
                "    order_by: [-cpu_percent, mem_rss_kb]",
                "    action: log",
            ]
        rules.append("\n".join(lines))
    return (
        "version: 1\ntypes:\n"
        + types
        + "\nprotect:\n  - {name: 'grafana*'}\n  - {label: {keep.me: 'true'}}\n"
        + "rules:\n"
        + "\n".join(rules)
        + "\n"
    )


def snapshot(
    n_containers: int, n_processes: int = 0, seed: int = 1, tick: int = 0
) -> Snapshot:
    """The host at one tick; the same seed gives the same containers, and
    `tick` moves their numbers."""
    shape = random.Random(seed)
    moves = random.Random(seed * 100_003 + tick)
    now = 1_733_318_400.0 + 20.0 * tick
    containers = []
    for n in range(n_containers):
        ctype = TYPES[shape.randrange(len(TYPES))]
        name = "grafana" if n == 0 else f"svc-{shape.randrange(10)}-{n}"
        labels = {"app.kind": ctype, "team": f"t{shape.randrange(4)}"}
        if shape.random() < 0.02:
            labels["keep.me"] = "true"
        image = f"registry/app-{shape.randrange(6)}:1" if shape.random() < 0.7 else ""
        created = now - 20.0 * tick - shape.uniform(0, 7200)
        first_sight = tick == 0 or moves.random() < 0.03
        mem = moves.uniform(0, 60)
        n_pids = 1 + shape.randrange(30)
        containers.append(
            ContainerFacts(
                id=f"{seed:08x}{n:056x}",
                name=name,
                image=image,
                labels=labels,
                created=round(created, 1),
                pids=list(range(10_000 + n * 40, 10_000 + n * 40 + n_pids)),
                cpu_percent=None if first_sight else round(moves.uniform(0, 120), 2),
                mem_rss_kb=int(mem * 240_000),
                mem_percent=mem,
                vsz_kb=int(mem * 480_000),
                mem_working_set_kb=int(mem * 200_000),
            )
        )
    processes = []
    for pid in range(n_processes):
        cid = containers[pid % n_containers].id if n_containers and pid % 3 else None
        processes.append(
            ProcessFacts(
                pid=pid + 1,
                ppid=1,
                name=f"proc-{pid % 50}",
                cmdline=f"/usr/bin/proc-{pid % 50} --serve --port {8000 + pid}",
                state="S",
                container_id=cid,
                vsz_kb=100_000 + pid,
                rss_kb=5_000 + pid,
                mem_percent=(5_000 + pid) / 240_000,
                cpu_percent=None if tick == 0 else (pid % 7) * 0.1,
            )
        )
    host = HostFacts("bench", 2, 24_000_000, 20_000_000, 4_000_000, 37.5)
    return Snapshot(now, host, containers, processes, "bench")
