"""Guessing protection: failed coupon lookups drain token buckets per key and per member.

In-process buckets: with several workers each holds its own, so the effective budget is the
per-process budget times the number of workers. Every failed or refused lookup is logged to
`coupon_attempts` in a unit of work of its own (the request's own work has rolled back).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.errors import RateLimited
from habitue.programs.service import ProgramInfo
from habitue.rewards import coupons
from habitue.rewards.errors import CouponLookupFailed

T = TypeVar("T")

CAPACITY = 10.0  # failed lookups allowed in a burst
REFILL_PER_SECOND = 10.0 / 60.0  # then ten a minute


@dataclass
class _Bucket:
    tokens: float
    at: float


_buckets: dict[tuple[int, str, str], _Bucket] = {}


def reset() -> None:
    """Forget every bucket (tests)."""
    _buckets.clear()


def _level(key: tuple[int, str, str], now: float) -> _Bucket:
    b = _buckets.get(key)
    if b is None:
        b = _buckets[key] = _Bucket(CAPACITY, now)
    b.tokens = min(CAPACITY, b.tokens + (now - b.at) * REFILL_PER_SECOND)
    b.at = now
    return b


def _keys(program: ProgramInfo, principal: str, member: str | None) -> list[tuple[int, str, str]]:
    keys = [(program.id, "key", principal)]
    if member is not None:
        keys.append((program.id, "member", member))
    return keys


async def guarded(
    db: Database,
    program: ProgramInfo,
    *,
    principal: str,
    member: str | None,
    code: str,
    run: Callable[[], Awaitable[T]],
) -> T:
    """Run a coupon lookup unless a bucket is empty; a failed lookup costs one token."""
    keys = _keys(program, principal, member)
    now = time.monotonic()
    if any(_level(k, now).tokens < 1.0 for k in keys):
        await _log(db, program, principal, member, code, "rate-limited")
        raise RateLimited("too many failed coupon lookups; try again in a minute")
    try:
        return await run()
    except CouponLookupFailed as exc:
        for k in keys:
            _level(k, now).tokens -= 1.0
        await _log(db, program, principal, member, code, exc.type)
        raise


async def _log(
    db: Database, program: ProgramInfo, principal: str, member: str | None, code: str, outcome: str
) -> None:
    async def work(session: AsyncSession) -> None:
        await coupons.log_attempt(
            session, program, principal=principal, member=member, code_tried=code, outcome=outcome
        )

    await db.write(work)
