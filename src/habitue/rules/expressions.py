"""CEL expressions of rules: static analysis, the variables rules see, and memoised evaluation.

The CEL library compiles and evaluates; converting Python values into CEL values is what
costs (about 1 µs per value). So each expression is scanned once for the variable paths it
reads (`line.category`, `member.counters.visits_30d`), evaluation passes CEL only those
values, and the result is memoised by them: a line condition over `line.category` runs once
per distinct category, not once per basket line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
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
    "line_count": int,
    "quantity": float,
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

_COMPARE = re.compile(
    r"""^\s*(event|member|now)\.([a-z_]+)\s*(==|!=|>=|<=|>|<)\s*"""
    r"""(-?(?:0|[1-9][0-9]{0,17})|"[A-Za-z0-9 _.:-]*"|'[A-Za-z0-9 _.:-]*')\s*$"""
)
"""`root.field op literal`: an int field against an int literal (any comparison) or a string
field against a plain string literal (equality only), the shape of most rule conditions."""
SIMPLE_INT_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {("event", "total_minor"), ("event", "discount_minor"), ("event", "base_points"),
     ("event", "line_count"), ("member", "tenure_days"), ("now", "weekday"), ("now", "hour"),
     ("now", "minute"), ("now", "day"), ("now", "month"), ("now", "year")}
)  # fmt: skip
SIMPLE_STR_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {("event", "type"), ("event", "external_id"), ("member", "id"), ("member", "tier"),
     ("member", "status"), ("now", "weekday_name"), ("now", "time"), ("now", "date")}
)  # fmt: skip
INT64 = 1 << 63


@dataclass(frozen=True, slots=True)
class Comparison:
    """A condition CEL need not run: `root.field op literal` (see `_COMPARE`). `holds` gives
    what CEL gives for a value of the field's type (`None` for an int outside CEL's 64 bits,
    which the caller leaves to CEL)."""

    root: str
    field: str
    op: str
    literal: int | str

    def holds(self, value: Any) -> bool | None:
        """The comparison's result for the field's value."""
        if type(value) is int and not -INT64 <= value < INT64:
            return None
        op, literal = self.op, self.literal
        if op == "==":
            return bool(value == literal)
        if op == "!=":
            return bool(value != literal)
        if op == ">=":
            return bool(value >= literal)
        if op == "<=":
            return bool(value <= literal)
        if op == ">":
            return bool(value > literal)
        return bool(value < literal)


def comparison(source: str) -> Comparison | None:
    """The `Comparison` a condition is, or None when it is anything else."""
    m = _COMPARE.match(source)
    if m is None:
        return None
    root, name, op, text = m.groups()
    if text[0] in "\"'":
        if (root, name) not in SIMPLE_STR_FIELDS or op not in ("==", "!="):
            return None
        return Comparison(root, name, op, text[1:-1])
    if (root, name) not in SIMPLE_INT_FIELDS:
        return None
    return Comparison(root, name, op, int(text))
_MEMO_LIMIT = 8192


def _fast_key(paths: tuple[tuple[str, ...], ...]) -> Callable[[Mapping[str, Any]], Any] | None:
    """A key function over fields whose type is fixed (known scalars and member counters)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        if len(path) == 2 and path[0] in ("event", "member", "now"):
            kind = FIELDS[path[0]].get(path[1])
            if kind not in (str, int, float):
                return None
            groups.setdefault(path[:1], []).append(path[1])
        elif len(path) == 3 and path[:2] == ("member", "counters"):
            groups.setdefault(path[:2], []).append(path[2])
        else:
            return None
    if not groups:
        return None
    plan = [
        (itemgetter(*source) if len(source) == 1 else _counters, itemgetter(*sorted(names)))
        for source, names in sorted(groups.items())
    ]
    if len(plan) == 1:
        ((source, fields),) = plan
        return lambda roots: fields(source(roots))
    return lambda roots: tuple([fields(source(roots)) for source, fields in plan])


def _counters(roots: Mapping[str, Any]) -> Any:
    return roots["member"]["counters"]


# The `LineInput` attribute that determines each `line` field, for memo keys.
_LINE_ATTRS = {
    "sku": "sku",
    "category": "category",
    "quantity": "quantity",
    "unit_price": "unit_price_minor",
    "unit_price_minor": "unit_price_minor",
    "amount": "amount_minor",
    "amount_minor": "amount_minor",
}


