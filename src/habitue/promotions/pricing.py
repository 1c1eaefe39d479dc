"""The pure pricing core: (basket, member, deals, codes, points, now) → discounts. No I/O.

Order of play, always the same whatever the order the till typed its codes in:

1. each deal (automatic promotion, promo code, coupon, clipped offer) is checked: validity
   window, per-member limit, minimum basket, CEL condition; a deal that fails is refused
   with its reason;
2. stacking: when an `exclusive` deal applies, the one of highest priority (then the largest
   discount, then its code) applies alone; otherwise, in each `best_of` class only the deal
   with the largest discount on the basket stays; `stacks` deals all stay;
3. line discounts (off matching lines, cheapest or most expensive item, buy X get Y, bundle
   price, free item), highest priority first then by code; then order discounts (percent or
   amount off the order) on what the line discounts left; then stored value (vouchers, gift
   cards) and points, which pay part of what is left;
4. every order discount and payment is allocated to lines pro rata (largest remainder), so
   each line has a net amount: the purchase event earns on those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from habitue.promotions.conditions import Condition, holds
from habitue.rewards.till import points_discount_minor
from habitue.rules.context import local_time, member_values, now_values
from habitue.rules.types import MemberSnapshot

_HUNDRED = Decimal(100)


class Source(StrEnum):
    """Where a discount comes from."""

    PROMOTION = "promotion"
    """An automatic promotion, or one triggered by a promo code typed at the till."""
    COUPON = "coupon"
    """A single-use coupon of the catalogue (issued by a redemption or a rule)."""
    OFFER = "offer"
    """A personal offer the member clipped."""
    POINTS = "points"
    """Points the member pays with."""


class Stacking(StrEnum):
    """How a deal combines with the others."""

    EXCLUSIVE = "exclusive"
    """Applies alone: no other promotion, coupon or offer on the basket (points still pay)."""
    STACKS = "stacks"
    """Applies together with every other deal."""
    BEST_OF = "best_of"
    """Only the deal with the largest discount of its `stacking_class` applies."""


class EffectType(StrEnum):
    """What a deal takes off."""

    ORDER_PERCENT = "order_percent"
    """`percent` off what the order costs after line discounts (of matching lines only when
    the deal has a line condition)."""
    ORDER_AMOUNT = "order_amount"
    """`amount` off the order after line discounts."""
    LINES_PERCENT = "lines_percent"
    """`percent` off each matching line."""
    LINES_AMOUNT = "lines_amount"
    """`amount` off each matching unit (never more than the unit)."""
    CHEAPEST = "cheapest"
    """`percent` (default 100) off the cheapest matching unit, `times` units (default 1)."""
    MOST_EXPENSIVE = "most_expensive"
    """`percent` (default 100) off the most expensive matching unit, `times` units."""
    BUY_X_GET_Y = "buy_x_get_y"
    """For every `buy` matching units, `get` units free (of `get_sku`, or of the matching
    units themselves, the cheapest, counted within each group of buy + get)."""
    BUNDLE_PRICE = "bundle_price"
    """Each complete `bundle` (SKU → quantity) costs `amount`."""
    FREE_ITEM = "free_item"
    """`quantity` units of `sku` free (they must be in the basket)."""
    STORED_VALUE = "stored_value"
    """A voucher or gift card: pays `amount` of what is left, after every discount."""


LINE_EFFECTS = frozenset(
    {
        EffectType.LINES_PERCENT, EffectType.LINES_AMOUNT, EffectType.CHEAPEST,
        EffectType.MOST_EXPENSIVE, EffectType.BUY_X_GET_Y, EffectType.BUNDLE_PRICE,
        EffectType.FREE_ITEM,
    }
)  # fmt: skip
ORDER_EFFECTS = frozenset({EffectType.ORDER_PERCENT, EffectType.ORDER_AMOUNT})
_SOURCE_RANK = {Source.PROMOTION: 0, Source.OFFER: 1, Source.COUPON: 2, Source.POINTS: 3}


@dataclass(frozen=True, slots=True)
class BasketLine:
    """One basket line as the till charges it, in minor units (tax included)."""

    sku: str
    category: str
    quantity: Decimal
    unit_price_minor: int
    amount_minor: int
    tax_rate: Decimal = Decimal(0)
    """The line's tax rate as a fraction (0.15 for 15 %)."""

    @property
    def amount_excl_minor(self) -> int:
        """The line's amount without tax."""
        return excl_tax(self.amount_minor, self.tax_rate)


