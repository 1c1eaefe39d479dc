"""Words of the tiers room that the API shows."""

from __future__ import annotations

from enum import StrEnum


class TierEffectKind(StrEnum):
    """The `kind` of an event's or a refund's effect entry when the member's tier moves."""

    TIER_UPGRADE = "tier_upgrade"
    """The event took the member's metric to a higher tier: the member moved up at once."""
    TIER_REVERSAL = "tier_reversal"
    """The refund took the metric back below the tier this period's upgrade gave: undone."""
