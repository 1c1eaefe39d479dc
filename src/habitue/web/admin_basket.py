"""The simulator's basket: priced by the till's own code, as `POST /baskets/price` prices it.

The console's simulator sends the basket (lines, member, time), the codes typed and the points
paid through `promotions.till.price_in` — the same reads and the same pure core as the API —
and explains the points on the purchase a confirm would record (each line at its net amount,
the points paid), so the simulator's discounts, amount to pay and points are the API's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import EventCreate
from habitue.programs.service import ProgramInfo
from habitue.promotions import till
from habitue.promotions.basket import parse_lines, purchase_body, read_answer
from habitue.promotions.schemas import BasketIn, BasketRead
from habitue.web.i18n import _l

REFUSAL_REASONS = (
    _l("the same code twice"),
    _l("this code has expired"),
    _l("this code was redeemed"),
    _l("this code was canceled"),
    _l("a coupon or offer needs the member"),
    _l("not valid yet"),
    _l("no longer valid"),
    _l("the basket is below the minimum amount"),
    _l("its condition does not hold for this basket"),
    _l("its condition failed to evaluate"),
    _l("takes nothing off this basket"),
    _l("no such coupon in this program"),
    _l("not a coupon code (check character mismatch)"),
    _l("would pay more than what is left to pay"),
    _l("must be positive"),
)
"""The fixed reasons of `refused`, translated on the page (the others show as the API says)."""

_SPLIT = re.compile(r"[\s,;]+")


def codes_of(text: str) -> list[str]:
    """The codes typed in the simulator, separated by commas, semicolons or spaces."""
    return [c for c in _SPLIT.split(text.strip()) if c]


@dataclass(frozen=True, slots=True)
class SimulatedBasket:
    """The till's answer for the simulator's basket, and the purchase to explain the points
    on (None: no discount nor points payment, or a basket a confirm would refuse — the
    simulator then explains the basket as typed)."""

    answer: BasketRead
    purchase: EventCreate | None
    refused_whole: bool


async def price(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    body: dict[str, Any],
    *,
    codes: list[str],
    points: int,
) -> SimulatedBasket:
    """Price the simulator's purchase `body` (an event body) as `POST /baskets/price` does."""
    basket = BasketIn.model_validate(
        {
            "member": body.get("member"),
            "occurred_at": body.get("occurred_at"),
            "total": body.get("total"),
            "lines": [
                {**ln, "sku": ln.get("sku") or "", "category": ln.get("category") or ""}
                for ln in body.get("lines") or []
            ],
            "codes": codes,
            "points": points,
        }
    )
    # The simulator shows coming dates too (a happy hour next Wednesday): it prices as of then.
    now = clock.now()
    if basket.occurred_at is not None and clock.as_utc(basket.occurred_at) > now:
        now = clock.as_utc(basket.occurred_at)
    priced = await till.price_in(session, pipeline, program, basket, now=now)
    _, _, index = parse_lines(program, basket)
    answer = read_answer(program, priced, index=index, earned=0, effects=[])
    p = priced.pricing
    purchase = None
    if priced.member is not None and p.lines and not p.invalid and (p.discounts or p.points):
        purchase = purchase_body(program, priced, "simulator", "default")
    return SimulatedBasket(answer, purchase, bool(p.invalid))
