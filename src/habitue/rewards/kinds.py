"""Words of the rewards room that the API shows."""

from __future__ import annotations

from enum import StrEnum


class ReferralEffectKind(StrEnum):
    """The `kind` of an event's or a refund's entry when a referral moves."""

    REFERRAL = "referral"
    """A referral qualified by the referee's first purchase, or canceled by its refund."""
