"""Daemon: wires the stages together and runs them every tick.

Start-up, in order (as the system rulectl replaces did it):
  1. logging with time, level and file:line      (cli.setup_logging)
  2. Grafana started if it can be: a local service or binary, or a local
     Grafana image as a protected container; otherwise one warning
  3. data directory prepared, database created
  4. rules loaded and validated                   (invalid: exit status 2)
  5. Docker reached, with retries and backoff
  6. cron job installed                           (test load every minute)
  7. kernel modules loaded when built for the running kernel; otherwise, or
     whenever their files fail, facts come from the userspace /proc reader
  8. signal handlers (set before all of the above, so a stop is honoured
     at any point)
Then one baseline sample (CPU % needs two) and a tick every `interval_s`.
Between ticks the rules are reloaded when their directory changes, on SIGHUP
or on `rulectl reload`; a rule set that fails validation is refused and the
one in force stays.
Shut-down on SIGINT/SIGTERM: the cron job and the test containers it started
are removed and a clean exit is logged.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import docker
import sqlalchemy.exc

from rulectl import cron, grafana, kernel, procfs, systemd, workload
from rulectl.act import DockerActor
from rulectl.collect import (
    Collector,
    FallbackSource,
    KernelSource,
    ProcfsSource,
    docker_lister,
)
from rulectl.config import Config, ConfigError, FactsConfig, load_config
from rulectl.engine import Decider, DurableMatcher
from rulectl.guard import Guard
from rulectl.model import Decision, Snapshot
from rulectl.rules import RuleSet, diff_rulesets, load_rules
from rulectl.store import Store
from rulectl.watch import RulesWatcher

log = logging.getLogger(__name__)

BASELINE_WAIT_S = 1.0
# Marks the test containers `rulectl spawn` started for one config's daemon.
LABEL_SPAWNER = "rulectl.spawner"
PRUNE_EVERY_S = 3600.0


class StartupError(Exception):
    """Start-up cannot go on; the message says why. Exit status 2."""


# Ticks kept in memory while the database cannot be written: an hour of ticks
# at the default interval.
MAX_UNSAVED_TICKS = 180


@dataclass
class UnsavedTick:
    tick: int
    snapshot: Snapshot
    types: dict[str, str | None]
    decisions: list[Decision]
    decided_at: float


@dataclass
class TickResult:
    tick: int
    snapshot: Snapshot
    decisions: list[Decision]


def connect_docker(
    config: Config, stop: threading.Event, attempts: int | None = None
) -> docker.DockerClient:
    """Connects to Docker, retrying with backoff (1, 2, 4 ... 30 s).

    `attempts=None` retries until `stop` is set.
    """
    delay_s = 1.0
    tried = 0
    while True:
        tried += 1
        try:
            if config.docker_url:
                client = docker.DockerClient(
                    base_url=config.docker_url, timeout=int(config.docker_timeout_s)
                )
            else:
                client = docker.from_env(timeout=int(config.docker_timeout_s))
            client.ping()
            if tried > 1:
                log.info("Docker answers after %d attempts", tried)
            return client
        except (docker.errors.DockerException, OSError) as exc:
            where = config.docker_url or os.environ.get(
                "DOCKER_HOST", "the local socket"
            )
            if attempts is not None and tried >= attempts:
                raise StartupError(
                    f"cannot reach Docker at {where} after {tried} attempts: {exc}"
                ) from exc
            log.warning(
                "cannot reach Docker at %s (attempt %d): %s; retrying in %.0f s",
                where,
                tried,
                _short(exc),
                delay_s,
            )
            if stop.wait(delay_s):
                raise StartupError("stopped while waiting for Docker") from exc
            delay_s = min(delay_s * 2, 30.0)


def _short(exc: Exception | str) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def load_ruleset_or_fail(config: Config) -> RuleSet:
    result = load_rules([config.rules_dir])
    for f in result.findings:
        (log.error if f.severity == "error" else log.warning)("%s", f)
    if not result.ok:
        raise StartupError(
            f"the rules in {config.rules_dir} are invalid "
            f"({sum(f.severity == 'error' for f in result.findings)} errors)"
        )
    return result.ruleset


def make_source(facts: FactsConfig, choice: str | None = None):
    """The facts source: `auto` tries the kernel modules every tick and falls
    back to /proc for that tick; `kernel` and `procfs` use one source only."""
    choice = choice or facts.source
    kernel_source = KernelSource(facts.procs_file, facts.containers_file)
    if choice == "kernel":
        return kernel_source
    if choice == "procfs":
        return ProcfsSource("/proc")
    return FallbackSource(kernel_source, ProcfsSource("/proc"))


def load_kernel_modules(facts: FactsConfig) -> None:
    """Start-up step 7; every outcome is logged once, none is fatal."""
    if not facts.load_modules or facts.source == "procfs":
        return
    procnames = {
        "rulectl_procs": facts.procs_file.name,
        "rulectl_containers": facts.containers_file.name,
    }
    for result in kernel.load_modules(facts.module_dir, procnames):
        # Modules not built are the usual case on a host without kernel
        # headers: worth a line, not a warning.
        quiet = result.loaded or result.message.startswith("not built")
        (log.info if quiet else log.warning)(
            "kernel module %s: %s", result.module, result.message
        )


def own_container_id(proc_root: Path = Path("/proc")) -> str | None:
    """The container rulectl itself runs in, if any: never acted on."""
    try:
        return procfs.container_id_from_cgroup((proc_root / "self/cgroup").read_text())
    except OSError:
        return None


class Daemon:
    def __init__(self, config: Config, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.stop = threading.Event()
        self.tick_no = 0
        self._last_prune_s = 0.0
        self._logged_skips: set[tuple[str, str, str]] = set()
        self.client: docker.DockerClient | None = None
        self.cron_installed = False
        self.ruleset: RuleSet | None = None
        self.wake = threading.Event()  # set by a stop or a reload request
        self.reload_requested = threading.Event()
        self.reload_reason = ""
        self.watcher: RulesWatcher | None = None
        self.pid_file = config.data_dir / "rulectl.pid"
        self.unsaved: deque[UnsavedTick] = deque()
        self.store_failing = False
        self.failed_ticks = 0

    # -- life cycle -------------------------------------------------------

    def install_signal_handlers(self) -> None:
        # Handlers only set flags; the loop notices them within one wait.
        def handle_stop(signum: int, _frame: object) -> None:
            log.info(
                "received %s: finishing the current step and stopping",
                signal.Signals(signum).name,
            )
            self.request_stop()

        def handle_reload(_signum: int, _frame: object) -> None:
            self.request_reload("SIGHUP")

        signal.signal(signal.SIGTERM, handle_stop)
        signal.signal(signal.SIGINT, handle_stop)
        signal.signal(signal.SIGHUP, handle_reload)

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def request_reload(self, why: str) -> None:
        self.reload_reason = why
        self.reload_requested.set()
        self.wake.set()

    def start(self) -> None:
        cfg = self.config
        if not self.once:
            grafana.start_grafana(cfg)
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            self.store = Store(cfg.db_url, host=_hostname())
        except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
            raise StartupError(
                f"cannot open the database {_redact(cfg.db_url)}: {_short(exc)}"
            ) from exc
        self.tick_no = self.store.last_tick()
        log.info("database ready at %s", _redact(cfg.db_url))

        self.ruleset = load_ruleset_or_fail(cfg)
        version = self.store.record_ruleset(
            time.time(),
            self.ruleset.fingerprint(),
            self.ruleset.file_hashes,
            len(self.ruleset.rules),
        )
        log.info(
            "rules loaded from %s: %d rules, version %d",
            cfg.rules_dir,
            len(self.ruleset.rules),
            version,
        )

        self.client = connect_docker(cfg, self.stop, attempts=3 if self.once else None)
        self.actor = DockerActor(self.client, cfg.guard.stop_grace_s)
        load_kernel_modules(cfg.facts)
        self.collector = Collector(make_source(cfg.facts), docker_lister(self.client))
        self.decider = Decider(self.ruleset, DurableMatcher(self.ruleset))
        self.guard = Guard(
            cfg.guard, dry_run=cfg.dry_run, own_container_id=own_container_id()
        )
        if cfg.dry_run:
            log.warning("dry-run is on: decisions are recorded, nothing is done")

        if not self.once:
            self.pid_file.write_text(f"{os.getpid()}\n")
            self.watcher = RulesWatcher(
                cfg.rules_dir, lambda: self.request_reload("rules directory changed")
            )
            self.watcher.start()
            log.info("watching %s for changes", cfg.rules_dir)

        if cfg.cron.enabled and not self.once:
            self.cron_installed = True
            changed = cron.install_entry(
                self.spawn_command(),
                cfg.cron.schedule,
                log_path=cfg.data_dir / "spawn.log",
                owner=cfg.owner_id,
            )
            log.info(
                "cron job %s: %s, %d test containers each time",
                "installed" if changed else "already installed",
                cfg.cron.schedule,
                cfg.cron.count,
            )

    def spawn_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rulectl",
            "spawn",
            "--count",
            str(self.config.cron.count),
            "--config",
            str(self.config.path),
        ]

    def run(self) -> int:
        """Start-up, ticks until stopped (or one tick), shut-down.

        0 when all went well, 1 when the shut-down could not clean up."""
        started = False
        try:
            self.start()
            started = True
            self.collector.sample()  # baseline: CPU % needs two samples
            wait_s = BASELINE_WAIT_S if self.once else self.config.interval_s
            log.info("baseline sample taken; first decision in %.0f s", wait_s)
            self._check_watchdog()
            systemd.notify_ready(
                f"{len(self.ruleset.rules)} rules; a tick every "
                f"{self.config.interval_s:g} s"
            )
            if self.once:
                if not self.stop.wait(wait_s):
                    self.tick()
            else:
                self.loop(time.monotonic() + wait_s)
        finally:
            clean = self.shutdown(started)
        return 0 if clean else 1

    def loop(self, deadline_s: float) -> None:
        """Ticks every interval; reloads in between when asked to."""
        while True:
            self.wake.wait(max(deadline_s - time.monotonic(), 0.0))
            self.wake.clear()
            if self.stop.is_set():
                return
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload_rules(self.reload_reason)
                continue
            if time.monotonic() >= deadline_s:
                started = time.monotonic()
                self.safe_tick()
                deadline_s = started + self.config.interval_s

    def safe_tick(self) -> TickResult | None:
        """One tick; a failure is logged (in full the first time, then counted)
        and the next tick tries again: no single fault ends the daemon."""
        try:
            result = self.tick()
        except Exception:
            self.failed_ticks += 1
            if self.failed_ticks == 1:
                log.exception("tick %d failed; the next tick tries again", self.tick_no)
            else:
                log.error(
                    "tick %d failed too (%d in a row); see the first failure above",
                    self.tick_no,
                    self.failed_ticks,
                )
            systemd.notify_watchdog(f"tick {self.tick_no} failed")
            return None
        if self.failed_ticks:
            log.info("ticks work again after %d failures", self.failed_ticks)
            self.failed_ticks = 0
        systemd.notify_watchdog(
            f"tick {result.tick}: {len(result.snapshot.containers)} "
            f"containers, {len(result.decisions)} decisions"
        )
        return result

    def reload_rules(self, why: str) -> bool:
        """Swaps in the rules on disk if they are valid; else keeps the old.

        The config file is read only at start-up; a reload checks it too, so
        that an operator learns now, not at the next restart, that it would
        not start.
        """
        self._check_config()
        result = load_rules([self.config.rules_dir])
        if not result.ok:
            errors = [f for f in result.findings if f.severity == "error"]
            log.error(
                "reload (%s) refused, the rules in force stay: %d errors",
                why,
                len(errors),
            )
            for f in result.findings:
                (log.error if f.severity == "error" else log.warning)("%s", f)
            return False
        new = result.ruleset
        for f in result.findings:  # warnings only, once the set is accepted
            log.warning("%s", f)
        if new.file_hashes == self.ruleset.file_hashes:
            log.info("reload (%s): the rule files did not change", why)
            return False
        changes = diff_rulesets(self.ruleset, new)
        old_decider = self.decider
        self.decider = Decider(
            new, DurableMatcher(new), streaks=_kept_streaks(old_decider, changes)
        )
        old_decider.matcher.close()
        self.ruleset = new
        version = self.store.record_ruleset(
            time.time(),
            new.fingerprint(),
            new.file_hashes,
            len(new.rules),
            str(changes),
        )
        log.info(
            "rules reloaded (%s): version %d, %d rules; %s",
            why,
            version,
            len(new.rules),
            changes,
        )
        return True

    def _check_config(self) -> None:
        try:
            load_config(self.config.path)
        except ConfigError as exc:
            log.warning(
                "%s has %d errors: the daemon goes on with the config it started "
                "with, but would not start with this one",
                self.config.path,
                len(exc.findings),
            )
            for f in exc.findings:
                log.warning("%s", f)

    def _check_watchdog(self) -> None:
        watchdog_s = systemd.watchdog_interval_s()
        if watchdog_s is None:
            return
        log.info("systemd watchdog: %g s; pinged after every tick", watchdog_s)
        if self.config.interval_s > watchdog_s / 2:
            log.warning(
                "interval_s (%g s) is more than half of systemd's watchdog "
                "(%g s): the service may be killed as hung; raise WatchdogSec=",
                self.config.interval_s,
                watchdog_s,
            )

    def shutdown(self, started: bool = True) -> bool:
        """Undoes what start-up did; True when nothing was left behind."""
        systemd.notify_stopping("removing the cron job and the test containers")
        clean = True
        if self.unsaved:
            self._flush()
        if self.unsaved:
            clean = False
            log.error(
                "%d ticks could not be recorded before stopping", len(self.unsaved)
            )
        if self.watcher is not None:
            self.watcher.stop()
        if self.pid_file.exists() and self.pid_file.read_text().strip() == str(
            os.getpid()
        ):
            self.pid_file.unlink()
        if self.cron_installed:
            try:
                cron.remove_entry(owner=self.config.owner_id)
                log.info("cron job removed")
            except Exception as exc:  # noqa: BLE001 - keep shutting down
                clean = False
                log.error("could not remove the cron job: %s", exc)
        if self.cron_installed and self.client is not None:
            clean = self._remove_test_containers() and clean
        if not started:
            log.info("rulectl did not start")
        elif clean:
            log.info("rulectl stopped cleanly")
        else:
            log.error("rulectl stopped, but left something behind (see above)")
        return clean

    def _remove_test_containers(self) -> bool:
        """Removes the test containers this daemon's cron entry started,
        except protected ones (the rules in force say which)."""
        protect = self.ruleset.protect if self.ruleset else ()
        try:
            removed = workload.remove_managed(
                self.client,
                extra_labels={LABEL_SPAWNER: self.config.owner_id},
                spare=lambda n, i, labels: any(
                    m.matches(n, i, labels) for m in protect
                ),
            )
        except Exception as exc:  # noqa: BLE001 - keep shutting down
            log.error("could not remove the test containers: %s", exc)
            return False
        log.info("removed %d test containers", removed)
        return True

    # -- one tick ---------------------------------------------------------

    def tick(self) -> TickResult:
        self.tick_no += 1
        snapshot = self.collector.sample()
        decisions = self.decider.decide(snapshot)
        self.guard.review(decisions, self.ruleset, self.actor.inspect)
        for d in decisions:
            if d.outcome == "pending" and self.stop.is_set():
                # A stop must not wait for a long row of container stops.
                d.outcome, d.detail = "skipped", "rulectl is stopping"
            elif d.outcome == "pending":
                self.actor.carry_out(d)
                systemd.notify_watchdog()  # a tick of many stops is alive too
                if d.outcome == "done":
                    self.guard.acted(d)
        self._log_decisions(decisions)

        # The decider classified this snapshot already; its types are stored.
        types = {c.container.id: c.type for c in self.decider.candidates}
        self.unsaved.append(
            UnsavedTick(self.tick_no, snapshot, types, decisions, time.time())
        )
        self._flush()
        self._maybe_prune()
        return TickResult(self.tick_no, snapshot, decisions)

    def _flush(self) -> None:
        """Stores the waiting ticks, oldest first, each in one transaction.

        When the database cannot be written (locked past the busy timeout,
        disk full, server gone) the ticks wait in memory and decisions go on;
        the next tick tries again. Past MAX_UNSAVED_TICKS the oldest are
        dropped, and the log says so.
        """
        while len(self.unsaved) > MAX_UNSAVED_TICKS:
            lost = self.unsaved.popleft()
            log.error(
                "dropped the records of tick %d: storage unavailable too long",
                lost.tick,
            )
        while self.unsaved:
            t = self.unsaved[0]
            try:
                self.store.record_tick(
                    t.tick, t.snapshot, t.types, t.decisions, t.decided_at
                )
            except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
                if not self.store_failing:
                    log.error(
                        "cannot record tick %d: %s; deciding and acting go on, "
                        "records wait in memory (up to %d ticks)",
                        t.tick,
                        _short(str(exc.__cause__ or exc)),
                        MAX_UNSAVED_TICKS,
                    )
                self.store_failing = True
                return
            self.unsaved.popleft()
            if self.store_failing and not self.unsaved:
                log.info("storage works again; every waiting tick is recorded")
                self.store_failing = False

    def _log_decisions(self, decisions: list[Decision]) -> None:
        skips = set()
        for d in decisions:
            what = f"{d.action} {d.container_name} ({d.container_id[:12]})"
            if d.outcome in ("done", "dry-run"):
                log.info("%s: rule %s: %s; %s", what, d.rule, d.reason, d.detail)
            elif d.outcome == "gone":
                log.info("%s: rule %s: already gone (%s)", what, d.rule, d.detail)
            elif d.outcome == "failed":
                log.error("%s: rule %s: failed: %s", what, d.rule, d.detail)
            else:
                key = (d.rule, d.container_id, d.detail)
                skips.add(key)
                if key not in self._logged_skips:
                    log.info("not doing %s: rule %s: %s", what, d.rule, d.detail)
        self._logged_skips = skips

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune_s < PRUNE_EVERY_S:
            return
        self._last_prune_s = now
        cutoff = time.time() - self.config.retention_days * 86400
        removed = self.store.prune(cutoff)
        if removed:
            log.info(
                "pruned %d rows older than %g days", removed, self.config.retention_days
            )


def _kept_streaks(old: Decider, changes) -> dict[tuple[str, str], int]:
    """`for: N` progress survives a reload for rules that did not change."""
    changed = set(changes.edited) | set(changes.removed)
    return {key: n for key, n in old.streaks.items() if key[0] not in changed}


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _redact(url: str) -> str:
    """A database URL without its password, for the log."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
