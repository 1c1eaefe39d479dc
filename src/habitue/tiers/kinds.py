"""Words of the tiers room that the API shows."""

from __future__ import annotations

from enum import StrEnum


class TierEffectKind(StrEnum):
    """The `kind` of an event's or a refund's effect entry when the member's tier moves."""

    TIER_UPGRADE = "tier_upgrade"
    """The event took the member's metric to a higher tier: the member moved up at once."""
    TIER_REVERSAL = "tier_reversal"
    """The refund took the metric back below the tier this period's upgrade gave: undone."""


class TierChangeReason(StrEnum):
    """Why a member's tier changed: `reason` in the tier history and in `tier.changed`."""

    QUALIFIED = "qualified"
    """The metric reached a higher tier's threshold (at the event, or in a rebuild)."""
    REFUND = "refund"
    """A refund took the metric back below the tier this period's upgrade gave."""
    PERIOD_END = "period_end"
    """The period closed and the metric no longer keeps the tier: one step down."""
    GRACE_ENDED = "grace_ended"
    """A downgrade put off by the ladder's grace period, applied once the grace ran out."""
    GUARANTEE = "guarantee"
    """An operator guaranteed the member a tier until a date (`PUT …/tier/guarantee`)."""
