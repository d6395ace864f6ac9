"""Installs rulectl from this checkout as a system service, and removes it.

What `rulectl install [--root DIR]` puts where (DIR defaults to /):

  usr/local/bin/rulectl               wrapper: execs this Python with -m rulectl
  usr/lib/rulectl/python/rulectl/     the program itself, copied from the checkout
  etc/rulectl/config.yaml             the checkout's config, paths made absolute
  etc/rulectl/rules/                  the checkout's rule files
  etc/systemd/system/rulectl.service  systemd/rulectl.service
  usr/share/rulectl/grafana/          grafana/, when the checkout has it
  usr/lib/rulectl/kernel/*.ko         the sensor modules, when built
  var/lib/rulectl/installed.json      what was created, for uninstall

The wrapper, not pip's console script: pip writes that script next to the
interpreter (a virtualenv's or pyenv's bin/), which is neither a fixed path
the unit can name nor on systemd's PATH. The wrapper pins the very
interpreter that has rulectl's dependencies (durable-rules' C extension
among them) installed, and `exec`s it, so the daemon keeps the PID systemd
started (NotifyAccess=main). Installing with another Python means running
`rulectl install` with it. The program is copied, not imported from the
checkout: the service must not depend on where the checkout is, or on it
staying there (an editable install under /tmp is invisible to a unit with
PrivateTmp=yes).

Who owns a file is decided by installed.json, which holds the SHA-256 and
mode of every file as written:
  - a file that was there before the first install is never replaced or
    removed (say, pip's own /usr/local/bin/rulectl);
  - files under etc/ belong to the operator once edited: a reinstall keeps
    an edited config, rule file or unit, and so does an uninstall (only
    --purge removes them);
  - the other files are the program's: a reinstall puts the shipped version
    back, an uninstall removes them;
  - directories are removed if install created them and they are empty.
So install then uninstall leaves the tree as it was, and a second install
with nothing new changes nothing. /var/lib/rulectl (database) and
/var/log/rulectl are kept by uninstall; --purge removes them and the whole
of /etc/rulectl.

`systemctl daemon-reload` and `enable` (uninstall: `disable --now`) are run
only when DIR is / and systemd runs the host (/run/systemd/system exists).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

UNIT_NAME = "rulectl.service"
UNIT_NAME_REL = f"etc/systemd/system/{UNIT_NAME}"
MANIFEST = PurePosixPath("var/lib/rulectl/installed.json")
PURGED_DIRS = (
    PurePosixPath("etc/rulectl"),
    PurePosixPath("var/lib/rulectl"),
    PurePosixPath("var/log/rulectl"),
)

# Config keys that name places, and their values in the installed config.
INSTALLED_VALUES: dict[tuple[str, ...], str] = {
    ("rules_dir",): "/etc/rulectl/rules",
    ("data_dir",): "/var/lib/rulectl",
    ("log_file",): "/var/log/rulectl/rulectl.log",
    ("facts", "module_dir"): "/usr/lib/rulectl/kernel",
}
CONFIG_HEADER = (
    "# Installed by `rulectl install`: rules_dir, data_dir, log_file and\n"
    "# facts.module_dir name the installed places (a relative log_file would\n"
    "# be taken inside data_dir).\n"
)

Runner = Callable[[list[str]], int]
Printer = Callable[[str], None]


class InstallError(Exception):
    """Installing cannot go on; the message says why. Nothing was half-done
    to a file: each one is written to a temporary name and renamed."""


@dataclass(frozen=True)
class Item:
    """One file to install: where it goes (relative to the root), its bytes
    and mode, and whether the operator may edit it (everything under etc/)."""

    target: PurePosixPath
    data: bytes
    mode: int

    @property
    def operator_owned(self) -> bool:
        return self.target.parts[0] == "etc"


@dataclass
class Manifest:
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, root: Path) -> Manifest | None:
        try:
            raw = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise InstallError(f"cannot read {root / MANIFEST}: {exc}") from exc
        return cls(files=dict(raw.get("files", {})), dirs=list(raw.get("dirs", [])))

    def to_bytes(self) -> bytes:
        doc = {"version": 1, "files": self.files, "dirs": sorted(set(self.dirs))}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def matches(self, root: Path, rel: str) -> bool:
        """True if the file is still exactly as install wrote it."""
        entry = self.files.get(rel)
        return entry is not None and _fingerprint(root / rel) == entry


# -- install ---------------------------------------------------------------


def install(
    root: Path = Path("/"),
    source: Path | None = None,
    *,
    python: str = sys.executable,
    use_systemd: bool | None = None,
    run: Runner | None = None,
    out: Printer = print,
) -> bool:
    """Installs into `root`; returns True if anything changed.

    `source` is the checkout (default: the one this module was loaded from).
    `use_systemd` None means: only when root is / and systemd runs the host.
    """
    root = root.absolute()
    source = (source or default_source()).absolute()
    if not root.is_dir():
        raise InstallError(f"{root} is not a directory")
    items = plan(source, python)
    for key, value in unresolved_paths(source):
        out(
            f"warning: config key {key} is {value!r}, a place in the checkout "
            "that install does not copy; set it in the installed config.yaml"
        )
    manifest = Manifest.read(root) or Manifest()
    recorded = manifest.to_bytes() if (root / MANIFEST).exists() else b""

    written = {
        str(item.target) for item in items if _install_item(root, item, manifest, out)
    }
    changed = bool(written)
    if manifest.to_bytes() != recorded:
        # Its directories first: they are recorded in it too.
        _ensure_parents(root, MANIFEST, manifest, out)
        _write_atomic(root / MANIFEST, manifest.to_bytes(), 0o644)
        out(f"recorded what was installed in {root / MANIFEST}")
        changed = True

    if _systemd_applies(root, use_systemd):
        changed |= _systemd_enable(written, run or _run, out)
    else:
        why = "root is not /" if root != Path("/") else "systemd is not running"
        out(f"systemd: not reloaded or enabled ({why})")
    if not changed:
        out("nothing changed: every installed file is as it was")
    return changed


def default_source() -> Path:
    """The checkout this module comes from (the directory above rulectl/)."""
    return Path(__file__).resolve().parent.parent


# Where the program is copied, relative to the install root.
PROGRAM_DIR_REL = "usr/lib/rulectl/python"


def plan(source: Path, python: str = sys.executable) -> list[Item]:
    """Every file install would write, with its bytes; reads only `source`."""
    config = source / "config.yaml"
    unit = source / "systemd" / UNIT_NAME
    for needed in (config, unit, source / "rules"):
        if not needed.exists():
            raise InstallError(f"{source} is not a rulectl checkout: no {needed.name}")
    _check_importable(python, source)

    items = [
        Item(PurePosixPath("usr/local/bin/rulectl"), wrapper_script(python), 0o755),
        *_tree_items(source / "rulectl", PurePosixPath(PROGRAM_DIR_REL) / "rulectl"),
        # 0640: database_url may carry a password.
        Item(
            PurePosixPath("etc/rulectl/config.yaml"),
            installed_config(config.read_text()).encode(),
            0o640,
        ),
    ]
    items += _tree_items(source / "rules", PurePosixPath("etc/rulectl/rules"))
    items.append(Item(PurePosixPath(UNIT_NAME_REL), unit.read_bytes(), 0o644))
    if (source / "grafana").is_dir():
        items += _tree_items(
            source / "grafana", PurePosixPath("usr/share/rulectl/grafana")
        )
    modules = PurePosixPath("usr/lib/rulectl/kernel")
    for ko in sorted((source / "kernel").glob("*.ko")):
        items.append(Item(modules / ko.name, ko.read_bytes(), 0o644))
    return items


def unresolved_paths(source: Path) -> list[tuple[str, str]]:
    """Config values of `*_dir`, `*_file` and `*_path` keys, other than
    INSTALLED_VALUES, that are relative paths to something in the checkout:
    installed as they are, they would point into /etc/rulectl, where install
    puts nothing of that name."""
    doc = yaml.safe_load((source / "config.yaml").read_text()) or {}
    found = []

    def walk(node: object, keys: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, keys + (str(key),))
        elif (
            isinstance(node, str)
            and keys[-1].endswith(("dir", "file", "path"))
            and keys not in INSTALLED_VALUES
            and node.strip()
            and not node.startswith("/")
            and "://" not in node
            and (source / node).exists()
        ):
            found.append((".".join(keys), node))

    walk(doc, ())
    return found


def wrapper_script(python: str) -> bytes:
    # -P: the working directory is not put on sys.path, so a `rulectl/`
    # directory wherever the operator stands cannot replace the program.
    return (
        "#!/bin/sh\n"
        "# rulectl, written by `rulectl install`: runs the Python that has\n"
        "# rulectl installed. exec keeps the PID (systemd NotifyAccess=main).\n"
        f"PYTHONPATH=/{PROGRAM_DIR_REL} "
        f'exec {shlex.quote(python)} -P -m rulectl "$@"\n'
    ).encode()


def installed_config(text: str) -> str:
    """The checkout's config with the keys of INSTALLED_VALUES set.

    Edited as text, line by line, so that the operator gets every comment of
    the shipped file; the result is parsed again to prove the edit took.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for keys, value in INSTALLED_VALUES.items():
        lines = _set_value(lines, keys, value)
    first_is_comment = bool(lines) and lines[0].startswith("#")
    head, rest = (lines[:1], lines[1:]) if first_is_comment else ([], lines)
    result = "".join(head) + CONFIG_HEADER + "".join(rest)
    _check_config(result)
    return result


