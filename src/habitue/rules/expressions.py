"""CEL expressions of rules: static analysis, the variables rules see, and memoised evaluation.

The CEL library compiles and evaluates; converting Python values into CEL values is what
costs (about 1 µs per value). So each expression is scanned once for the variable paths it
reads (`line.category`, `member.counters.visits_30d`), evaluation passes CEL only those
values, and the result is memoised by them: a line condition over `line.category` runs once
per distinct category, not once per basket line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from habitue.rules.errors import RuleValidationError

ROOTS: frozenset[str] = frozenset({"event", "line", "member", "now"})

EVENT_FIELDS: dict[str, type] = {
    "type": str,
    "external_id": str,
    "total": float,
    "total_minor": int,
    "discount": float,
    "discount_minor": int,
    "base_points": int,
    "lines": list,
    "attributes": dict,
}
LINE_FIELDS: dict[str, type] = {
    "sku": str,
    "category": str,
    "quantity": float,
    "unit_price": float,
    "unit_price_minor": int,
    "amount": float,
    "amount_minor": int,
}
MEMBER_FIELDS: dict[str, type] = {
    "id": str,
    "tier": str,
    "status": str,
    "tenure_days": int,
    "attributes": dict,
    "counters": dict,
    "benefits": list,
    "segments": list,
}
NOW_FIELDS: dict[str, type] = {
    "weekday": int,
    "weekday_name": str,
    "hour": int,
    "minute": int,
    "time": str,
    "date": str,
    "day": int,
    "month": int,
    "year": int,
}
FIELDS: dict[str, dict[str, type]] = {
    "event": EVENT_FIELDS,
    "line": LINE_FIELDS,
    "member": MEMBER_FIELDS,
    "now": NOW_FIELDS,
}
FREE_FORM: frozenset[tuple[str, str]] = frozenset(
    {("event", "attributes"), ("member", "attributes"), ("member", "counters")}
)
"""Maps whose keys are the program's own: any key may be read (a missing one is a run-time error
unless guarded with `has(...)`)."""

FUNCTIONS: frozenset[str] = frozenset(
    {
        "size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn",
        "timestamp", "duration", "matches", "contains", "startsWith", "endsWith",
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
    |(?P<string>[rRbB]{0,2}(?:'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<number>\d[\w.]*)
    |(?P<punct>.)
    """,
    re.VERBOSE,
)
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Reference:
    """A variable path an expression reads, with the 1-based position of each segment."""

    path: tuple[str, ...]
    positions: tuple[tuple[int, int], ...]


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    line, line_start = 1, 0
    for m in _TOKEN.finditer(source):
        kind = m.lastgroup or "punct"
        text = m.group()
        if kind != "space":
            out.append(_Token(kind, text, line, m.start() - line_start + 1))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + text.rindex("\n") + 1
    return out


def scan(source: str) -> tuple[list[Reference], dict[str, tuple[int, int]]]:
    """Find the variable paths rooted at a known root, and the names macros bind."""
    toks = _tokens(source)
    bound: dict[str, tuple[int, int]] = {}
    refs: list[Reference] = []
    n = len(toks)
    for i, tok in enumerate(toks):
        if tok.kind != "ident":
            continue
        prev = toks[i - 1].text if i > 0 else ""
        if (
            tok.text in _MACROS
            and prev == "."
            and i + 3 < n
            and toks[i + 1].text == "("
            and toks[i + 2].kind == "ident"
            and toks[i + 3].text == ","
        ):
            name = toks[i + 2]
            bound.setdefault(name.text, (name.line, name.column))
        if tok.text not in ROOTS or prev == "." or (i + 1 < n and toks[i + 1].text == "("):
            continue
        path, positions = [tok.text], [(tok.line, tok.column)]
        j = i + 1
        while j + 1 < n and toks[j].text == "." and toks[j + 1].kind == "ident":
            path.append(toks[j + 1].text)
            positions.append((toks[j + 1].line, toks[j + 1].column))
            j += 2
        if len(path) > 1 and j < n and toks[j].text == "(":
            path.pop()  # a method call such as line.sku.startsWith(...)
            positions.pop()
        refs.append(Reference(tuple(path), tuple(positions)))
    return refs, bound


def cel_compile(source: str, field_name: str) -> Any:
    """Compile CEL, turning a syntax error into a `RuleValidationError` with its position."""
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        m = _POSITION.search(text)
        if m is None:
            raise RuleValidationError(field_name, f"invalid CEL: {text}") from exc
        message = m.group(3).split("\n")[0]
        raise RuleValidationError(
            field_name, f"invalid CEL: {message}", line=int(m.group(1)), column=int(m.group(2))
        ) from exc


