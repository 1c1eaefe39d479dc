"""The member page's messages: the member's latest domain events in words, the message each
calls for and, by the member's current consents, whether it would reach them.

Above them, where the member can be reached (per channel: the address, the consent, whether
this server sends on it) and the messages the delivery worker owes the member per channel
(`messaging.deliveries.member_deliveries`): sent, skipped with the reason, failed, or waiting,
and the webhook calls about the member's events (see docs/messaging.md).
The event types and the message each calls for are the messaging room's
(`habitue.messaging.triggers`); here they get words in the reader's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.members.schemas import MemberRead
from habitue.messaging import defaults, deliveries, outbox, render, triggers
from habitue.messaging import templates as templates_service
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings
from habitue.web.i18n import _l

CHANNEL_LABELS = {
    "email": _l("Email"),
    "sms": _l("Text message (SMS)"),
    "push": _l("Push notification"),
}
DELIVERY_CHANNELS = {**CHANNEL_LABELS, "webhook": _l("Webhook")}
"""The channels of the member's messages table: the message channels and webhook calls."""
CODE_LABELS = {
    "welcome": _l("Welcome"),
    "tier_up": _l("New tier reached"),
    "points_expiring": _l("Points about to expire"),
    "birthday": _l("Birthday"),
    "points_earned": _l("Points earned"),
    "reward_available": _l("A reward within reach"),
}
EVENT_LABELS = {
    "member.enrolled": _l("Joined the program"),
    "member.updated": _l("Profile or consents changed"),
    "member.sign_in_link": _l("Asked for a sign-in link"),
    "card.replaced": _l("Card replaced"),
    "card.blocked": _l("Card blocked"),
    "event.recorded": _l("Activity recorded"),
    "event.refunded": _l("Refund recorded"),
    "points.earned": _l("Points earned"),
    "points.spent": _l("Points spent"),
    "points.adjusted": _l("Points adjusted"),
    "points.expired": _l("Points expired"),
    "reward.redeemed": _l("Reward redeemed"),
    "reward.canceled": _l("Redemption canceled"),
    "club.subscribed": _l("Joined a club"),
    "club.activated": _l("Club membership started"),
    "club.renewed": _l("Club membership renewed"),
    "club.ended": _l("Club membership ended"),
    "club.payment_failed": _l("Club payment failed"),
    "club.payment_refunded": _l("Club payment refunded"),
    "club.voucher_granted": _l("Club voucher granted"),
    "points.expiring": _l("Points about to expire"),
    "member.birthday": _l("Birthday"),
    "reward.available": _l("A reward within reach"),
    "newsletter.queued": _l("Newsletter"),
}
PURCHASE = _l("Purchase recorded")
TIER_UP = _l("Moved up a tier")
TIER_DOWN = _l("Moved down a tier")
STATUS_LABELS = {
    "pending": _l("Waiting"),
    "sent": _l("Sent"),
    "skipped": _l("Skipped"),
    "failed": _l("Failed"),
}
BLOCKED_LABELS = {
    "no-consent": _l("no consent"),
    "no-email": _l("no email address"),
    "no-phone": _l("no phone number"),
}
REASON_LABELS = {
    "no-member": _l("The member is gone or not active"),
    "no-consent": _l("No consent for this channel"),
    "no-address": _l("No address for this channel"),
    "channel-not-configured": _l("This channel is not set up on the server"),
    "quiet-hours": _l("Waiting for the end of quiet hours"),
    "frequency-cap": _l("Weekly message limit reached"),
    "link-used-or-expired": _l("The sign-in link was used or expired first"),
    "endpoint-deleted": _l("The endpoint was deleted"),
    "endpoint-disabled": _l("The endpoint is inactive"),
}
"""The worker's skip reasons in words (docs/messaging.md); other reasons (an SMTP or HTTP
error, a template that failed) are shown as they were recorded."""


@dataclass(frozen=True)
class Reach:
    """Whether a message on `channel` would reach the member now, and why not."""

    channel: str
    blocked: str | None
    """A key of BLOCKED_LABELS, or None when it would be sent."""


@dataclass(frozen=True)
class Consent:
    """A channel the member may be reached on: the consent, the address, whether it would."""

    channel: str
    granted: bool
    at: datetime | None
    address: str | None
    """The email address or phone number; for push, None (the member's app, by id)."""
    blocked: str | None
    """A key of BLOCKED_LABELS, or None when the member may be reached on this channel."""
    configured: bool
    """Whether this server's settings send on the channel (`configured`)."""


@dataclass(frozen=True)
class Notification:
    """A channel the message would go out on, the template's language and the reach."""

    channel: str
    locale: str
    blocked: str | None


