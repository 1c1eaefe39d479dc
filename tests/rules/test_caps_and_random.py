"""Caps, budgets, exclusivity, random rewards and run-time errors."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest
from rules_factories import create_event, create_member, create_program, line, rules

from habitue.rules.compile import expected_cost
from habitue.rules.decide import decide, random_draw
from habitue.rules.model import RuleSpec
from habitue.rules.types import (
    Capped,
    Decision,
    EarnPoints,
    EventInput,
    IssueCoupon,
    RuleError,
    RuleTally,
    RuleUsage,
    Tally,
)

REVIEW = {
    "code": "review-50",
    "event_type": "review",
    "effect": {"kind": "fixed", "points": 50},
    "caps": [{"period": "week", "count": 1}],
}
PASTRY = {
    "code": "pastry-lottery",
    "event_type": "purchase",
    "effect": {"kind": "coupon", "reward_code": "free-pastry", "probability": "0.02"},
}


def run(event: EventInput, *specs: dict[str, Any], usage: RuleUsage | None = None) -> Decision:
    return decide(event, create_member(), create_program(), rules(*specs), event.occurred_at, usage)


def test_review_capped_at_one_a_week() -> None:
    first = run(create_event("review"), REVIEW)
    assert first.points_by_rule() == {"review-50": 50}
    used = RuleUsage({"review-50": RuleTally({"week": Tally(points=50, count=1)})})
    second = run(create_event("review", external_id="e2"), REVIEW, usage=used)
    assert second.effects == ()
    assert second.capped == (Capped("review-50", 50, 0, "count cap 1 per week reached", 1),)


@pytest.mark.parametrize(
    ("used_day", "used_budget", "expected", "clipped", "reason"),
    [
        (0, 0, 50, 0, None),
        (80, 0, 20, 30, "points cap 100 per day"),
        (100, 0, 0, 50, "points cap 100 per day"),
        (0, 990, 10, 40, "budget 1000"),
        (70, 995, 5, 45, "budget 1000"),
    ],
)
def test_points_cap_and_budget_clip(
    used_day: int, used_budget: int, expected: int, clipped: int, reason: str | None
) -> None:
    spec = {
        "code": "bonus",
        "event_type": "visit",
        "effect": {"kind": "fixed", "points": 50},
        "caps": [{"period": "day", "points": 100}, {"period": "lifetime", "count": 10}],
        "budget": 1000,
    }
    usage = RuleUsage(
        {"bonus": RuleTally({"day": Tally(used_day, 1), "lifetime": Tally(0, 3)}, used_budget)}
    )
    decision = run(create_event("visit"), spec, usage=usage)
    if expected:
        assert decision.effects == (EarnPoints(expected, "bonus", None, 1, clipped=clipped),)
    else:
        assert decision.effects == ()
    if reason:
        assert decision.capped == (Capped("bonus", 50, expected, reason, 1),)
    else:
        assert decision.capped == ()


def test_exclusive_rule_stops_lower_priorities_only() -> None:
    specs = [
        {
            "code": "vip",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 20},
            "priority": 5,
            "exclusive": True,
        },
        {
            "code": "same-level",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 3},
            "priority": 5,
        },
        {
            "code": "lower",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 1},
            "priority": 1,
        },
    ]
    assert run(create_event("visit"), *specs).points_by_rule() == {"vip": 20, "same-level": 3}


def test_exclusive_rule_that_is_capped_out_does_not_exclude() -> None:
    specs = [
        {
            "code": "vip",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 20},
            "priority": 5,
            "exclusive": True,
            "caps": [{"period": "day", "count": 1}],
        },
        {"code": "lower", "event_type": "visit", "effect": {"kind": "fixed", "points": 1}},
    ]
    usage = RuleUsage({"vip": RuleTally({"day": Tally(20, 1)})})
    assert run(create_event("visit"), *specs, usage=usage).points_by_rule() == {"lower": 1}


def test_random_draw_is_sha256_of_code_version_external_id() -> None:
    digest = hashlib.sha256(b"pastry-lottery:1:e42").digest()
    assert random_draw("pastry-lottery", 1, "e42") == int.from_bytes(digest[:8], "big")


def test_two_percent_lottery_is_reproducible() -> None:
    basket = (line("coffee", "3.00"),)
    winners = [
        i
        for i in range(10_000)
        if any(
            isinstance(e, IssueCoupon)
            for e in run(create_event(lines=basket, external_id=f"e{i}"), PASTRY).effects
        )
    ]
    assert len(winners) == 197  # 1.97 % of 10,000 events
    assert winners[:5] == [183, 188, 283, 301, 320]
    again = run(create_event(lines=basket, external_id="e183"), PASTRY)
    assert again.effects[1] == IssueCoupon("free-pastry", "pastry-lottery", None, 1)
    (draw,) = again.draws
    assert draw.won
    assert draw.probability == Decimal("0.02")
    assert draw.draw == random_draw("pastry-lottery", 1, "e183")
    assert draw.draw < Decimal("0.02") * 2**64


def test_expected_cost() -> None:
    assert expected_cost(RuleSpec.model_validate(PASTRY)) == Decimal("0.02")
    fixed = dict(PASTRY, effect={"kind": "fixed", "points": 500, "probability": "0.02"})
    assert expected_cost(RuleSpec.model_validate(fixed)) == Decimal("10.00")
    assert expected_cost(RuleSpec.model_validate(REVIEW)) is None


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("1 / event.attributes.zero == 1", "ZeroDivisionError: division by zero in CEL expression"),
        ("event.attributes.missing == 1", "KeyError: 'missing'"),
    ],
)
def test_run_time_error_skips_the_rule(condition: str, message: str) -> None:
    broken = {
        "code": "broken",
        "event_type": "purchase",
        "condition": condition,
        "effect": {"kind": "fixed", "points": 5},
        "priority": 9,
    }
    fine = {"code": "fine", "event_type": "purchase", "effect": {"kind": "fixed", "points": 2}}
    event = create_event(total="4.00", attributes={"zero": 0})
    decision = run(event, broken, fine)
    assert decision.points_by_rule() == {"base": 4, "fine": 2}
    assert decision.errors == (RuleError("broken", message, 1),)


def test_line_condition_error_skips_only_that_rule() -> None:
    broken = {
        "code": "broken",
        "event_type": "purchase",
        "priority": 9,
        "line_condition": "line.amount_minor / (line.quantity > 1.0 ? 1 : 0) > 0",
        "effect": {"kind": "per_line", "points": 5},
    }
    fine = {"code": "fine", "event_type": "purchase", "effect": {"kind": "fixed", "points": 2}}
    decision = run(create_event(lines=(line("tea", "2.00"),)), broken, fine)
    assert decision.points_by_rule() == {"base": 2, "fine": 2}
    assert decision.errors == (
        RuleError("broken", "ZeroDivisionError: division by zero in CEL expression", 1),
    )


def test_period_keys_and_usage_increments() -> None:
    from datetime import UTC, datetime

    from habitue.rules.usage import period_keys, usage_increments

    # 23:30 UTC on Sunday 3 January 2027 is 00:30 on Monday 4 January in Paris
    assert period_keys(datetime(2027, 1, 3, 23, 30, tzinfo=UTC), "Europe/Paris") == {
        "day": "2027-01-04",
        "week": "2027-W01",
        "month": "2027-01",
        "year": "2027",
        "lifetime": "lifetime",
    }
    decision = run(create_event("review"), REVIEW, PASTRY)
    assert usage_increments(decision) == {"review-50": Tally(50, 1)}
