"""Each effect kind with exact numbers (EUR, 1 point per euro, rounding down, Europe/Paris)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rules_factories import create_event, create_member, create_program, line, rules

from habitue.rules.decide import decide
from habitue.rules.types import (
    AddTierCredits,
    EarnPoints,
    Effect,
    EffectKind,
    EventInput,
    GrantBenefit,
    IssueCoupon,
)


def pts(amount: int, code: str) -> EarnPoints:
    return EarnPoints(amount, code, rule_version=None if code == "base" else 1)


def mult(amount: int, code: str) -> EarnPoints:
    """The points a multiplier rule adds: public kind `multiplier`."""
    return EarnPoints(amount, code, rule_version=1, kind=EffectKind.MULTIPLIER)


COFFEE_BASKET = (line("coffee", "3.50"), line("coffee", "3.50"), line("pastry", "5.50"))
WED_2030_PARIS = datetime(2026, 1, 7, 19, 30, tzinfo=UTC)
TUE_2130_PARIS = datetime(2026, 1, 6, 20, 30, tzinfo=UTC)


def rule(
    code: str, effect: dict[str, Any], event_type: str = "purchase", **kw: Any
) -> dict[str, Any]:
    return {"code": code, "event_type": event_type, "effect": effect, **kw}


COFFEE_X2 = rule(
    "coffee-x2",
    {"kind": "multiplier", "factor": "2"},
    line_condition="line.category == 'coffee'",
    schedule={"days": ["wed"], "start": "21:00", "end": "23:59"},
)

CASES: list[tuple[str, list[dict[str, Any]], EventInput, list[Effect]]] = [
    ("base 12.50 EUR → 12", [], create_event(total="12.50"), [pts(12, "base")]),
    (
        "per_currency_unit over the basket",
        [rule("euro", {"kind": "per_currency_unit", "rate": "1"})],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), pts(12, "euro")],
    ),
    (
        "per_currency_unit 1.5 on coffee lines: 7.00 × 1.5 = 10.5 → 10",
        [
            rule(
                "coffee-rate",
                {"kind": "per_currency_unit", "rate": "1.5"},
                line_condition="line.category == 'coffee'",
            )
        ],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), pts(10, "coffee-rate")],
    ),
    (
        "per_unit: 10 per coffee unit, 2 + 1 units",
        [
            rule(
                "per-cup",
                {"kind": "per_unit", "points": 10},
                line_condition="line.category == 'coffee'",
            )
        ],
        create_event(lines=(line("coffee", "7.00", 2), line("coffee", "3.50"))),
        [pts(10, "base"), pts(30, "per-cup")],
    ),
    (
        "per_line: 5 per coffee line",
        [
            rule(
                "lines",
                {"kind": "per_line", "points": 5},
                line_condition="line.category == 'coffee'",
            )
        ],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), pts(10, "lines")],
    ),
    (
        "fixed: 50 for a review, no base",
        [rule("review-50", {"kind": "fixed", "points": 50}, "review")],
        create_event("review"),
        [pts(50, "review-50")],
    ),
    (
        "×2 on coffee, Wednesday 21:30 Paris: 12 + 7",
        [COFFEE_X2],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), mult(7, "coffee-x2")],
    ),
    (
        "×2 on coffee, Wednesday 20:30 Paris: too early",
        [COFFEE_X2],
        create_event(lines=COFFEE_BASKET, at=WED_2030_PARIS),
        [pts(12, "base")],
    ),
    (
        "×2 on coffee, Tuesday 21:30 Paris: wrong day",
        [COFFEE_X2],
        create_event(lines=COFFEE_BASKET, at=TUE_2130_PARIS),
        [pts(12, "base")],
    ),
    (
        "×2 on coffee with 2.50 paid in points: base 10, coffee share 5.60 → 5",
        [COFFEE_X2],
        create_event(lines=COFFEE_BASKET, discount_minor=250),
        [pts(10, "base"), mult(5, "coffee-x2")],
    ),
    (
        "×1.5 over the whole basket: 12 × 0.5 = 6",
        [rule("x1.5", {"kind": "multiplier", "factor": "1.5"})],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), mult(6, "x1.5")],
    ),
    (
        "stacking order: base, multipliers, bonuses whatever the priorities",
        [
            rule("bonus", {"kind": "fixed", "points": 3}, priority=9),
            rule("double", {"kind": "multiplier", "factor": "2"}, priority=1),
        ],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), mult(12, "double"), pts(3, "bonus")],
    ),
    (
        "tier credits: fixed and per euro",
        [
            rule("tc-fixed", {"kind": "tier_credits", "points": 10}, priority=2),
            rule("tc-euro", {"kind": "tier_credits", "rate": "2"}, priority=1),
        ],
        create_event(lines=COFFEE_BASKET),
        [
            pts(12, "base"),
            AddTierCredits(10, "tc-fixed", rule_version=1),
            AddTierCredits(25, "tc-euro", rule_version=1),
        ],
    ),
    (
        "benefit after 19 visits in 30 days",
        [
            rule(
                "fast-lane",
                {"kind": "benefit", "benefit": "fast_lane", "days": 30},
                "visit",
                condition="member.counters.visits_30d >= 19",
            )
        ],
        create_event("visit"),
        [GrantBenefit("fast_lane", "fast-lane", 30, rule_version=1)],
    ),
    (
        "coupon on a purchase with a pastry line",
        [
            rule(
                "pastry",
                {"kind": "coupon", "reward_code": "free-pastry"},
                line_condition="line.category == 'pastry'",
            )
        ],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), IssueCoupon("free-pastry", "pastry", rule_version=1)],
    ),
    (
        "event attributes: 30 points for a share on instagram",
        [
            rule(
                "insta",
                {"kind": "fixed", "points": 30},
                "social",
                condition="event.attributes.network == 'instagram' && "
                "event.attributes.action == 'share'",
            )
        ],
        create_event("social", attributes={"network": "instagram", "action": "share"}),
        [pts(30, "insta")],
    ),
    (
        "audience: gold members only (member is silver)",
        [rule("gold", {"kind": "fixed", "points": 5}, audience={"tiers": ["gold"]})],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base")],
    ),
    (
        "validity window: ended before the event",
        [rule("old", {"kind": "fixed", "points": 5}, valid_to="2026-01-01T00:00:00Z")],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base")],
    ),
    (
        "validity window: event inside",
        [
            rule(
                "jan",
                {"kind": "fixed", "points": 5},
                valid_from="2026-01-01T00:00:00+01:00",
                valid_to="2026-02-01T00:00:00+01:00",
            )
        ],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base"), pts(5, "jan")],
    ),
    (
        "inactive rule",
        [rule("off", {"kind": "fixed", "points": 5}, active=False)],
        create_event(lines=COFFEE_BASKET),
        [pts(12, "base")],
    ),
]


@pytest.mark.parametrize(
    ("specs", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_effect(specs: list[dict[str, Any]], event: EventInput, expected: list[Effect]) -> None:
    member = create_member(tier="silver", counters={"visits_30d": 19})
    decision = decide(event, member, create_program(), rules(*specs), event.occurred_at)
    assert list(decision.effects) == expected
    assert decision.errors == ()


def test_benefit_not_granted_below_threshold() -> None:
    rs = rules(
        rule(
            "fast-lane",
            {"kind": "benefit", "benefit": "fast_lane"},
            "visit",
            condition="member.counters.visits_30d >= 19",
        )
    )
    event = create_event("visit")
    # The counters count the visit being decided: 17 before it make this the 18th visit.
    member = create_member(counters={"visits_30d": 17})
    assert decide(event, member, create_program(), rs, event.occurred_at).effects == ()
    # 18 before it: this is the 19th visit, and "after 19 visits" holds.
    member = create_member(counters={"visits_30d": 18})
    assert [type(e).__name__ for e in
            decide(event, member, create_program(), rs, event.occurred_at).effects] == [
        "GrantBenefit"
    ]  # fmt: skip


def test_member_multiplier_applies_to_base_and_multiplier_share() -> None:
    from decimal import Decimal

    member = create_member(earn_multiplier=Decimal("1.5"))
    event = create_event(lines=COFFEE_BASKET)
    decision = decide(event, member, create_program(), rules(COFFEE_X2), event.occurred_at)
    # base 12.50 × 1.5 = 18.75 → 18; coffee share 7.00 × 1.5 = 10.5 → 10, ×(2 − 1) = 10
    assert decision.points_by_rule() == {"base": 18, "coffee-x2": 10}
    assert decision.points == 28


def test_segments_audience() -> None:
    rs = rules(rule("students", {"kind": "fixed", "points": 7}, audience={"segments": ["student"]}))
    event = create_event(total="1.00")
    program = create_program()
    outsider = decide(event, create_member(), program, rs, event.occurred_at)
    student = decide(
        event, create_member(segments=frozenset({"student"})), program, rs, event.occurred_at
    )
    assert outsider.points_by_rule() == {"base": 1}
    assert student.points_by_rule() == {"base": 1, "students": 7}


def test_half_up_rounding_program() -> None:
    event = create_event(lines=COFFEE_BASKET)
    decision = decide(
        event,
        create_member(),
        create_program(rounding="half_up"),
        rules(rule("x1.5", {"kind": "multiplier", "factor": "1.25"})),
        event.occurred_at,
    )
    # 12.50 → 13 (half up); 13 × 0.25 = 3.25 → 3
    assert decision.points_by_rule() == {"base": 13, "x1.5": 3}