_KEY_LINE = re.compile(
    r"^(?P<indent>[ ]*)(?P<key>[A-Za-z_][\w-]*):(?P<gap>[ ]*)"
    r"(?P<value>[^#\n]*?)(?P<comment>[ ]+#.*)?\n$"
)


def _set_value(lines: list[str], keys: tuple[str, ...], value: str) -> list[str]:
    """Sets a top-level key, or a key one level down in a block mapping."""
    if len(keys) == 1:
        start, end, indent = 0, len(lines), ""
    else:
        section = _find_key(lines, 0, len(lines), "", keys[0])
        if section is None:
            return lines + [f"{keys[0]}:\n", f"  {keys[1]}: {value}\n"]
        match = _KEY_LINE.match(lines[section])
        if match and match["value"].strip():
            raise InstallError(
                f"cannot set {'.'.join(keys)}: write `{keys[0]}:` as a block "
                "mapping, one key per line"
            )
        start, end = section + 1, _section_end(lines, section + 1)
        indent = _child_indent(lines, start, end)

    at = _find_key(lines, start, end, indent, keys[-1])
    if at is None:
        return lines[:end] + [f"{indent}{keys[-1]}: {value}\n"] + lines[end:]
    match = _KEY_LINE.match(lines[at])
    assert match is not None
    old = f"{match['indent']}{match['key']}:{match['gap']}{match['value']}"
    new = f"{match['indent']}{match['key']}: {value}"
    comment = match["comment"] or ""
    if comment:
        # Keep the comment where it was when the new value leaves room.
        spaces = len(old) + len(comment) - len(comment.lstrip()) - len(new)
        comment = " " * max(spaces, 2) + comment.lstrip()
    lines[at] = f"{new}{comment}\n"
    return lines