def check_references(source: str, program: Any, field_name: str, roots: frozenset[str]) -> None:
    """Reject unknown variables, unknown fields of known roots and unknown functions."""
    refs, bound = scan(source)
    for name, (line, column) in bound.items():
        if name in ROOTS:
            raise RuleValidationError(
                field_name, f"'{name}' is reserved; pick another name", line=line, column=column
            )
    for var in program.variables():
        if var in roots or var in bound:
            continue
        pos = _first_position(source, var)
        hint = " ('line' is only available in line_condition)" if var == "line" else ""
        raise RuleValidationError(
            field_name,
            f"unknown variable '{var}'; use {', '.join(sorted(roots))}{hint}",
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
        )
    for ref in refs:
        if ref.path[0] not in roots:
            continue
        known = FIELDS[ref.path[0]]
        if len(ref.path) < 2:
            continue
        name = ref.path[1]
        if name not in known:
            line, column = ref.positions[1]
            raise RuleValidationError(
                field_name,
                f"unknown field '{ref.path[0]}.{name}'; known: {', '.join(sorted(known))}",
                line=line,
                column=column,
            )
        if len(ref.path) > 2 and (ref.path[0], name) not in FREE_FORM:
            line, column = ref.positions[2]
            raise RuleValidationError(
                field_name,
                f"'{ref.path[0]}.{name}' is a {known[name].__name__}; it has no field "
                f"'{ref.path[2]}'",
                line=line,
                column=column,
            )
    for fn in program.functions():
        if fn[0] in "_@!" or fn in FUNCTIONS:
            continue
        pos = _first_position(source, fn)
        raise RuleValidationError(
            field_name,
            f"unknown function '{fn}'",
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
        )


def _first_position(source: str, name: str) -> tuple[int, int] | None:
    for tok in _tokens(source):
        if tok.kind == "ident" and tok.text == name:
            return tok.line, tok.column
    return None


_MISSING: Any = object()
_SCALARS = (str, int, float, bool, type(None))
_MEMO_LIMIT = 8192


@dataclass(slots=True, eq=False)
class Expression:
    """A compiled CEL expression that evaluates over only the values it reads, memoised."""

    source: str
    program: Any
    paths: tuple[tuple[str, ...], ...]
    constant: bool | None = None
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @classmethod
    def build(cls, source: str, program: Any) -> Expression:
        """Prepare a compiled program for evaluation: the paths it reads, shortest first."""
        stripped = source.strip()
        if stripped in ("true", "false"):
            return cls(source, program, (), constant=stripped == "true")
        refs, _ = scan(source)
        paths: list[tuple[str, ...]] = []
        for path in sorted({r.path for r in refs}, key=len):
            if not any(path[: len(p)] == p for p in paths):
                paths.append(path)
        return cls(source, program, tuple(paths))

    def evaluate(self, roots: Mapping[str, Any], *, memoise: bool = True) -> Any:
        """Evaluate over `roots` (plain dicts); CEL errors propagate as Python exceptions."""
        if self.constant is not None:
            return self.constant
        resolved: list[tuple[int, Any]] = []
        key: list[Any] = []
        for path in self.paths:
            value = roots.get(path[0], _MISSING)
            depth = 0 if value is _MISSING else 1
            if depth:
                for name in path[1:]:
                    if type(value) is dict and name in value:
                        value = value[name]
                        depth += 1
                    else:
                        break
            resolved.append((depth, value))
            if memoise:
                if depth == len(path) and isinstance(value, _SCALARS):
                    key.append((type(value), value))
                elif depth and depth < len(path) and type(value) is dict:
                    key.append(depth)
                else:
                    memoise = False
        if memoise:
            k = tuple(key)
            hit = self.memo.get(k, _MISSING)
            if hit is not _MISSING:
                return hit
        context: dict[str, Any] = {}
        for path, (depth, value) in zip(self.paths, resolved, strict=True):
            if not depth:
                continue
            node = context
            for name in path[: depth - 1]:
                node = node.setdefault(name, {})
            if depth < len(path) and type(value) is dict:
                node.setdefault(path[depth - 1], {})
            else:
                node[path[depth - 1]] = value
        result = self.program.execute(context)
        if memoise:
            if len(self.memo) >= _MEMO_LIMIT:
                self.memo.clear()
            self.memo[k] = result
        return result
