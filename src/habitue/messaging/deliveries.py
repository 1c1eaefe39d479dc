"""Reading deliveries: a member's messages, an endpoint's webhook calls; retry on demand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.messaging import webhooks
from habitue.messaging.claims import retry_values
from habitue.messaging.errors import DeliveryNotFound
from habitue.messaging.models import Delivery, DeliveryAttempt, WebhookEndpoint
from habitue.programs.service import ProgramInfo

_d = table_of(Delivery)
_a = table_of(DeliveryAttempt)
_e = table_of(WebhookEndpoint)


def _at(value: Any) -> Any:
    return None if value is None else clock.as_utc(value)


async def member_messages(
    session: AsyncSession, program: ProgramInfo, member_id: str, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The member's messages, newest first: channel, template, status, reason, sent_at."""
    rows = await session.execute(
        select(_d)
        .where(
            _d.c.program_id == program.id,
            _d.c.member_id == member_id,
            _d.c.channel != "webhook",
        )
        .order_by(_d.c.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": r.public_id,
            "channel": r.channel,
            "template": r.template,
            "status": r.status,
            "reason": r.reason,
            "attempts": r.attempts,
            "event_type": r.event_type,
            "created_at": _at(r.created_at),
            "sent_at": _at(r.sent_at),
            "next_attempt_at": _at(r.next_attempt_at) if r.status == "pending" else None,
        }
        for r in rows
    ]


async def member_deliveries(
    session: AsyncSession, program: ProgramInfo, member_id: str, *, limit: int = 50
) -> dict[str, list[dict[str, Any]]]:
    """Everything owed to or about the member, per channel (`email`, `sms`, `push`, and
    `webhook`: the calls to the program's endpoints about the member's events), newest first,
    at most `limit` per channel: status, reason, attempts, when it was called for, sent or last
    tried, and when it is tried next; a webhook call also names its endpoint's URL."""
    channels = ("email", "sms", "push", "webhook")
    found: dict[str, list[Any]] = {}
    for channel in channels:
        rows = await session.execute(
            select(_d, _e.c.url.label("endpoint_url"))
            .outerjoin(_e, _e.c.id == _d.c.endpoint_id)
            .where(
                _d.c.program_id == program.id,
                _d.c.member_id == member_id,
                _d.c.channel == channel,
            )
            .order_by(_d.c.id.desc())
            .limit(limit)
        )
        found[channel] = list(rows)
    ids = [r.id for rows in found.values() for r in rows]
    last_try: dict[int, Any] = {}
    if ids:
        tried = await session.execute(
            select(_a.c.delivery_id, func.max(_a.c.at))
            .where(_a.c.delivery_id.in_(ids))
            .group_by(_a.c.delivery_id)
        )
        last_try = {delivery: _at(at) for delivery, at in tried}
    return {
        channel: [
            {
                "id": r.public_id,
                "channel": r.channel,
                "template": r.template,
                "event_type": r.event_type,
                "endpoint_url": r.endpoint_url,
                "status": r.status,
                "reason": r.reason,
                "attempts": r.attempts,
                "created_at": _at(r.created_at),
                "sent_at": _at(r.sent_at),
                "last_try_at": last_try.get(r.id),
                "next_attempt_at": _at(r.next_attempt_at) if r.status == "pending" else None,
            }
            for r in rows
        ]
        for channel, rows in found.items()
    }


async def endpoint_deliveries(
    session: AsyncSession,
    program: ProgramInfo,
    endpoint_public_id: str,
    *,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The endpoint's deliveries, newest first, each with its attempts."""
    endpoint = await webhooks.get_row(session, program, endpoint_public_id)
    q = select(_d).where(_d.c.endpoint_id == endpoint.id)
    if status is not None:
        q = q.where(_d.c.status == status)
    rows = (await session.execute(q.order_by(_d.c.id.desc()).limit(limit))).all()
    tries: dict[int, list[dict[str, Any]]] = {}
    if rows:
        found = await session.execute(
            select(_a)
            .where(_a.c.delivery_id.in_([r.id for r in rows]))
            .order_by(_a.c.delivery_id, _a.c.id)
        )
        for a in found:
            tries.setdefault(a.delivery_id, []).append(
                {
                    "at": _at(a.at),
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                }
            )
    return [
        {
            "id": r.public_id,
            "webhook_id": f"evt_{r.outbox_id}",
            "type": r.event_type,
            "member_id": r.member_id,
            "status": r.status,
            "reason": r.reason,
            "created_at": _at(r.created_at),
            "sent_at": _at(r.sent_at),
            "next_attempt_at": _at(r.next_attempt_at) if r.status == "pending" else None,
            "attempts": tries.get(r.id, []),
        }
        for r in rows
    ]


async def retry(
    session: AsyncSession, program: ProgramInfo, endpoint_public_id: str, delivery_id: str
) -> dict[str, Any]:
    """Make a delivery of the endpoint due now (a parked one gets a fresh retry period)."""
    endpoint = await webhooks.get_row(session, program, endpoint_public_id)
    row = (
        await session.execute(
            select(_d.c.id, _d.c.status).where(
                _d.c.public_id == delivery_id, _d.c.endpoint_id == endpoint.id
            )
        )
    ).first()
    if row is None:
        raise DeliveryNotFound(f"no delivery {delivery_id!r} for this endpoint")
    await session.execute(update(_d).where(_d.c.id == row.id).values(retry_values()))
    return {"id": delivery_id, "status": "pending"}


async def retry_message(
    session: AsyncSession, program: ProgramInfo, member_id: str, message_id: str
) -> dict[str, Any]:
    """Make one of the member's messages due now (a failed one gets a fresh retry period;
    a skipped one is looked at again: consent, address, channel)."""
    row = (
        await session.execute(
            select(_d.c.id).where(
                _d.c.public_id == message_id,
                _d.c.program_id == program.id,
                _d.c.member_id == member_id,
                _d.c.channel != "webhook",
            )
        )
    ).first()
    if row is None:
        raise DeliveryNotFound(f"no message {message_id!r} for this member")
    await session.execute(update(_d).where(_d.c.id == row.id).values(retry_values()))
    return {"id": message_id, "status": "pending"}
