"""The crontab entry: byte-exact for the user's lines, quoted for cron and sh.

Most tests work on a crontab file (`tabfile`); the last ones go through the
real `crontab` command on root's crontab, which they save and put back, and
one waits for the running cron daemon to execute the entry.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rulectl import cron

# Case C12 of shared/cases (python-crontab issues #11 and #25).
C12_CRONTAB = b'MAILTO=""\n15 3 * * * /usr/local/bin/backup --quiet\n'

SPAWN = ["/usr/local/bin/rulectl", "spawn", "--count", "10", "--config", "/etc/r.yaml"]

# Arguments that break naive quoting: spaces, command substitution, quotes,
# globs, sh operators, and cron's own `%` and backslash escapes.
HOSTILE_ARGS = [
    "dir with spaces/config.yaml",
    "$(touch pwned)",
    "`touch pwned2`",
    'it\'s "quoted"',
    "a;b&&c|d>e",
    "*",
    "50%",
    "%",
    "back\\slash",
    "trailing\\",
    "\\%",
    "\\\\%%",
    "ünïcode",
]


def entry_line(command: list[str] = SPAWN, schedule: str = "* * * * *") -> bytes:
    return cron.build_entry(command, schedule).encode() + b"\n"


def tagged_lines(data: bytes) -> list[bytes]:
    return [
        line
        for line in data.split(b"\n")
        if line.endswith(f"# {cron.CRON_TAG}".encode())
    ]


def cron_to_sh(line: str) -> str:
    r"""What Debian's cron hands to /bin/sh for a five-field crontab line.

    `\%` gives `%`, `\\` gives `\`, other backslashes stay, and an
    unescaped `%` ends the command (the rest would become standard input).
    """
    command = line.split(None, 5)[5]
    out = []
    chars = iter(command)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(nxt if nxt in ("%", "\\") else ch + nxt)
        elif ch == "%":
            break
        else:
            out.append(ch)
    return "".join(out)


def argv_echo_command(out_path: Path, args: list[str]) -> list[str]:
    """A command that writes the arguments it received, as JSON, to out_path."""
    script = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    return [sys.executable, "-c", script, str(out_path), *args]


# -- crontab as a file ------------------------------------------------------


def test_c12_install_keeps_both_user_lines_byte_identical(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_bytes(C12_CRONTAB)

    assert cron.install_entry(SPAWN, tabfile=tab) is True

    assert tab.read_bytes() == entry_line() + C12_CRONTAB


def test_c12_installing_twice_leaves_one_entry(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_bytes(C12_CRONTAB)
    cron.install_entry(SPAWN, tabfile=tab)
    after_first = tab.read_bytes()

    assert cron.install_entry(SPAWN, tabfile=tab) is False

    assert tab.read_bytes() == after_first
    assert len(tagged_lines(after_first)) == 1


def test_c12_remove_restores_the_original_bytes(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_bytes(C12_CRONTAB)
    cron.install_entry(SPAWN, tabfile=tab)

    assert cron.remove_entry(tabfile=tab) is True

    assert tab.read_bytes() == C12_CRONTAB
    assert cron.remove_entry(tabfile=tab) is False
    assert tab.read_bytes() == C12_CRONTAB


def test_c12_remove_without_crontab_does_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    tab = tmp_path / "crontab"

    assert cron.remove_entry(tabfile=tab) is False

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "original",
    [
        b"# no trailing newline\n15 3 * * * /bin/true",
        b"\n\n# blank lines around\n\n15 3 * * * /bin/true\n\n",
        b"MAILTO=''\nFOO = \"a b\"\n  15  3 * * *   /bin/x  # odd spacing\n",
        b"SHELL=/bin/bash\r\n15 3 * * * /bin/true\r\n",
        b"# latin-1, not UTF-8: \xe9t\xe9\n@daily /bin/true\n",
        b"",
    ],
    ids=["no-final-newline", "blank-lines", "spacing", "crlf", "non-utf8", "empty"],
)
def test_install_then_remove_gives_back_every_byte(
    tmp_path: Path, original: bytes
) -> None:
    tab = tmp_path / "crontab"
    tab.write_bytes(original)

    cron.install_entry(SPAWN, tabfile=tab)
    assert tab.read_bytes() == entry_line() + original
    cron.remove_entry(tabfile=tab)

    if original:
        assert tab.read_bytes() == original
    else:
        # An empty crontab and none at all are the same to cron.
        assert not tab.exists()


def test_install_on_no_crontab_then_remove_leaves_no_crontab(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"

    assert cron.install_entry(SPAWN, tabfile=tab) is True
    assert tab.read_bytes() == entry_line()
    assert cron.remove_entry(tabfile=tab) is True

    assert list(tmp_path.iterdir()) == []


def test_install_replaces_an_older_entry_and_puts_it_first(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    old_entry = entry_line(["/old/rulectl", "spawn"], schedule="*/5 * * * *")
    tab.write_bytes(b"# mine\n" + old_entry + C12_CRONTAB + old_entry)

    assert cron.install_entry(SPAWN, tabfile=tab) is True

    assert tab.read_bytes() == entry_line() + b"# mine\n" + C12_CRONTAB


def test_entry_appends_output_to_the_log_instead_of_mailing(tmp_path: Path) -> None:
    log_path = tmp_path / "spawn log.txt"

    line = cron.build_entry(["/bin/echo", "hi"], log_path=log_path)

    assert line == (f"* * * * * /bin/echo hi >> '{log_path}' 2>&1 # {cron.CRON_TAG}")
    assert cron.build_entry(["/bin/true"]).endswith(" > /dev/null 2>&1 # rulectl-spawn")


def test_hostile_arguments_reach_the_command_unchanged(tmp_path: Path) -> None:
    out_path = tmp_path / "argv.json"
    log_path = tmp_path / "50% log \\ $(touch pwned3).txt"
    line = cron.build_entry(
        argv_echo_command(out_path, HOSTILE_ARGS), log_path=log_path
    )

    subprocess.run(["/bin/sh", "-c", cron_to_sh(line)], cwd=tmp_path, check=True)

    assert json.loads(out_path.read_text()) == HOSTILE_ARGS
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["argv.json", log_path.name]
    )


@pytest.mark.parametrize("bad_arg", ["two\nlines", "carriage\rreturn", "nul\0"])
def test_arguments_that_would_split_the_line_are_refused(bad_arg: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        cron.build_entry(["/bin/echo", bad_arg])


@pytest.mark.parametrize(
    "schedule",
    ["* * * *", "* * * * * *", "@sometimes", "* * * * ;rm", "* * * * *\n* * * * * /x"],
)
def test_bad_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError, match="not a cron schedule"):
        cron.build_entry(SPAWN, schedule)


def test_a_command_given_as_one_string_is_refused() -> None:
    with pytest.raises(ValueError, match="list of arguments"):
        cron.build_entry("/bin/echo hi")  # type: ignore[arg-type]


# -- root's real crontab, through crontab(1) ---------------------------------


def crontab_l() -> bytes | None:
    result = subprocess.run(
        ["crontab", "-l"], capture_output=True, env={**os.environ, "LC_ALL": "C"}
    )
    if result.returncode == 0:
        return result.stdout
    assert b"no crontab for" in result.stderr, result.stderr
    return None


def set_crontab(data: bytes | None) -> None:
    if data is None:
        subprocess.run(["crontab", "-r"], capture_output=True)
    else:
        subprocess.run(["crontab", "-"], input=data, check=True)


@pytest.fixture
def root_crontab() -> Iterator[None]:
    """Root's crontab as it was before the test is put back afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the real-crontab tests must run as root (scripts/test.sh)")
    saved = crontab_l()
    try:
        yield
    finally:
        set_crontab(saved)


def test_real_crontab_c12_round_trip(root_crontab: None) -> None:
    set_crontab(C12_CRONTAB)

    assert cron.install_entry(SPAWN) is True
    assert crontab_l() == entry_line() + C12_CRONTAB
    assert cron.install_entry(SPAWN) is False
    assert cron.remove_entry() is True

    assert crontab_l() == C12_CRONTAB


def test_real_crontab_absent_stays_absent(root_crontab: None) -> None:
    set_crontab(None)

    assert cron.remove_entry() is False
    assert crontab_l() is None

    cron.install_entry(SPAWN)
    cron.remove_entry()
    assert crontab_l() is None


def cron_is_running() -> bool:
    try:
        pid = int(Path("/var/run/crond.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def test_running_cron_executes_the_entry_with_arguments_intact(
    root_crontab: None, tmp_path: Path
) -> None:
    if not cron_is_running():
        pytest.fail("cron is not running; scripts/setup-host.sh starts it")
    out_path = tmp_path / "argv.json"
    log_path = tmp_path / "spawn 100% .log"
    command = [*argv_echo_command(out_path, HOSTILE_ARGS), "--", "echo done"]
    command[2] += "; print('ran')"
    set_crontab(C12_CRONTAB)

    cron.install_entry(command, log_path=log_path)
    # cron looks at its spool once a minute, at the start of the minute. The
    # command writes the log last, so once it is there the job has finished.
    deadline = time.monotonic() + 75
    while not log_path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(0.2)
    cron.remove_entry()

    assert log_path.exists(), f"cron did not run: {shlex.join(command)}"
    assert log_path.read_text() == "ran\n"
    assert json.loads(out_path.read_text()) == [*HOSTILE_ARGS, "--", "echo done"]
    assert crontab_l() == C12_CRONTAB