def excl_tax(amount_minor: int, rate: Decimal) -> int:
    """An amount with tax included, without it (half up to the minor unit)."""
    if not rate:
        return amount_minor
    return int((Decimal(amount_minor) / (1 + rate)).to_integral_value(ROUND_HALF_UP))


def incl_tax(amount_minor: int, rate: Decimal) -> int:
    """An amount without tax, with it (half up to the minor unit)."""
    if not rate:
        return amount_minor
    return int((Decimal(amount_minor) * (1 + rate)).to_integral_value(ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Deal:
    """A promotion, a coupon or an offer as the core sees it."""

    source: Source
    code: str
    effect: EffectType
    percent: Decimal | None = None
    amount_minor: int | None = None
    buy: int = 0
    get: int = 0
    get_sku: str | None = None
    sku: str | None = None
    quantity: int = 1
    bundle: tuple[tuple[str, int], ...] = ()
    condition: Condition | None = None
    line_condition: Condition | None = None
    priority: int = 0
    stacking: Stacking = Stacking.STACKS
    stacking_class: str = "default"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    times: int | None = None
    """Most applications per order (groups of buy X get Y, bundles, units)."""
    cap_minor: int | None = None
    """Most money the deal takes off one order."""
    per_member_limit: int | None = None
    member_uses: int = 0
    """Orders of this member the deal was already used on."""
    min_basket_minor: int | None = None
    promotion_id: int | None = None
    ref: int | None = None
    """The caller's id of the coupon or offer (to burn it at confirm)."""

    @property
    def label(self) -> str:
        """`promotion:CODE`, `coupon:CODE`, `offer:CODE`."""
        return f"{self.source}:{self.code}"

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        phase = 0 if self.effect in LINE_EFFECTS else 1 if self.effect in ORDER_EFFECTS else 2
        return (phase, -self.priority, _SOURCE_RANK[self.source], self.code)


@dataclass(frozen=True, slots=True)
class CodeInput:
    """A code typed at the till, as the caller found it (deal None: refused with `refusal`)."""

    code: str
    deal: Deal | None = None
    refusal: str | None = None
    state: str = "issued"
    expires_at: datetime | None = None
    lookup_failed: bool = False
    """The code named no coupon of the program (a guess, or a typo)."""


@dataclass(frozen=True, slots=True)
class PointsTerms:
    """The member's balance and the program's price of a point."""

    balance: int
    rate: Decimal
    step: int
    exponent: int


@dataclass(frozen=True, slots=True)
class Discount:
    """One discount applied: its source, level (`line`, `order`, `payment`) and its share per
    line (index → minor units)."""

    source: Source
    code: str
    effect: str
    level: str
    amount_minor: int
    lines: tuple[tuple[int, int], ...]
    deal: Deal | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A line, code or points payment not applied, and why. `invalid` ones make a confirm fail
    (unknown or expired code, the same code twice, points above the balance, a bad line)."""

    field: str
    reason: str
    code: str | None = None
    invalid: bool = False


@dataclass(frozen=True, slots=True)
class Pricing:
    """The outcome: discounts in order of application and the net amount of every line."""

    lines: tuple[BasketLine, ...]
    discounts: tuple[Discount, ...]
    refused: tuple[Refusal, ...]
    net_minor: tuple[int, ...]
    """Each line after line and order discounts and stored value (points not taken off)."""
    total_minor: int
    points: int
    points_minor: int
    to_pay_minor: int
    errors: tuple[str, ...] = ()

    @property
    def invalid(self) -> tuple[Refusal, ...]:
        return tuple(r for r in self.refused if r.invalid)

    @property
    def discount_minor(self) -> int:
        """Everything taken off before points."""
        return sum(d.amount_minor for d in self.discounts)

    @property
    def applied(self) -> tuple[Deal, ...]:
        return tuple(d.deal for d in self.discounts if d.deal is not None)


@dataclass(slots=True)
class _State:
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
    total = sum(w for w in weights if w > 0)
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    amount = min(amount, total)
    shares = [amount * max(w, 0) // total for w in weights]
    rest = amount - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(amount * max(weights[i], 0) % total), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def _percent_of(amount: int, percent: Decimal) -> int:
    return int((Decimal(amount) * percent / _HUNDRED).to_integral_value(ROUND_HALF_UP))


def line_values(line: BasketLine, scale: float) -> dict[str, Any]:
    """The `line` variable of a basket line."""
    excl = line.amount_excl_minor
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
    total = sum(ln.amount_minor for ln in lines)
    excl = sum(ln.amount_excl_minor for ln in lines)
    basket = {
        "total": total / scale,
        "total_minor": total,
        "total_excl": excl / scale,
        "total_excl_minor": excl,
        "quantity": float(sum((ln.quantity for ln in lines), Decimal(0))),
        "line_count": len(lines),
        "lines": [line_values(ln, scale) for ln in lines],
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


def _matching(deal: Deal, state: _State, roots: dict[str, Any]) -> list[int]:
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


def _units(state: _State, indexes: Sequence[int]) -> list[tuple[int, int]]:
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
    deal: Deal, state: _State, roots: dict[str, Any]
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


def _order_shares(deal: Deal, state: _State, roots: dict[str, Any]) -> dict[int, int]:
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


def _apply(deal: Deal, state: _State, roots: dict[str, Any]) -> Discount | None:
    """Apply one deal to the state; None when it takes nothing off."""
    used: dict[int, int] = {}
    if deal.effect in LINE_EFFECTS:
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


def _alone(deal: Deal, lines: tuple[BasketLine, ...], roots: dict[str, Any]) -> int:
    """The discount a deal would give alone on the whole basket."""
    state = _State(lines, [ln.amount_minor for ln in lines])
    d = _apply(deal, state, roots)
    return 0 if d is None else d.amount_minor


def _check(deal: Deal, now: datetime, gross: int, roots: dict[str, Any]) -> tuple[str, bool] | None:
    """Why a deal does not apply to this basket, and whether a code typed for it is invalid
    (outside its validity window or used up: a confirm is refused) rather than merely not
    applying to this basket (minimum, condition); None when it applies."""
    if deal.valid_from is not None and now < deal.valid_from:
        return "not valid yet", True
    if deal.valid_until is not None and now >= deal.valid_until:
        return "no longer valid", True
    if deal.per_member_limit is not None and deal.member_uses >= deal.per_member_limit:
        used, limit = deal.member_uses, deal.per_member_limit
        return f"already used {used} times by this member (limit {limit})", True
    if deal.min_basket_minor is not None and gross < deal.min_basket_minor:
        return "the basket is below the minimum amount", False
    if deal.condition is not None and not holds(deal.condition, roots, "condition"):
        return "its condition does not hold for this basket", False
    return None


def price(
    lines: Sequence[BasketLine],
    *,
    member: MemberSnapshot | None,
    promotions: Sequence[Deal],
    codes: Sequence[CodeInput],
    points: int,
    points_terms: PointsTerms | None,
    now: datetime,
    timezone: str,
    exponent: int,
    refused_lines: Sequence[Refusal] = (),
) -> Pricing:
    """Price a basket. Deterministic, and independent of the order of `codes` and `promotions`."""
    basket = tuple(lines)
    refused: list[Refusal] = list(refused_lines)
    errors: list[str] = []
    candidates: list[Deal] = []
    seen: set[str] = set()
    typed = sorted(codes, key=lambda c: c.code)
    for c in typed:
        if c.code in seen:
            refused.append(Refusal("codes", "the same code twice", c.code, invalid=True))
            continue
        seen.add(c.code)
        if c.deal is None:
            refused.append(Refusal("codes", c.refusal or "unknown code", c.code, invalid=True))
        elif c.state != "issued":
            refused.append(Refusal("codes", f"this code was {c.state}", c.code, invalid=True))
        elif c.expires_at is not None and c.expires_at <= now:
            refused.append(Refusal("codes", "this code has expired", c.code, invalid=True))
        elif c.deal.source != Source.PROMOTION and member is None:
            refused.append(Refusal("codes", "a coupon or offer needs the member", c.code, True))
        else:
            candidates.append(c.deal)
    automatic = list(promotions)
    typed_ids = {id(d) for d in candidates}

    def typed(deal: Deal) -> bool:
        """Whether the till typed a code for this deal (its refusals are reported)."""
        return id(deal) in typed_ids

    roots = roots_for(basket, member, sorted(seen), now, timezone, exponent)
    gross = sum(ln.amount_minor for ln in basket)
    eligible: list[Deal] = []
    for deal in sorted([*automatic, *candidates], key=lambda d: d.sort_key):
        try:
            why = _check(deal, now, gross, roots)
        except Exception as exc:  # a failing condition never fails the basket
            errors.append(f"{deal.label}: {type(exc).__name__}: {exc}")
            why = "its condition failed to evaluate", False
        if why is not None:
            if typed(deal):
                refused.append(Refusal("codes", why[0], deal.code, invalid=why[1]))
            continue
        eligible.append(deal)
    gains: dict[str, int] = {}

    def gain(deal: Deal) -> int:
        if deal.label not in gains:
            try:
                gains[deal.label] = _alone(deal, basket, roots)
            except Exception as exc:
                errors.append(f"{deal.label}: {type(exc).__name__}: {exc}")
                gains[deal.label] = 0
        return gains[deal.label]

    exclusive = [d for d in eligible if d.stacking == Stacking.EXCLUSIVE and gain(d) > 0]
    chosen: list[Deal]
    if exclusive:
        winner = min(exclusive, key=lambda d: (-d.priority, -gain(d), d.sort_key))
        chosen = [winner]
        for d in eligible:
            if d is not winner and typed(d):
                refused.append(Refusal("codes", f"{winner.label} applies alone", d.code))
    else:
        chosen = []
        best: dict[str, Deal] = {}
        for d in eligible:
            if d.stacking != Stacking.BEST_OF:
                chosen.append(d)
                continue
            cur = best.get(d.stacking_class)
            if cur is None or (gain(d), d.priority) > (gain(cur), cur.priority):
                if cur is not None and typed(cur):
                    refused.append(Refusal("codes", f"{d.label} gives more", cur.code))
                best[d.stacking_class] = d
            elif typed(d):
                refused.append(Refusal("codes", f"{cur.label} gives more", d.code))
        chosen.extend(best.values())
    state = _State(basket, [ln.amount_minor for ln in basket])
    for deal in sorted(chosen, key=lambda d: d.sort_key):
        try:
            applied = _apply(deal, state, roots)
        except Exception as exc:
            errors.append(f"{deal.label}: {type(exc).__name__}: {exc}")
            applied = None
        if applied is None and typed(deal):
            refused.append(Refusal("codes", "takes nothing off this basket", deal.code))
    left = sum(state.net)
    points_minor = 0
    spent = 0
    if points:
        if points < 0:
            refused.append(Refusal("points", "must not be negative", invalid=True))
        elif member is None or points_terms is None:
            refused.append(Refusal("points", "a guest cannot pay with points", invalid=True))
        elif points > points_terms.balance:
            refused.append(
                Refusal("points", f"above the balance ({points_terms.balance})", invalid=True)
            )
        elif points % points_terms.step:
            refused.append(
                Refusal("points", f"must be a multiple of {points_terms.step}", invalid=True)
            )
        else:
            value = points_discount_minor(points, points_terms.rate, points_terms.exponent)
            if value > left:
                refused.append(
                    Refusal("points", "would pay more than what is left to pay", invalid=True)
                )
            else:
                spent, points_minor = points, value
    return Pricing(
        lines=basket,
        discounts=tuple(state.discounts),
        refused=tuple(refused),
        net_minor=tuple(state.net),
        total_minor=gross,
        points=spent,
        points_minor=points_minor,
        to_pay_minor=left - points_minor,
        errors=tuple(errors),
    )
