"""Rules: load rule files, validate them in stages, and build a RuleSet.

Stages, each with its own codes (every finding names file, line, column and
the JSON pointer of the node):

    files      P001 writable by another user while rulectl runs as root
    YAML       Y001 syntax, Y002 duplicate key, Y003/Y004 YAML 1.1 surprises,
               Y005 tag not allowed
    schema     S001 (rules.schema.json, shipped in the package)
    semantics  R001 `when` syntax, R002 unknown field, R003 type mismatch,
               R004 unknown type, R005 duplicate name, R006 unknown
               order_by field, R007 no rule files, R008 duplicate type
    lint       (warnings) L001 a percentage that can never be reached,
               L002 a rule shadowed by an earlier one, L003 two keep rules on
               the same containers, L004 a threshold rule before a keep rule
               on the same containers

A later stage runs only on files that passed the earlier ones, so one typo
does not drown in consequences.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from rulectl import expr as expr_mod
from rulectl.yamlpos import Document, Finding, load

ORDER_FIELDS = {
    "cpu_percent",
    "mem_percent",
    "mem_rss_kb",
    "vsz_kb",
    "created",
    "n_pids",
}


@dataclass(frozen=True)
class Matcher:
    """Matches a container by name glob, image glob and exact labels."""

    name: str | None = None
    image: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, name: str, image: str, labels: dict[str, str]) -> bool:
        if self.name is not None and not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.image is not None and not fnmatch.fnmatchcase(image, self.image):
            return False
        return all(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True)
class Selector:
    types: tuple[str, ...] | None
    matcher: Matcher


@dataclass(frozen=True)
class Rule:
    name: str
    select: Selector
    action: str
    keep: int | None = None
    order_by: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    when: expr_mod.Expr | None = None
    when_text: str = ""
    for_ticks: int = 1
    file: str = ""
    line: int = 0
    pointer: str = ""


@dataclass(frozen=True)
class RuleSet:
    types: tuple[tuple[str, Matcher], ...]
    protect: tuple[Matcher, ...]
    rules: tuple[Rule, ...]
    file_hashes: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        joined = json.dumps(sorted(self.file_hashes.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dataclass
class Result:
    ruleset: RuleSet | None
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return self.ruleset is not None and not any(
            f.severity == "error" for f in self.findings
        )


@dataclass(frozen=True)
class RuleChanges:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    edited: tuple[str, ...]

    def __str__(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("edited", self.edited),
            )
            if names
        ]
        return "; ".join(parts) or "no rule changed"


def diff_rulesets(old: RuleSet, new: RuleSet) -> RuleChanges:
    """Which rules a reload adds, removes and edits (by name).

    A rule that only moved within its file is not edited; a change of types
    or protection shows as an edit of no rule (see the file hashes).
    """

    def comparable(rule: Rule) -> Rule:
        return replace(rule, file="", line=0, pointer="")

    before = {r.name: comparable(r) for r in old.rules}
    after = {r.name: comparable(r) for r in new.rules}
    return RuleChanges(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        edited=tuple(n for n in after if n in before and after[n] != before[n]),
    )


def schema() -> dict[str, Any]:
    text = resources.files("rulectl").joinpath("rules.schema.json").read_text()
    return json.loads(text)


def rule_files(paths: list[Path]) -> list[Path]:
    """The YAML files named, or found (sorted) in the directories named."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            continue  # reported as "no rule files found" when nothing is left
        if path.is_dir():
            files += sorted(
                p
                for p in path.iterdir()
                if p.suffix in (".yaml", ".yml") and p.is_file()
            )
        else:
            files.append(path)
    return files


