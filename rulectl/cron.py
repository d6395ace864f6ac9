r"""The crontab entry that starts test containers every minute.

The daemon installs one line in a user's crontab at start-up and removes it at
shut-down. The crontab belongs to the user, so everything else in it must come
back byte for byte: comments, blank lines, variable settings such as
`MAILTO=""`, and a trailing newline or its absence. python-crontab was tried
and does not do that (it appends a final newline, rewrites `MAILTO=''` as
`MAILTO=""`, squeezes spacing and drops `NAME = "a b"` settings), so the text is
handled here as lines, read with `crontab -l` and written with `crontab -`.

Our line is recognised by a trailing `# <CRON_TAG>` shell comment, so installing
twice leaves one entry. It goes first in the crontab: variable settings apply
to the lines after them, and a user's `SHELL=` or `PATH=` must not change how
our already-quoted command is run. Its output is appended to a log (or thrown
away), never mailed.

How cron passes a line to /bin/sh (Debian's cron 3.0, checked on this host):
an unescaped `%` ends the command and the rest becomes its standard input,
`\%` gives `%`, `\\` gives `\`, and any other backslash is kept. So the
command is quoted for sh with shlex, then `\` and `%` are escaped for cron.

Known limits:
1. Read-modify-write is not atomic: a `crontab -e` saved between our read and
   our write is lost. crontab(1) offers no lock to take.
2. Removing our line from a crontab that held nothing else deletes the
   crontab, so an empty crontab that existed before the install is not
   restored (an empty crontab and none at all run the same jobs: none).
3. crontab(1) refuses a file whose last line lacks a newline, so that case
   only arises with `tabfile`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CRON_TAG = "rulectl-spawn"


def _marker(owner: str | None) -> str:
    """The comment that ends our line. `owner` tells apart the entries of
    daemons run with different configs on one host."""
    return f" # {CRON_TAG} {owner}" if owner else f" # {CRON_TAG}"


_SCHEDULE_KEYWORDS = frozenset(
    "@reboot @yearly @annually @monthly @weekly @daily @midnight @hourly".split()
)
_SCHEDULE_FIELD = re.compile(r"[0-9A-Za-z*/,-]+")
_ENCODING = "utf-8"


class CronError(Exception):
    """The crontab could not be read or written."""


def build_entry(
    command: Sequence[str],
    schedule: str = "* * * * *",
    *,
    log_path: Path | None = None,
    owner: str | None = None,
) -> str:
    """The crontab line (without newline) that runs `command` on `schedule`.

    With `log_path`, stdout and stderr are appended to it; without, discarded.
    """
    schedule = _check_schedule(schedule)
    _check_command(command)

    shell = shlex.join(command)
    if log_path is not None:
        _check_command([str(log_path)])
        shell += f" >> {shlex.quote(str(log_path))} 2>&1"
    else:
        shell += " > /dev/null 2>&1"
    return f"{schedule} {_escape_for_cron(shell)}{_marker(owner)}"


def install_entry(
    command: Sequence[str],
    schedule: str = "* * * * *",
    user: str | None = None,
    *,
    log_path: Path | None = None,
    tabfile: Path | None = None,
    owner: str | None = None,
) -> bool:
    """Put our entry first in the crontab, replacing any older one of ours.

    `user` selects whose crontab (`crontab -u`); `tabfile` works on a plain
    file instead of any real crontab; `owner` marks the entry as one daemon's
    (the entries of other owners are left alone). Returns True if anything
    changed.
    """
    entry = build_entry(command, schedule, log_path=log_path, owner=owner) + "\n"
    current = _read(user, tabfile)
    wanted = entry + _without_entries(current or "", owner)
    if wanted == current:
        log.debug("cron entry already installed")
        return False

    _write(wanted, user, tabfile)
    log.info("installed cron entry in %s: %s", _where(user, tabfile), entry.strip())
    return True


def remove_entry(
    user: str | None = None, *, tabfile: Path | None = None, owner: str | None = None
) -> bool:
    """Remove our entry, leaving every other byte of the crontab as it was.

    A crontab left with nothing in it is deleted. With no crontab at all,
    nothing is done and nothing is created. Returns True if anything changed.
    """
    current = _read(user, tabfile)
    if current is None:
        return False
    rest = _without_entries(current, owner)
    if rest == current:
        return False

    if rest:
        _write(rest, user, tabfile)
    else:
        _delete(user, tabfile)
    log.info("removed cron entry from %s", _where(user, tabfile))
    return True


def _check_schedule(schedule: str) -> str:
    fields = schedule.split()
    if len(fields) == 1 and fields[0] in _SCHEDULE_KEYWORDS:
        return fields[0]
    if len(fields) == 5 and all(_SCHEDULE_FIELD.fullmatch(f) for f in fields):
        return " ".join(fields)
    raise ValueError(f"not a cron schedule: {schedule!r}")


def _check_command(command: Sequence[str]) -> None:
    if isinstance(command, str) or not command:
        raise ValueError("command must be a non-empty list of arguments")
    for arg in command:
        # A newline would end the crontab line in the middle of the quotes.
        if any(ch in arg for ch in "\n\r\0"):
            raise ValueError(f"cron command argument contains a line break: {arg!r}")


def _escape_for_cron(shell: str) -> str:
    return shell.replace("\\", "\\\\").replace("%", "\\%")


def _split_lines(text: str) -> list[str]:
    """Lines with their newline kept; only LF ends a line, as for cron."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _is_entry(line: str, owner: str | None) -> bool:
    return line.rstrip("\n").endswith(_marker(owner))


