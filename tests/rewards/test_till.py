"""Pay-with-points and discount arithmetic, exact numbers."""

from __future__ import annotations

from decimal import Decimal

from habitue.rewards import codes
from habitue.rewards.till import BasketLine, DiscountTerms, discount_for, pay_with_points


def test_issue_example_uses_nine_points() -> None:
    pay = pay_with_points(total_minor=5000, balance=10, rate=Decimal("1.5"), step=3, exponent=2)
    assert (pay.points, pay.discount_minor) == (9, 1350)


def test_discount_never_exceeds_the_basket() -> None:
    pay = pay_with_points(total_minor=1200, balance=10, rate=Decimal("1.5"), step=3, exponent=2)
    assert (pay.points, pay.discount_minor) == (6, 900)
    pay = pay_with_points(total_minor=1350, balance=10, rate=Decimal("1.5"), step=3, exponent=2)
    assert (pay.points, pay.discount_minor) == (9, 1350)
    pay = pay_with_points(total_minor=400, balance=10, rate=Decimal("1.5"), step=3, exponent=2)
    assert (pay.points, pay.discount_minor) == (0, 0)


def test_max_points_and_zero_decimals() -> None:
    pay = pay_with_points(
        total_minor=5000, balance=10, rate=Decimal("1.5"), step=3, exponent=2, max_points=8
    )
    assert (pay.points, pay.discount_minor) == (6, 900)
    pay = pay_with_points(total_minor=1000, balance=500, rate=Decimal("7"), step=1, exponent=0)
    assert (pay.points, pay.discount_minor) == (142, 994)


def test_coupon_terms() -> None:
    pct = DiscountTerms(percent=Decimal(15), cap_minor=500, min_basket_minor=2000)
    assert discount_for(pct, 1999, ()) == 0
    assert discount_for(pct, 2000, ()) == 300
    assert discount_for(pct, 2333, ()) == 350  # 349.95 rounds half up
    assert discount_for(pct, 10000, ()) == 500  # capped
    fixed = DiscountTerms(value_minor=1000)
    assert discount_for(fixed, 750, ()) == 750  # never above the basket
    free = DiscountTerms(sku="CROISSANT")
    lines = (BasketLine("COFFEE", 250), BasketLine("CROISSANT", 180))
    assert discount_for(free, 430, lines) == 180


def test_codes_have_64_bits_and_a_check_character() -> None:
    code = codes.new_code()
    assert len(code) == 14
    assert not set(code) & set("01OIL")
    assert codes.is_well_formed(codes.normalise(codes.display(code).lower()))
    for i in range(13):
        other = next(c for c in codes.ALPHABET if c != code[i])
        assert not codes.is_well_formed(code[:i] + other + code[i + 1 :])
    assert 13 * 4.95 > 64
