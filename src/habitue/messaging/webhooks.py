"""Webhook endpoints: a program's receivers, the event types each wants, their secrets.

The secret (`whsec_…`) is shown once, when the endpoint is made or its secret rotated; after
a rotation the previous secret signs too for `ROTATION_OVERLAP` (every delivery carries both
signatures), so a receiver can switch without losing a message.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import ValidationFailed
from habitue.ids import new_id
from habitue.messaging import signing
from habitue.messaging.errors import WebhookNotFound
from habitue.messaging.models import WebhookEndpoint
from habitue.programs.service import ProgramInfo

_endpoints = table_of(WebhookEndpoint)

ROTATION_OVERLAP = timedelta(hours=24)

CATALOGUE: dict[str, str] = {
    "member.enrolled": "a member joined (`member_id`, `card_number`, `external_id`, `locale`)",
    "member.updated": "a member's profile, consents or status changed (`fields`, `actor`)",
    "card.replaced": "a card was replaced by a new one",
    "card.blocked": "a card was blocked",
    "event.recorded": "a purchase or action was recorded (`type`, `points`, `effects`)",
    "event.refunded": "a purchase was refunded",
    "points.earned": "points were credited",
    "points.spent": "points were spent on a reward",
    "points.adjusted": "a support agent credited or debited points",
    "points.expired": "points expired",
    "reward.redeemed": "a reward was redeemed (`reward`, `coupon`, `points`)",
    "reward.canceled": "a redemption was canceled and its points given back",
    "coupon.redeemed": "a till burned a coupon",
    "referral.rewarded": "a referral earned its reward",
    "tier.changed": "a member moved tier (`from`, `to`, `direction`)",
    "tiers.ladder_changed": "the tier ladder was changed",
    "club.plan_created": "a paid club plan was created",
    "club.subscribed": "a member subscribed to a paid club",
    "club.activated": "a club membership started",
    "club.renewed": "a club membership was renewed",
    "club.ended": "a club membership ended",
    "club.payment_failed": "a club payment failed",
    "club.payment_refunded": "a club payment was refunded",
    "club.voucher_granted": "a club voucher was granted",
    "partner.created": "a partner was added",
    "partner.updated": "a partner was changed",
    "message_template.saved": "a message template was saved",
    "message_template.deleted": "a message template was deleted",
    "points.expiring": "a lot of points expires soon (`points`, `expires_at`)",
    "member.birthday": "it is the member's birthday in the program's time zone (`date`)",
    "reward.available": "the member's points now cover the cheapest reward once more "
    "(`points`, `cheapest_cost`)",
}
"""Event type → what it says: the types an endpoint may subscribe to (or `*` for all).

`member.sign_in_link` is not among them: it is for the member's email only."""

_METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
)


def subscribed(events: list[str], type_: str) -> bool:
    return type_ in CATALOGUE and ("*" in events or type_ in events)


def check_events(events: list[str]) -> list[str]:
    """The subscription, deduplicated; an unknown type is a 422 naming it."""
    if not events:
        raise ValidationFailed("events", "subscribe to at least one event type, or ['*']")
    for i, name in enumerate(events):
        if name != "*" and name not in CATALOGUE:
            raise ValidationFailed(f"events[{i}]", f"unknown event type {name!r}")
    return sorted(set(events))


def check_url(url: str, *, production: bool) -> str:
    """An http(s) URL with a host; in production, not a link-local or cloud metadata address."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("url", "must be an http(s) URL")
    if parts.username or parts.password:
        raise ValidationFailed("url", "must not hold credentials")
    if production:
        host = parts.hostname.lower().rstrip(".")
        if host in _METADATA_HOSTS:
            raise ValidationFailed("url", "a cloud metadata address is refused")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if address.is_link_local or str(address) in ("169.254.169.254", "fd00:ec2::254"):
                raise ValidationFailed("url", "a link-local or metadata address is refused")
    return url.strip()


def read(row: Any) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "enabled": row.enabled,
        "created_at": clock.as_utc(row.created_at),
        "updated_at": clock.as_utc(row.updated_at),
    }


async def create(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    url: str,
    events: list[str],
    description: str | None,
    production: bool,
) -> dict[str, Any]:
    url = check_url(url, production=production)
    events = check_events(events)
    now = clock.now()
    secret = signing.new_secret()
    public_id = new_id()
    await session.execute(
        insert(_endpoints).values(
            public_id=public_id,
            program_id=program.id,
            url=url,
            events=events,
            description=description,
            enabled=True,
            secret=secret,
            created_at=now,
            updated_at=now,
        )
    )
    out = read(await get_row(session, program, public_id))
    out["secret"] = secret
    return out


async def get_row(session: AsyncSession, program: ProgramInfo, public_id: str) -> Any:
    row = (
        await session.execute(
            select(_endpoints).where(
                _endpoints.c.public_id == public_id, _endpoints.c.program_id == program.id
            )
        )
    ).first()
    if row is None:
        raise WebhookNotFound(f"no webhook endpoint {public_id!r}")
    return row


async def list_endpoints(session: AsyncSession, program: ProgramInfo) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(_endpoints).where(_endpoints.c.program_id == program.id).order_by(_endpoints.c.id)
    )
    return [read(r) for r in rows]


async def update_endpoint(
    session: AsyncSession,
    program: ProgramInfo,
    public_id: str,
    changes: dict[str, Any],
    *,
    production: bool,
) -> dict[str, Any]:
    row = await get_row(session, program, public_id)
    values: dict[str, Any] = {}
    if changes.get("url") is not None:
        values["url"] = check_url(changes["url"], production=production)
    if changes.get("events") is not None:
        values["events"] = check_events(changes["events"])
    if "description" in changes:
        values["description"] = changes["description"]
    if changes.get("enabled") is not None:
        values["enabled"] = bool(changes["enabled"])
    if values:
        values["updated_at"] = clock.now()
        await session.execute(update(_endpoints).where(_endpoints.c.id == row.id).values(values))
    return read(await get_row(session, program, public_id))


async def delete_endpoint(session: AsyncSession, program: ProgramInfo, public_id: str) -> None:
    row = await get_row(session, program, public_id)
    await session.execute(delete(_endpoints).where(_endpoints.c.id == row.id))


async def rotate_secret(
    session: AsyncSession, program: ProgramInfo, public_id: str
) -> dict[str, Any]:
    """A new secret (shown once); the previous one keeps signing for `ROTATION_OVERLAP`."""
    row = await get_row(session, program, public_id)
    now = clock.now()
    secret = signing.new_secret()
    until = now + ROTATION_OVERLAP
    await session.execute(
        update(_endpoints)
        .where(_endpoints.c.id == row.id)
        .values(secret=secret, previous_secret=row.secret, previous_until=until, updated_at=now)
    )
    out = read(await get_row(session, program, public_id))
    out["secret"] = secret
    out["previous_secret_valid_until"] = until
    return out


def signing_secrets(row: Any) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one
    during its overlap."""
    found = [row.secret]
    if row.previous_secret and row.previous_until is not None:
        if clock.as_utc(row.previous_until) > clock.now():
            found.append(row.previous_secret)
    return found
