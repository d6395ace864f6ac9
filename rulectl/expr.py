"""The `when:` expression language: parse, type-check, evaluate, compile.

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" expr ")" | comparison
    comparison := FIELD OP literal | literal OP FIELD
    OP         := > >= < <= == !=
    literal    := number | "string" | 'string'

`not` is pushed down to the comparisons while parsing (De Morgan), so an
expression is a tree of And/Or over comparisons. A comparison whose field is
unknown this tick (CPU % of a container seen for the first time) is false, and
so is its negation: an unknown value never triggers an action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Fields a `when:` may name, with their kind. Numbers may be unknown (None).
FIELDS: dict[str, str] = {
    "cpu_percent": "number",
    "mem_percent": "number",
    "mem_rss_kb": "number",
    "mem_working_set_kb": "number",
    "vsz_kb": "number",
    "n_pids": "number",
    "age_s": "number",
    "host_cpu_percent": "number",
    "host_mem_used_percent": "number",
    "name": "string",
    "image": "string",
    "type": "string",
}

# Fields whose values are percentages, for the lint that catches `> 400`.
PERCENT_FIELDS = {"mem_percent", "host_mem_used_percent"}
CPU_PERCENT_FIELDS = {"cpu_percent", "host_cpu_percent"}

_NEGATE = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}
_MIRROR = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<string>"[^"\\]*"|'[^'\\]*')
      | (?P<op>>=|<=|==|!=|>|<)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


class ExprError(ValueError):
    """A finding in an expression: `code` is R001 syntax, R002 field, R003 type."""

    def __init__(self, code: str, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.column = column


@dataclass(frozen=True)
class Cmp:
    field: str
    op: str
    value: float | str


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Cmp | And | Or


def parse(text: str) -> Expr:
    """Parses and type-checks an expression; raises ExprError."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    expr = parser.parse_or(negate=False)
    if parser.pos != len(tokens):
        kind, value, col = tokens[parser.pos]
        raise ExprError("R001", f"unexpected {value!r}", col)
    return expr


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExprError("R001", f"cannot read {text[pos:].strip()!r}", pos)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str, int]:
        token = self._peek()
        if token is None:
            raise ExprError("R001", "the expression ends too early", len(self.text))
        self.pos += 1
        return token

    def _at_word(self, word: str) -> bool:
        token = self._peek()
        return token is not None and token[0] == "word" and token[1] == word

    # `negate` carries a pending `not` down the tree (De Morgan).
    def parse_or(self, negate: bool) -> Expr:
        items = [self.parse_and(negate)]
        while self._at_word("or"):
            self.pos += 1
            items.append(self.parse_and(negate))
        return _join(items, And if negate else Or)

    def parse_and(self, negate: bool) -> Expr:
        items = [self.parse_not(negate)]
        while self._at_word("and"):
            self.pos += 1
            items.append(self.parse_not(negate))
        return _join(items, Or if negate else And)

    def parse_not(self, negate: bool) -> Expr:
        if self._at_word("not"):
            self.pos += 1
            return self.parse_not(not negate)
        token = self._peek()
        if token is not None and token[1] == "(":
            self.pos += 1
            inner = self.parse_or(negate)
            kind, value, col = self._take()
            if value != ")":
                raise ExprError("R001", f"expected ')' but found {value!r}", col)
            return inner
        cmp = self.parse_comparison()
        return Cmp(cmp.field, _NEGATE[cmp.op], cmp.value) if negate else cmp

    def parse_comparison(self) -> Cmp:
        left = self._take()
        kind, op, col = self._take()
        if kind != "op":
            raise ExprError("R001", f"expected a comparison after {left[1]!r}", col)
        right = self._take()
        for token in (left, right):
            if token[0] in ("op", "paren"):
                raise ExprError("R001", f"unexpected {token[1]!r}", token[2])
        if left[0] == "word" and right[0] != "word":
            field_token, literal, opr = left, right, op
        elif right[0] == "word" and left[0] != "word":
            field_token, literal, opr = right, left, _MIRROR[op]
        else:
            raise ExprError(
                "R001", "a comparison needs one field and one value", left[2]
            )
        return _check(field_token, opr, literal)


def _join(items: list[Expr], kind: type) -> Expr:
    return items[0] if len(items) == 1 else kind(tuple(items))


def _check(field_token: tuple[str, str, int], op: str, literal: tuple) -> Cmp:
    _, name, col = field_token
    if name in ("and", "or", "not"):
        raise ExprError("R001", f"{name!r} cannot start a comparison", col)
    if name not in FIELDS:
        known = ", ".join(sorted(FIELDS))
        raise ExprError("R002", f"unknown field {name!r} (known: {known})", col)
    kind, text, lcol = literal
    if FIELDS[name] == "number":
        if kind != "number":
            raise ExprError("R003", f"{name} is a number; {text} is not", lcol)
        return Cmp(name, op, float(text))
    if kind != "string":
        raise ExprError(
            "R003", f'{name} is a string: quote the value ({name} == "...")', lcol
        )
    if op not in ("==", "!="):
        raise ExprError("R003", f"{name} is a string: only == and != apply", lcol)
    return Cmp(name, op, text[1:-1])


def evaluate(expr: Expr, facts: dict[str, Any]) -> bool:
    """Evaluates in plain Python; an unknown (None or absent) field is false."""
    if isinstance(expr, And):
        return all(evaluate(e, facts) for e in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(e, facts) for e in expr.items)
    value = facts.get(expr.field)
    if value is None:
        return False
    match expr.op:
        case ">":
            return value > expr.value
        case ">=":
            return value >= expr.value
        case "<":
            return value < expr.value
        case "<=":
            return value <= expr.value
        case "==":
            return value == expr.value
        case _:
            return value != expr.value


_DURABLE_OP = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "!=": "$neq"}


def to_durable(expr: Expr) -> dict[str, Any]:
    """The same expression in durable-rules' JSON condition language.

    Unknown values are left out of the events; durable-rules holds every
    comparison on an absent field false, `$neq` included, which is the
    reference semantics (the differential test checks it).
    """
    if isinstance(expr, And):
        return {"$and": [to_durable(e) for e in expr.items]}
    if isinstance(expr, Or):
        return {"$or": [to_durable(e) for e in expr.items]}
    if expr.op == "==":
        return {expr.field: expr.value}
    return {_DURABLE_OP[expr.op]: {expr.field: expr.value}}


def fields_of(expr: Expr) -> list[Cmp]:
    """Every comparison in the tree, for lint checks."""
    if isinstance(expr, Cmp):
        return [expr]
    return [c for e in expr.items for c in fields_of(e)]
