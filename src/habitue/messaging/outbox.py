"""Write domain events to the outbox, and page through them in commit order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, Part, dialect_name, table_of
from habitue.messaging.models import OutboxEvent
from habitue.programs.models import Program

_outbox = table_of(OutboxEvent)
_programs = table_of(Program)
_OUTBOX_INSERT = insert(_outbox)


def outbox_row(
    program_id: int, type_: str, member_id: str | None, payload: dict[str, Any]
) -> dict[str, Any]:
    """The row of one domain event (for callers that insert in bulk)."""
    return {
        "program_id": program_id,
        "type": type_,
        "member_id": member_id,
        "payload": payload,
        "created_at": clock.now(),
    }


async def emit(
    session: AsyncSession,
    *,
    program_id: int,
    type_: str,
    member_id: str | None,
    payload: dict[str, Any],
) -> None:
    """Record one domain event in the caller's transaction."""
    await session.execute(_OUTBOX_INSERT, outbox_row(program_id, type_, member_id, payload))


async def emit_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Record several domain events in the caller's transaction."""
    if rows:
        await session.execute(_OUTBOX_INSERT, list(rows))


# PostgreSQL: domain events as the last part of a caller's multi-row statement (see
# `events.service`), from parallel arrays that `array_params` builds.
INSERT_FROM_ARRAYS = """
    INSERT INTO outbox (program_id, type, member_id, payload, created_at)
    SELECT o.program_id, o.type, o.member_id, CAST(o.payload AS json), o.created_at
    FROM unnest(CAST(:ob_programs AS bigint[]), CAST(:ob_types AS varchar[]),
                CAST(:ob_members AS varchar[]), CAST(:ob_payloads AS text[]),
                CAST(:ob_created AS timestamptz[]))
         AS o(program_id, type, member_id, payload, created_at)
"""


def part(rows: Sequence[dict[str, Any]]) -> Part:
    """`emit_many(rows)` as the last part of a composed statement (`db.compose`)."""
    return Part("outbox", INSERT_FROM_ARRAYS, array_params(rows))


def array_params(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of `INSERT_FROM_ARRAYS` for rows made by `outbox_row`, in their order."""
    return {
        "ob_programs": [r["program_id"] for r in rows],
        "ob_types": [r["type"] for r in rows],
        "ob_members": [r["member_id"] for r in rows],
        # orjson, as the import writes them: the text is stored as sent (a `json` column) and a
        # webhook's body splices it in, signed as sent; readers decode it.
        "ob_payloads": [orjson.dumps(r["payload"]).decode() for r in rows],
        "ob_created": [r["created_at"] for r in rows],
    }


_SEQUENCE = text(
    "UPDATE outbox SET seq = s.seq FROM ("
    " SELECT id, :last + row_number() OVER (ORDER BY id) AS seq FROM outbox"
    " WHERE program_id = :program_id AND seq IS NULL ORDER BY id LIMIT :limit"
    ") AS s WHERE outbox.id = s.id RETURNING outbox.seq"
)


async def vacuum(db: Database) -> None:
    """VACUUM `outbox` (PostgreSQL; nothing on SQLite), outside any transaction.

    Numbering takes the first unnumbered events through `ix_outbox_program_unsequenced`
    (partial, `seq IS NULL`). A numbered event leaves its entry there, dead, until the table is
    vacuumed, and every later step walks those entries again: with a backlog of an import of a
    million members (three million events) a step's cost grew with what was numbered before
    (11 ms to 266 ms a step over 600,000 events; 415 µs of CPU an event at 1,000,000 members,
    docs/benchmarks.md). Autovacuum comes late for a burst, or never where it is off; the
    worker calls this while a backlog lasts (`worker.VACUUM_EVERY_SECONDS`). It reads the
    pages changed since the last VACUUM and each of the table's indexes."""
    if db.write_engine.dialect.name != "postgresql":
        return
    async with db.write_engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text("VACUUM outbox"))


async def sequence_pending(session: AsyncSession, program_id: int, *, limit: int = 5000) -> int:
    """Give committed, unsequenced events the next feed positions, in id order.

    Runs under the program row's lock, so positions only grow: an event committed after a
    reader saw position N always gets a position above N. One `UPDATE … FROM` numbers them
    all (not a statement per event). The delivery planner numbers the same way on PostgreSQL,
    within its own statement (`planning._PG_NUMBER_AND_PICK`), under the same lock.
    """
    q = select(_programs.c.feed_seq).where(_programs.c.id == program_id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    last = int((await session.execute(q)).scalar_one())
    given = (
        await session.execute(_SEQUENCE, {"last": last, "program_id": program_id, "limit": limit})
    ).all()
    if not given:
        return last
    new_last = last + len(given)
    await session.execute(
        update(_programs).where(_programs.c.id == program_id).values(feed_seq=new_last)
    )
    return new_last


async def read_feed(
    session: AsyncSession, program_id: int, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """Events with a feed position above `after`, oldest first."""
    rows = (
        (
            await session.execute(
                select(_outbox)
                .where(_outbox.c.program_id == program_id, _outbox.c.seq > after)
                .order_by(_outbox.c.seq)
                .limit(limit)
            )
        )
        .mappings()
        .all()
    )
    return [
        {
            "id": r["seq"],
            "type": r["type"],
            "member_id": r["member_id"],
            "data": r["payload"],
            "created_at": clock.as_utc(r["created_at"]).isoformat(),
        }
        for r in rows
    ]


@dataclass(frozen=True)
class MemberEvent:
    """One domain event about a member, as written to the outbox."""

    id: int
    type: str
    payload: dict[str, Any]
    created_at: datetime


async def for_member(
    session: AsyncSession, program_id: int, member_public_id: str, *, limit: int = 50
) -> list[MemberEvent]:
    """The member's latest domain events, newest first, sequenced by the feed or not yet.

    Only events written with the member's public id are found; events about a coupon or a
    referral carry none.
    """
    rows = await session.execute(
        select(_outbox.c.id, _outbox.c.type, _outbox.c.payload, _outbox.c.created_at)
        .where(_outbox.c.program_id == program_id, _outbox.c.member_id == member_public_id)
        .order_by(_outbox.c.id.desc())
        .limit(limit)
    )
    return [
        MemberEvent(
            id=r.id,
            type=r.type,
            payload=r.payload if isinstance(r.payload, dict) else {},
            created_at=clock.as_utc(r.created_at),
        )
        for r in rows
    ]
