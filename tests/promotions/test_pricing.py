"""The pure pricing core: Odoo-derived scenario families with exact amounts, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from habitue.promotions.conditions import compile_condition
from habitue.promotions.pricing import (
    BasketLine,
    CodeInput,
    Deal,
    EffectType,
    PointsTerms,
    Pricing,
    Source,
    Stacking,
    allocate,
    price,
)
from habitue.rules.types import MemberSnapshot

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MEMBER = MemberSnapshot("m1", "active", NOW - timedelta(days=400), tier="gold")
POINTS = PointsTerms(balance=500, rate=Decimal("0.01"), step=1, exponent=2)


def line(sku: str, unit: str, qty: int = 1, category: str = "", tax: str = "0") -> BasketLine:
    u = int(Decimal(unit) * 100)
    return BasketLine(sku, category, Decimal(qty), u, u * qty, Decimal(tax))


def deal(code: str, effect: EffectType, source: Source = Source.PROMOTION, **kw: Any) -> Deal:
    for key in ("condition", "line_condition"):
        if isinstance(kw.get(key), str):
            kw[key] = compile_condition(kw[key], key, line=key == "line_condition")
    return Deal(source, code, effect, **kw)


def run(
    lines: list[BasketLine],
    promotions: list[Deal] = (),  # type: ignore[assignment]
    codes: list[CodeInput] = (),  # type: ignore[assignment]
    points: int = 0,
    member: MemberSnapshot | None = MEMBER,
) -> Pricing:
    return price(
        lines,
        member=member,
        promotions=promotions,
        codes=codes,
        points=points,
        points_terms=POINTS,
        now=NOW,
        timezone="Europe/Paris",
        exponent=2,
    )


def offs(p: Pricing) -> dict[str, int]:
    return {f"{d.source}:{d.code}": d.amount_minor for d in p.discounts}


def coupon(code: str, effect: EffectType, **kw: Any) -> CodeInput:
    return CodeInput(code, deal(code, effect, Source.COUPON, **kw))


# 1. buy 3 get 1 (Odoo: "buy 3 get 1 free" on one product, applied once per 4 units)
def test_buy_three_get_one_free_once_per_group_of_four() -> None:
    b3g1 = deal("b3g1", EffectType.BUY_X_GET_Y, buy=3, get=1, line_condition="line.sku == 'CAB'")
    p = run([line("CAB", "320.00", 4)], [b3g1])
    assert offs(p) == {"promotion:b3g1": 32000}
    assert p.to_pay_minor == 96000
    p = run([line("CAB", "320.00", 7)], [b3g1])
    assert offs(p) == {"promotion:b3g1": 32000}  # 7 units: one complete group only
    p = run([line("CAB", "320.00", 8)], [b3g1])
    assert p.discount_minor == 64000
    capped = replace(b3g1, times=1)
    assert run([line("CAB", "320.00", 8)], [capped]).discount_minor == 32000


def test_buy_two_of_one_sku_get_another_sku_free() -> None:
    d = deal(
        "2a1b", EffectType.BUY_X_GET_Y, buy=2, get=1, get_sku="B", line_condition="line.sku == 'A'"
    )
    p = run([line("A", "10.00", 4), line("B", "3.50", 1)], [d])
    assert offs(p) == {"promotion:2a1b": 350}  # two groups, but only one B in the basket
    assert p.net_minor == (4000, 0)


# 2. minimum amounts, tax included and excluded (Odoo: rule minimum_amount_tax_mode)
def test_minimum_amount_tax_included_or_excluded() -> None:
    incl = deal(
        "incl", EffectType.ORDER_AMOUNT, amount_minor=1000, condition="basket.total >= 1006.0"
    )
    excl = deal(
        "excl", EffectType.ORDER_AMOUNT, amount_minor=1000, condition="basket.total_excl >= 1006.0"
    )
    basket = [line("DESK", "1006.25", 1, tax="0.15")]  # 875.00 + 15 %
    p = run(basket, [incl, excl])
    assert offs(p) == {"promotion:incl": 1000}
    assert p.to_pay_minor == 100625 - 1000


# 3. best discount only (Odoo: the best of several discount rewards)
def test_best_of_a_class_keeps_the_largest_discount() -> None:
    ten = deal("ten", EffectType.ORDER_PERCENT, percent=Decimal(10), stacking=Stacking.BEST_OF)
    chair = deal(
        "chair20", EffectType.LINES_PERCENT, percent=Decimal(20), stacking=Stacking.BEST_OF,
        line_condition="line.sku == 'CHAIR'",
    )  # fmt: skip
    p = run([line("CHAIR", "60.00"), line("DESK", "100.00")], [ten, chair])
    assert offs(p) == {"promotion:ten": 1600}
    p = run([line("CHAIR", "60.00"), line("DESK", "5.00")], [ten, chair])
    assert offs(p) == {"promotion:chair20": 1200}


def test_percent_limited_to_a_product_takes_percent_of_that_product() -> None:
    d = deal(
        "p10", EffectType.LINES_PERCENT, percent=Decimal(10), line_condition="line.sku == 'P60'"
    )
    p = run([line("P60", "60.00"), line("P6", "6.00")], [d])
    assert offs(p) == {"promotion:p10": 600}


# 4. validity and usage limits
def test_validity_window_and_per_member_limit() -> None:
    old = deal("old", EffectType.ORDER_AMOUNT, amount_minor=500, valid_until=NOW)
    soon = deal("soon", EffectType.ORDER_AMOUNT, amount_minor=500, valid_from=NOW + timedelta(1))
    used = deal(
        "used", EffectType.ORDER_AMOUNT, amount_minor=500, per_member_limit=2, member_uses=2
    )
    ok = deal("ok", EffectType.ORDER_AMOUNT, amount_minor=500, per_member_limit=2, member_uses=1)
    p = run([line("A", "50.00")], [old, soon, used, ok])
    assert offs(p) == {"promotion:ok": 500}
    code = CodeInput("OLD", replace(old, source=Source.COUPON, code="OLD"))
    p = run([line("A", "50.00")], codes=[code])
    assert [(r.code, r.reason) for r in p.refused] == [("OLD", "no longer valid")]


# 5. gift card with a code: stored value pays after the discounts, whatever the code order
def test_gift_card_pays_after_percent_code_in_any_order() -> None:
    gift = coupon("GIFT", EffectType.STORED_VALUE, amount_minor=5000)
    ten = coupon("TEN", EffectType.ORDER_PERCENT, percent=Decimal(10))
    for codes in ([gift, ten], [ten, gift]):
        p = run([line("A", "100.00")], codes=codes)
        assert offs(p) == {"coupon:TEN": 1000, "coupon:GIFT": 5000}
        assert [d.level for d in p.discounts] == ["order", "payment"]
        assert p.to_pay_minor == 4000


# 6. points after discounts: each line's net, for category-limited earning
def test_order_discount_is_allocated_to_lines_pro_rata() -> None:
    ten = coupon("TEN", EffectType.ORDER_PERCENT, percent=Decimal(10))
    p = run([line("BREAD", "100.00", category="food"), line("SOAP", "50.00")], codes=[ten])
    assert p.net_minor == (9000, 4500)
    assert allocate(10, [100, 100, 100]) == [4, 3, 3]


# 7. reward steps: a coupon bought with points pays a step of the basket, the points the rest
def test_points_pay_what_is_left_after_coupons() -> None:
    five = coupon("FIVE", EffectType.ORDER_AMOUNT, amount_minor=500)
    p = run([line("A", "20.00")], codes=[five], points=300)
    assert (p.discount_minor, p.points, p.points_minor, p.to_pay_minor) == (500, 300, 300, 1200)
    p = run([line("A", "20.00")], points=501)
    assert [(r.field, r.invalid) for r in p.refused] == [("points", True)]
    assert p.points == 0 and p.to_pay_minor == 2000


# 8. discount caps
def test_discount_cap_per_order() -> None:
    half = deal("half", EffectType.ORDER_PERCENT, percent=Decimal(50), cap_minor=3000)
    p = run([line("A", "80.00"), line("B", "20.00")], [half])
    assert offs(p) == {"promotion:half": 3000}
    assert p.net_minor == (5600, 1400)


# 9. cheapest / most expensive item, bundles, free items
def test_cheapest_most_expensive_bundle_and_free_item() -> None:
    basket = [line("A", "10.00"), line("B", "20.00"), line("C", "30.00")]
    assert offs(run(basket, [deal("c", EffectType.CHEAPEST)])) == {"promotion:c": 1000}
    half = deal("m", EffectType.MOST_EXPENSIVE, percent=Decimal(50))
    assert offs(run(basket, [half])) == {"promotion:m": 1500}
    menu = deal("menu", EffectType.BUNDLE_PRICE, bundle=(("A", 1), ("B", 1)), amount_minor=2500)
    p = run([line("A", "10.00", 2), line("B", "20.00", 2)], [menu])
    assert offs(p) == {"promotion:menu": 1000}
    assert p.net_minor == (1666, 3334)
    free = coupon("FREE", EffectType.FREE_ITEM, sku="B", quantity=1)
    p = run(basket, codes=[free])
    assert offs(p) == {"coupon:FREE": 2000}
    p = run([line("A", "10.00")], codes=[free])
    assert [r.reason for r in p.refused] == ["takes nothing off this basket"]


# 10. one coupon per unit: a till applies every coupon of a multi-unit redemption
def test_two_free_product_coupons_free_two_units() -> None:
    c1 = coupon("CAB1", EffectType.FREE_ITEM, sku="CAB")
    c2 = coupon("CAB2", EffectType.FREE_ITEM, sku="CAB")
    p = run([line("CAB", "320.00", 2)], codes=[c2, c1])
    assert offs(p) == {"coupon:CAB1": 32000, "coupon:CAB2": 32000}
    assert p.to_pay_minor == 0


# 11. exclusive
def test_exclusive_applies_alone() -> None:
    vip = deal("vip", EffectType.ORDER_PERCENT, percent=Decimal(30), stacking=Stacking.EXCLUSIVE,
               priority=10, condition="member.tier == 'gold'")  # fmt: skip
    ten = coupon("TEN", EffectType.ORDER_PERCENT, percent=Decimal(10))
    p = run([line("A", "100.00")], [vip], [ten])
    assert offs(p) == {"promotion:vip": 3000}
    assert [(r.code, r.reason) for r in p.refused] == [("TEN", "promotion:vip applies alone")]
    p = run([line("A", "100.00")], [vip], [ten], member=replace(MEMBER, tier="silver"))
    assert offs(p) == {"coupon:TEN": 1000}


# 12. bad input
def test_bad_codes_are_refused_with_their_reasons() -> None:
    ten = coupon("TEN", EffectType.ORDER_PERCENT, percent=Decimal(10))
    codes = [
        ten, ten, CodeInput("NOPE", refusal="unknown code"),
        replace(ten, code="USED", state="redeemed"),
        replace(ten, code="LATE", expires_at=NOW - timedelta(seconds=1)),
    ]  # fmt: skip
    p = run([line("A", "100.00")], codes=codes)
    assert {(r.code, r.reason) for r in p.refused} == {
        ("TEN", "the same code twice"),
        ("NOPE", "unknown code"),
        ("USED", "this code was redeemed"),
        ("LATE", "this code has expired"),
    }
    assert all(r.invalid for r in p.refused)
    assert offs(p) == {"coupon:TEN": 1000}
    p = run([line("A", "100.00")], codes=[ten], member=None)
    assert p.refused[0].reason == "a coupon or offer needs the member"


# properties
_EFFECTS = [
    {"effect": EffectType.ORDER_PERCENT, "percent": Decimal(15)},
    {"effect": EffectType.ORDER_AMOUNT, "amount_minor": 700},
    {
        "effect": EffectType.LINES_PERCENT,
        "percent": Decimal(20),
        "line_condition": "line.sku == 'A'",
    },
    {"effect": EffectType.CHEAPEST},
    {"effect": EffectType.BUY_X_GET_Y, "buy": 1, "get": 1, "line_condition": "line.sku == 'B'"},
    {"effect": EffectType.STORED_VALUE, "amount_minor": 2500},
    {"effect": EffectType.FREE_ITEM, "sku": "C"},
    {"effect": EffectType.BUNDLE_PRICE, "bundle": (("A", 1), ("B", 1)), "amount_minor": 500},
    {"effect": EffectType.ORDER_PERCENT, "percent": Decimal(50), "stacking": Stacking.BEST_OF},
    {"effect": EffectType.ORDER_AMOUNT, "amount_minor": 900, "stacking": Stacking.BEST_OF},
    {"effect": EffectType.ORDER_PERCENT, "percent": Decimal(5), "stacking": Stacking.EXCLUSIVE},
]
_COUPONS = [
    CodeInput(
        f"K{i}",
        deal(f"K{i}", e.pop("effect"), Source.COUPON, priority=i % 3, **e),
    )
    for i, e in enumerate(dict(x) for x in _EFFECTS)
]
_lines = st.lists(
    st.builds(
        line,
        st.sampled_from(["A", "B", "C", "D"]),
        st.integers(1, 9999).map(lambda c: f"{c // 100}.{c % 100:02d}"),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(_lines, st.lists(st.sampled_from(_COUPONS), max_size=6), st.randoms(), st.integers(0, 600))
def test_order_of_codes_does_not_matter_and_amount_stays_in_bounds(
    lines: list[BasketLine], codes: list[CodeInput], rnd: Any, points: int
) -> None:
    first = run(lines, codes=codes, points=points)
    shuffled = list(codes)
    rnd.shuffle(shuffled)
    second = run(lines, codes=shuffled, points=points)
    assert first == second
    total = sum(ln.amount_minor for ln in lines)
    assert 0 <= first.to_pay_minor <= total
    assert sum(first.net_minor) == total - first.discount_minor
    assert all(n >= 0 for n in first.net_minor)
    for d in first.discounts:
        assert sum(a for _, a in d.lines) == d.amount_minor > 0


def test_docs_name_every_effect_stacking_and_variable() -> None:
    from pathlib import Path

    from habitue.promotions.conditions import BASKET_FIELDS, LINE_FIELDS

    text = (Path(__file__).resolve().parents[2] / "docs" / "promotions.md").read_text()
    names = [*EffectType, *Stacking, *BASKET_FIELDS, *LINE_FIELDS]
    missing = [str(n) for n in names if f"`{n}`" not in text]
    assert missing == []


def test_net_lines_are_exact_to_the_cent() -> None:
    from habitue.programs.service import ProgramInfo
    from habitue.promotions.basket import net_lines

    program = ProgramInfo(
        1, "p", "p", "EUR", 2, "UTC", "pts", Decimal(1), "down", 0, "never", None, False,
        Decimal("0.01"), 1, "", {},
    )  # fmt: skip
    basket = [line("A", "25.00", 4, category="food"), line("B", "3.00")]
    p = replace(run(basket), net_minor=(9001, 300))
    sent = [(ln.sku, ln.category, ln.quantity, ln.unit_price) for ln in net_lines(program, p)]
    assert sent == [
        ("A", "food", Decimal(3), "22.50"),
        ("A", "food", Decimal(1), "22.51"),
        ("B", None, Decimal(1), "3.00"),
    ]
