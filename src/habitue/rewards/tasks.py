"""Periodic work of the rewards room: expire coupons, pay referral rewards."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.rewards import coupons, referrals


async def run_coupon_expiry(db: Database, code: str) -> int:
    """Expire the program's coupons past their date; returns how many."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()

    async def expire(session: AsyncSession) -> int:
        return await coupons.expire_due(session, program, now=now)

    return await db.write(expire)


async def run_referral_payouts(db: Database, code: str) -> int:
    """Reward both sides of every referral whose return window closed unrefunded, in
    batches, each its own transaction; returns how many referrals were paid. Safe to run
    twice: a paid referral is `rewarded` and never paid again."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()
    paid = 0
    while True:

        async def release(session: AsyncSession) -> int:
            return await referrals.release_due(session, program, now=now)

        n = await db.write(release)
        paid += n
        if n == 0:
            return paid


async def run_for_program(db: Database, code: str) -> tuple[int, int]:
    """Expire due coupons and reward due referrals; returns (coupons expired, referrals paid)."""
    return await run_coupon_expiry(db, code), await run_referral_payouts(db, code)
