"""Benchmark `decide` with 50 active rules over random baskets, on one core.

    .venv/bin/python bench/rules.py [--events 100000] [--seed 1] [--repeat 3]

Prints events/s for: the base earn alone (the reference), the 50 rules over a mix of the five
event types, and the 50 rules over purchases only (the heaviest case), with ratios. Each
figure is CPU time of this process (so other jobs sharing the machine distort it less), the
best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from habitue.rules.compile import RuleSet, compile_rules  # noqa: E402
from habitue.rules.decide import decide  # noqa: E402
from habitue.rules.model import RuleSpec  # noqa: E402
from habitue.rules.types import (  # noqa: E402
    EventInput,
    LineInput,
    MemberSnapshot,
    ProgramSnapshot,
)

EVENT_TYPES = ("purchase", "visit", "review", "referral", "social")
CATEGORIES = ("coffee", "tea", "pastry", "food", "snack", "juice", "merch", "beans")
PROGRAM = ProgramSnapshot(1, "bench", "EUR", 2, "Europe/Paris", Decimal(1), "down", 0)

PURCHASE_RULES: list[dict[str, Any]] = [
    {"effect": {"kind": "multiplier", "factor": "2"}, "line_condition": "line.category == 'coffee'",
     "schedule": {"days": ["wed"], "start": "21:00", "end": "23:59"}, "priority": 10},
    {"effect": {"kind": "per_unit", "points": 5}, "line_condition": "line.sku.startsWith('TEA')"},
    {"effect": {"kind": "per_line", "points": 3},
     "line_condition": "line.category == 'pastry' && line.amount_minor > 300"},
    {"effect": {"kind": "per_currency_unit", "rate": "0.5"},
     "line_condition": "line.category in ['food', 'snack']", "audience": {"tiers": ["gold"]}},
    {"effect": {"kind": "fixed", "points": 20}, "line_condition": "line.quantity >= 3.0",
     "caps": [{"period": "week", "points": 60}]},
    {"effect": {"kind": "fixed", "points": 50},
     "condition": "event.total >= 50.0 && event.line_count >= 5",
     "caps": [{"period": "month", "count": 2}], "budget": 1_000_000},
    {"effect": {"kind": "fixed", "points": 10}, "condition": "member.counters.purchases_30d >= 10"},
    {"effect": {"kind": "coupon", "reward_code": "free-pastry", "probability": "0.02"}},
    {"effect": {"kind": "tier_credits", "rate": "1"}},
    {"effect": {"kind": "fixed", "points": 5},
     "condition": "now.weekday_name in ['sat', 'sun'] && member.tier == 'gold'"},
]  # fmt: skip
LINE_CONDITIONS = (
    "line.category == 'coffee'",
    "line.category in ['tea', 'juice'] && line.quantity >= 2.0",
    "line.amount_minor >= 500",
    "line.sku.startsWith('MER')",
    "line.category == 'beans' && line.unit_price > 8.0",
)
EVENT_CONDITIONS = (
    "true",
    "member.tier == 'gold'",
    "member.counters.visits_30d >= 19",
    "now.hour >= 18 && now.hour < 22",
    "has(event.attributes.network) && event.attributes.network == 'instagram'",
)
OTHER_EFFECTS: tuple[dict[str, Any], ...] = (
    {"kind": "per_line", "points": 2},
    {"kind": "fixed", "points": 50},
    {"kind": "per_unit", "points": 1},
    {"kind": "benefit", "benefit": "fast_lane", "days": 30},
    {"kind": "fixed", "points": 100, "probability": "0.05"},
)


def bench_rules() -> list[RuleSpec]:
    """10 rules per event type, half of them with a line condition."""
    specs: list[dict[str, Any]] = []
    for i, spec in enumerate(PURCHASE_RULES):
        specs.append({"code": f"purchase-{i}", "event_type": "purchase", **spec})
    for et in EVENT_TYPES[1:]:
        for i in range(10):
            spec = {"code": f"{et}-{i}", "event_type": et, "effect": OTHER_EFFECTS[i % 5],
                    "priority": i}  # fmt: skip
            if i < 5:
                spec["line_condition"] = LINE_CONDITIONS[i]
            else:
                spec["condition"] = EVENT_CONDITIONS[i - 5]
            if i == 6:
                spec["caps"] = [{"period": "week", "count": 1}]
            specs.append(spec)
    return [RuleSpec.model_validate(s) for s in specs]


def catalogue(rng: random.Random) -> list[tuple[str, str, int]]:
    """300 products: (sku, category, unit price in cents)."""
    out = []
    for n in range(300):
        cat = CATEGORIES[n % len(CATEGORIES)]
        out.append((f"{cat[:3].upper()}-{n:03d}", cat, rng.randrange(80, 2_500, 10)))
    return out


def baskets(n: int, types: Sequence[str], seed: int) -> list[tuple[EventInput, MemberSnapshot]]:
    """Random events of 1-20 lines with random members, times over a year."""
    rng = random.Random(seed)
    products = catalogue(rng)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    members = [
        MemberSnapshot(
            f"m{i}", "active", start - timedelta(days=rng.randrange(1_000)),
            tier=rng.choice([None, "silver", "gold"]),
            counters={"visits_30d": rng.randrange(30), "purchases_30d": rng.randrange(20)},
        )
        for i in range(1_000)
    ]  # fmt: skip
    out = []
    for i in range(n):
        lines = []
        for _ in range(rng.randint(1, 20)):
            sku, cat, price = rng.choice(products)
            qty = rng.choice((1, 1, 1, 2, 3))
            lines.append(LineInput(sku, cat, Decimal(qty), price, price * qty))
        et = types[i % len(types)]
        attributes = {"network": rng.choice(["instagram", "tiktok"])} if et == "social" else {}
        event = EventInput(
            et, f"ev-{i}", start + timedelta(seconds=rng.randrange(365 * 86_400)),
            sum(ln.amount_minor for ln in lines), tuple(lines), attributes,
        )  # fmt: skip
        out.append((event, rng.choice(members)))
    return out


def run(events: list[tuple[EventInput, MemberSnapshot]], rule_set: RuleSet) -> tuple[float, int]:
    """CPU seconds to decide every event (`decide` alone), and the points they earned."""
    t0 = time.process_time()
    decisions = [decide(e, m, PROGRAM, rule_set, e.occurred_at) for e, m in events]
    seconds = time.process_time() - t0
    return seconds, sum(d.points for d in decisions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rules = compile_rules(bench_rules())
    assert len(rules.rules) == 50
    mixed = baskets(args.events, EVENT_TYPES, args.seed)
    purchases = baskets(args.events, ("purchase",), args.seed + 1)
    lines = sum(len(e.lines) for e, _ in mixed) / len(mixed)
    print(
        f"{args.events:,} events per run, {lines:.1f} lines per basket on average, 50 rules, "
        f"best of {args.repeat}"
    )
    run(mixed[:2_000], rules)  # warm up

    def best(events: list[tuple[EventInput, MemberSnapshot]], rule_set: RuleSet) -> float:
        return min(run(events, rule_set)[0] for _ in range(args.repeat))

    reference = best(purchases, RuleSet.of(()))
    rows = [
        ("base earn only (reference), purchases", reference),
        ("50 rules, mixed event types", best(mixed, rules)),
        ("50 rules, purchases only", best(purchases, rules)),
    ]
    print(f"{'case':<42}{'events/s':>12}{'µs/event':>11}{'× reference':>13}")
    for name, seconds in rows:
        rate = args.events / seconds
        print(
            f"{name:<42}{rate:>12,.0f}{seconds / args.events * 1e6:>11.1f}"
            f"{seconds / reference:>13.2f}"
        )


if __name__ == "__main__":
    main()