def run_memoised(
    program: Any,
    paths: tuple[tuple[str, ...], ...],
    memo: dict[Any, Any],
    roots: Mapping[str, Any],
    lines_at: tuple[str, str] | None,
    line_fields: tuple[str, ...] | None,
    memoise: bool = True,
) -> Any:
    """Execute a compiled CEL `program` over the values its `paths` read from `roots` (plain
    dicts), remembering the result in `memo` by those values when each is a scalar (or a
    dict the path stops in: its presence). Only what the paths read is passed to CEL; the
    list at `lines_at` goes with only `line_fields` of each line. Shared by the rules'
    expressions and the promotions' conditions; CEL errors propagate as Python exceptions."""
    resolved: list[tuple[int, Any]] = []
    key: list[Any] = []
    for path in paths:
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
    k = tuple(key)
    if memoise:
        hit = memo.get(k, _MISSING)
        if hit is not _MISSING:
            return hit
    context: dict[str, Any] = {}
    for path, (depth, value) in zip(paths, resolved, strict=True):
        if not depth:
            continue
        node = context
        for name in path[: depth - 1]:
            node = node.setdefault(name, {})
        if depth < len(path) and type(value) is dict:
            node.setdefault(path[depth - 1], {})
        elif path == lines_at and line_fields is not None and depth == 2:
            node[path[1]] = [{f: ln[f] for f in line_fields if f in ln} for ln in value]
        else:
            node[path[depth - 1]] = value
    result = program.execute(context)
    if memoise:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[k] = result
    return result


@dataclass(slots=True, eq=False)
class Expression:
    """A compiled CEL expression that evaluates over only the values it reads, memoised.

    `line_key`, set when the expression reads nothing but known `line` fields, computes its
    memo key straight from a `LineInput`, so a line condition costs one dict lookup per line
    once its distinct line shapes have been seen. `line_fields` lists the line fields named
    in an expression that reads `event.lines`: only those are passed to CEL.
    """

    source: str
    program: Any
    paths: tuple[tuple[str, ...], ...]
    constant: bool | None = None
    memo: dict[Any, Any] = field(default_factory=dict)
    reads_lines: bool = False
    line_fields: tuple[str, ...] | None = None
    line_key: Callable[[Any], Any] | None = None
    line_memos: dict[int, dict[Any, Any]] = field(default_factory=dict)
    """Memo of `line_key` results per currency exponent (amounts are scaled by it)."""
    fast_key: Callable[[Mapping[str, Any]], Any] | None = None
    """The memo key straight from the roots, when every path is a field of fixed type."""
    fast_memo: dict[Any, Any] = field(default_factory=dict)
    simple: Comparison | None = None
    """Set when the expression is a plain comparison of one field with a literal: `decide`
    then compares the field's value in Python, without building the CEL variables."""

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
        expr = cls(source, program, tuple(paths))
        expr.reads_lines = any(p in (("event",), ("event", "lines")) for p in paths)
        if expr.reads_lines and ("event",) not in paths:
            named = {t.text for t in _tokens(source) if t.kind == "ident"}
            named |= {t.text.strip("'\"rRbB") for t in _tokens(source) if t.kind == "string"}
            expr.line_fields = tuple(sorted(named & LINE_FIELDS.keys()))
        if paths and all(len(p) == 2 and p[0] == "line" and p[1] in LINE_FIELDS for p in paths):
            attrs = sorted({_LINE_ATTRS[p[1]] for p in paths})
            expr.line_key = attrgetter(*attrs)
        expr.fast_key = _fast_key(expr.paths)
        expr.simple = comparison(source)
        return expr

    def evaluate_fast(self, roots: Mapping[str, Any]) -> Any:
        """Evaluate with the fast memo key when there is one (a missing key falls back)."""
        key_of = self.fast_key
        if key_of is None:
            return self.constant if self.constant is not None else self.evaluate(roots)
        try:
            key = key_of(roots)
        except KeyError:
            return self.evaluate(roots)
        memo = self.fast_memo
        hit = memo.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        result = self.evaluate(roots, memoise=False)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = result
        return result

    def evaluate(self, roots: Mapping[str, Any], *, memoise: bool = True) -> Any:
        """Evaluate over `roots` (plain dicts); CEL errors propagate as Python exceptions."""
        if self.constant is not None:
            return self.constant
        lines_at = ("event", "lines") if self.line_fields is not None else None
        return run_memoised(
            self.program, self.paths, self.memo, roots, lines_at, self.line_fields, memoise
        )
