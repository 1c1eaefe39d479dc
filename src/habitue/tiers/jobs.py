"""The tiers' periodic work: close qualification periods and end grace periods."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, table_of
from habitue.programs import service as programs_service
from habitue.tiers import evaluate, periods, rebuild
from habitue.tiers import service as tiers_service
from habitue.tiers.evaluate import PassResult
from habitue.tiers.models import TierLadder, TierStatus

_ladders = table_of(TierLadder)
_status = table_of(TierStatus)


async def run_evaluation(db: Database, code: str) -> PassResult:
    """Close every period of a program that ended by today, oldest first, each in its own
    transaction, ending grace periods as they fall due; running it again does nothing."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        tiers_service.forget(program.id)
        ladder = await tiers_service.load_ladder(session, program.id)
        closed_through = (
            await session.execute(
                select(_ladders.c.closed_through).where(_ladders.c.program_id == program.id)
            )
        ).scalar()
    if ladder is None or closed_through is None:
        return PassResult()
    now = clock.now()
    today = periods.local_date(now, program.timezone)
    total = PassResult()

    async def grace(day: date) -> PassResult:
        async def work(session: AsyncSession) -> PassResult:
            return await evaluate.end_grace(session, program, ladder, today=day, now=now)

        return await db.write(work)

    ends = periods.closings(ladder.window, closed_through, today)
    if ladder.window.kind == periods.ANNIVERSARY and ends:
        async with db.read() as session:
            anchors = set(
                (
                    await session.execute(
                        select(_status.c.anchor_md)
                        .where(_status.c.program_id == program.id)
                        .distinct()
                    )
                ).scalars()
            )
        ends = [d for d in ends if d.month * 100 + d.day in anchors]
    for end in ends:

        async def close(session: AsyncSession, end: date = end) -> PassResult:
            return await evaluate.close_pass(session, program, ladder, end=end, now=now)

        total += await grace(end)
        total += await db.write(close)
    total += await grace(today)

    async def bump(session: AsyncSession) -> None:
        # Days on which nobody's anniversary fell are closed too (nothing to write for them).
        await session.execute(
            update(_ladders)
            .where(_ladders.c.program_id == program.id, _ladders.c.closed_through < today)
            .values(closed_through=today)
        )

    await db.write(bump)
    return total


async def run_rebuild(db: Database, code: str) -> rebuild.RebuildResult:
    """Recompute a program's qualification counters of the current period from its events and
    apply the upgrades they earn (one transaction; running it again changes nothing)."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    tiers_service.forget(program.id)

    async def work(session: AsyncSession) -> rebuild.RebuildResult:
        return await rebuild.rebuild(session, program)

    return await db.write(work)
