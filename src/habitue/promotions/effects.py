"""What each effect takes off a basket: line, order and payment discounts, shared to lines.

Pure functions over a mutable `State` (each line's net and the units already given a unit
deal); `pricing.price` decides which deals apply and in which order, then calls `apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from habitue.promotions.conditions import holds
from habitue.promotions.deals import (
    BasketLine,
    Deal,
    Discount,
    EffectType,
)
from habitue.rules.context import local_time, member_values, now_values
from habitue.rules.types import MemberSnapshot

_HUNDRED = Decimal(100)


@dataclass(slots=True)
class State:
    lines: tuple[BasketLine, ...]
    net: list[int]
    discounts: list[Discount] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)
    """Units of each line already given a unit deal (free, cheapest, bundle)."""

    def __post_init__(self) -> None:
        if not self.taken:
            self.taken = [0] * len(self.lines)


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` pro rata to `weights` (largest remainder, ties to the first); each share
    is at most its weight when the amount is at most their sum."""
    positive = [w if w > 0 else 0 for w in weights]
    total = sum(positive)
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    amount = min(amount, total)
    shares = [amount * w // total for w in positive]
    rest = amount - sum(shares)
    if rest:
        remainders = [amount * w % total for w in positive]
        order = sorted(range(len(positive)), key=lambda i: (-remainders[i], i))
        for i in order[:rest]:
            shares[i] += 1
    return shares


def _percent_of(amount: int, percent: Decimal) -> int:
    return int((Decimal(amount) * percent / _HUNDRED).to_integral_value(ROUND_HALF_UP))


def line_values(line: BasketLine, scale: float) -> dict[str, Any]:
    """The `line` variable of a basket line."""
    return _line_values(line, scale, line.amount_excl_minor)


def _line_values(line: BasketLine, scale: float, excl: int) -> dict[str, Any]:
    return {
        "sku": line.sku,
        "category": line.category,
        "quantity": float(line.quantity),
        "unit_price": line.unit_price_minor / scale,
        "unit_price_minor": line.unit_price_minor,
        "amount": line.amount_minor / scale,
        "amount_minor": line.amount_minor,
        "amount_excl": excl / scale,
        "amount_excl_minor": excl,
        "tax_rate": float(line.tax_rate),
    }


def roots_for(
    lines: Sequence[BasketLine],
    member: MemberSnapshot | None,
    codes: Sequence[str],
    now: datetime,
    timezone: str,
    exponent: int,
) -> dict[str, Any]:
    """The CEL roots `basket`, `member` and `now` of a basket."""
    scale = float(10**exponent)
    excls = [ln.amount_excl_minor for ln in lines]
    total = sum(ln.amount_minor for ln in lines)
    excl = sum(excls)
    basket = {
        "total": total / scale,
        "total_minor": total,
        "total_excl": excl / scale,
        "total_excl_minor": excl,
        "quantity": float(sum((ln.quantity for ln in lines), Decimal(0))),
        "line_count": len(lines),
        "lines": [_line_values(ln, scale, x) for ln, x in zip(lines, excls, strict=True)],
        "codes": sorted(codes),
    }
    if member is None:
        mem: dict[str, Any] = {
            "id": "", "tier": "", "status": "guest", "tenure_days": 0, "attributes": {},
            "counters": {}, "benefits": [], "segments": [],
        }  # fmt: skip
    else:
        mem = member_values(member, now)
    return {"basket": basket, "member": mem, "now": now_values(local_time(now, timezone))}


def _matching(deal: Deal, state: State, roots: dict[str, Any]) -> list[int]:
    """Indexes of the lines a deal's line condition (or `sku`) matches, with net left."""
    out: list[int] = []
    scale_lines = roots["basket"]["lines"]
    for i, line in enumerate(state.lines):
        if state.net[i] <= 0:
            continue
        if deal.line_condition is not None:
            roots["line"] = scale_lines[i]
            try:
                ok = holds(deal.line_condition, roots, "line_condition")
            finally:
                roots.pop("line", None)
            if not ok:
                continue
        elif (
            deal.effect in (EffectType.FREE_ITEM,) and deal.sku is not None and line.sku != deal.sku
        ):
            continue
        out.append(i)
    return out


def _units(state: State, indexes: Sequence[int]) -> list[tuple[int, int]]:
    """(unit price net of earlier line discounts, line index) of every whole unit."""
    out: list[tuple[int, int]] = []
    for i in indexes:
        line = state.lines[i]
        whole = int(line.quantity) - state.taken[i]
        if whole <= 0:
            continue
        unit = (
            state.net[i] // whole if line.quantity == int(line.quantity) else line.unit_price_minor
        )
        out.extend((min(unit, state.net[i]), i) for _ in range(whole))
    return out


def _line_shares(
    deal: Deal, state: State, roots: dict[str, Any]
) -> tuple[dict[int, int], dict[int, int]]:
    """What a line deal takes off each line (before its cap), and the units it uses."""
    idx = _matching(deal, state, roots)
    shares: dict[int, int] = {}
    units_used: dict[int, int] = {}

    def add(i: int, amount: int, unit: bool = True) -> None:
        shares[i] = shares.get(i, 0) + amount
        if unit:
            units_used[i] = units_used.get(i, 0) + 1

    eff = deal.effect
    if eff == EffectType.LINES_PERCENT:
        for i in idx:
            add(i, _percent_of(state.net[i], deal.percent or Decimal(0)), unit=False)
    elif eff == EffectType.LINES_AMOUNT:
        per_unit = deal.amount_minor or 0
        for i in idx:
            cut = Decimal(per_unit) * state.lines[i].quantity
            add(i, min(state.net[i], int(cut.to_integral_value(ROUND_HALF_UP))), unit=False)
    elif eff in (EffectType.CHEAPEST, EffectType.MOST_EXPENSIVE):
        units = sorted(_units(state, idx), reverse=eff == EffectType.MOST_EXPENSIVE)
        for price, i in units[: deal.times or 1]:
            add(i, _percent_of(price, deal.percent if deal.percent is not None else _HUNDRED))
    elif eff == EffectType.BUY_X_GET_Y:
        pct = deal.percent if deal.percent is not None else _HUNDRED
        units = _units(state, idx)
        if deal.get_sku is None:
            group = deal.buy + deal.get
            groups = len(units) // group if group else 0
            if deal.times is not None:
                groups = min(groups, deal.times)
            free = sorted(units)[: groups * deal.get]
        else:
            groups = len(units) // deal.buy if deal.buy else 0
            if deal.times is not None:
                groups = min(groups, deal.times)
            others = [
                j for j, ln in enumerate(state.lines) if ln.sku == deal.get_sku and state.net[j] > 0
            ]
            free = sorted(_units(state, others))[: groups * deal.get]
        for price, i in free:
            add(i, _percent_of(price, pct))
    elif eff == EffectType.FREE_ITEM:
        for price, i in sorted(_units(state, idx))[: deal.quantity]:
            add(i, price)
    elif eff == EffectType.BUNDLE_PRICE:
        need = dict(deal.bundle)
        units_by_sku: dict[str, list[tuple[int, int]]] = {}
        for sku in need:
            lines_of = [j for j, ln in enumerate(state.lines) if ln.sku == sku and state.net[j] > 0]
            units_by_sku[sku] = sorted(_units(state, lines_of), reverse=True)
        count = min((len(units_by_sku[s]) // q for s, q in need.items()), default=0)
        if deal.times is not None:
            count = min(count, deal.times)
        for k in range(count):
            picked = [u for s, q in need.items() for u in units_by_sku[s][k * q : (k + 1) * q]]
            full = sum(p for p, _ in picked)
            off = full - (deal.amount_minor or 0)
            if off <= 0:
                break
            for (_, i), share in zip(picked, allocate(off, [p for p, _ in picked]), strict=True):
                add(i, share)
    return {i: min(a, state.net[i]) for i, a in shares.items() if a > 0}, units_used


def _order_shares(deal: Deal, state: State, roots: dict[str, Any]) -> dict[int, int]:
    """What an order deal or a payment takes off, allocated to lines pro rata."""
    idx = (
        _matching(deal, state, roots)
        if deal.line_condition is not None
        else [i for i in range(len(state.lines)) if state.net[i] > 0]
    )
    base = sum(state.net[i] for i in idx)
    if deal.effect == EffectType.ORDER_PERCENT:
        off = _percent_of(base, deal.percent or Decimal(0))
    else:
        off = min(deal.amount_minor or 0, base)
    shares = allocate(off, [state.net[i] for i in idx])
    return {i: s for i, s in zip(idx, shares, strict=True) if s > 0}


def apply(deal: Deal, state: State, roots: dict[str, Any]) -> Discount | None:
    """Apply one deal to the state; None when it takes nothing off."""
    used: dict[int, int] = {}
    if deal.phase == 0:  # a line effect (`LINE_EFFECTS`)
        shares, used = _line_shares(deal, state, roots)
        level = "line"
    else:
        shares = _order_shares(deal, state, roots)
        level = "payment" if deal.effect == EffectType.STORED_VALUE else "order"
    total = sum(shares.values())
    if deal.cap_minor is not None and total > deal.cap_minor:
        keys = sorted(shares)
        capped = allocate(deal.cap_minor, [shares[k] for k in keys])
        shares = {k: c for k, c in zip(keys, capped, strict=True) if c > 0}
        total = deal.cap_minor
    if total <= 0:
        return None
    for i, s in shares.items():
        state.net[i] -= s
    for i, n in used.items():
        state.taken[i] += n
    d = Discount(
        deal.source, deal.code, str(deal.effect), level, total, tuple(sorted(shares.items())), deal
    )
    state.discounts.append(d)
    return d


def alone(deal: Deal, lines: tuple[BasketLine, ...], roots: dict[str, Any]) -> int:
    """The discount a deal would give alone on the whole basket."""
    state = State(lines, [ln.amount_minor for ln in lines])
    d = apply(deal, state, roots)
    return 0 if d is None else d.amount_minor
