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
from datetime import datetime
from typing import Any

from habitue.promotions.conditions import holds
from habitue.promotions.deals import (
    LINE_EFFECTS,
    ORDER_EFFECTS,
    BasketLine,
    CodeInput,
    Deal,
    Discount,
    EffectType,
    PointsTerms,
    Pricing,
    Refusal,
    Source,
    Stacking,
    excl_tax,
    incl_tax,
)
from habitue.promotions.effects import State, allocate, alone, apply, line_values, roots_for
from habitue.rewards.till import points_discount_minor
from habitue.rules.types import MemberSnapshot

__all__ = [
    "LINE_EFFECTS",
    "ORDER_EFFECTS",
    "BasketLine",
    "CodeInput",
    "Deal",
    "Discount",
    "EffectType",
    "PointsTerms",
    "Pricing",
    "Refusal",
    "Source",
    "Stacking",
    "allocate",
    "excl_tax",
    "incl_tax",
    "line_values",
    "price",
    "roots_for",
]


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
    in_order = sorted(codes, key=lambda c: c.code)
    for c in in_order:
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
                gains[deal.label] = alone(deal, basket, roots)
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
    state = State(basket, [ln.amount_minor for ln in basket])
    for deal in sorted(chosen, key=lambda d: d.sort_key):
        try:
            applied = apply(deal, state, roots)
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
