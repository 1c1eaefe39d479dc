"""The pricing core's memos and shortcuts (h7/price) against plain evaluation.

A condition's memo is keyed straight from the pricing roots (`Condition.key`): the values
of the fields it reads, `basket.lines` as the tuple of the line fields it names. A key that
left out something a condition reads would answer a basket with another basket's result:
each test here prices baskets that differ only in what a condition reads, with one compiled
deal (its memo warm), and the property prices random baskets with warm deals against fresh
ones (empty memos) and against `Condition.evaluate`'s own memo.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from habitue.money import format_minor
from habitue.promotions.conditions import compile_condition
from habitue.promotions.effects import allocate
from habitue.promotions.pricing import (
    BasketLine,
    CodeInput,
    Deal,
    EffectType,
    Pricing,
    Source,
    Stacking,
    price,
)
from habitue.rules.types import MemberSnapshot

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
GOLD = MemberSnapshot("m1", "active", NOW - timedelta(days=400), tier="gold")
PLAIN = MemberSnapshot("m2", "active", NOW - timedelta(days=3))


def _line(sku: str, cents: int, qty: int = 1, category: str = "", tax: str = "0") -> BasketLine:
    return BasketLine(sku, category, Decimal(qty), cents, cents * qty, Decimal(tax))


def _deal(code: str, effect: EffectType, **kw: Any) -> Deal:
    for key in ("condition", "line_condition"):
        if isinstance(kw.get(key), str):
            kw[key] = compile_condition(kw[key], key, line=key == "line_condition")
    return Deal(Source.PROMOTION, code, effect, **kw)


def _price(
    lines: list[BasketLine],
    deals: list[Deal],
    member: MemberSnapshot | None = GOLD,
    codes: list[CodeInput] = (),  # type: ignore[assignment]
) -> Pricing:
    return price(
        lines, member=member, promotions=deals, codes=codes, points=0, points_terms=None,
        now=NOW, timezone="Europe/Paris", exponent=2,
    )  # fmt: skip


def _off(p: Pricing) -> dict[str, int]:
    return {d.code: d.amount_minor for d in p.discounts}


def test_a_condition_over_the_lines_tells_apart_baskets_differing_in_one_line() -> None:
    three = _deal(
        "three", EffectType.ORDER_AMOUNT, amount_minor=500,
        condition="basket.lines.filter(l, l.category == 'furniture').size() >= 3",
    )  # fmt: skip
    base = [_line("A", 1000, category="furniture"), _line("B", 1000, category="furniture")]
    yes = [*base, _line("C", 1000, category="furniture")]
    no = [*base, _line("C", 1000, category="food")]
    for _ in range(2):  # the second time from the memo
        assert _off(_price(yes, [three])) == {"three": 500}
        assert _off(_price(no, [three])) == {}
    assert three.condition is not None and len(three.condition.key_memo) == 2
    # the same categories in another order: another key (a list is read in order)
    assert _off(_price(list(reversed(no)), [three])) == {}
    assert len(three.condition.key_memo) == 3


def test_a_condition_over_the_lines_reads_only_their_named_fields() -> None:
    big = _deal(
        "big", EffectType.ORDER_AMOUNT, amount_minor=100,
        condition="basket.lines.exists(l, l.sku == 'A' && l.quantity >= 2.0)",
    )  # fmt: skip
    assert big.condition is not None and big.condition.line_fields == ("quantity", "sku")
    assert _off(_price([_line("A", 500, 2), _line("B", 900)], [big])) == {"big": 100}
    assert _off(_price([_line("A", 500, 1), _line("B", 900)], [big])) == {}
    assert _off(_price([_line("B", 500, 2), _line("B", 900)], [big])) == {}
    # a price changes nothing the condition reads: the memo answers, rightly
    assert _off(_price([_line("A", 700, 2), _line("B", 100)], [big])) == {"big": 100}
    assert len(big.condition.key_memo) == 3


def test_a_line_used_whole_keys_on_all_its_fields() -> None:
    whole = _deal(
        "whole", EffectType.ORDER_AMOUNT, amount_minor=100,
        condition="basket.lines.map(l, l).exists(x, x.amount_excl > 10.0)",
    )  # fmt: skip
    assert whole.condition is not None and whole.condition.line_fields is None
    assert _off(_price([_line("A", 1200)], [whole])) == {"whole": 100}
    assert _off(_price([_line("A", 1200, tax="0.25")], [whole])) == {}  # 9.60 without tax
    assert _off(_price([_line("A", 900)], [whole])) == {}


def test_a_count_of_lines_keys_on_the_count() -> None:
    many = _deal(
        "many", EffectType.ORDER_AMOUNT, amount_minor=100, condition="basket.lines.size() >= 3"
    )
    assert many.condition is not None and many.condition.line_fields == ()
    assert _off(_price([_line("A", 100)] * 3, [many])) == {"many": 100}
    assert _off(_price([_line("A", 100)] * 2, [many])) == {}
    assert _off(_price([_line("B", 900)] * 4, [many])) == {"many": 100}


def test_a_line_condition_keys_on_the_line_and_the_member() -> None:
    gold_c = _deal(
        "gold-c", EffectType.LINES_PERCENT, percent=Decimal(10),
        line_condition="member.tier == 'gold' && line.sku == 'C' && line.amount > 5.0",
    )  # fmt: skip
    lines = [_line("C", 1000), _line("C", 400), _line("D", 1000)]
    for _ in range(2):
        assert _price(lines, [gold_c], GOLD).discounts[0].lines == ((0, 100),)
        assert _price(lines, [gold_c], PLAIN).discounts == ()
        assert _price(lines, [gold_c], None).discounts == ()


def test_the_codes_typed_key_a_condition_reading_them() -> None:
    save = _deal(
        "save-typed", EffectType.ORDER_AMOUNT, amount_minor=200,
        condition="'SAVE' in basket.codes",
    )  # fmt: skip
    other = _deal("other", EffectType.ORDER_AMOUNT, amount_minor=1)
    lines = [_line("A", 1000)]
    for _ in range(2):
        assert _off(_price(lines, [save], codes=[CodeInput("SAVE", other)])) == {
            "save-typed": 200, "other": 1,
        }  # fmt: skip
        assert _off(_price(lines, [save], codes=[CodeInput("SAVX", other)])) == {"other": 1}
        assert _off(_price(lines, [save])) == {}


def test_a_failing_condition_fails_every_time() -> None:
    bad = _deal("bad", EffectType.ORDER_AMOUNT, amount_minor=100, condition="member.attributes.vip")
    assert bad.condition is not None and bad.condition.key is None  # free-form: no fixed type
    first = _price([_line("A", 1000)], [bad])
    assert first.errors and first.errors == _price([_line("A", 1000)], [bad]).errors


def test_a_deal_sorts_and_labels_as_before() -> None:
    d = _deal("x", EffectType.ORDER_PERCENT, percent=Decimal(5), priority=3)
    assert d.label == "promotion:x"
    assert d.sort_key == (1, -3, 0, "x")
    assert _deal("y", EffectType.CHEAPEST).phase == 0
    assert _deal("z", EffectType.STORED_VALUE).phase == 2


@given(st.integers(-(10**16), 10**16), st.integers(0, 6))
def test_format_minor_is_the_decimal_amount(minor: int, exponent: int) -> None:
    expected = f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"
    assert format_minor(minor, exponent) == expected


@given(st.integers(-50, 10_000), st.lists(st.integers(-100, 5_000), max_size=8))
def test_allocate_is_the_largest_remainder_split(amount: int, weights: list[int]) -> None:
    positive = [max(w, 0) for w in weights]
    total = sum(positive)
    if amount <= 0 or total <= 0:
        assert allocate(amount, weights) == [0] * len(weights)
        return
    cut = min(amount, total)
    shares = [cut * w // total for w in positive]
    order = sorted(range(len(weights)), key=lambda i: (-(cut * positive[i] % total), i))
    for i in order[: cut - sum(shares)]:
        shares[i] += 1
    assert allocate(amount, weights) == shares


LINE_CONDITIONS = [
    "line.sku == 'A'", "line.category == 'food'", "line.amount > 5.0",
    "line.quantity >= 2.0 && line.tax_rate > 0.1", "line.amount_excl_minor > 700",
    "line.unit_price < 3.0 || basket.total > 50.0", "member.tier == 'gold' && line.sku == 'C'",
    "now.weekday >= 3 && line.category == 'food'", "basket.lines.size() > 2 && line.sku == 'A'",
    "line.sku", "member.attributes.vip == true && line.sku == 'B'",
]  # fmt: skip
CONDITIONS = [
    "basket.lines.filter(l, l.category == 'food').size() >= 2",
    "basket.lines.exists(l, l.sku == 'A' && l.quantity >= 2.0)", "basket.total >= 30.0",
    "basket.total_excl_minor > 4000", "member.tier == 'gold'", "member.tenure_days >= 100",
    "'SAVE' in basket.codes", "basket.lines.map(l, l).exists(x, x.amount_excl > 20.0)",
    "basket.quantity > 3.0", "basket.lines[0].sku == 'A'", "has(member.attributes.vip)",
    "member.segments.exists(s, s == 'x')", "basket.total", "size(basket.lines) > 3",
]  # fmt: skip
SKUS = ["A", "B", "C", ""]
CATEGORIES = ["food", "home", ""]
MEMBERS = [
    None, GOLD, PLAIN,
    MemberSnapshot("m3", "active", NOW, attributes={"vip": True}, segments=frozenset({"x"})),
]  # fmt: skip


def _deals(seed: int) -> list[tuple[str, EffectType, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for i in range(8):
        effect = rng.choice([EffectType.LINES_PERCENT, EffectType.ORDER_AMOUNT,
                             EffectType.CHEAPEST, EffectType.BUY_X_GET_Y])  # fmt: skip
        kw: dict[str, Any] = {"percent": Decimal(20), "amount_minor": 150, "buy": 1, "get": 1}
        kw["stacking"] = rng.choice(list(Stacking))
        if rng.random() < 0.7:
            kw["condition"] = rng.choice(CONDITIONS)
        if rng.random() < 0.7:
            kw["line_condition"] = rng.choice(LINE_CONDITIONS)
        out.append((f"d{i}", effect, kw))
    return out


def _outcome(p: Pricing) -> Any:
    return (
        [(d.code, d.level, d.amount_minor, d.lines) for d in p.discounts],
        p.refused, p.net_minor, p.to_pay_minor, p.errors,
    )  # fmt: skip


_line_st = st.builds(
    _line,
    st.sampled_from(SKUS),
    st.sampled_from([100, 250, 399, 1000, 2599]),
    st.integers(1, 3),
    st.sampled_from(CATEGORIES),
    st.sampled_from(["0", "0.2"]),
)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10**6),
    st.lists(
        st.tuples(
            st.lists(_line_st, max_size=5), st.sampled_from(MEMBERS),
            st.lists(st.sampled_from(["SAVE", "TEN"]), max_size=2, unique=True),
        ),
        min_size=1, max_size=12,
    ),
)  # fmt: skip
def test_warm_memos_price_as_fresh_ones(seed: int, baskets: list[Any]) -> None:
    specs = _deals(seed)
    warm = [_deal(code, effect, **dict(kw)) for code, effect, kw in specs]
    for lines, member, typed in baskets:
        codes = [CodeInput(c, Deal(Source.PROMOTION, c.lower(), EffectType.ORDER_AMOUNT,
                                   amount_minor=50)) for c in typed]  # fmt: skip
        fresh = [_deal(code, effect, **dict(kw)) for code, effect, kw in specs]
        got = _price(lines, warm, member, codes)
        assert _outcome(got) == _outcome(_price(lines, fresh, member, codes))
        # and against the conditions' own memo (`Condition.evaluate`, keyed by type and value)
        plain = [_deal(code, effect, **dict(kw)) for code, effect, kw in specs]
        for d in plain:
            for cond in (d.condition, d.line_condition):
                if cond is not None:
                    cond.key = None
        assert _outcome(got) == _outcome(_price(lines, plain, member, codes))


_FLOATS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 1.5, 100.0, -2.25, 5.0]))
_INTS = st.one_of(st.integers(), st.sampled_from([0, 5, -3, 100]))
_STRS = st.one_of(st.text(max_size=3), st.sampled_from(["", "gold", "A", "2026-12-07"]))
_SIMPLE_FIELDS = [
    ("basket", "total", _FLOATS), ("basket", "total_minor", _INTS),
    ("basket", "quantity", _FLOATS), ("line", "amount", _FLOATS),
    ("line", "amount_excl_minor", st.one_of(_INTS, st.integers(-(2**70), 2**70))),
    ("line", "sku", _STRS), ("member", "tier", _STRS), ("member", "tenure_days", _INTS),
    ("now", "weekday", _INTS), ("now", "date", _STRS),
]  # fmt: skip


_LITERALS = ["0", "5", "-3", "100", "1.5", "0.0", "-2.25", "100.0", "'gold'", "''",
             "'2026-12-07'", "'A'"]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(range(len(_SIMPLE_FIELDS))).flatmap(
        lambda i: st.tuples(st.just(_SIMPLE_FIELDS[i][:2]), _SIMPLE_FIELDS[i][2])
    ),
    st.sampled_from(["==", "!=", ">=", "<=", ">", "<"]),
    st.sampled_from(_LITERALS),
)
def test_a_simple_comparison_is_what_cel_gives(field: Any, op: str, literal: str) -> None:
    (root, name), value = field
    source = f"{root}.{name} {op} {literal}"
    cond = compile_condition(source, "x", line=root == "line")
    roots = {root: {name: value}}
    if cond.simple is None:  # not simple (mixed types, ordering of strings): CEL's
        return
    got = cond.simple.holds(value)
    if got is None:  # an int beyond CEL's 64 bits: left to CEL
        assert not -(2**63) <= value < 2**63
        return
    assert got is cond.evaluate(roots)
    assert cond.evaluate_priced(roots) is got


def test_simple_comparisons_are_the_usual_shapes_only() -> None:
    def simple(source: str, line: bool = False) -> Any:
        return compile_condition(source, "x", line=line).simple

    assert simple("basket.total >= 100.0") is not None
    assert simple("line.sku == 'MUG'", line=True) is not None
    assert simple("member.tenure_days >= 0") is not None
    assert simple("basket.total >= 100") is None  # a double against an int: CEL's
    assert simple("basket.total_minor >= 100.0") is None
    assert simple("line.sku > 'A'", line=True) is None  # strings: equality only
    assert simple("member.attributes.vip == true") is None
    assert simple("basket.total >= 100.0 && member.tier == 'gold'") is None
