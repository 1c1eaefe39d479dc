"""The club's periodic work: renewals, retries, period-end cancellations, vouchers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs import service as clubs_service
from habitue.clubs.schemas import RenewalRun
from habitue.db import Database
from habitue.programs import service as programs_service


async def run_renewals(db: Database, code: str) -> RenewalRun:
    """Move every due subscription of a program on, each in its own unit of work."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()
    outcomes: list[str] = []
    seen: set[str] = set()
    while True:
        async with db.read() as session:
            due = [
                s
                for s in await clubs_service.due_subscriptions(session, program, now=now)
                if s not in seen
            ]
        if not due:
            return clubs_service.tally(outcomes)
        for sub_id in due:
            seen.add(sub_id)

            async def work(session: AsyncSession, sub_id: str = sub_id) -> str:
                return await clubs_service.renew_one(session, program, sub_id, now=now)

            outcomes.append(await db.write(work))
