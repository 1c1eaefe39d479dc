"""The demo program's earning rules, as data for the demo loader (see docs/rules.md).

"1 point per euro" is the demo program's base earn rate (`DEMO_EARN_RATE`), not a rule: the
base earn is what multipliers multiply, and a per-euro rule on top of it would pay twice.
"""

from __future__ import annotations

from decimal import Decimal

from habitue.rewards.schemas import RewardCreate
from habitue.rules.model import (
    CapSpec,
    EffectSpec,
    RuleSpec,
    ScheduleSpec,
)

DEMO_EARN_RATE = Decimal(1)
"""Points per euro of the demo program (`ProgramSnapshot.earn_rate`, API `earn_rate`)."""

DEMO_RULES: list[RuleSpec] = [
    RuleSpec(
        code="coffee-wednesday-night",
        name="Double points on coffee, Wednesdays after 21:00",
        event_type="purchase",
        line_condition="line.category == 'coffee'",
        effect=EffectSpec(kind="multiplier", factor=Decimal(2)),
        schedule=ScheduleSpec(days=["wed"], start="21:00", end="23:59"),
        priority=10,
    ),
    RuleSpec(
        code="review-50",
        name="50 points for a review, at most one a week",
        event_type="review",
        effect=EffectSpec(kind="fixed", points=50),
        caps=[CapSpec(period="week", count=1)],
    ),
    RuleSpec(
        code="referral-first-purchase",
        name="200 points when a friend you referred makes a first purchase",
        event_type="referral",
        condition="has(event.attributes.stage) && event.attributes.stage == 'first_purchase'",
        effect=EffectSpec(kind="fixed", points=200),
    ),
    RuleSpec(
        code="fast-lane",
        name="Fast-lane service after 19 visits in 30 days",
        event_type="visit",
        condition="member.counters.visits_30d >= 19",
        effect=EffectSpec(kind="benefit", benefit="fast_lane", days=30),
    ),
    RuleSpec(
        code="pastry-lottery",
        name="One purchase in 50 wins a free pastry",
        event_type="purchase",
        effect=EffectSpec(kind="coupon", reward_code="free-pastry", probability=Decimal("0.02")),
    ),
]


def lottery_reward() -> RewardCreate:
    """The reward the pastry lottery's coupons are for: a catalogue entry, installed with the
    rules (a `coupon` rule must name an active reward when it is saved)."""
    names = {
        "en": ("A croissant on us", "You won the pastry lottery: one croissant, free."),
        "fr": ("Un croissant offert", "Vous avez gagné à la loterie : un croissant offert."),
        "da": ("En croissant på os", "Du vandt i konditorlotteriet: én gratis croissant."),
    }
    return RewardCreate.model_validate(
        {
            "code": "free-pastry",
            "kind": "free_product",
            "sku": "croissant",
            "cost_points": 80,
            "coupon_days": 30,
            "texts": {lang: {"name": n, "description": d} for lang, (n, d) in names.items()},
        }
    )
