"""Command line: run, validate, dry-run, facts, spawn.

Exit status: 0 success (validate: valid), 1 invalid input or a failed
command, 2 could not run (bad config, unreadable files, Docker unreachable).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rulectl.config import Config, ConfigError, load_config
from rulectl.yamlpos import Finding

log = logging.getLogger("rulectl")

LOG_FORMAT = "%(asctime)s %(levelname)s %(filename)s:%(lineno)d %(message)s"


def setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Reopens the file when log rotation moves it away.
        handlers.append(logging.handlers.WatchedFileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    # A log that cannot be written (a full disk) must not print a traceback
    # for every line; the daemon reports storage trouble itself.
    logging.raiseExceptions = False
    for noisy in ("urllib3", "docker", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    args.verbose = getattr(args, "verbose", False)
    try:
        return args.func(args)
    except ConfigError as exc:
        for f in exc.findings:
            print(f, file=sys.stderr)
        print(
            f"rulectl: the configuration is invalid ({len(exc.findings)} findings)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`rulectl ... | head`): not worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a subcommand's
    # unset option from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config file (default: ./config.yaml, else /etc/rulectl/config.yaml)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging",
    )

    parser = argparse.ArgumentParser(
        prog="rulectl",
        description="Keeps a Docker host stable by declarative rules.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="the daemon")
    run.add_argument(
        "--once",
        action="store_true",
        help="one full tick (baseline, decide, act, store), then exit",
    )
    run.set_defaults(func=cmd_run)

    test = sub.add_parser(
        "test", parents=[common], help="run rule unit tests written in YAML"
    )
    test.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="test files or directories (default: rule-tests/ next to the config)",
    )
    test.add_argument("--rules", type=Path, help="test these rules instead")
    test.set_defaults(func=cmd_test)

    status = sub.add_parser(
        "status", parents=[common], help="live view of containers, ranks and actions"
    )
    status.add_argument("--once", action="store_true", help="print one view and exit")
    status.add_argument("--interval", type=float, default=2.0, metavar="SECONDS")
    status.set_defaults(func=cmd_status)

    schema = sub.add_parser(
        "schema", parents=[common], help="print the JSON Schema of rule files"
    )
    schema.set_defaults(func=cmd_schema)

    why = sub.add_parser(
        "why", parents=[common], help="every decision about a container, newest first"
    )
    why.add_argument("container", help="container name or id (prefix)")
    why.add_argument("--format", choices=["text", "json"], default="text")
    why.set_defaults(func=cmd_why)

    reload = sub.add_parser(
        "reload", parents=[common], help="make the running daemon reload its rules"
    )
    reload.set_defaults(func=cmd_reload)

    validate = sub.add_parser(
        "validate", parents=[common], help="check rule files and the config"
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="rule files or directories (default: rules_dir)",
    )
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.set_defaults(func=cmd_validate)

    dry = sub.add_parser(
        "dry-run",
        parents=[common],
        help="show what would be done now, and why; act on nothing",
    )
    dry.add_argument("--facts", type=Path, help="a snapshot from `rulectl facts`")
    dry.add_argument(
        "--rules", type=Path, help="rule file or directory (default: rules_dir)"
    )
    dry.add_argument(
        "--replay",
        type=Path,
        metavar="DB",
        help="re-decide the ticks recorded "
        "in this SQLite file (or give an SQLAlchemy URL)",
    )
    dry.add_argument(
        "--since", default="1h", help="with --replay: how far back (30m, 1h, 2d)"
    )
    dry.add_argument("--format", choices=["text", "json"], default="text")
    dry.set_defaults(func=cmd_dry_run)

    facts = sub.add_parser("facts", parents=[common], help="print the current snapshot")
    facts.add_argument("--format", choices=["text", "json"], default="text")
    facts.add_argument(
        "--source",
        choices=["auto", "kernel", "procfs"],
        help="where facts come from (default: the config's)",
    )
    facts.set_defaults(func=cmd_facts)

    spawn = sub.add_parser(
        "spawn", parents=[common], help="start test containers of random types"
    )
    spawn.add_argument("--count", type=_spawn_count, default=10, help="1 to 100")
    spawn.set_defaults(func=cmd_spawn)

    from rulectl import install

    install.add_commands(sub)
    return parser


def _spawn_count(text: str) -> int:
    count = int(text)
    if not 0 <= count <= 100:
        raise argparse.ArgumentTypeError("a count from 0 to 100")
    return count


# -- run -------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from rulectl.daemon import Daemon, StartupError

    config = load_config(args.config)
    setup_logging(args.verbose, config.log_file)
    daemon = Daemon(config, once=args.once)
    daemon.install_signal_handlers()
    log.info("rulectl starting with %s", config.path)
    try:
        return daemon.run()
    except StartupError as exc:
        if daemon.stop.is_set():
            return 0  # asked to stop while starting: not a failure
        log.error("cannot start: %s", exc)
        return 2


def cmd_test(args: argparse.Namespace) -> int:
    from rulectl.rules import rule_files
    from rulectl.ruletest import RuleTestError, run_file

    # Like every path of rulectl's, the default is found next to the config.
    paths = args.paths or [load_config(args.config).path.parent / "rule-tests"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"rulectl: no such file or directory: {missing[0]}", file=sys.stderr)
        return 2
    passed = failed = 0
    for path in rule_files(paths):
        try:
            outcomes = run_file(path, args.rules)
        except RuleTestError as exc:
            for f in exc.findings:
                print(f, file=sys.stderr)
            return 2
        for o in outcomes:
            if o.passed:
                passed += 1
                print(f"ok    {o.file}: {o.name}")
            else:
                failed += 1
                print(f"FAIL  {o.file}: {o.name}")
                for block in o.failures:
                    print(block)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from rulectl import status
    from rulectl.collect import Collector, docker_lister
    from rulectl.daemon import StartupError, connect_docker, make_source
    from rulectl.engine import Decider, DurableMatcher
    from rulectl.rules import load_rules
    from rulectl.store import Store

    config = load_config(args.config)
    result = load_rules([config.rules_dir])
    if not result.ok:
        print("rulectl: the rules are invalid; run `rulectl validate`", file=sys.stderr)
        return 1
    try:
        client = connect_docker(config, threading.Event(), attempts=1)
    except StartupError as exc:
        print(f"rulectl: {exc}", file=sys.stderr)
        return 2
    db_file = config.data_dir / "rulectl.db"
    store = None
    if config.database_url or db_file.exists():
        store = Store(config.db_url, host="")
    collector = Collector(make_source(config.facts), docker_lister(client))
    collector.sample()
    time.sleep(1.0)
    decider = Decider(result.ruleset, DurableMatcher(result.ruleset))
    try:
        status.run(collector.sample, decider, store, args.interval, args.once)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from rulectl.rules import schema

    print(json.dumps(schema(), indent=2))
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    """Reads the decisions table; needs no Docker and no running daemon."""
    from datetime import datetime

    from rulectl.store import Store

    config = load_config(args.config)
    store = Store(config.db_url, host="")
    rows = store.decisions_for(args.container)
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0 if rows else 1
    if not rows:
        print(f"no decisions recorded about {args.container!r}")
        return 1
    for r in rows:
        when = datetime.fromtimestamp(r["time"]).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{when} tick {r['tick']} {r['host']}: {r['action']} "
            f"{r['container_name']} ({r['container_id'][:12]}) by rule {r['rule']}, "
            f"rank {r['rank']}: {r['outcome']}"
        )
        print(f"    why: {r['reason']}")
        if r["detail"]:
            print(f"    result: {r['detail']}")
        print(f"    facts: {r['facts']}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Sends SIGHUP to the daemon whose pid file is in the data directory."""
    import os
    import signal

    config = load_config(args.config)
    pid_file = config.data_dir / "rulectl.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(
            f"rulectl: no running daemon found through {pid_file}: {exc}",
            file=sys.stderr,
        )
        return 2
    print(f"asked rulectl (pid {pid}) to reload its rules; its log says the outcome")
    return 0