@dataclass(frozen=True)
class EventLine:
    """One domain event in words: label (raw type when unknown), detail, points, message."""

    created_at: datetime
    type: str
    label: str | None
    about: str | None
    points: int | None
    code: str | None
    notifications: list[Notification]


@dataclass(frozen=True)
class MemberMessages:
    events: list[EventLine]
    consents: list[Consent]
    reach: dict[str, Reach]
    sent: dict[str, list[dict[str, Any]]]
    """Per channel of DELIVERY_CHANNELS, the member's messages
    (`messaging.deliveries.member_deliveries`), newest first."""


def _label(type_: str, payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The words for an event and a short detail taken from chosen payload fields only.

    Payloads are never shown whole (none holds a secret, but the page shows only what it words).
    """
    if type_ == "event.recorded":
        kind = payload.get("type")
        if kind == "purchase":
            return PURCHASE, None
        return EVENT_LABELS[type_], kind if isinstance(kind, str) else None
    if type_ == "tier.changed":
        moved = f"{payload.get('from') or '—'} → {payload.get('to') or '—'}"
        return (TIER_UP if payload.get("direction") == "up" else TIER_DOWN), moved
    about = None
    if type_ == "reward.redeemed" and isinstance(payload.get("reward"), str):
        about = payload["reward"]
    elif type_ in ("card.replaced", "card.blocked") and isinstance(payload.get("card_number"), str):
        about = payload["card_number"]
    return EVENT_LABELS.get(type_), about


def _points(type_: str, payload: Mapping[str, Any]) -> int | None:
    value = payload.get("points")
    if type_.startswith(("points.", "reward.")) and isinstance(value, int):
        return value
    return None


def _consent_time(entry: Any) -> datetime | None:
    at = entry.get("at") if isinstance(entry, Mapping) else None
    if isinstance(at, datetime):
        return clock.as_utc(at)
    if isinstance(at, str):
        try:
            return clock.as_utc(datetime.fromisoformat(at))
        except ValueError:
            return None
    return None


def reach_of(member: MemberRead) -> dict[str, Reach]:
    """Per channel, whether a message would reach the member by their current consents."""
    out = {}
    for channel in render.CHANNELS:
        why = triggers.blocked(
            channel, consents=member.consents, email=member.email, phone=member.phone
        )
        if why == "no-address":
            why_key: str | None = "no-email" if channel == "email" else "no-phone"
        else:
            why_key = why
        out[channel] = Reach(channel, why_key)
    return out


def configured(settings: Settings) -> set[str]:
    """The message channels this server's settings send on (as `Channels.from_settings`)."""
    urls = {
        "email": settings.smtp_url,
        "sms": settings.sms_webhook_url,
        "push": settings.push_webhook_url,
    }
    return {channel for channel, url in urls.items() if url}


async def load(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRead,
    *,
    settings: Settings,
    limit: int = 50,
) -> MemberMessages:
    """The member's latest events with the message each calls for, where they can be reached,
    and their messages per channel."""
    events = await outbox.for_member(session, program.id, member.id, limit=limit)
    codes = {e.id: triggers.template_code(e.type, e.payload) for e in events}
    written = await templates_service.written(
        session, program, {c for c in codes.values() if c is not None}
    )
    for default_code, by_locale in defaults.EMAIL_TEMPLATES.items():  # until the program writes one
        if default_code in codes.values():
            written.setdefault(default_code, {}).setdefault("email", set(by_locale))
    reach = reach_of(member)
    lines = []
    for e in events:
        code = codes[e.id]
        notifications = []
        by_channel = written.get(code, {}) if code is not None else {}
        for channel in render.CHANNELS:
            locale = render.pick_locale(by_channel.get(channel, ()), member.locale)
            if locale is not None:
                notifications.append(Notification(channel, locale, reach[channel].blocked))
        label, about = _label(e.type, e.payload)
        lines.append(
            EventLine(
                created_at=e.created_at,
                type=e.type,
                label=label,
                about=about,
                points=_points(e.type, e.payload),
                code=code,
                notifications=notifications,
            )
        )
    on = configured(settings)
    addresses = {"email": member.email, "sms": member.phone, "push": None}
    consents = [
        Consent(
            channel,
            triggers.consent_given(member.consents, channel),
            _consent_time(member.consents.get(channel)),
            addresses[channel],
            reach[channel].blocked,
            channel in on,
        )
        for channel in render.CHANNELS
    ]
    sent = await deliveries.member_deliveries(session, program, member.id, limit=limit)
    return MemberMessages(lines, consents, reach, sent)