def unsafe_permissions(path: Path) -> str | None:
    """Why a file (or directory) that root acts on may not be trusted, if so.

    In the spirit of sshd's StrictModes: when rulectl runs as root, a rule or
    config file that another user can write would let that user decide which
    containers root stops. The file and the directory holding it must belong
    to root (or to the user rulectl runs as) and be writable by no one else
    but root's group; a sticky directory such as /tmp may hold them.
    """
    if os.geteuid() != 0:
        return None
    for item in (path, path.parent):
        try:
            st = item.stat()
        except OSError:
            continue
        sticky_dir = item.is_dir() and st.st_mode & 0o1000
        if st.st_uid not in (0, os.geteuid()):
            return f"{item} belongs to uid {st.st_uid}, not root"
        if item is not path and sticky_dir:
            continue
        others = st.st_mode & 0o002
        # Group write is fine for root's own group, whose members are root's.
        group = st.st_mode & 0o020 and st.st_gid != 0
        if others or group:
            who = "others" if others else f"its group (gid {st.st_gid})"
            return (
                f"{item} is writable by {who} (mode {st.st_mode & 0o7777:04o}): "
                f"run chmod go-w {item}"
            )
    return None


def load_rules(paths: list[Path]) -> Result:
    """Loads and validates every rule file; a RuleSet only if all is well."""
    try:
        files = rule_files(paths)
    except OSError as exc:
        where = exc.filename or ", ".join(str(p) for p in paths)
        return Result(None, [Finding(str(where), 1, 1, "Y001", f"cannot read: {exc}")])
    if not files:
        where = ", ".join(str(p) for p in paths)
        return Result(None, [Finding(where, 1, 1, "R007", "no rule files found")])

    findings: list[Finding] = []
    for path in files:
        why = unsafe_permissions(path)
        if why:
            findings.append(
                Finding(str(path), 1, 1, "P001", f"refused, running as root: {why}")
            )
    if findings:
        return Result(None, findings)
    docs: list[Document] = []
    hashes: dict[str, str] = {}
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            findings.append(Finding(str(path), 1, 1, "Y001", f"cannot read: {exc}"))
            continue
        hashes[str(path)] = hashlib.sha256(raw).hexdigest()
        doc, yaml_findings = load(str(path), raw.decode("utf-8", "replace"))
        findings += yaml_findings
        if doc is None or yaml_findings:
            continue
        if doc.value is None:
            findings.append(Finding(str(path), 1, 1, "S001", "the file is empty"))
            continue
        schema_findings = check_schema(doc)
        findings += schema_findings
        if not schema_findings:
            docs.append(doc)

    # Semantics are checked on every file that passed the earlier stages, so
    # one broken file does not hide the findings of the others. A type may be
    # defined in a file that did not pass: unknown types are then not named.
    earlier_failed = any(f.severity == "error" for f in findings)
    ruleset, semantic_findings = _build_ruleset(docs, hashes)
    if earlier_failed:
        semantic_findings = [f for f in semantic_findings if f.code != "R004"]
    findings = sorted(
        findings + semantic_findings, key=lambda f: (f.file, f.line, f.col)
    )
    if any(f.severity == "error" for f in findings):
        return Result(None, findings)
    return Result(ruleset, findings)


def check_schema(doc: Document, schema_doc: dict | None = None) -> list[Finding]:
    validator = jsonschema.Draft202012Validator(schema_doc or schema())
    findings = []
    for error in sorted(validator.iter_errors(doc.value), key=lambda e: list(e.path)):
        pointer = "".join(
            "/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.path
        )
        message, pointer, on_key = _explain(error, pointer)
        line, col = doc.where(pointer, key=on_key)
        findings.append(Finding(doc.path, line, col, "S001", message, pointer))
    return findings


