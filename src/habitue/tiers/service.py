"""Tier ladders, qualification counters and upgrades on the event path."""

from __future__ import annotations

from habitue.tiers.ladder import (
    MONEY_METRIC,
    Ladder,
    TierDef,
    forget,
    load_ladder,
    require_ladder,
    set_ladder,
    to_read,
    update_tier,
)
from habitue.tiers.movement import current_rank, on_event, on_refund
from habitue.tiers.status import guarantee, history, progress, tier_benefits

__all__ = [
    "Ladder",
    "MONEY_METRIC",
    "TierDef",
    "current_rank",
    "forget",
    "guarantee",
    "history",
    "load_ladder",
    "on_event",
    "on_refund",
    "progress",
    "require_ladder",
    "set_ladder",
    "tier_benefits",
    "to_read",
    "update_tier",
]
