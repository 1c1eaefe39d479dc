"""The delivery worker's first step: outbox events become `deliveries` rows.

For each program, under its cursor's row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL: one
planner per program at a time, the others skip it), the committed outbox events get their feed
positions (`outbox.sequence_pending`), and the events after the cursor become deliveries — one
per subscribed webhook endpoint and one per message channel — in the same transaction that
moves the cursor. A worker killed here loses nothing: the transaction is rolled back and the
next planner reads the same events.

The rows of a plan go in one statement: on PostgreSQL an `INSERT … SELECT FROM unnest(…)` of
parallel arrays (one statement whatever the number of rows), on SQLite an `executemany` (in
process, no round trips).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import exists, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, dialect_name, table_of
from habitue.ids import new_id
from habitue.messaging import defaults, newsletters, outbox, render, triggers, webhooks
from habitue.messaging.channels import Channels
from habitue.messaging.models import (
    Delivery,
    DeliveryCursor,
    MessageTemplate,
    OutboxEvent,
    WebhookEndpoint,
)
from habitue.programs.models import Program

_d = table_of(Delivery)
_c = table_of(DeliveryCursor)
_o = table_of(OutboxEvent)
_e = table_of(WebhookEndpoint)
_t = table_of(MessageTemplate)
_p = table_of(Program)

PLAN_LIMIT = 1000
SIGN_IN_LINK = "sign_in_link"

# The columns that vary between the deliveries of one plan; the others are the plan's own.
_VARYING = (
    "public_id",
    "outbox_id",
    "event_type",
    "member_id",
    "channel",
    "template",
    "endpoint_id",
    "order_key",
    "newsletter_id",
)
_PG_INSERT = text(
    "INSERT INTO deliveries (program_id, status, attempts, next_attempt_at, retry_from,"
    " created_at, public_id, outbox_id, event_type, member_id, channel, template, endpoint_id,"
    " order_key, newsletter_id)"
    " SELECT CAST(:program_id AS bigint), 'pending', 0, CAST(:now AS timestamptz),"
    " CAST(:now AS timestamptz), CAST(:now AS timestamptz), u.* FROM unnest("
    "  CAST(:public_id AS varchar[]), CAST(:outbox_id AS bigint[]),"
    "  CAST(:event_type AS varchar[]), CAST(:member_id AS varchar[]),"
    "  CAST(:channel AS varchar[]), CAST(:template AS varchar[]),"
    "  CAST(:endpoint_id AS bigint[]), CAST(:order_key AS varchar[]),"
    "  CAST(:newsletter_id AS bigint[])) AS u"
)


def message_code(type_: str, payload: Any) -> str | None:
    """The message an event calls for: a template code, or the sign-in link email."""
    if type_ == "member.sign_in_link":
        return SIGN_IN_LINK
    if type_ == newsletters.QUEUED:
        template = payload.get("template") if isinstance(payload, dict) else None
        return template if isinstance(template, str) else None
    return triggers.template_code(type_, payload if isinstance(payload, dict) else {})


async def ensure_cursors(session: AsyncSession) -> None:
    """A cursor for every program without one, at the start of its feed."""
    await session.execute(
        text(
            "INSERT INTO delivery_cursors (program_id, last_seq, skip_through_id) "
            "SELECT p.id, 0, 0 FROM programs p WHERE NOT EXISTS "
            "(SELECT 1 FROM delivery_cursors c WHERE c.program_id = p.id) "
            "ON CONFLICT DO NOTHING"
        )
    )


def _row(
    event: Any,
    channel: str,
    *,
    template: str | None = None,
    endpoint_id: int | None = None,
    order_key: str | None = None,
    newsletter_id: int | None = None,
) -> tuple[Any, ...]:
    """One delivery's varying values, in `_VARYING`'s order."""
    return (
        new_id(),
        event.id,
        event.type,
        event.member_id,
        channel,
        template,
        endpoint_id,
        order_key,
        newsletter_id,
    )


async def insert_deliveries(
    session: AsyncSession, program_id: int, rows: list[tuple[Any, ...]], now: datetime
) -> None:
    """Insert pending deliveries (their values in `_VARYING`'s order), due `now`."""
    if not rows:
        return
    if dialect_name(session) == "postgresql":
        columns = list(zip(*rows, strict=True))
        params: dict[str, Any] = {"program_id": program_id, "now": now}
        params.update({c: list(v) for c, v in zip(_VARYING, columns, strict=True)})
        await session.execute(_PG_INSERT, params)
        return
    common = {
        "program_id": program_id,
        "status": "pending",
        "reason": None,
        "attempts": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "retry_from": now,
        "created_at": now,
        "sent_at": None,
    }
    values = [{**common, **dict(zip(_VARYING, r, strict=True))} for r in rows]
    await session.execute(insert(_d), values)


async def plan_program(
    session: AsyncSession,
    program_id: int,
    *,
    limit: int = PLAN_LIMIT,
    built_in: Collection[str] = ("email",),
) -> int:
    """Turn the program's next outbox events into deliveries; the number of events read.

    A message goes on each channel the program wrote its template for, and on each channel of
    `built_in` that has a built-in text for it (`defaults.BUILT_IN`)."""
    q = select(_c.c.last_seq, _c.c.skip_through_id).where(_c.c.program_id == program_id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update(skip_locked=True)
    cursor = (await session.execute(q)).first()
    if cursor is None:  # another worker is planning this program (or no cursor yet)
        return 0
    last, skip_through = cursor
    await outbox.sequence_pending(session, program_id)
    events = (
        await session.execute(
            select(_o.c.id, _o.c.seq, _o.c.type, _o.c.member_id, _o.c.payload)
            .where(_o.c.program_id == program_id, _o.c.seq > last)
            .order_by(_o.c.seq)
            .limit(limit)
        )
    ).all()
    if not events:
        return 0
    endpoints = (
        await session.execute(
            select(_e.c.id, _e.c.events).where(
                _e.c.program_id == program_id, _e.c.enabled.is_(True)
            )
        )
    ).all()
    written = {
        (code, channel)
        for code, channel in await session.execute(
            select(_t.c.code, _t.c.channel).where(_t.c.program_id == program_id).distinct()
        )
    }
    # Which endpoints want an event type is the same for every event of that type.
    wanted: dict[str, list[int]] = {}
    rows: list[tuple[Any, ...]] = []
    for event in events:
        if event.id <= skip_through:  # written before the upgrade that brought the worker
            continue
        member = event.member_id
        hooks = wanted.get(event.type)
        if hooks is None:
            hooks = wanted[event.type] = [
                e.id for e in endpoints if webhooks.subscribed(list(e.events or []), event.type)
            ]
        for endpoint_id in hooks:
            key = f"w{endpoint_id}:{member}" if member else None
            rows.append(_row(event, "webhook", endpoint_id=endpoint_id, order_key=key))
        code = message_code(event.type, event.payload)
        if code is None or member is None:
            continue
        if code == SIGN_IN_LINK:
            channels = ["email"]
        else:
            channels = [
                ch
                for ch in render.CHANNELS
                if (code, ch) in written or (ch in built_in and code in defaults.BUILT_IN[ch])
            ]
        newsletter = (
            event.payload.get("newsletter_id") if event.type == newsletters.QUEUED else None
        )
        for ch in channels:
            rows.append(
                _row(
                    event,
                    ch,
                    template=code,
                    order_key=f"{ch}:{member}",
                    newsletter_id=newsletter if isinstance(newsletter, int) else None,
                )
            )
    await insert_deliveries(session, program_id, rows, clock.now())
    await session.execute(
        update(_c).where(_c.c.program_id == program_id).values(last_seq=events[-1].seq)
    )
    return len(events)


async def plan(db: Database, *, built_in: Collection[str] = ("email",)) -> int:
    """Plan every program with events after its cursor; the number of events read.

    An idle worker only reads: which programs lack a cursor, which have outbox rows not yet
    sequenced or after their cursor (both through the outbox's indexes)."""
    async with db.read() as session:
        missing = (
            await session.execute(
                select(_p.c.id).where(~exists().where(_c.c.program_id == _p.c.id)).limit(1)
            )
        ).first()
    if missing is not None:
        await db.write(ensure_cursors)
    unsequenced = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq.is_(None))
    ahead = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq > _c.c.last_seq)
    async with db.read() as session:
        ids = list(
            (
                await session.execute(
                    select(_c.c.program_id).where(or_(unsequenced, ahead)).order_by(_c.c.program_id)
                )
            ).scalars()
        )
    total = 0
    for program_id in ids:
        total += await db.write(
            functools.partial(_plan_one, program_id=program_id, built_in=built_in)
        )
    return total


async def _plan_one(session: AsyncSession, *, program_id: int, built_in: Collection[str]) -> int:
    return await plan_program(session, program_id, built_in=built_in)


def built_in_channels(channels: Channels) -> tuple[str, ...]:
    """The channels whose built-in texts are sent: email always (recorded as skipped when it
    is not configured), SMS and push when this worker can send them."""
    return ("email", *(ch for ch in ("sms", "push") if channels.get(ch) is not None))
