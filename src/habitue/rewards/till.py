"""Pure arithmetic at the till: pay with points, and what a coupon or an offer takes off."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal


@dataclass(frozen=True, slots=True)
class PointsPayment:
    """Points to spend and the discount they buy, in minor units."""

    points: int
    discount_minor: int


def points_discount_minor(points: int, rate: Decimal, exponent: int) -> int:
    """The money `points` buy at `rate` per point, in minor units (as the event path rounds)."""
    return int((Decimal(points) * rate).scaleb(exponent).to_integral_value())


def pay_with_points(
    *,
    total_minor: int,
    balance: int,
    rate: Decimal,
    step: int,
    exponent: int,
    max_points: int | None = None,
) -> PointsPayment:
    """The most points (a multiple of `step`) the member can use without exceeding the total.

    1.5 per point, step 3, balance 10 → 9 points for 13.50; the discount never exceeds the
    basket, so a 12.00 basket takes 6 points for 9.00.
    """
    if total_minor <= 0 or balance <= 0 or rate <= 0 or step <= 0:
        return PointsPayment(0, 0)
    usable = balance if max_points is None else min(balance, max(max_points, 0))
    per_point_minor = rate.scaleb(exponent)
    by_total = int((Decimal(total_minor) / per_point_minor).to_integral_value(ROUND_FLOOR))
    points = min(usable, by_total)
    points -= points % step
    # Rounding to minor units may push the last step over the total: step back until it fits.
    while points > 0 and points_discount_minor(points, rate, exponent) > total_minor:
        points -= step
    if points <= 0:
        return PointsPayment(0, 0)
    return PointsPayment(points, points_discount_minor(points, rate, exponent))


@dataclass(frozen=True, slots=True)
class DiscountTerms:
    """What a coupon or offer takes off: a fixed value or a percentage, capped, from a minimum."""

    value_minor: int | None = None
    percent: Decimal | None = None
    cap_minor: int | None = None
    min_basket_minor: int | None = None
    sku: str | None = None


@dataclass(frozen=True, slots=True)
class BasketLine:
    """A basket line as the till sends it, in minor units."""

    sku: str | None
    unit_price_minor: int


def discount_for(terms: DiscountTerms, total_minor: int, lines: tuple[BasketLine, ...]) -> int:
    """The discount in minor units for a basket; never above the basket total.

    A free product takes off the unit price of the first line with its SKU; a percentage is
    rounded half up to the minor unit then capped; a fixed value is capped at the total.
    Raises nothing: a basket below the minimum gets 0 (callers decide whether that is an error).
    """
    if total_minor <= 0:
        return 0
    if terms.min_basket_minor is not None and total_minor < terms.min_basket_minor:
        return 0
    off = 0
    if terms.sku is not None:
        off = next((ln.unit_price_minor for ln in lines if ln.sku == terms.sku), 0)
    elif terms.percent is not None:
        off = int((Decimal(total_minor) * terms.percent / 100).to_integral_value(ROUND_HALF_UP))
    elif terms.value_minor is not None:
        off = terms.value_minor
    if terms.cap_minor is not None:
        off = min(off, terms.cap_minor)
    return max(0, min(off, total_minor))
