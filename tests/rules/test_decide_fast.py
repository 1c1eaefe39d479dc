"""The fast paths of `decide` against their references: plain comparisons answered in Python
against CEL, points in integers against decimals, and whole decisions with the fast paths
against the same rules with them switched off, over seeded random rules and baskets."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_factories import create_member, create_program

from habitue.money import points_for_amount, points_for_amount_decimal
from habitue.rules.compile import CompiledRule, RuleSet, compile_rules
from habitue.rules.context import build_roots, local_time
from habitue.rules.decide import base_points, decide
from habitue.rules.expressions import (
    INT64,
    SIMPLE_INT_FIELDS,
    SIMPLE_STR_FIELDS,
    Expression,
    cel_compile,
    comparison,
)
from habitue.rules.model import RuleSpec
from habitue.rules.types import EventInput, LineInput, MemberSnapshot, RuleTally, RuleUsage, Tally

OPS = ("==", "!=", ">=", "<=", ">", "<")


def test_what_counts_as_a_plain_comparison() -> None:
    assert comparison("event.total_minor >= 5000") is not None
    assert comparison("  now.hour<21 ") is not None
    assert comparison('member.tier == "gold"') is not None
    assert comparison("member.tier != 'gold'") is not None
    # Anything else is left to CEL: floats, free-form maps, string order, escapes, two tests.
    for source in (
        "event.total >= 50.0",
        "event.total >= 50",
        "member.counters.visits >= 3",
        'member.tier >= "gold"',
        'member.tier == "g\\"old"',
        "event.total_minor >= 5000 && now.hour < 21",
        "event.total_minor >= 99999999999999999999",
        "event.total_minor >= 012",
        'event.total_minor == "5000"',
        "member.tier == 1",
        "event.lines_count >= 1",
    ):
        assert comparison(source) is None, source


def _cel(source: str) -> Expression:
    return Expression.build(source, cel_compile(source, "condition"))


def _roots(root: str, field: str, value: Any) -> dict[str, Any]:
    return {root: {field: value}}


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(sorted(SIMPLE_INT_FIELDS)),
    op=st.sampled_from(OPS),
    literal=st.integers(-(10**18) + 1, 10**18 - 1) | st.integers(-3, 3),
    value=st.integers(-INT64, INT64 - 1)
    | st.integers(-5, 5)
    | st.sampled_from([-INT64, INT64 - 1]),
)
def test_int_comparisons_agree_with_cel(
    field: tuple[str, str], op: str, literal: int, value: int
) -> None:
    source = f"{field[0]}.{field[1]} {op} {literal}"
    expr = _cel(source)
    assert expr.simple is not None
    assert expr.simple.holds(value) is expr.evaluate(_roots(*field, value), memoise=False)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(sorted(SIMPLE_STR_FIELDS)),
    op=st.sampled_from(("==", "!=")),
    literal=st.sampled_from(["gold", "", "wed", "21:00", "a b", "x.y-z_1"]),
    value=st.sampled_from(["gold", "Gold", "", "wed", "21:00", "é", "gold "]) | st.text(max_size=4),
)
def test_string_comparisons_agree_with_cel(
    field: tuple[str, str], op: str, literal: str, value: str
) -> None:
    expr = _cel(f'{field[0]}.{field[1]} {op} "{literal}"')
    assert expr.simple is not None
    assert expr.simple.holds(value) is expr.evaluate(_roots(*field, value), memoise=False)


def test_values_outside_64_bits_are_left_to_cel() -> None:
    expr = _cel("event.total_minor >= 0")
    assert expr.simple is not None
    assert expr.simple.holds(INT64) is None
    assert expr.simple.holds(-INT64 - 1) is None


@settings(max_examples=500, deadline=None)
@given(
    amount=st.integers(-10, 10**30) | st.integers(0, 10**7),
    exponent=st.sampled_from([0, 2, 3]),
    rate=st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)
    | st.sampled_from([Decimal(1), Decimal("0.5"), Decimal("1.00"), Decimal("1E+2")]),
    rounding=st.sampled_from(["down", "half_up", "up"]),
)
def test_points_in_integers_equal_points_in_decimals(
    amount: int, exponent: int, rate: Decimal, rounding: str
) -> None:
    assert points_for_amount(amount, exponent, rate, rounding) == points_for_amount_decimal(
        amount, exponent, rate, rounding
    )


CONDITIONS = [
    "true",
    "event.total_minor >= 2500",
    "event.total_minor < 1200",
    "event.line_count >= 3",
    "event.base_points > 20",
    "event.discount_minor == 0",
    'member.tier == "gold"',
    "member.tier != 'gold'",
    'member.status == "active"',
    "member.tenure_days >= 30",
    "now.hour >= 18",
    "now.weekday == 2",
    'now.weekday_name == "sat"',
    "now.month <= 6",
    'event.type == "purchase"',
    "event.total >= 25.0",  # left to CEL: the two paths must still agree
    "event.total_minor >= 2000 && now.hour < 21",
    "size(event.lines) >= 2",
]
LINE_CONDITIONS = [
    None,
    'line.category == "coffee"',
    "line.category in ['coffee', 'tea'] && line.quantity >= 2.0",
    "line.amount_minor >= 500",
    "line.sku.startsWith('s1')",
    "line.amount >= event.total / 4.0",  # reads the event too: evaluated over the roots
]
EFFECTS: list[dict[str, Any]] = [
    {"kind": "fixed", "points": 40},
    {"kind": "per_line", "points": 5},
    {"kind": "per_unit", "points": 2},
    {"kind": "per_currency_unit", "rate": "0.5"},
    {"kind": "multiplier", "factor": "2"},
    {"kind": "tier_credits", "points": 3},
    {"kind": "fixed", "points": 100, "probability": "0.3"},
]


def _random_spec(rng: random.Random, i: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "code": f"r{i}",
        "event_type": "purchase",
        "condition": rng.choice(CONDITIONS),
        "effect": dict(rng.choice(EFFECTS)),
        "priority": rng.randint(0, 3),
    }
    line_condition = rng.choice(LINE_CONDITIONS)
    if line_condition is not None:
        spec["line_condition"] = line_condition
    if rng.random() < 0.3:
        spec["caps"] = [{"period": rng.choice(["day", "week"]), "count": rng.randint(1, 3)}]
    if rng.random() < 0.2:
        spec["schedule"] = {"days": ["wed", "sat"], "start": "18:00", "end": "02:00"}
    if rng.random() < 0.2:
        spec["audience"] = {"tiers": ["gold"]}
    if rng.random() < 0.15:
        spec["valid_from"] = "2026-03-01T00:00:00Z"
    if rng.random() < 0.1:
        spec["exclusive"] = True
    return spec


def _without_simple(expr: Expression | None) -> Expression | None:
    if expr is None:
        return None
    return Expression.build(expr.source, expr.program)


def _reference(rule_set: RuleSet) -> RuleSet:
    """The same rules with the fast paths off: CEL for every condition, every gate checked."""
    out: list[CompiledRule] = []
    for rule in rule_set.rules:
        condition = _without_simple(rule.condition)
        assert condition is not None
        condition.simple = None
        line_condition = _without_simple(rule.line_condition)
        if line_condition is not None:
            line_condition.simple = None
        out.append(replace(rule, condition=condition, line_condition=line_condition, gated=True))
    return RuleSet.of(out)


def _basket(rng: random.Random) -> tuple[LineInput, ...]:
    lines = []
    for _ in range(rng.randint(0, 8)):
        quantity = rng.randint(1, 3)
        unit = rng.choice([90, 250, 310, 480, 1_200])
        lines.append(
            LineInput(
                f"s{rng.randint(0, 30)}",
                rng.choice(["coffee", "tea", "food", None]),
                Decimal(quantity),
                unit,
                quantity * unit,
            )
        )
    return tuple(lines)


@pytest.mark.parametrize("seed", range(8))
def test_decisions_with_fast_paths_equal_the_reference(seed: int) -> None:
    """Seeded random rule sets (plain comparisons, CEL conditions, line conditions, caps,
    schedules, audiences, windows, exclusivity, random draws), each decided on 250 random
    baskets, members and times with and without the fast paths: the same decisions."""
    rng = random.Random(seed)
    specs = [RuleSpec.model_validate(_random_spec(rng, i)) for i in range(rng.randint(1, 6))]
    fast = compile_rules(specs)
    reference = _reference(fast)
    program = create_program(earn_rate=rng.choice([Decimal(1), Decimal("1.5"), Decimal("0.1")]))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(250):
        lines = _basket(rng)
        total = sum(ln.amount_minor for ln in lines) or rng.randint(0, 5_000)
        event = EventInput(
            "purchase",
            f"e{seed}-{n}",
            start + timedelta(minutes=rng.randint(0, 200 * 24 * 60)),
            total,
            lines,
            discount_minor=rng.choice([0, 0, 0, min(300, total)]),
        )
        member: MemberSnapshot = create_member(
            tier=rng.choice([None, "gold", "silver"]),
            enrolled_at=start - timedelta(days=rng.randint(0, 90)),
            earn_multiplier=rng.choice([Decimal(1), Decimal(2)]),
        )
        usage = None
        if rng.random() < 0.5:
            used = RuleTally({"day": Tally(0, rng.randint(0, 3))}, 0)
            usage = RuleUsage({spec.code: used for spec in specs})
        got = decide(event, member, program, fast, event.occurred_at, usage)
        want = decide(event, member, program, reference, event.occurred_at, usage)
        assert got == want, (n, [s.code for s in specs])


def test_a_snapshot_that_cannot_be_read_still_fails_the_decision() -> None:
    """The CEL variables are built on first use; an error building them still escapes
    `decide` (it is not recorded as one rule's error)."""
    rule_set = compile_rules(
        [RuleSpec.model_validate({"code": "old", "event_type": "purchase",
                                  "condition": "member.tenure_days >= 30",
                                  "effect": {"kind": "fixed", "points": 5}})]
    )  # fmt: skip
    naive = create_member(enrolled_at=datetime(2025, 1, 1))  # no time zone: cannot subtract
    event = EventInput("purchase", "e", datetime(2026, 1, 7, tzinfo=UTC), 1_000)
    with pytest.raises(TypeError):
        build_roots(event, naive, create_program(), local_time(event.occurred_at, "UTC"), 10)
    with pytest.raises(TypeError):
        decide(event, naive, create_program(), rule_set, event.occurred_at)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 5_000), st.integers(0, 800), st.integers(1, 4)), max_size=5
    ),
    extra=st.integers(-100, 3_000),
    discount=st.integers(0, 4_000),
    earn_on=st.sampled_from(["tax_included", "tax_excluded"]),
    rate=st.sampled_from([Decimal(1), Decimal("1.5"), Decimal("0.1"), Decimal("2.00")]),
    multiplier=st.sampled_from([Decimal(1), Decimal(2), Decimal("1.25")]),
    rounding=st.sampled_from(["down", "half_up", "up"]),
    event_type=st.sampled_from(["purchase", "visit", "refund"]),
)
def test_decides_base_earn_is_base_points(
    lines: list[tuple[int, int, int]],
    extra: int,
    discount: int,
    earn_on: str,
    rate: Decimal,
    multiplier: Decimal,
    rounding: str,
    event_type: str,
) -> None:
    """`decide` computes the base earn inline: the same points as `base_points`, with or
    without rules for the event's type."""
    basket = tuple(
        LineInput("s", "coffee", Decimal(qty), amount // qty, amount, tax_minor=min(tax, amount))
        for amount, tax, qty in lines
    )
    total = max(sum(ln.amount_minor for ln in basket) + extra, 0)
    event = EventInput(
        event_type, "e", datetime(2026, 3, 4, 12, tzinfo=UTC), total, basket,
        discount_minor=min(discount, total),
    )  # fmt: skip
    program = replace(create_program(earn_rate=rate), earn_on=earn_on, rounding=rounding)
    member = replace(create_member(), earn_multiplier=multiplier)
    want = base_points(event, member, program) if event_type == "purchase" else 0
    for rule_set in (compile_rules(()), _BASE_TEST_RULES):
        decision = decide(event, member, program, rule_set, event.occurred_at)
        got = sum(e.amount for e in decision.effects if e.rule_code == "base")
        assert got == want


_BASE_TEST_RULES = compile_rules(
    [RuleSpec.model_validate({"code": "any", "event_type": "purchase",
                              "effect": {"kind": "fixed", "points": 1}})]
)  # fmt: skip


REFERENCE_EFFECTS: list[dict[str, Any]] = [
    *EFFECTS,
    {"kind": "per_line", "points": 7},
    {"kind": "tier_credits", "rate": "2"},
    {"kind": "benefit", "benefit": "fast_lane", "days": 7},
    {"kind": "coupon", "reward_code": "free-coffee"},
    {"kind": "per_line", "points": 3, "probability": "0.5"},
]


def _limited_spec(rng: random.Random, i: int) -> dict[str, Any]:
    """A random rule as `_random_spec`, with caps over several periods (points and counts)
    and budgets more often, and benefits and coupons."""
    spec = _random_spec(rng, i)
    effect = dict(rng.choice(REFERENCE_EFFECTS))
    spec["effect"] = effect
    points_kind = effect["kind"] not in ("benefit", "coupon")
    caps: list[dict[str, Any]] = []
    for period in rng.sample(["day", "week", "month", "year", "lifetime"], rng.randint(0, 3)):
        cap: dict[str, Any] = {"period": period}
        if points_kind and rng.random() < 0.5:
            cap["points"] = rng.randint(1, 400)
        if "points" not in cap or rng.random() < 0.3:
            cap["count"] = rng.randint(1, 4)
        caps.append(cap)
    spec["caps"] = caps
    spec.pop("budget", None)
    if effect["kind"] in ("fixed", "per_line", "per_unit", "per_currency_unit", "multiplier"):
        if rng.random() < 0.4:
            spec["budget"] = rng.randint(1, 500)
    return spec


def _usage(rng: random.Random, specs: list[RuleSpec]) -> RuleUsage:
    """Random tallies: some periods used (some beyond their caps), some budgets spent."""
    rules: dict[str, RuleTally] = {}
    for spec in specs:
        if rng.random() < 0.2:
            continue  # not listed: nothing used
        periods = {
            period: Tally(rng.randint(0, 500), rng.randint(0, 5))
            for period in ("day", "week", "month", "year", "lifetime")
            if rng.random() < 0.5
        }
        rules[spec.code] = RuleTally(periods, rng.choice([0, 0, rng.randint(0, 600)]))  # type: ignore[arg-type]
    return RuleUsage(rules)


@pytest.mark.parametrize("seed", range(12))
def test_decisions_equal_the_reference_decide(seed: int) -> None:
    """`decide` against its code before this evening's fast paths (`decide_reference`): seeded
    random rule sets with caps over several periods, budgets, benefits, coupons, per-line
    rules and random draws, each decided on 200 random baskets, members, times and tallies,
    every event twice (the second time from the memos of shared effects): the same
    decisions, effects, clippings, draws and errors."""
    import decide_reference  # noqa: PLC0415 - the reference module beside this one

    rng = random.Random(1000 + seed)
    specs = [RuleSpec.model_validate(_limited_spec(rng, i)) for i in range(rng.randint(1, 6))]
    rule_set = compile_rules(specs)
    program = create_program(earn_rate=rng.choice([Decimal(1), Decimal("1.5"), Decimal("0.1")]))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(200):
        lines = _basket(rng)
        total = sum(ln.amount_minor for ln in lines) or rng.randint(0, 5_000)
        event = EventInput(
            rng.choice(["purchase", "purchase", "purchase", "visit"]),
            f"e{seed}-{n}",
            start + timedelta(minutes=rng.randint(0, 200 * 24 * 60)),
            total,
            lines,
            discount_minor=rng.choice([0, 0, 0, min(300, total)]),
        )
        member: MemberSnapshot = create_member(
            tier=rng.choice([None, "gold", "silver"]),
            enrolled_at=start - timedelta(days=rng.randint(0, 90)),
            earn_multiplier=rng.choice([Decimal(1), Decimal(2)]),
        )
        usage = _usage(rng, specs) if rng.random() < 0.7 else None
        want = decide_reference.decide(event, member, program, rule_set, event.occurred_at, usage)
        for _ in range(2):
            got = decide(event, member, program, rule_set, event.occurred_at, usage)
            assert got == want, (n, [s.code for s in specs])
            assert [type(e) for e in got.effects] == [type(e) for e in want.effects]
