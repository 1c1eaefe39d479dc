"""CEL conditions of promotions and coupons: over `basket`, `line`, `member` and `now`.

Compiled and checked like the rules' conditions (the same CEL library, the same functions, the
same `member` and `now`); only the roots differ: a promotion reads the basket the till sends,
not an event, and CEL is given only the roots an expression names.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from habitue.rules.errors import RuleValidationError
from habitue.rules.expressions import (
    FUNCTIONS,
    MEMBER_FIELDS,
    NOW_FIELDS,
    cel_compile,
    run_memoised,
)

_MISSING: Any = object()
_MEMO_LIMIT = 8192

BASKET_FIELDS: dict[str, type] = {
    "total": float,
    "total_minor": int,
    "total_excl": float,
    "total_excl_minor": int,
    "quantity": float,
    "line_count": int,
    "lines": list,
    "codes": list,
}
"""`basket`: totals as the till charges them (tax included) and without tax, units, lines, and
the codes typed at the till (normalised)."""

LINE_FIELDS: dict[str, type] = {
    "sku": str,
    "category": str,
    "quantity": float,
    "unit_price": float,
    "unit_price_minor": int,
    "amount": float,
    "amount_minor": int,
    "amount_excl": float,
    "amount_excl_minor": int,
    "tax_rate": float,
}
FIELDS: dict[str, dict[str, type]] = {
    "basket": BASKET_FIELDS,
    "line": LINE_FIELDS,
    "member": MEMBER_FIELDS,
    "now": NOW_FIELDS,
}
_FREE_FORM = frozenset({("member", "attributes"), ("member", "counters")})
CONDITION_ROOTS = frozenset({"basket", "member", "now"})
LINE_ROOTS = frozenset({"basket", "line", "member", "now"})


_STRINGS = re.compile(r"""[rRbB]{0,2}('(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""")
_PATH = re.compile(r"(?<![.\w])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\()?")
_MACRO_OPEN = r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*"
_MACRO_BIND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(slots=True, eq=False)
class Condition:
    """A compiled CEL condition over only the values it reads, memoised on them.

    `paths` are the variable paths the source names (`line.sku`, `basket.total`, `member`…),
    shortest first. Evaluating resolves each path in the roots; when every one ends on a
    scalar (or a missing field of a dict), the result is memoised on those values, so a line
    condition such as `line.sku == 'MUG'` runs CEL once per distinct SKU, not once per line
    and basket. Only the values read are passed to CEL; `basket.lines` is passed with only
    the line fields the source names. A condition is compiled once per promotion version
    (`service.deal_of`), so its memo lives as long as that version.

    `key`, set when every path is a field the pricing core's roots (`effects.roots_for`)
    always hold with one type (`FIXED`), makes the memo key straight from those roots: the
    field's values in the order of `paths`, `basket.lines` as the tuple of each line's named
    fields (or of all its fields when the source uses a line whole), `basket.codes`,
    `member.benefits` and `member.segments` as tuples. So a condition over the basket's
    lines (`basket.lines.filter(l, l.category == 'furniture').size() >= 3`) runs CEL once per
    distinct list of the values it reads, not at every basket. `evaluate_priced` uses it.
    """

    source: str
    program: Any
    roots: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...] = ()
    line_fields: tuple[str, ...] | None = None
    memo: dict[Any, Any] = _field(default_factory=dict)
    key: Callable[[dict[str, Any]], Any] | None = None
    key_memo: dict[Any, Any] = _field(default_factory=dict)
    simple: Simple | None = None

    def evaluate(self, roots: dict[str, Any]) -> Any:
        """Evaluate over the values it reads; CEL errors propagate as Python exceptions."""
        return run_memoised(
            self.program, self.paths, self.memo, roots, ("basket", "lines"), self.line_fields
        )

    def evaluate_priced(self, roots: dict[str, Any]) -> Any:
        """`evaluate` over roots made by `effects.roots_for` (with `line` from its
        `basket.lines` for a line condition): memoised on `key` when there is one; a
        `simple` comparison compared in Python."""
        simple = self.simple
        if simple is not None:
            result = simple.holds(roots[simple.root][simple.field])
            if result is not None:
                return result
        key_of = self.key
        if key_of is None:
            return self.evaluate(roots)
        k = key_of(roots)
        memo = self.key_memo
        hit = memo.get(k, _MISSING)
        if hit is not _MISSING:
            return hit
        result = run_memoised(
            self.program, self.paths, memo, roots, ("basket", "lines"), self.line_fields, False
        )
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[k] = result
        return result