_JSON_TYPES = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _explain(error: jsonschema.ValidationError, pointer: str) -> tuple[str, str, bool]:
    """A message an operator understands, and the node it belongs to."""
    got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
    match error.validator:
        case "type":
            # An empty value has no place of its own: point at its key.
            on_key = error.instance is None
            return f"expected {error.validator_value}, got {got}", pointer, on_key
        case "required":
            missing = error.message.split("'")[1]
            return f"missing required key {missing!r}", pointer, False
        case "additionalProperties":
            extra = [k for k in error.instance if k not in error.schema["properties"]]
            if extra:
                child = f"{pointer}/{extra[0]}"
                return f"unknown key {extra[0]!r}", child, True
        case "enum":
            options = ", ".join(map(str, error.validator_value))
            return f"expected one of {options}, got {error.instance!r}", pointer, False
        case "minimum" | "exclusiveMinimum":
            bound = "at least" if error.validator == "minimum" else "more than"
            return (
                f"expected {bound} {error.validator_value}, got {error.instance}",
                pointer,
                False,
            )
        case "const":
            return f"expected {error.validator_value!r}", pointer, False
        case "minLength":
            return (
                f"expected a non-empty string, got {error.instance!r}",
                pointer,
                False,
            )
        case "anyOf" if error.schema.get("anyOf") == [
            {"required": ["keep"]},
            {"required": ["when"]},
        ]:
            return "a rule needs `keep:` or `when:` (or both)", pointer, False
        case "oneOf":
            return f"expected a string or a list of strings, got {got}", pointer, False
        case "pattern":
            return (
                f"{error.instance!r} does not match {error.validator_value}",
                pointer,
                False,
            )
    return error.message, pointer, False


def _build_ruleset(
    docs: list[Document], hashes: dict[str, str]
) -> tuple[RuleSet, list[Finding]]:
    findings: list[Finding] = []
    types: dict[str, Matcher] = {}
    protect: list[Matcher] = []
    rules: list[Rule] = []
    rule_names: dict[str, str] = {}

    for doc in docs:
        for name, spec in (doc.value.get("types") or {}).items():
            if name in types:
                line, col = doc.where(f"/types/{name}", key=True)
                findings.append(
                    Finding(doc.path, line, col, "R008", f"type {name!r} defined twice")
                )
            types[name] = _matcher(spec)
        protect += [_matcher(spec) for spec in doc.value.get("protect") or []]

    for doc in docs:
        for i, spec in enumerate(doc.value.get("rules") or []):
            rule, rule_findings = _build_rule(doc, i, spec, types)
            findings += rule_findings
            if rule is None:
                continue
            if rule.name in rule_names:
                line, col = doc.where(f"/rules/{i}/name")
                findings.append(
                    Finding(
                        doc.path,
                        line,
                        col,
                        "R005",
                        f"rule name {rule.name!r} is used twice "
                        f"(first in {rule_names[rule.name]})",
                        f"/rules/{i}/name",
                    )
                )
                continue
            rule_names[rule.name] = f"{doc.path}:{rule.line}"
            rules.append(rule)

    ruleset = RuleSet(tuple(types.items()), tuple(protect), tuple(rules), hashes)
    return ruleset, findings + _lint_rules(rules)


def _matcher(spec: dict[str, Any]) -> Matcher:
    labels = tuple(sorted((spec.get("label") or {}).items()))
    return Matcher(spec.get("name"), spec.get("image"), labels)


def _build_rule(
    doc: Document, index: int, spec: dict[str, Any], types: dict[str, Matcher]
) -> tuple[Rule | None, list[Finding]]:
    base = f"/rules/{index}"
    findings: list[Finding] = []

    def finding(code: str, pointer: str, message: str, col_offset: int = 0) -> None:
        line, col = doc.where(pointer)
        findings.append(
            Finding(doc.path, line, col + col_offset, code, message, pointer)
        )

    select = spec.get("select") or {}
    wanted = select.get("type")
    type_names = (wanted,) if isinstance(wanted, str) else tuple(wanted or ()) or None
    for t in type_names or ():
        if t not in types:
            known = ", ".join(types) or "none defined"
            finding(
                "R004",
                f"{base}/select/type",
                f"unknown type {t!r}: this selection can never match (known: {known})",
            )

    order_by = []
    for j, item in enumerate(spec.get("order_by") or []):
        name = item.lstrip("-")
        if name not in ORDER_FIELDS:
            known = ", ".join(sorted(ORDER_FIELDS))
            finding(
                "R006",
                f"{base}/order_by/{j}",
                f"cannot order by {name!r} (known: {known})",
            )
        order_by.append((name, item.startswith("-")))

    when = None
    when_text = spec.get("when") or ""
    if when_text:
        try:
            when = expr_mod.parse(when_text)
        except expr_mod.ExprError as exc:
            line, col = doc.where_in(f"{base}/when", exc.column)
            findings.append(
                Finding(
                    doc.path, line, col, exc.code, f"in `when`: {exc}", f"{base}/when"
                )
            )
        else:
            findings += _lint_when(doc, f"{base}/when", when)

    if findings and any(f.severity == "error" for f in findings):
        return None, findings
    matcher = _matcher(select)
    line, _ = doc.where(base)
    rule = Rule(
        name=spec["name"],
        select=Selector(type_names, matcher),
        action=spec["action"],
        keep=spec.get("keep"),
        order_by=tuple(order_by),
        when=when,
        when_text=when_text,
        for_ticks=spec.get("for", 1),
        file=doc.path,
        line=line,
        pointer=base,
    )
    return rule, findings


