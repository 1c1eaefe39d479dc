"""CEL conditions of promotions and coupons: over `basket`, `line`, `member` and `now`.

Compiled and checked like the rules' conditions (the same CEL library, the same functions, the
same `member` and `now`); only the roots differ: a promotion reads the basket the till sends,
not an event, and CEL is given only the roots an expression names.
"""

from __future__ import annotations

import re
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
    """

    source: str
    program: Any
    roots: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...] = ()
    line_fields: tuple[str, ...] | None = None
    memo: dict[Any, Any] = _field(default_factory=dict)

    def evaluate(self, roots: dict[str, Any]) -> Any:
        """Evaluate over the values it reads; CEL errors propagate as Python exceptions."""
        return run_memoised(
            self.program, self.paths, self.memo, roots, ("basket", "lines"), self.line_fields
        )


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
    return Condition(source, program, tuple(sorted(used)), *_reads(paths, bound, roots, source))


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
    """Evaluate a condition to a bool (a non-bool result is an error)."""
    result = expr.evaluate(roots)
    if type(result) is not bool:
        raise TypeError(f"{what} returned {type(result).__name__}, not bool")
    return result
