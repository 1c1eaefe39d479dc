"""Expiry and pending release of a program's points, with their domain events.

A member's spends and adjustments are the members room's (`members.points`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import table_of
from habitue.ledger import service as ledger_service
from habitue.members.models import Member
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo

_members = table_of(Member)


async def expire_program(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 5000
) -> tuple[int, int]:
    """Expire a batch of due lots; returns (members touched, points expired)."""
    done = await ledger_service.expire_due(session, program, now=now, limit=limit)
    if not done:
        return 0, 0
    ids = [m for m, _, _ in done]
    publics = dict(
        (
            await session.execute(
                select(_members.c.id, _members.c.public_id).where(_members.c.id.in_(ids))
            )
        ).all()
    )
    await outbox.emit_many(
        session,
        [
            outbox.outbox_row(
                program.id,
                "points.expired",
                publics[m],
                {"member_id": publics[m], "points": pts, "transaction_id": txn},
            )
            for m, pts, txn in done
        ],
    )
    return len(set(ids)), sum(p for _, p, _ in done)


async def release_program(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 1000
) -> int:
    """Release a batch of pending points whose return window has closed."""
    return await ledger_service.release_due(session, program, now=now, limit=limit)
