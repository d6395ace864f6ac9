"""Container rows: CPU and memory of every running container, against
docker-py's stats API.

The containers are rulectl's own "low" workload (a static binary that
sleeps), started by `rulectl.workload.spawn` without a network on the
benchmark's private engine (bench/dockerd.py), each labelled with this
run's label. rulectl's side is one steady-state `Collector.sample()`: one
/proc pass over every process of the host plus one Docker list call. The
peers list the containers once, then ask for each one's stats, as a
docker-py user would, and compute CPU % and memory from the answer:

    stats(stream=False)                 dockerd waits for two samples
    stats(stream=False, one_shot=True)  dockerd answers with its next one

A stats call takes about a second whatever the host does, so the peers run
`stats_repeat` times (default 1) while rulectl runs `repeat` times.
"""

from __future__ import annotations

from bench.common import Row, compare, fill, median, time_once

LOW_ONLY = ("low",)  # sleeping workloads: the host's two cores stay free


def _stats_pass(client, label: str, one_shot: bool | None) -> dict[str, tuple]:
    """CPU % and memory of every container with `label`, one stats call each."""
    result = {}
    for row in client.api.containers(filters={"label": label}):
        kwargs = {"stream": False}
        if one_shot is not None:
            kwargs["one_shot"] = one_shot
        s = client.api.stats(row["Id"], **kwargs)
        cpu, pre = s.get("cpu_stats", {}), s.get("precpu_stats", {})
        cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get(
            "cpu_usage", {}
        ).get("total_usage", 0)
        sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        ncpu = cpu.get("online_cpus") or 1
        cpu_percent = 100.0 * ncpu * cpu_delta / sys_delta if sys_delta > 0 else None
        mem = s.get("memory_stats", {})
        result[row["Id"]] = (cpu_percent, mem.get("usage"))
    return result


def run(sizes: list[int], repeat: int, stats_repeat: int, label: str) -> list[Row]:
    from bench.dockerd import private_dockerd
    from rulectl import workload
    from rulectl.collect import Collector, ProcfsSource, docker_lister

    rows = []
    selector = f"rulectl.bench={label}"
    with private_dockerd(label) as (client, _url):
        cfg = workload.WorkloadConfig(types=LOW_ONLY)
        workload.ensure_images(client, cfg)
        running = 0
        for count in sorted(sizes):
            workload.spawn(
                client, cfg, count - running, extra_labels={"rulectl.bench": label}
            )
            running = count

            collector = Collector(ProcfsSource("/proc"), docker_lister(client))
            collector.sample()
            snap = collector.sample()
            ours_seen = sum(1 for c in snap.containers if c.pids)
            if ours_seen < count:
                raise RuntimeError(
                    f"the collector saw {ours_seen} of {count} containers' processes"
                )

            two = [
                time_once(lambda: _stats_pass(client, selector, None))
                for _ in range(stats_repeat)
            ]
            one = [
                time_once(lambda: _stats_pass(client, selector, True))
                for _ in range(stats_repeat)
            ]
            ours, _ = compare(collector.sample, lambda: None, repeat)

            for peer, samples, target, at_least in (
                ("docker-py stats(stream=False)", two, "≥ 50× faster", 50.0),
                ("docker-py stats(one_shot=True)", one, "≥ 5× faster", 5.0),
            ):
                row = Row(
                    what="container CPU and memory",
                    size=f"{count} running containers",
                    rulectl="Collector.sample() + 1 list call",
                    peer=peer,
                    target=target,
                    notes=(
                        f"peer: one list call, then one stats call per "
                        f"container ({median(samples) / count:.2f} s each); rulectl "
                        f"reads all {len(snap.processes)} host processes"
                    ),
                )
                fill(row, ours, samples).judge_ratio(at_least)
                rows.append(row)
    return rows


if __name__ == "__main__":
    import uuid

    for r in run([3], 3, 1, uuid.uuid4().hex[:8]):
        print(r.peer, r.rulectl_s, r.peer_s, r.ratio)
