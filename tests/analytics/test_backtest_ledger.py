"""The backtest's simulated ledger against a plain reference replay: each event decided with
the caps and budgets state rebuilt from scratch (`RuleUsage` of `RuleTally`s per member,
rule, period and period key, as the events service keeps them), the grants added after.
The backtest keeps that state as live tallies updated in place and checks the current
periods by their keys' identity; the totals must be the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from habitue.analytics import backtest
from habitue.rules.compile import compile_rules
from habitue.rules.decide import decide
from habitue.rules.model import RuleSpec
from habitue.rules.types import (
    AddTierCredits,
    EarnPoints,
    EventInput,
    GrantBenefit,
    IssueCoupon,
    LineInput,
    MemberSnapshot,
    ProgramSnapshot,
    RuleTally,
    RuleUsage,
    Tally,
)
from habitue.rules.usage import period_keys

PERIODS = ("day", "week", "month", "year", "lifetime")
EFFECTS: list[dict[str, Any]] = [
    {"kind": "fixed", "points": 40},
    {"kind": "per_line", "points": 5},
    {"kind": "per_currency_unit", "rate": "0.5"},
    {"kind": "multiplier", "factor": "2"},
    {"kind": "tier_credits", "points": 3},
    {"kind": "benefit", "benefit": "fast_lane"},
    {"kind": "coupon", "reward_code": "free-coffee"},
]
CONDITIONS = ["true", "event.total_minor >= 2500", "now.hour >= 12", "event.line_count >= 3"]
LINE_CONDITIONS = [None, 'line.category == "coffee"', "line.amount_minor >= 500"]


def _spec(rng: random.Random, i: int) -> RuleSpec:
    effect = dict(rng.choice(EFFECTS))
    points_kind = effect["kind"] not in ("benefit", "coupon")
    spec: dict[str, Any] = {
        "code": f"r{i}",
        "event_type": rng.choice(["purchase", "purchase", "visit"])
        if effect["kind"] != "multiplier"
        else "purchase",
        "condition": rng.choice(CONDITIONS),
        "effect": effect,
        "priority": rng.randint(0, 3),
        "exclusive": rng.random() < 0.1,
    }
    line_condition = rng.choice(LINE_CONDITIONS)
    if line_condition is not None:
        spec["line_condition"] = line_condition
    caps = []
    for period in rng.sample(PERIODS, rng.randint(0, 2)):
        cap: dict[str, Any] = {"period": period}
        if points_kind and rng.random() < 0.5:
            cap["points"] = rng.randint(10, 300)
        else:
            cap["count"] = rng.randint(1, 3)
        caps.append(cap)
    spec["caps"] = caps
    if effect["kind"] not in ("benefit", "coupon", "tier_credits") and rng.random() < 0.5:
        spec["budget"] = rng.randint(100, 3_000)
    return RuleSpec.model_validate(spec)


def _transactions(rng: random.Random, n: int) -> list[backtest.Transaction]:
    """Events of 6 members in time order over 100 days around the spring DST change."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    times = sorted(start + timedelta(minutes=rng.randint(0, 100 * 24 * 60)) for _ in range(n))
    out = []
    for i, at in enumerate(times):
        lines = tuple(
            LineInput(f"s{rng.randint(0, 9)}", rng.choice(["coffee", "tea", None]), Decimal(1),
                      unit, unit)  # fmt: skip
            for unit in (rng.choice([90, 250, 480, 1_200]) for _ in range(rng.randint(0, 5)))
        )
        total = sum(ln.amount_minor for ln in lines) or rng.randint(100, 5_000)
        kind = rng.choice(["purchase", "purchase", "purchase", "visit"])
        event = EventInput(kind, f"t{i}", at, total if kind == "purchase" else 0, lines)
        out.append(backtest.Transaction(f"m{rng.randint(0, 5)}", event))
    return out


def _reference(
    txs: list[backtest.Transaction], program: ProgramSnapshot, specs: list[RuleSpec]
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int]]:
    """Points per month and rule, per member, and grants per rule, replayed plainly."""
    rule_set = compile_rules(specs)
    limited = {s.code: s for s in specs if s.caps or s.budget is not None}
    tallies: dict[tuple[str, str, str, str], Tally] = {}
    budgets: dict[str, int] = {}
    members: dict[str, MemberSnapshot] = {}
    by_month: dict[str, dict[str, int]] = {}
    points: dict[str, int] = {}
    grants: dict[str, int] = {}
    for tx in txs:
        event = tx.event
        member = members.setdefault(
            tx.member, MemberSnapshot(tx.member, "active", event.occurred_at)
        )
        keys = period_keys(event.occurred_at, program.timezone)
        usage = RuleUsage(
            {
                code: RuleTally(
                    {
                        cap.period: tallies[(tx.member, code, cap.period, keys[cap.period])]
                        for cap in spec.caps
                        if (tx.member, code, cap.period, keys[cap.period]) in tallies
                    },
                    budgets.get(code, 0),
                )
                for code, spec in limited.items()
            }
        )
        decision = decide(event, member, program, rule_set, event.occurred_at, usage)
        month = by_month.setdefault(keys["month"], {})
        for effect in decision.effects:
            amount = effect.amount if isinstance(effect, EarnPoints | AddTierCredits) else 0
            if isinstance(effect, EarnPoints):
                month[effect.rule_code] = month.get(effect.rule_code, 0) + amount
                points[tx.member] = points.get(tx.member, 0) + amount
            if isinstance(effect, GrantBenefit | IssueCoupon):
                grants[effect.rule_code] = grants.get(effect.rule_code, 0) + 1
            spec = limited.get(effect.rule_code)
            if spec is None:
                continue
            if spec.budget is not None:
                budgets[spec.code] = budgets.get(spec.code, 0) + amount
            for period in dict.fromkeys(cap.period for cap in spec.caps):
                key = (tx.member, spec.code, period, keys[period])
                used = tallies.get(key, Tally())
                tallies[key] = Tally(used.points + amount, used.count + 1)
    return by_month, {m: p for m, p in points.items() if p}, grants


@pytest.mark.parametrize("seed", range(10))
def test_the_simulated_ledger_equals_a_plain_replay(seed: int) -> None:
    """Seeded random rule sets with caps over one or two periods (points or counts), budgets,
    benefits and coupons, 400 events of 6 members over 100 days across a DST change, in
    Paris and Kathmandu time: the same points per month and rule, per member, and grants."""
    rng = random.Random(seed)
    specs = [_spec(rng, i) for i in range(rng.randint(1, 5))]
    program = ProgramSnapshot(
        1, "p", "EUR", 2, rng.choice(["Europe/Paris", "Asia/Kathmandu"]), Decimal(1), "down", 0
    )
    txs = _transactions(rng, 400)
    want_months, want_points, want_grants = _reference(txs, program, specs)
    result = backtest.run_backtest(iter(txs), program=program, rules=compile_rules(specs))
    assert result.by_month == want_months
    assert result.member_points == want_points
    assert result.grants_by_rule == dict(sorted(want_grants.items()))
    assert result.rule_errors == 0
    assert sum(result.by_rule.values()) == result.points_issued > 0
