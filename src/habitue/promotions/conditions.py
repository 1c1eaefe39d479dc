"""CEL conditions of promotions and coupons: over `basket`, `line`, `member` and `now`.

Compiled and checked like the rules' conditions (the same CEL library, the same functions, the
same `member` and `now`); only the roots differ: a promotion reads the basket the till sends,
not an event, and CEL is given only the roots an expression names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from habitue.rules.errors import RuleValidationError
from habitue.rules.expressions import (
    FUNCTIONS,
    MEMBER_FIELDS,
    NOW_FIELDS,
    cel_compile,
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
_MACRO_BIND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """A compiled CEL condition and the roots it reads (only those are passed to CEL)."""

    source: str
    program: Any
    roots: tuple[str, ...]

    def evaluate(self, roots: dict[str, Any]) -> Any:
        """Evaluate over the roots it reads; CEL errors propagate as Python exceptions."""
        return self.program.execute({r: roots[r] for r in self.roots if r in roots})


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
    return Condition(source, program, tuple(sorted(used)))


def holds(expr: Condition, roots: dict[str, Any], what: str) -> bool:
    """Evaluate a condition to a bool (a non-bool result is an error)."""
    result = expr.evaluate(roots)
    if type(result) is not bool:
        raise TypeError(f"{what} returned {type(result).__name__}, not bool")
    return result