# -- validate --------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from rulectl.rules import load_rules, rule_files

    findings: list[Finding] = []
    config: Config | None = None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if exc.unreadable:  # nothing to validate against: could not run
            for f in exc.findings:
                print(f, file=sys.stderr)
            return 2
        findings += exc.findings
    paths = args.paths or ([config.rules_dir] if config else [])
    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            print(f"rulectl: no such file or directory: {p}", file=sys.stderr)
        return 2
    if paths:
        findings += load_rules(paths).findings
    try:
        files = rule_files(paths)
    except OSError:
        files = []

    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if args.format == "json":
        print(
            json.dumps(
                {
                    "findings": [f.to_json() for f in findings],
                    "errors": errors,
                    "warnings": warnings,
                    "files": [str(f) for f in files],
                },
                indent=2,
            )
        )
    else:
        for f in findings:
            print(f)
        print(f"{len(files)} rule files checked: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


# -- dry-run ---------------------------------------------------------------


def cmd_dry_run(args: argparse.Namespace) -> int:
    from rulectl.engine import Decider, DurableMatcher
    from rulectl.model import FactsError, Snapshot
    from rulectl.rules import load_rules

    config = load_config(args.config)
    result = load_rules([args.rules or config.rules_dir])
    if not result.ok:
        for f in result.findings:
            print(f, file=sys.stderr)
        print("rulectl: the rules are invalid; run `rulectl validate`", file=sys.stderr)
        return 1
    if args.replay:
        return _replay(args, result.ruleset)
    if args.facts:
        try:
            snapshot = Snapshot.from_json(json.loads(args.facts.read_text()))
        except (OSError, ValueError, FactsError) as exc:
            print(
                f"rulectl: cannot read facts from {args.facts}: {exc}", file=sys.stderr
            )
            return 2
    else:
        snapshot = _live_snapshot(config)
        if snapshot is None:
            return 2

    decider = Decider(result.ruleset, DurableMatcher(result.ruleset))
    decisions = decider.decide(snapshot)
    report = _dry_run_report(decider, decisions)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print_dry_run(report)
    return 0


def _replay(args: argparse.Namespace, ruleset: Any) -> int:
    from datetime import datetime

    from rulectl.replay import replay
    from rulectl.store import Store

    try:
        since_s = time.time() - _duration_s(args.since)
    except ValueError:
        print(
            f"rulectl: --since wants a duration like 30m, 1h or 2d, not {args.since!r}",
            file=sys.stderr,
        )
        return 2
    target = str(args.replay)
    if "://" not in target:
        if not args.replay.is_file():
            print(f"rulectl: no database at {args.replay}", file=sys.stderr)
            return 2
        target = f"sqlite:///{args.replay.absolute()}"
    ticks = replay(Store(target, host=""), ruleset, since_s)
    differing = [t for t in ticks if t.differs]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "ticks": len(ticks),
                    "differing": [
                        {
                            "host": t.host,
                            "tick": t.tick,
                            "time": t.time,
                            "recorded": [_action_json(a) for a in t.recorded],
                            "now": [_action_json(a) for a in t.now],
                        }
                        for t in differing
                    ],
                },
                indent=2,
            )
        )
        return 0
    for t in differing:
        when = datetime.fromtimestamp(t.time).strftime("%Y-%m-%d %H:%M:%S")
        print(f"tick {t.tick} on {t.host} at {when}:")
        for a in t.recorded:
            if a not in t.now:
                print(f"  - {a[0]}: {a[1]} {a[3]} (recorded, not any more)")
        for a in t.now:
            if a not in t.recorded:
                print(f"  + {a[0]}: {a[1]} {a[3]} (with the rules on disk)")
    print(f"{len(ticks)} ticks replayed, {len(differing)} would be decided differently")
    return 0


