"""Compilation, the per-program cache, memoised evaluation and the demo rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cel
import pytest
from rules_factories import create_event, create_member, create_program, line

from habitue.rules.compile import RuleCache, RuleVersion, compile_rules
from habitue.rules.decide import decide
from habitue.rules.demo_rules import DEMO_RULES
from habitue.rules.expressions import Expression
from habitue.rules.model import RuleSpec
from habitue.rules.types import EarnPoints, GrantBenefit, IssueCoupon, RuleTally, RuleUsage, Tally

SPEC = RuleSpec.model_validate(
    {"code": "r", "event_type": "visit", "effect": {"kind": "fixed", "points": 5}}
)


def test_cache_compiles_once_per_stamp() -> None:
    cache = RuleCache(maxsize=2)
    loads: list[int] = []

    def load() -> list[RuleVersion]:
        loads.append(1)
        return [RuleVersion(SPEC, rule_id=7, version=3)]

    first = cache.get(1, "v1", load)
    assert cache.get(1, "v1", load) is first
    assert len(loads) == 1
    second = cache.get(1, "v2", load)
    assert second is not first
    assert len(loads) == 2
    cache.get(2, "v1", load)
    cache.get(3, "v1", load)  # evicts program 1, the least recently used
    assert cache.get(1, "v2", load) is not second
    assert len(loads) == 5
    cache.invalidate(1)
    cache.get(1, "v2", load)
    assert len(loads) == 6
    event = create_event("visit")
    effect = decide(event, create_member(), create_program(), first, event.occurred_at).effects
    assert effect == (EarnPoints(5, "r", rule_id=7, rule_version=3),)


def test_rule_set_indexes_by_event_type_and_priority() -> None:
    specs = [
        SPEC.model_copy(update={"code": "low", "priority": 1}),
        SPEC.model_copy(update={"code": "high", "priority": 9}),
        SPEC.model_copy(update={"code": "off", "active": False}),
        SPEC.model_copy(update={"code": "buy", "event_type": "purchase"}),
    ]
    rs = compile_rules(specs)
    assert [r.code for r in rs.for_event("visit")] == ["high", "low"]
    assert [r.code for r in rs.for_event("purchase")] == ["buy"]
    assert rs.for_event("review") == ()


@pytest.mark.parametrize(
    ("source", "roots", "expected"),
    [
        ("has(event.attributes.x)", {"event": {"attributes": {}}}, False),
        ("has(event.attributes.x)", {"event": {"attributes": {"x": 1}}}, True),
        ("line.sku.startsWith('CO')", {"line": {"sku": "COF-1"}}, True),
        ("size(event.lines) == 2", {"event": {"lines": [{}, {}]}}, True),
        ("event.attributes['k'] == 1", {"event": {"attributes": {"k": 1}}}, True),
        (
            "member.counters.a + member.counters.b == 3",
            {"member": {"counters": {"a": 1, "b": 2}}},
            True,
        ),
    ],
)
def test_expression_sees_exactly_what_it_reads(
    source: str, roots: dict[str, Any], expected: bool
) -> None:
    expr = Expression.build(source, cel.compile(source))
    assert expr.evaluate(roots) is expected
    assert expr.evaluate(roots) is expected  # memoised when the values read are scalars


def test_memo_distinguishes_types() -> None:
    expr = Expression.build("line.quantity == 1", cel.compile("line.quantity == 1"))
    assert expr.evaluate({"line": {"quantity": 1}}) is True
    assert expr.evaluate({"line": {"quantity": True}}) is False
    assert len(expr.memo) == 2


def test_demo_rules() -> None:
    rs = compile_rules(DEMO_RULES)
    program = create_program()
    member = create_member(counters={"visits_30d": 19})
    basket = (line("coffee", "3.50"), line("coffee", "3.50"), line("pastry", "5.50"))
    wednesday = create_event(lines=basket)  # Wednesday 21:30 in Paris
    assert decide(wednesday, member, program, rs, wednesday.occurred_at).points_by_rule() == {
        "base": 12,
        "coffee-wednesday-night": 7,
    }
    review = create_event("review")
    week = RuleUsage({"review-50": RuleTally({"week": Tally(50, 1)})})
    assert decide(review, member, program, rs, review.occurred_at).points == 50
    assert decide(review, member, program, rs, review.occurred_at, week).points == 0
    referral = create_event("referral", attributes={"stage": "first_purchase"})
    assert decide(referral, member, program, rs, referral.occurred_at).points == 200
    other = create_event("referral", attributes={"stage": "signed_up"})
    assert decide(other, member, program, rs, other.occurred_at).points == 0
    visit = create_event("visit")
    assert decide(visit, member, program, rs, visit.occurred_at).effects == (
        GrantBenefit("fast_lane", "fast-lane", 30, rule_version=1),
    )
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    wins = sum(
        any(
            isinstance(e, IssueCoupon)
            for e in decide(
                create_event(lines=basket, at=at, external_id=f"till-{i}"), member, program, rs, at
            ).effects
        )
        for i in range(5_000)
    )
    assert wins == 87  # 1.74 % of 5,000 draws for a 2 % chance