def _may_overlap(a: Selector, b: Selector) -> bool:
    """Whether two selections can share a container (a cheap, safe guess)."""
    if a.types is not None and b.types is not None and not set(a.types) & set(b.types):
        return False
    return True


def _covers(a: Selector, b: Selector) -> bool:
    """Whether every container `b` selects is also selected by `a`."""
    if a.types is not None and (b.types is None or not set(b.types) <= set(a.types)):
        return False
    m = a.matcher
    return (
        (m.name is None or m.name == b.matcher.name)
        and (m.image is None or m.image == b.matcher.image)
        and set(m.labels) <= set(b.matcher.labels)
    )


def _lint_rules(rules: list[Rule]) -> list[Finding]:
    """Warnings about rules that cannot act or that work against each other."""
    findings = []

    def warn(rule: Rule, code: str, message: str) -> None:
        findings.append(
            Finding(
                rule.file, rule.line, 5, code, message, rule.pointer, severity="warning"
            )
        )

    for i, later in enumerate(rules):
        for earlier in rules[:i]:
            acts = earlier.action != "log"
            # An earlier rule that acts on all it selects (keep: 0), or on all
            # it selects under the very same condition, leaves nothing to a
            # later rule over the same containers.
            acts = earlier.action != "log"
            takes_all = (earlier.keep == 0 and earlier.when is None) or (
                earlier.keep is None
                and later.keep is None
                and earlier.when is not None
                and earlier.when == later.when
            )
            if acts and takes_all and _covers(earlier.select, later.select):
                warn(
                    later,
                    "L002",
                    f"rule {later.name!r} is shadowed: {earlier.name!r} comes first "
                    "and acts on every container it selects",
                )
            elif not _may_overlap(earlier.select, later.select):
                continue
            elif earlier.keep is not None and later.keep is not None:
                warn(
                    later,
                    "L003",
                    f"rules {earlier.name!r} and {later.name!r} both keep a number of "
                    "the same containers: one removes what the other keeps",
                )
            elif earlier.keep is None and later.keep is not None and acts:
                warn(
                    later,
                    "L004",
                    f"threshold rule {earlier.name!r} comes before keep rule "
                    f"{later.name!r} on the same containers: what it takes changes "
                    "the count the keep rule sees next tick; put the keep rule first",
                )
    return findings


def _lint_when(doc: Document, pointer: str, when: expr_mod.Expr) -> list[Finding]:
    """Warns about comparisons that can never be true on any host."""
    findings = []
    for cmp in expr_mod.fields_of(when):
        if not isinstance(cmp.value, float) or cmp.op not in (">", ">="):
            continue
        ncpu = os.cpu_count() or 1
        if cmp.field in expr_mod.PERCENT_FIELDS and cmp.value >= 100:
            why = "a memory percentage never exceeds 100"
        elif cmp.field in expr_mod.CPU_PERCENT_FIELDS and cmp.value >= 100 * ncpu:
            why = (
                f"this host has {ncpu} CPUs, so CPU % (100 per core) tops at "
                f"{100 * ncpu}"
            )
        else:
            continue
        line, col = doc.where(pointer)
        findings.append(
            Finding(
                doc.path,
                line,
                col,
                "L001",
                f"`{cmp.field} {cmp.op} {cmp.value:g}` can never hold: {why}",
                pointer,
                severity="warning",
            )
        )
    return findings