_COMPARE = re.compile(
    r"""^\s*(basket|line|member|now)\.([a-z_]+)\s*(==|!=|>=|<=|>|<)\s*"""
    r"""(-?(?:0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?|'[A-Za-z0-9 _.:-]*'|"[A-Za-z0-9 _.:-]*")\s*$"""
)
"""`root.field op literal`: a double field against a double literal (`basket.total >=
100.0`), an int field against an int literal (any comparison), a string field against a
plain string literal (equality only)."""
_INT64 = 1 << 63
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
    ">": operator.gt, "<": operator.lt,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Simple:
    """A condition CEL need not run (`_COMPARE`), its field always of the literal's type in
    the pricing roots: `holds` gives what CEL gives (None for an int outside CEL's 64 bits,
    left to CEL). tests/promotions/test_price_memos.py compares the two."""

    root: str
    field: str
    op: Callable[[Any, Any], bool]
    literal: int | float | str

    def holds(self, value: Any) -> bool | None:
        if type(value) is int and not -_INT64 <= value < _INT64:
            return None
        return self.op(value, self.literal)


def simple_of(source: str, line: bool) -> Simple | None:
    """The `Simple` comparison a condition is, or None when it is anything else."""
    m = _COMPARE.match(source)
    if m is None:
        return None
    root, name, op, text, fraction = m.groups()
    if root == "line" and not line or name not in FIXED[root]:
        return None
    kind = FIELDS[root][name]
    if text[0] in "'\"":
        if kind is not str or op not in ("==", "!="):
            return None
        return Simple(root, name, _OPS[op], text[1:-1])
    if kind is float and fraction is not None:
        return Simple(root, name, _OPS[op], float(text))
    if kind is int and fraction is None:
        return Simple(root, name, _OPS[op], int(text))
    return None


FIXED: dict[str, frozenset[str]] = {
    "basket": frozenset(BASKET_FIELDS),
    "line": frozenset(LINE_FIELDS),
    "member": frozenset({"id", "tier", "status", "tenure_days", "benefits", "segments"}),
    "now": frozenset(NOW_FIELDS),
}
"""The fields `effects.roots_for` (and `effects.line_values`) always give, each with one type
(str, int, float, or a list of strings or of line dicts); `member.attributes` and
`member.counters` are the program's own, of any type, and have no `key`."""
_LISTS = frozenset({("basket", "codes"), ("member", "benefits"), ("member", "segments")})


def _component(
    path: tuple[str, ...], line_fields: tuple[str, ...] | None
) -> Callable[[dict[str, Any]], Any] | None:
    """What one path adds to a memo key (None: a path with no fixed type)."""
    if len(path) != 2 or path[1] not in FIXED.get(path[0], ()):
        return None
    root, name = path
    if path == ("basket", "lines"):
        if line_fields is None:
            return lambda roots: tuple([tuple(ln.values()) for ln in roots["basket"]["lines"]])
        if not line_fields:
            return lambda roots: len(roots["basket"]["lines"])
        fields = line_fields

        def lines_key(roots: dict[str, Any]) -> Any:
            return tuple([tuple([ln[f] for f in fields]) for ln in roots["basket"]["lines"]])

        return lines_key
    if path in _LISTS:
        return lambda roots: tuple(roots[root][name])
    return lambda roots: roots[root][name]


def _key(
    paths: tuple[tuple[str, ...], ...], line_fields: tuple[str, ...] | None
) -> Callable[[dict[str, Any]], Any] | None:
    """`Condition.key` for these paths, or None when one of them has no fixed type."""
    parts = [_component(path, line_fields) for path in paths]
    if not parts or any(p is None for p in parts):
        return None
    getters = [p for p in parts if p is not None]
    if len(getters) == 1:
        return getters[0]
    return lambda roots: tuple([get(roots) for get in getters])