def _find_key(lines: list[str], start: int, end: int, indent: str, key: str):
    for i in range(start, end):
        match = _KEY_LINE.match(lines[i])
        if match and match["indent"] == indent and match["key"] == key:
            return i
    return None


def _section_end(lines: list[str], start: int) -> int:
    """The first line after a block mapping's children (blank lines and
    comments between children belong to it)."""
    end = start
    for i in range(start, len(lines)):
        line = lines[i]
        if line.strip() and not line.lstrip().startswith("#"):
            if not line.startswith(" "):
                break
            end = i + 1
    return end


def _child_indent(lines: list[str], start: int, end: int) -> str:
    for line in lines[start:end]:
        if line.strip() and not line.lstrip().startswith("#"):
            return line[: len(line) - len(line.lstrip(" "))]
    return "  "


def _check_config(text: str) -> None:
    """The rewritten config sets every installed value and is a valid config."""
    from rulectl.config import ConfigError, load_config

    doc = yaml.safe_load(text) or {}
    for keys, value in INSTALLED_VALUES.items():
        node = doc
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node != value:
            raise InstallError(f"could not set {'.'.join(keys)} in config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        try:
            load_config(path)
        except ConfigError as exc:
            raise InstallError(f"the installed config would be invalid: {exc}") from exc


def _check_importable(python: str, source: Path) -> None:
    """The wrapper's interpreter has every dependency of the program."""
    try:
        result = subprocess.run(
            [python, "-P", "-c", "import rulectl.daemon, rulectl.status"],
            cwd="/",
            env={**os.environ, "PYTHONPATH": str(source)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:
        raise InstallError(f"cannot run {python}: {exc}") from exc
    if result.returncode != 0:
        raise InstallError(
            f"{python} lacks rulectl's dependencies; install them first "
            f"(pip install -e .): {result.stderr.strip()[-300:]}"
        )


def _tree_items(src: Path, dest: PurePosixPath) -> list[Item]:
    """Every regular file under `src` (hidden ones and caches left out)."""
    items = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            items.append(Item(dest / rel.as_posix(), path.read_bytes(), 0o644))
    return items


def _install_item(root: Path, item: Item, manifest: Manifest, out: Printer) -> bool:
    """Writes one file unless it is not ours or the operator's; True if
    anything changed on disk."""
    rel = str(item.target)
    path = root / rel
    wanted = {"sha256": _sha256(item.data), "mode": f"{item.mode:04o}"}
    exists = path.exists() or path.is_symlink()

    if exists and rel not in manifest.files:
        out(f"kept {path}: it was not installed by rulectl install")
        return False
    if exists and _fingerprint(path) == wanted:
        manifest.files[rel] = wanted
        return False
    if exists and item.operator_owned and not manifest.matches(root, rel):
        out(f"kept {path}: edited since it was installed (shipped version differs)")
        return False

    _ensure_parents(root, item.target, manifest, out)
    _write_atomic(path, item.data, item.mode)
    manifest.files[rel] = wanted
    out(f"{'updated' if exists else 'installed'} {path}")
    return True


def _ensure_parents(
    root: Path, target: PurePosixPath, manifest: Manifest, out: Printer
) -> bool:
    """Creates missing parent directories (0755) and records them."""
    created = False
    for parent in reversed(target.parents[:-1]):
        path = root / parent
        if path.is_dir():
            continue
        path.mkdir(mode=0o755)
        path.chmod(0o755)  # mkdir's mode is masked by the umask
        manifest.dirs.append(str(parent))
        out(f"created directory {path}")
        created = True
    return created


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Writes next to the file and renames, so no reader sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint(path: Path) -> dict[str, str] | None:
    """Content hash and mode of a regular file; None for anything else."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return {
            "sha256": _sha256(path.read_bytes()),
            "mode": f"{path.stat().st_mode & 0o7777:04o}",
        }
    except OSError:
        return None


# -- uninstall -------------------------------------------------------------


def uninstall(
    root: Path = Path("/"),
    *,
    purge: bool = False,
    use_systemd: bool | None = None,
    run: Runner | None = None,
    out: Printer = print,
) -> bool:
    """Removes what install created; returns True if anything changed.

    Edited files under etc/ are kept unless `purge`; `purge` also removes
    /etc/rulectl, /var/lib/rulectl and /var/log/rulectl whole.
    """
    root = root.absolute()
    manifest = Manifest.read(root)
    systemd = _systemd_applies(root, use_systemd)
    runner = run or _run
    changed = False

    kept: dict[str, dict[str, str]] = {}
    if manifest is None:
        out(f"rulectl is not installed in {root} (no {MANIFEST.name})")
    else:
        if systemd and UNIT_NAME_REL in manifest.files:
            changed |= _systemd_disable(runner, out)
        for rel in sorted(manifest.files, key=_deepest_first):
            outcome = _remove_file(root, rel, manifest, purge, out)
            changed |= outcome == "removed"
            if outcome == "kept":
                kept[rel] = manifest.files[rel]

    if purge:
        for rel in PURGED_DIRS:
            path = root / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                out(f"purged {path}")
                changed = True

    if manifest is not None:
        if kept:
            # Still needed: a later --purge removes what was kept here, and
            # a later install knows those files as the operator's.
            manifest.files = kept
            (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(root / MANIFEST, manifest.to_bytes(), 0o644)
            out(f"kept the record of {len(kept)} kept files in {root / MANIFEST}")
        else:
            (root / MANIFEST).unlink(missing_ok=True)
        for rel in sorted(set(manifest.dirs), key=_deepest_first):
            changed |= _remove_dir(root / rel, out)
    if systemd and changed:
        _systemctl(runner, out, "daemon-reload")
    if not changed:
        out("nothing changed")
    return changed


def _remove_file(
    root: Path, rel: str, manifest: Manifest, purge: bool, out: Printer
) -> str:
    """Removes one installed file: "removed", "kept" (edited, under etc/,
    and no purge) or "absent"."""
    path = root / rel
    if not (path.exists() or path.is_symlink()):
        return "absent"
    edited = not manifest.matches(root, rel)
    if edited and PurePosixPath(rel).parts[0] == "etc" and not purge:
        out(f"kept {path}: edited since it was installed (--purge removes it)")
        return "kept"
    if path.is_dir() and not path.is_symlink():
        out(f"kept {path}: a directory now, not the file that was installed")
        return "kept"
    path.unlink()
    out(f"removed {path}")
    return "removed"


def _remove_dir(path: Path, out: Printer) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    if any(path.iterdir()):
        out(f"kept directory {path}: not empty")
        return False
    path.rmdir()
    out(f"removed directory {path}")
    return True


def _deepest_first(rel: str) -> tuple[int, str]:
    return (-len(PurePosixPath(rel).parts), rel)


# -- systemd ---------------------------------------------------------------


def systemd_running() -> bool:
    """What sd_booted() checks: systemd creates this directory when it is
    the host's init."""
    return Path("/run/systemd/system").is_dir()


def _systemd_applies(root: Path, use_systemd: bool | None) -> bool:
    if use_systemd is not None:
        return use_systemd
    return root == Path("/") and systemd_running()


def _systemd_enable(written: set[str], run: Runner, out: Printer) -> bool:
    changed = False
    if UNIT_NAME_REL in written:
        _systemctl(run, out, "daemon-reload")
        changed = True
    if run(["systemctl", "--quiet", "is-enabled", UNIT_NAME]) != 0:
        _systemctl(run, out, "enable", UNIT_NAME)
        out("start it with: systemctl start rulectl")
        changed = True
    elif written:
        out("to use the new files, restart it: systemctl restart rulectl")
    return changed


def _systemd_disable(run: Runner, out: Printer) -> bool:
    _systemctl(run, out, "disable", "--now", UNIT_NAME)
    return True


def _systemctl(run: Runner, out: Printer, *args: str) -> None:
    command = ["systemctl", *args]
    out("running " + " ".join(command))
    status = run(command)
    if status != 0:
        raise InstallError(f"{' '.join(command)} failed with status {status}")


def _run(command: list[str]) -> int:
    return subprocess.run(command).returncode


# -- command line ----------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds `install` and `uninstall` to the CLI's subcommands."""
    inst = sub.add_parser("install", help="install as a systemd service")
    inst.add_argument(
        "--root", type=Path, default=Path("/"), help="install under this directory"
    )
    inst.add_argument(
        "--source", type=Path, help="the checkout to install (default: this one)"
    )
    inst.set_defaults(func=cmd_install)

    uninst = sub.add_parser("uninstall", help="remove what install created")
    uninst.add_argument(
        "--root", type=Path, default=Path("/"), help="uninstall under this directory"
    )
    uninst.add_argument(
        "--purge",
        action="store_true",
        help="also remove /etc/rulectl, the database and the logs",
    )
    uninst.set_defaults(func=cmd_uninstall)


def cmd_install(args: argparse.Namespace) -> int:
    try:
        install(args.root, getattr(args, "source", None))
    except (InstallError, OSError) as exc:
        print(f"rulectl: install failed: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    try:
        uninstall(args.root, purge=getattr(args, "purge", False))
    except (InstallError, OSError) as exc:
        print(f"rulectl: uninstall failed: {exc}", file=sys.stderr)
        return 2
    return 0
