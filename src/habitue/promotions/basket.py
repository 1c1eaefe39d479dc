"""Shaping a basket around the pure core: its lines in, the purchase and the answer out.

No I/O: `till` reads and writes around these.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from habitue import clock
from habitue.bounds import MAX_POINTS
from habitue.events.schemas import EffectRead, EventCreate, LineIn, MemberSelector
from habitue.members.service import MemberRef
from habitue.money import MAX_MINOR, MoneyFormatError, format_minor, line_tax, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.promotions.errors import BasketRefused
from habitue.promotions.pricing import (
    BasketLine,
    Deal,
    EffectType,
    Pricing,
    Refusal,
    Source,
    incl_tax,
)
from habitue.promotions.schemas import (
    BasketIn,
    BasketRead,
    DiscountRead,
    LineShare,
    PricedLine,
    RefusalRead,
)
from habitue.rewards import catalogue
from habitue.rules.types import EventInput, LineInput, MemberSnapshot

CENT_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Priced:
    """A priced basket with what confirm needs: the member and the coupons and offers."""

    pricing: Pricing
    member: MemberRef | None
    occurred_at: datetime
    missed: int = 0
    """Codes that named no coupon of the program (they cost the guessing protection a token)."""
    index: dict[int, int] | None = None
    """The priced lines' indexes in the basket sent (`parse_lines`)."""
    snapshot: MemberSnapshot | None = None
    """The member as the rules see them (`Pipeline.snapshot`), made for the pricing: the
    purchase's quote decides on it rather than making it again."""


def parse_lines(
    program: ProgramInfo, body: BasketIn
) -> tuple[list[BasketLine], list[Refusal], dict[int, int]]:
    """The basket's lines in minor units, tax included; a bad line is refused by its index
    (`lines[2].quantity`), never as the basket's total. Returns the index map kept → sent."""
    exp = program.currency_exponent
    out: list[BasketLine] = []
    refused: list[Refusal] = []
    index: dict[int, int] = {}
    for i, ln in enumerate(body.lines):
        where = f"lines[{i}]"
        if ln.quantity <= 0:
            refused.append(Refusal(f"{where}.quantity", "must be positive", invalid=True))
            continue
        if ln.quantity > 1_000_000:
            refused.append(Refusal(f"{where}.quantity", "is too large", invalid=True))
            continue
        try:
            unit = parse_minor(ln.unit_price, exp, allow_negative=True)
            amount = (
                parse_minor(ln.amount, exp, allow_negative=True)
                if ln.amount is not None
                else int((ln.quantity * unit).to_integral_value())
            )
        except MoneyFormatError as exc:
            field = "amount" if ln.amount is not None and "unit" not in str(exc) else "unit_price"
            refused.append(Refusal(f"{where}.{field}", str(exc), invalid=True))
            continue
        if unit < 0 or amount < 0:
            refused.append(
                Refusal(
                    f"{where}.{'amount' if amount < 0 and ln.amount is not None else 'unit_price'}",
                    "a discount line: send discounts as promotions or coupon codes, "
                    "not as negative lines",
                    invalid=True,
                )
            )
            continue
        rate = ln.tax_rate
        if not ln.tax_included:
            unit, amount = incl_tax(unit, rate), incl_tax(amount, rate)
        index[len(out)] = i
        out.append(BasketLine(ln.sku, ln.category, ln.quantity, unit, amount, rate))
    if body.total is not None and not refused:
        try:
            total = parse_minor(body.total, exp)
        except MoneyFormatError as exc:
            refused.append(Refusal("total", str(exc), invalid=True))
        else:
            line_sum = sum(ln.amount_minor for ln in out)
            if abs(line_sum - total) > CENT_TOLERANCE:
                refused.append(
                    Refusal(
                        "lines",
                        f"the lines add up to {format_minor(line_sum, exp)}, the total is "
                        f"{format_minor(total, exp)}",
                        invalid=True,
                    )
                )
    return out, refused, index


