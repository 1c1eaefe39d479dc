"""Words of the events room that the API shows: the entries a refund's answer adds.

The entries of a purchase's decision are `rules.types.EffectKind`; other rooms add their own
(`tiers.kinds.TierEffectKind`, `rewards.kinds.ReferralEffectKind`). All are documented in
`docs/rules.md` ("What an event's `effects` say"), which `tests/events/test_kinds.py` checks.
"""

from __future__ import annotations

from enum import StrEnum


class RefundEffectKind(StrEnum):
    """The `kind` of what a refund undoes of its purchase, in the refund's answer."""

    TAKEBACK = "takeback"
    """Points the refunded share had earned, taken back (`points` negative)."""
    RETURN = "return"
    """Points the purchase was paid with, given back for the refunded share (a new lot)."""
    COUPON_VOIDED = "coupon_voided"
    """A coupon the purchase issued, still unused, now void (a used one stays used)."""