def _action_json(a: tuple) -> dict[str, Any]:
    return {"rule": a[0], "action": a[1], "container": {"id": a[2], "name": a[3]}}


def _duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def _dry_run_report(decider: Any, decisions: list) -> dict[str, Any]:
    ruleset = decider.ruleset
    acted = {d.container_id for d in decisions if d.outcome == "pending"}
    actions = [
        {k: v for k, v in d.to_json().items() if k not in ("outcome", "detail")}
        for d in decisions
        if d.outcome == "pending"
    ]
    skipped = []
    for d in decisions:
        if d.outcome == "skipped":
            skipped.append(
                {
                    "container": {"id": d.container_id, "name": d.container_name},
                    "rule": d.rule,
                    "reason": d.detail,
                }
            )
    kept = {}
    rules = {r.name: r for r in ruleset.rules}
    for ev in decider.events:
        rule = rules[ev.rule]
        if rule.keep is not None and ev.keep_position <= rule.keep:
            total = ev.rank + ev.keep_position - 1
            kept.setdefault(
                ev.container_id,
                f"kept by {rule.name} "
                f"(rank {ev.rank} of {total}, {rule.keep} are kept)",
            )
    reported = acted | {s["container"]["id"] for s in skipped}
    for cand in decider.candidates:
        c = cand.container
        if c.id in reported:
            continue
        if cand.protected:
            reason = "protected"
        else:
            reason = kept.get(c.id, "no rule matched")
        skipped.append(
            {"container": {"id": c.id, "name": c.name}, "rule": None, "reason": reason}
        )
    return {"actions": actions, "skipped": skipped}