def _without_entries(text: str, owner: str | None = None) -> str:
    return "".join(line for line in _split_lines(text) if not _is_entry(line, owner))


def _where(user: str | None, tabfile: Path | None) -> str:
    if tabfile is not None:
        return str(tabfile)
    return f"the crontab of {user}" if user else "the crontab"


# Crontabs are read and written as text decoded with surrogateescape, so bytes
# that are not UTF-8 go back out exactly as they came in. crontab(1) says "no
# crontab for USER" (with LC_ALL=C) when there is none; that is not an error.
_NO_CRONTAB = b"no crontab for"


def _read(user: str | None, tabfile: Path | None) -> str | None:
    if tabfile is not None:
        try:
            return tabfile.read_bytes().decode(_ENCODING, "surrogateescape")
        except FileNotFoundError:
            return None

    result = _crontab(user, "-l")
    if result.returncode == 0:
        return result.stdout.decode(_ENCODING, "surrogateescape")
    if _NO_CRONTAB in result.stderr:
        return None
    raise _failure(result)


def _write(text: str, user: str | None, tabfile: Path | None) -> None:
    data = text.encode(_ENCODING, "surrogateescape")
    if tabfile is not None:
        _replace_file(tabfile, data)
        return

    result = _crontab(user, "-", data=data)
    if result.returncode != 0:
        raise _failure(result)


def _delete(user: str | None, tabfile: Path | None) -> None:
    if tabfile is not None:
        tabfile.unlink(missing_ok=True)
        return

    result = _crontab(user, "-r")
    if result.returncode != 0 and _NO_CRONTAB not in result.stderr:
        raise _failure(result)


def _crontab(
    user: str | None, *args: str, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = ["crontab", *(["-u", user] if user else []), *args]
    try:
        return subprocess.run(
            argv,
            input=data,
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError as exc:
        raise CronError("crontab not found; install it: apt-get install cron") from exc


def _failure(result: subprocess.CompletedProcess[bytes]) -> CronError:
    stderr = result.stderr.decode(_ENCODING, "replace").strip()
    return CronError(
        f"{shlex.join(result.args)} failed (exit {result.returncode}): {stderr}"
    )


def _replace_file(path: Path, data: bytes) -> None:
    """Write next to `path`, then rename over it, so a reader never sees half."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        if path.exists():
            os.chmod(tmp_name, path.stat().st_mode & 0o7777)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