def terms_deal(row: Any, source: Source, code: str) -> Deal | None:
    """A reward's or offer's discount terms as a deal (None: not a basket discount)."""
    terms = catalogue.terms_of(row)
    kind = row.get("kind", "discount")
    common: dict[str, Any] = {
        "cap_minor": terms.cap_minor,
        "min_basket_minor": terms.min_basket_minor,
        "ref": row["id"],
    }
    if terms.sku is not None:
        return Deal(source, code, EffectType.FREE_ITEM, sku=terms.sku, **common)
    if terms.percent is not None:
        return Deal(source, code, EffectType.ORDER_PERCENT, percent=terms.percent, **common)
    if terms.value_minor is not None:
        eff = EffectType.STORED_VALUE if kind == "voucher" else EffectType.ORDER_AMOUNT
        return Deal(source, code, eff, amount_minor=terms.value_minor, **common)
    return None


def _net_parts(
    pricing: Pricing,
) -> Iterator[tuple[str | None, str | None, Decimal | None, int, int]]:
    """The purchase's lines at their net amounts, exact to the minor unit, as (sku, category,
    tax rate, units, unit price in minor units): a line of q whole units whose net does not
    divide by q is two lines (q − r at u, r at u + 1); a fractional quantity is one unit at
    the line's net."""
    for ln, net in zip(pricing.lines, pricing.net_minor, strict=True):
        sku, cat, rate = ln.sku or None, ln.category or None, ln.tax_rate or None
        q = ln.quantity
        if q == int(q) and q > 0:
            whole = int(q)
            unit, rest = divmod(net, whole)
            parts: tuple[tuple[int, int], ...] = ((whole - rest, unit), (rest, unit + 1))
        else:
            parts = ((1, net),)
        for n, price in parts:
            if n:
                yield sku, cat, rate, n, price


def net_lines(program: ProgramInfo, pricing: Pricing) -> list[LineIn]:
    """The purchase's lines at their net amounts, exact to the minor unit (`_net_parts`)."""
    exp = program.currency_exponent
    return [
        LineIn(sku=sku, category=cat, quantity=Decimal(n),
               unit_price=format_minor(price, exp), tax_rate=rate)
        for sku, cat, rate, n, price in _net_parts(pricing)
    ]  # fmt: skip


def purchase_body(
    program: ProgramInfo, priced: Priced, external_id: str, source: str
) -> EventCreate:
    """The purchase event of a basket: net lines, net total, points paid; the gross basket
    and what promotions and coupons took off in `attributes`."""
    pricing = priced.pricing
    assert priced.member is not None
    exp = program.currency_exponent
    return EventCreate(
        type="purchase",
        member=MemberSelector(id=priced.member.public_id),
        external_id=external_id,
        source=source,
        occurred_at=priced.occurred_at,
        total=format_minor(sum(pricing.net_minor), exp),
        lines=net_lines(program, pricing),
        spend_points=pricing.points,
        attributes={
            "basket_total": format_minor(pricing.total_minor, exp),
            "basket_discount": format_minor(pricing.discount_minor, exp),
        },
    )


MAX_EVENT_LINES = 500
"""`EventCreate.lines`' bound."""


def quote_event(
    program: ProgramInfo, priced: Priced, external_id: str = "price"
) -> EventInput | None:
    """The purchase a priced basket would record, as the rules see it: what `prepare` makes
    of `purchase_body(program, priced, external_id, ...)`, computed straight from the net
    amounts in minor units (no money string formatted and parsed back). None when a check of
    `prepare` or a bound of the body could fail (an amount beyond `MAX_MINOR`, points it
    refuses, too many lines): the caller then goes through the body, and fails as it did.
    tests/promotions/test_fast_answers.py compares the two."""
    pricing = priced.pricing
    total = sum(pricing.net_minor)
    if total > MAX_MINOR:
        return None
    lines: list[LineInput] = []
    for sku, cat, rate, n, price in _net_parts(pricing):
        amount, tax = line_tax(n * price, rate, True)
        lines.append(LineInput(sku, cat, Decimal(n), price, amount, tax, rate))
    exp = program.currency_exponent
    discount = 0
    if pricing.points:
        value = (Decimal(pricing.points) * program.redeem_rate).scaleb(exp)
        discount = int(value.to_integral_value())
        if discount > total or pricing.points % program.redeem_step:
            return None
    if len(lines) > MAX_EVENT_LINES or pricing.points > MAX_POINTS:
        return None  # beyond an event body's bounds
    return EventInput(
        type="purchase",
        external_id=external_id,
        occurred_at=clock.as_utc(priced.occurred_at),
        total_minor=total,
        lines=tuple(lines),
        attributes={
            "basket_total": format_minor(pricing.total_minor, exp),
            "basket_discount": format_minor(pricing.discount_minor, exp),
        },
        points_spent=pricing.points,
        discount_minor=discount,
    )


