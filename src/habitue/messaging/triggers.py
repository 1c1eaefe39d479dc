"""Which domain events call for a message, and whether a member could receive it.

Pure functions over plain values. Nothing is sent yet: the console uses these to show what
would go out; the sender will use the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from habitue.messaging import render

TRIGGERS: dict[str, str] = {
    "member.enrolled": "welcome",
    "tier.changed": "tier_up",  # only when the member moved up (`direction` "up")
    "points.earned": "points_earned",  # off until the program writes a template for it
    "points.expiring": "points_expiring",
    "member.birthday": "birthday",
    "reward.available": "reward_available",
}
"""Domain event type → the code of the message template it calls for.

`points.expiring`, `member.birthday` and `reward.available` are written by the worker's
timed scan (`messaging.timed`), not by a request.
"""

IMPORTED = "import"
"""`member.enrolled`'s `source` for a member enrolled by `habitue import purchases
--enrol-missing`. Such a member is an existing customer brought over from a file (no email
address, no consent: a welcome could only ever be recorded as skipped), so the event calls for
no welcome message; webhooks still get it."""

Blocked = Literal["no-consent", "no-address"]


def template_code(type_: str, payload: Mapping[str, Any]) -> str | None:
    """The template code an event of this type and payload calls for, or None."""
    code = TRIGGERS.get(type_)
    if code == "tier_up" and payload.get("direction") != "up":
        return None
    if code == "welcome" and payload.get("source") == IMPORTED:
        return None  # a migration of existing customers: no welcome (see IMPORTED)
    return code


def consent_given(consents: Mapping[str, Any], channel: str) -> bool:
    """Whether the member's current consent for `channel` is granted (absent: not granted)."""
    entry = consents.get(channel)
    if isinstance(entry, Mapping):
        return entry.get("granted") is True
    return entry is True


def blocked(
    channel: str, *, consents: Mapping[str, Any], email: str | None, phone: str | None
) -> Blocked | None:
    """Why a message on `channel` would not reach the member now, or None when it would.

    A message needs the member's consent for its channel, and an email address (email) or a
    phone number (sms). Push needs the consent only: no device is registered by Habitué.
    """
    if channel not in render.CHANNELS or not consent_given(consents, channel):
        return "no-consent"
    if (channel == "email" and not email) or (channel == "sms" and not phone):
        return "no-address"
    return None
