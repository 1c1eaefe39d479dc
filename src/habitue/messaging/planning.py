"""The delivery worker's first step: outbox events become `deliveries` rows.

For each program, under its cursor's row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL: one
planner per program at a time, the others skip it), the committed outbox events get their feed
positions (`outbox.sequence_pending`; on PostgreSQL its twin in the plan's own statement), and
the events after the cursor become deliveries — one per subscribed webhook endpoint and one per
message channel — in the same transaction that moves the cursor. A worker killed here loses
nothing: the transaction is rolled back and the next planner reads the same events.

Feed positions are contiguous, so a step plans the next `limit` positions after the cursor;
of their events it reads back only those of the types that can call for a delivery in the
program as it stands (`wanted_types`: the enabled endpoints' subscriptions, the messages with
a written or built-in text, sign-in links, newsletters), and their payload only where the
plan needs it (`PAYLOAD_TYPES`). Most events (`event.recorded`, and `points.earned` while no
one asked for it) are numbered and passed over without a row reaching Python. On PostgreSQL a
step is two statements (a third when there are deliveries): the cursor and program locks with
the endpoints and templates, then the numbering, the move of the feed and of the cursor and
the wanted events in one statement.

The rows of a plan go in one statement: on PostgreSQL an `INSERT … SELECT FROM unnest(…)` of
parallel arrays (one statement whatever the number of rows), on SQLite an `executemany` (in
process, no round trips).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    case,
    exists,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
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


PAYLOAD_TYPES = frozenset({newsletters.QUEUED, "tier.changed", "member.enrolled"})
"""The event types whose payload the plan reads (`message_code`: a newsletter's template and
id, a tier change's direction, an enrolment's `source`: an imported member gets no welcome);
of the others it reads the id, position, type and member only."""


def _channels(
    code: str, written: Collection[tuple[str, str]], built_in: Collection[str]
) -> list[str]:
    """The channels a message `code` goes on: those the program wrote its template for, and
    those of `built_in` with a built-in text (`defaults.BUILT_IN`)."""
    if code == SIGN_IN_LINK:
        return ["email"]
    return [
        ch
        for ch in render.CHANNELS
        if (code, ch) in written or (ch in built_in and code in defaults.BUILT_IN[ch])
    ]


def wanted_types(
    endpoints: Sequence[tuple[int, Sequence[str]]],
    written: Collection[tuple[str, str]],
    built_in: Collection[str],
) -> frozenset[str]:
    """The event types that can call for a delivery in a program with these enabled endpoints
    (id, subscription) and written templates (code, channel): the others are numbered and
    passed over without being read. A superset: a `tier.changed` that is not a move up, or an
    event without a member, may still call for nothing."""
    types = {"member.sign_in_link", newsletters.QUEUED}
    for _, events in endpoints:
        types.update(t for t in webhooks.CATALOGUE if webhooks.subscribed(list(events), t))
    types.update(
        type_ for type_, code in triggers.TRIGGERS.items() if _channels(code, written, built_in)
    )
    return frozenset(types)


def _deliveries(
    events: Sequence[Any],
    endpoints: Sequence[tuple[int, Sequence[str]]],
    written: Collection[tuple[str, str]],
    built_in: Collection[str],
    skip_through: int,
) -> list[tuple[Any, ...]]:
    """The deliveries (values in `_VARYING`'s order) that `events` call for, in their order:
    one per subscribed endpoint, one per channel of the message."""
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
                id_
                for id_, subscription in endpoints
                if webhooks.subscribed(list(subscription), event.type)
            ]
        for endpoint_id in hooks:
            key = f"w{endpoint_id}:{member}" if member else None
            rows.append(_row(event, "webhook", endpoint_id=endpoint_id, order_key=key))
        code = message_code(event.type, event.payload)
        if code is None or member is None:
            continue
        newsletter = (
            event.payload.get("newsletter_id") if event.type == newsletters.QUEUED else None
        )
        for ch in _channels(code, written, built_in):
            rows.append(
                _row(
                    event,
                    ch,
                    template=code,
                    order_key=f"{ch}:{member}",
                    newsletter_id=newsletter if isinstance(newsletter, int) else None,
                )
            )
    return rows


# PostgreSQL, first statement: the cursor (skipped when another planner holds it), the
# program's row locked for numbering (waited for: `outbox.sequence_pending` takes it too), and
# what decides the deliveries: the enabled endpoints and the written templates.
_PG_START = text(
    "SELECT c.last_seq, c.skip_through_id,"
    " (SELECT json_agg(json_build_array(e.id, e.events)) FROM webhook_endpoints e"
    "  WHERE e.program_id = c.program_id AND e.enabled) AS endpoints,"
    " (SELECT array_agg(t.code || ' ' || t.channel) FROM message_templates t"
    "  WHERE t.program_id = c.program_id) AS written"
    " FROM delivery_cursors c JOIN programs p ON p.id = c.program_id"
    " WHERE c.program_id = :program_id"
    " FOR UPDATE OF c SKIP LOCKED FOR UPDATE OF p"
)
# PostgreSQL, second statement (its snapshot is taken under the program's lock, as
# `outbox.sequence_pending`'s): number the unsequenced events in id order after the program's
# last position, move the feed and the cursor to the last position planned (`upto`: at most
# `limit` past the cursor), and return `upto` then the events up to it of the wanted types
# only — those just numbered (from RETURNING) and those numbered earlier (by the events feed),
# which the statement's snapshot shows with their positions.
_PG_NUMBER_AND_PICK = text(
    "WITH fed AS (SELECT feed_seq FROM programs WHERE id = :program_id),"
    " todo AS (SELECT o.id, (SELECT feed_seq FROM fed) + row_number() OVER (ORDER BY o.id) AS seq"
    "  FROM outbox o WHERE o.program_id = :program_id AND o.seq IS NULL"
    "  ORDER BY o.id LIMIT :limit),"
    " numbered AS (UPDATE outbox o SET seq = todo.seq FROM todo WHERE o.id = todo.id"
    "  RETURNING o.id, o.seq, o.type, o.member_id,"
    "  CASE WHEN o.type = ANY(CAST(:payload_types AS varchar[])) THEN o.payload END AS payload),"
    " upto AS (SELECT least(CAST(:last AS bigint) + :limit,"
    "  coalesce((SELECT max(seq) FROM numbered), (SELECT feed_seq FROM fed))) AS seq),"
    " feed AS (UPDATE programs SET feed_seq = (SELECT max(seq) FROM numbered)"
    "  WHERE id = :program_id AND EXISTS (SELECT 1 FROM numbered)),"
    " moved AS (UPDATE delivery_cursors SET last_seq = (SELECT seq FROM upto)"
    "  WHERE program_id = :program_id AND last_seq < (SELECT seq FROM upto))"
    " SELECT CAST(NULL AS bigint) AS id, (SELECT seq FROM upto) AS seq,"
    "  CAST(NULL AS varchar) AS type, CAST(NULL AS varchar) AS member_id,"
    "  CAST(NULL AS json) AS payload"
    " UNION ALL SELECT id, seq, type, member_id, payload FROM numbered"
    "  WHERE type = ANY(CAST(:types AS varchar[])) AND seq <= (SELECT seq FROM upto)"
    " UNION ALL SELECT o.id, o.seq, o.type, o.member_id,"
    "  CASE WHEN o.type = ANY(CAST(:payload_types AS varchar[])) THEN o.payload END"
    "  FROM outbox o WHERE o.program_id = :program_id AND o.seq > :last"
    "  AND o.seq <= (SELECT seq FROM upto) AND o.type = ANY(CAST(:types AS varchar[]))"
)


async def plan_program(
    session: AsyncSession,
    program_id: int,
    *,
    limit: int = PLAN_LIMIT,
    built_in: Collection[str] = ("email",),
) -> int:
    """Turn the program's next outbox events into deliveries; the number of events read.

    A message goes on each channel the program wrote its template for, and on each channel of
    `built_in` that has a built-in text for it (`defaults.BUILT_IN`). The events are those of
    the next `limit` feed positions after the cursor (positions are contiguous); of them only
    the types that can call for a delivery (`wanted_types`) are read back."""
    if dialect_name(session) == "postgresql":
        return await _plan_postgresql(session, program_id, limit=limit, built_in=built_in)
    cursor = (
        await session.execute(
            select(_c.c.last_seq, _c.c.skip_through_id).where(_c.c.program_id == program_id)
        )
    ).first()
    if cursor is None:  # no cursor yet
        return 0
    last, skip_through = int(cursor.last_seq), int(cursor.skip_through_id)
    upto = min(last + limit, await outbox.sequence_pending(session, program_id))
    if upto <= last:
        return 0
    endpoints = [
        (e.id, list(e.events or []))
        for e in await session.execute(
            select(_e.c.id, _e.c.events).where(
                _e.c.program_id == program_id, _e.c.enabled.is_(True)
            )
        )
    ]
    written = {
        (code, channel)
        for code, channel in await session.execute(
            select(_t.c.code, _t.c.channel).where(_t.c.program_id == program_id).distinct()
        )
    }
    types = wanted_types(endpoints, written, built_in)
    payload = case((_o.c.type.in_(sorted(PAYLOAD_TYPES)), _o.c.payload), else_=null())
    events = (
        await session.execute(
            select(_o.c.id, _o.c.seq, _o.c.type, _o.c.member_id, payload.label("payload"))
            .where(
                _o.c.program_id == program_id,
                _o.c.seq > last,
                _o.c.seq <= upto,
                _o.c.type.in_(sorted(types)),
            )
            .order_by(_o.c.seq)
        )
    ).all()
    rows = _deliveries(events, endpoints, written, built_in, skip_through)
    await insert_deliveries(session, program_id, rows, clock.now())
    await session.execute(update(_c).where(_c.c.program_id == program_id).values(last_seq=upto))
    return upto - last


async def _plan_postgresql(
    session: AsyncSession, program_id: int, *, limit: int, built_in: Collection[str]
) -> int:
    """`plan_program` on PostgreSQL: two statements, and a third when there are deliveries."""
    start = (await session.execute(_PG_START, {"program_id": program_id})).first()
    if start is None:  # another worker is planning this program (or no cursor yet)
        return 0
    last, skip_through = start.last_seq, start.skip_through_id
    endpoints = [(int(e[0]), list(e[1] or [])) for e in start.endpoints or []]
    written = {tuple(w.split(" ", 1)) for w in start.written or []}
    types = wanted_types(endpoints, written, built_in)
    picked = (
        await session.execute(
            _PG_NUMBER_AND_PICK,
            {
                "program_id": program_id,
                "last": last,
                "limit": limit,
                "types": sorted(types),
                "payload_types": sorted(PAYLOAD_TYPES),
            },
        )
    ).all()
    upto = next(r.seq for r in picked if r.id is None)
    if upto <= last:
        return 0
    events = sorted((r for r in picked if r.id is not None), key=lambda r: r.seq)
    rows = _deliveries(events, endpoints, written, built_in, skip_through)
    await insert_deliveries(session, program_id, rows, clock.now())
    return int(upto - last)


_NO_CURSOR = 0
"""In `_todo`'s answer: a program has no cursor yet (program ids start at 1)."""


def _todo() -> CompoundSelect[Any]:
    """The programs with outbox rows not yet sequenced or after their cursor, in id order,
    led by `_NO_CURSOR` when a program lacks a cursor: one statement, through the outbox's
    indexes."""
    unsequenced = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq.is_(None))
    ahead = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq > _c.c.last_seq)
    no_cursor = exists(select(_p.c.id).where(~exists().where(_c.c.program_id == _p.c.id)).limit(1))
    return union_all(
        select(literal(_NO_CURSOR).label("id")).where(no_cursor),
        select(_c.c.program_id.label("id")).where(or_(unsequenced, ahead)),
    ).order_by("id")


async def plan(db: Database, *, built_in: Collection[str] = ("email",)) -> int:
    """Plan every program with events after its cursor; the number of events read.

    An idle worker only reads, in one statement: which programs lack a cursor, which have
    outbox rows not yet sequenced or after their cursor (both through the outbox's indexes)."""
    async with db.read_statements() as session:
        ids = [int(i) for i in (await session.execute(_todo())).scalars()]
    if ids[:1] == [_NO_CURSOR]:
        await db.write(ensure_cursors)
        async with db.read_statements() as session:
            ids = [int(i) for i in (await session.execute(_todo())).scalars()]
    total = 0
    for program_id in ids:
        if program_id == _NO_CURSOR:  # one made since `ensure_cursors`: the next plan's
            continue
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
