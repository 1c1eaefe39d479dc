"""Periodic work of the rewards room: expire coupons, release referral rewards."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.rewards import coupons, referrals


async def run_for_program(db: Database, code: str) -> tuple[int, int]:
    """Expire due coupons and reward due referrals; returns (coupons expired, referrals paid)."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()

    async def expire(session: AsyncSession) -> int:
        return await coupons.expire_due(session, program, now=now)

    expired = await db.write(expire)
    paid = 0
    while True:

        async def release(session: AsyncSession) -> int:
            return await referrals.release_due(session, program, now=now)

        n = await db.write(release)
        paid += n
        if n == 0:
            return expired, paid
