"""YAML loading that remembers where every value came from.

PyYAML's safe loader is used to compose the node tree only; values are built
here so that each one keeps its line and column (by JSON pointer) and so that
YAML 1.1 surprises become findings instead of silent changes of meaning:

    name: no      -> read as false     (Y003: quote it)
    keep: 010     -> read as 8 (octal) (Y004: no leading zeros)
    interval: 08  -> read as "08"      (Y004)
    the same key twice in a mapping    (Y002: the last one would win)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_BOOL_WORDS = {"true", "false", "True", "False", "TRUE", "FALSE"}
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+$")


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    col: int
    code: str
    message: str
    pointer: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.pointer}: " if self.pointer else ""
        # One finding, one line: a message never spans two.
        message = " ".join(self.message.split("\n"))
        return f"{self.file}:{self.line}:{self.col}: {self.code}: {where}{message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "severity": self.severity,
            "pointer": self.pointer,
            "message": self.message,
        }


@dataclass
class Document:
    """A loaded YAML file: its value and the position of every node."""

    path: str
    value: Any
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Scalar style by pointer: None plain, '"' or "'" quoted, '|' or '>' block.
    styles: dict[str, str | None] = field(default_factory=dict)

    def where_in(self, pointer: str, offset: int) -> tuple[int, int]:
        """Line and column of the character `offset` into a scalar's text.

        Exact for plain and quoted one-line scalars; for a block scalar, whose
        text starts on the next line and may be folded, the indicator's place.
        """
        line, col = self.where(pointer)
        style = self.styles.get(pointer)
        if style in ("|", ">"):
            return line, col
        return line, col + offset + (1 if style in ('"', "'") else 0)

    def where(self, pointer: str, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of a pointer, or of its nearest ancestor."""
        table = self.key_positions if key else self.positions
        while True:
            if pointer in table:
                return table[pointer]
            if pointer in self.positions:
                return self.positions[pointer]
            if not pointer:
                return (1, 1)
            pointer = pointer.rsplit("/", 1)[0]


def escape_pointer(token: str) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def load(path: str, text: str) -> tuple[Document | None, list[Finding]]:
    """Loads one YAML document; returns it with every finding on the way."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Finding(path, line, col, "Y001", f"YAML syntax: {problem}")]
    doc = Document(path, None)
    findings: list[Finding] = []
    if node is None:
        return doc, findings
    doc.value = _build(node, "", doc, findings)
    return doc, findings


_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null")
}


def _build(node: yaml.Node, pointer: str, doc: Document, out: list[Finding]) -> Any:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    doc.positions[pointer] = (line, col)
    if node.tag not in _PLAIN_TAGS:
        # Rule files are data: no timestamps, binaries or Python objects.
        out.append(
            Finding(
                doc.path, line, col, "Y005", f"tag {node.tag} is not allowed", pointer
            )
        )
        return None
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(node, pointer, doc, out)
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, f"{pointer}/{i}", doc, out)
            for i, item in enumerate(node.value)
        ]
    return _build_scalar(node, pointer, doc, out)


def _build_mapping(
    node: yaml.MappingNode, pointer: str, doc: Document, out: list[Finding]
) -> dict:
    result: dict = {}
    first_seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            out.append(
                Finding(doc.path, line, col, "Y001", "keys must be plain values")
            )
            continue
        key = key_node.value
        child = f"{pointer}/{escape_pointer(key)}"
        line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
        if key in first_seen:
            out.append(
                Finding(
                    doc.path,
                    line,
                    col,
                    "Y002",
                    f"duplicate key {key!r} (first at line {first_seen[key]}); "
                    "YAML would silently keep only the last one: remove one",
                    child,
                )
            )
            continue
        first_seen[key] = line
        doc.key_positions[child] = (line, col)
        result[key] = _build(value_node, child, doc, out)
    return result


def _build_scalar(
    node: yaml.ScalarNode, pointer: str, doc: Document, out: list[Finding]
) -> Any:
    doc.styles[pointer] = node.style
    if node.style is not None:  # quoted or block scalars are always strings
        return node.value
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    text = node.value
    resolved = _resolve(node)
    if node.tag == "tag:yaml.org,2002:bool" and text not in _BOOL_WORDS:
        out.append(
            Finding(
                doc.path,
                line,
                col,
                "Y003",
                f"{text!r} is read as {str(resolved).lower()} by YAML 1.1; "
                f'quote it ("{text}") if you mean the word, or write '
                f"{str(resolved).lower()}",
                pointer,
            )
        )
    elif _LEADING_ZERO.match(text):
        meaning = (
            f"the octal number {resolved}"
            if isinstance(resolved, int)
            else f"the string {text!r}"
        )
        out.append(
            Finding(
                doc.path,
                line,
                col,
                "Y004",
                f"{text} is read as {meaning} by YAML 1.1; write it without "
                "leading zeros, or quote it if you mean a string",
                pointer,
            )
        )
    return resolved


def _resolve(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
