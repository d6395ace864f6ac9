"""Configuration: `config.yaml`, validated like rule files, paths made absolute.

Relative paths are resolved against the directory of the config file, never
the working directory: systemd starts services in `/`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rulectl.rules import check_schema, unsafe_permissions
from rulectl.yamlpos import Finding, load

INSTALLED_CONFIG = Path("/etc/rulectl/config.yaml")


@dataclass(frozen=True)
class GuardConfig:
    max_actions_per_tick: int = 25
    max_actions_per_minute: int = 60
    cooldown_s: float = 60.0
    min_age_s: float = 0.0
    stop_grace_s: int = 5


@dataclass(frozen=True)
class CronConfig:
    enabled: bool = True
    schedule: str = "* * * * *"
    count: int = 10


@dataclass(frozen=True)
class FactsConfig:
    source: str = "auto"  # auto (kernel modules, else /proc) or procfs
    load_modules: bool = True
    module_dir: Path = Path("kernel")
    procs_file: Path = Path("/proc/rulectl_procs")
    containers_file: Path = Path("/proc/rulectl_containers")


@dataclass(frozen=True)
class Config:
    path: Path
    interval_s: float = 20.0
    rules_dir: Path = Path("rules")
    data_dir: Path = Path("data")
    database_url: str = ""
    retention_days: float = 7.0
    dry_run: bool = False
    log_file: Path | None = None
    docker_url: str = ""
    docker_timeout_s: float = 30.0
    image_prefix: str = "rulectl/workload"
    high_mem_mib: int = 256
    guard: GuardConfig = field(default_factory=GuardConfig)
    cron: CronConfig = field(default_factory=CronConfig)
    facts: FactsConfig = field(default_factory=FactsConfig)

    @property
    def owner_id(self) -> str:
        """Names this daemon's cron entry and the test containers that entry
        starts (label rulectl.spawner), so that daemons run with different
        configs on one host leave each other's alone."""
        return hashlib.sha256(str(self.path).encode()).hexdigest()[:12]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'rulectl.db'}"


class ConfigError(Exception):
    """The config is invalid, or (`unreadable`) could not be read at all."""

    def __init__(self, findings: list[Finding], unreadable: bool = False) -> None:
        super().__init__("\n".join(str(f) for f in findings))
        self.findings = findings
        self.unreadable = unreadable


def default_path() -> Path:
    """`./config.yaml` in a checkout, else the installed one."""
    local = Path.cwd() / "config.yaml"
    return local if local.exists() else INSTALLED_CONFIG


def load_config(path: Path | None = None) -> Config:
    """Reads and validates a config file; raises ConfigError with findings."""
    path = (path or default_path()).absolute()
    why = unsafe_permissions(path)
    if why:
        raise ConfigError(
            [Finding(str(path), 1, 1, "C002", f"refused, running as root: {why}")]
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        finding = Finding(str(path), 1, 1, "C001", f"cannot read: {exc.strerror}")
        raise ConfigError([finding], unreadable=True) from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        finding = Finding(str(path), line, 1, "C001", "not UTF-8 text")
        raise ConfigError([finding]) from exc
    doc, findings = load(str(path), text)
    if doc is not None and not findings:
        schema = json.loads(
            resources.files("rulectl").joinpath("config.schema.json").read_text()
        )
        findings = check_schema(doc, schema) if doc.value is not None else []
    if findings:
        raise ConfigError([_as_config_finding(f) for f in findings])
    return _build(path, doc.value or {})


def _as_config_finding(f: Finding) -> Finding:
    code = "C001" if f.code == "S001" else f.code
    return Finding(f.file, f.line, f.col, code, f.message, f.pointer, f.severity)


def _resolve_sqlite(url: str, base: Path) -> str:
    """`sqlite:///rel.db` names a file relative to the config, like every other
    path in it; `sqlite:////abs.db` and other databases are kept as they are."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def _build(path: Path, raw: dict[str, Any]) -> Config:
    base = path.parent

    def resolve(value: str) -> Path:
        return (base / value).resolve()

    data_dir = resolve(raw.get("data_dir", "data"))
    log_file = raw.get("log_file", "rulectl.log")
    docker = raw.get("docker") or {}
    workload = raw.get("workload") or {}
    facts = raw.get("facts") or {}
    return Config(
        path=path,
        interval_s=float(raw.get("interval_s", 20)),
        rules_dir=resolve(raw.get("rules_dir", "rules")),
        data_dir=data_dir,
        database_url=_resolve_sqlite(raw.get("database_url", ""), base),
        retention_days=float(raw.get("retention_days", 7)),
        dry_run=bool(raw.get("dry_run", False)),
        log_file=(data_dir / log_file) if log_file else None,
        docker_url=docker.get("url", ""),
        docker_timeout_s=float(docker.get("timeout_s", 30)),
        image_prefix=workload.get("image_prefix", "rulectl/workload"),
        high_mem_mib=int(workload.get("high_mem_mib", 256)),
        guard=GuardConfig(**(raw.get("guard") or {})),
        cron=CronConfig(**(raw.get("cron") or {})),
        facts=FactsConfig(
            source=facts.get("source", "auto"),
            load_modules=bool(facts.get("load_modules", True)),
            module_dir=resolve(facts.get("module_dir", "kernel")),
            procs_file=Path(facts.get("procs_file", "/proc/rulectl_procs")),
            containers_file=Path(
                facts.get("containers_file", "/proc/rulectl_containers")
            ),
        ),
    )