def _paths(source: str) -> tuple[list[tuple[str, ...]], set[str]]:
    text = _STRINGS.sub('""', source)
    bound = set(_MACRO_BIND.findall(text))
    out: list[tuple[str, ...]] = []
    for m in _PATH.finditer(text):
        parts = [m.group(1), *(p.strip() for p in m.group(2).split(".")[1:])]
        if m.group(3) and len(parts) > 1:
            parts.pop()  # a method call such as line.sku.startsWith(...)
        elif m.group(3):
            continue  # a function call
        out.append(tuple(parts))
    return out, bound


def compile_condition(source: str, field: str, *, line: bool = False) -> Condition:
    """Compile and check a condition; unknown variables, fields and functions are refused."""
    program = cel_compile(source, field)
    roots = LINE_ROOTS if line else CONDITION_ROOTS
    paths, bound = _paths(source)
    for var in program.variables():
        if var in roots or var in bound:
            continue
        hint = " ('line' is only available in line_condition)" if var == "line" else ""
        raise RuleValidationError(
            field, f"unknown variable '{var}'; use {', '.join(sorted(roots))}{hint}"
        )
    used: set[str] = set()
    for path in paths:
        root = path[0]
        if root not in roots or root in bound:
            continue
        used.add(root)
        if len(path) < 2:
            continue
        known = FIELDS[root]
        name = path[1]
        if name not in known:
            raise RuleValidationError(
                field, f"unknown field '{root}.{name}'; known: {', '.join(sorted(known))}"
            )
        if len(path) > 2 and (root, name) not in _FREE_FORM:
            raise RuleValidationError(
                field, f"'{root}.{name}' is a {known[name].__name__}; it has no field '{path[2]}'"
            )
    for fn in program.functions():
        if fn[0] in "_@!" or fn in FUNCTIONS:
            continue
        raise RuleValidationError(field, f"unknown function '{fn}'")
    read, line_fields = _reads(paths, bound, roots, source)
    return Condition(
        source, program, tuple(sorted(used)), read, line_fields, key=_key(read, line_fields),
        simple=simple_of(source, line),
    )  # fmt: skip


def _reads(
    paths: list[tuple[str, ...]], bound: set[str], roots: frozenset[str], source: str
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...] | None]:
    """The paths a condition reads, none the prefix of another, and the line fields to pass
    with `basket.lines` (None: whole lines, when `basket` or its lines are read otherwise
    than through named fields)."""
    named = sorted(
        {p for p in paths if p[0] in roots and p[0] not in bound}, key=lambda p: (len(p), p)
    )
    kept: list[tuple[str, ...]] = []
    for path in named:
        if not any(path[: len(p)] == p for p in kept):
            kept.append(path)
    line_fields = None
    if ("basket", "lines") in kept:
        text = _STRINGS.sub('""', source)
        whole = any(
            len(re.findall(rf"(?<![.\w]){re.escape(b)}\b", text))
            > len(re.findall(rf"(?<![.\w]){re.escape(b)}\s*\.", text))
            + len(re.findall(rf"{_MACRO_OPEN}{re.escape(b)}\s*,", text))
            for b in bound
        )  # a macro's variable used whole (`l` in `lines.map(l, l)`): pass whole lines
        if not whole:
            idents = set(re.findall(r"[A-Za-z_]\w*", text))
            line_fields = tuple(sorted(idents & LINE_FIELDS.keys()))
    return tuple(kept), line_fields


def holds(expr: Condition, roots: dict[str, Any], what: str) -> bool:
    """Evaluate a condition to a bool (a non-bool result is an error) over roots made by
    `effects.roots_for` (`Condition.evaluate_priced`)."""
    result = expr.evaluate_priced(roots)
    if type(result) is not bool:
        raise TypeError(f"{what} returned {type(result).__name__}, not bool")
    return result