def _line_discounts(pricing: Pricing) -> dict[int, int]:
    """Each line's discount in minor units: the sum of its shares of every discount."""
    line_off: dict[int, int] = {}
    for d in pricing.discounts:
        for i, a in d.lines:
            line_off[i] = line_off.get(i, 0) + a
    return line_off


def read_answer(
    program: ProgramInfo,
    priced: Priced,
    *,
    index: dict[int, int],
    earned: int,
    effects: list[Any],
) -> BasketRead:
    p = priced.pricing
    exp = program.currency_exponent
    line_off = _line_discounts(p)
    return BasketRead(
        currency=program.currency,
        member_id=priced.member.public_id if priced.member is not None else None,
        total=format_minor(p.total_minor, exp),
        discount=format_minor(p.discount_minor, exp),
        points_spent=p.points,
        points_value=format_minor(p.points_minor, exp),
        to_pay=format_minor(p.to_pay_minor, exp),
        points_earned=earned,
        lines=[
            PricedLine(
                line=index.get(i, i),
                sku=ln.sku,
                amount=format_minor(ln.amount_minor, exp),
                discount=format_minor(line_off.get(i, 0), exp),
                net=format_minor(p.net_minor[i], exp),
            )
            for i, ln in enumerate(p.lines)
        ],
        discounts=[
            DiscountRead(
                source=str(d.source),
                code=d.code,
                effect=d.effect,
                level=d.level,
                amount=format_minor(d.amount_minor, exp),
                lines=[
                    LineShare(line=index.get(i, i), amount=format_minor(a, exp)) for i, a in d.lines
                ],
            )
            for d in p.discounts
        ],
        refused=[RefusalRead(field=r.field, code=r.code, reason=r.reason) for r in p.refused],
        effects=effects,
        errors=list(p.errors),
    )


def answer_json(
    program: ProgramInfo,
    priced: Priced,
    *,
    index: dict[int, int],
    earned: int,
    effects: list[EffectRead],
) -> bytes:
    """`read_answer(...).model_dump_json()`, byte for byte, without building its models:
    the same fields in the same order from the same values (money as `format_minor`
    strings, the enums as their strings, the effects dumped by their model), written by
    orjson (by the models when orjson cannot write a value).
    tests/promotions/test_fast_answers.py compares the two."""
    p = priced.pricing
    exp = program.currency_exponent
    line_off = _line_discounts(p)
    net = p.net_minor
    answer = {
        "currency": program.currency,
        "member_id": priced.member.public_id if priced.member is not None else None,
        "total": format_minor(p.total_minor, exp),
        "discount": format_minor(p.discount_minor, exp),
        "points_spent": p.points,
        "points_value": format_minor(p.points_minor, exp),
        "to_pay": format_minor(p.to_pay_minor, exp),
        "points_earned": earned,
        "lines": [
            {
                "line": index.get(i, i),
                "sku": ln.sku,
                "amount": format_minor(ln.amount_minor, exp),
                "discount": format_minor(line_off.get(i, 0), exp),
                "net": format_minor(net[i], exp),
            }
            for i, ln in enumerate(p.lines)
        ],
        "discounts": [
            {
                "source": str(d.source),
                "code": d.code,
                "effect": str(d.effect),
                "level": d.level,
                "amount": format_minor(d.amount_minor, exp),
                "lines": [
                    {"line": index.get(i, i), "amount": format_minor(a, exp)} for i, a in d.lines
                ],
            }
            for d in p.discounts
        ],
        "refused": [{"field": r.field, "code": r.code, "reason": r.reason} for r in p.refused],
        "effects": [e.model_dump(mode="json") for e in effects],
        "errors": list(p.errors),
        "event_id": None,
        "external_id": None,
    }
    try:
        return orjson.dumps(answer)
    except TypeError:  # a value orjson does not write (an integer beyond 64 bits): the models
        model = read_answer(program, priced, index=index, earned=earned, effects=effects)
        return model.model_dump_json().encode()


def refuse(pricing: Pricing) -> BasketRefused:
    bad = pricing.invalid
    first = bad[0]
    return BasketRefused(
        f"{first.field}{f' {first.code}' if first.code else ''}: {first.reason}",
        errors=[
            {"field": r.field, "message": r.reason, **({"code": r.code} if r.code else {})}
            for r in bad
        ],
    )