def _print_dry_run(report: dict[str, Any]) -> None:
    for a in report["actions"]:
        c = a["container"]
        print(
            f"would {a['action']} {c['name']} ({c['id'][:12]}): "
            f"rule {a['rule']}: {a['reason']}"
        )
    for s in report["skipped"]:
        c = s["container"]
        rule = f"rule {s['rule']}: " if s["rule"] else ""
        print(f"leaves {c['name']} ({c['id'][:12]}): {rule}{s['reason']}")
    print(
        f"{len(report['actions'])} actions, {len(report['skipped'])} containers "
        "left alone; nothing was done (dry-run)"
    )


def _live_snapshot(config: Config, source: str | None = None) -> Any:
    """Two readings a second apart (CPU % needs two), with Docker metadata."""
    from rulectl.collect import Collector, SourceError, docker_lister
    from rulectl.daemon import StartupError, connect_docker, make_source

    try:
        client = connect_docker(config, threading.Event(), attempts=1)
    except StartupError as exc:
        print(f"rulectl: {exc}", file=sys.stderr)
        return None
    collector = Collector(make_source(config.facts, source), docker_lister(client))
    try:
        collector.sample()
        time.sleep(1.0)
        return collector.sample()
    except SourceError as exc:
        print(f"rulectl: {exc}", file=sys.stderr)
        return None


# -- facts -----------------------------------------------------------------


def cmd_facts(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    snapshot = _live_snapshot(config, args.source)
    if snapshot is None:
        return 2
    if args.format == "json":
        print(json.dumps(snapshot.to_json(), indent=2))
        return 0
    h = snapshot.host
    print(
        f"host {h.name}: {h.ncpu} CPUs, CPU {_pct(h.cpu_percent)}, RAM used "
        f"{h.mem_used_kb // 1024} of {h.mem_total_kb // 1024} MiB "
        f"({h.mem_used_percent:.1f} %)"
    )
    print(f"{'CONTAINER':14} {'NAME':28} {'CPU %':>7} {'MEM %':>7} {'RSS MiB':>8}")
    for c in snapshot.containers:
        print(
            f"{c.short_id:14} {c.name[:28]:28} {_pct(c.cpu_percent):>7} "
            f"{c.mem_percent:7.2f} {c.mem_rss_kb / 1024:8.1f}"
        )
    print(f"{len(snapshot.processes)} processes")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- spawn -----------------------------------------------------------------


def cmd_spawn(args: argparse.Namespace) -> int:
    from rulectl import workload
    from rulectl.daemon import LABEL_SPAWNER, StartupError, connect_docker

    config = load_config(args.config)
    setup_logging(args.verbose)
    try:
        client = connect_docker(config, threading.Event(), attempts=1)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    cfg = workload.WorkloadConfig(
        image_prefix=config.image_prefix, high_mem_mib=config.high_mem_mib
    )
    try:
        started = workload.spawn(
            client, cfg, args.count, extra_labels={LABEL_SPAWNER: config.owner_id}
        )
    except workload.WorkloadError as exc:
        log.error("cannot start test containers: %s", exc)
        return 1
    for s in started:
        print(f"{s.name} {s.id[:12]} {s.type}")
    return 0
