"""Guessing protection: failed coupon lookups drain buckets per key, per member and per address.

The buckets are the application's rate limiter's (`habitue.ratelimit`: in the process, or in
Redis when configured), at `HABITUE_RATE_COUPON_MISSES` (10 at once, then 10 a minute). Every
failed or refused lookup is logged to `coupon_attempts` in a unit of work of its own (the
request's own work has rolled back).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import ratelimit
from habitue.db import Database
from habitue.errors import RateLimited
from habitue.programs.service import Principal, ProgramInfo
from habitue.rewards import coupons
from habitue.rewards.errors import CouponLookupFailed

T = TypeVar("T")


def _buckets(
    request: Request, program: ProgramInfo, principal: Principal, member: str | None
) -> list[ratelimit.Bucket]:
    rate = ratelimit.limits_of(request).coupon_misses
    at = f"coupon:{program.id}"
    buckets = [
        ratelimit.Bucket(rate, f"{at}:key:{principal.program_id}:{principal.name}"),
        ratelimit.Bucket(rate, f"{at}:addr:{ratelimit.client_address(request)}"),
    ]
    if member is not None:
        buckets.append(ratelimit.Bucket(rate, f"{at}:member:{member}"))
    return buckets


async def guarded(
    request: Request,
    db: Database,
    program: ProgramInfo,
    *,
    principal: Principal,
    member: str | None,
    code: str,
    run: Callable[[], Awaitable[T]],
) -> T:
    """Run a coupon lookup unless a bucket is empty; a failed lookup costs one token."""
    try:
        async with ratelimit.failures_of(
            ratelimit.limiter_of(request),
            _buckets(request, program, principal, member),
            "failed coupon lookups",
            failures=(CouponLookupFailed,),
        ):
            return await run()
    except RateLimited:
        await _log(db, program, principal.name, member, code, "rate-limited")
        raise
    except CouponLookupFailed as exc:
        await _log(db, program, principal.name, member, code, exc.type)
        raise


async def _log(
    db: Database, program: ProgramInfo, principal: str, member: str | None, code: str, outcome: str
) -> None:
    async def work(session: AsyncSession) -> None:
        await coupons.log_attempt(
            session, program, principal=principal, member=member, code_tried=code, outcome=outcome
        )

    await db.write(work)


@contextlib.asynccontextmanager
async def basket_lookups(
    request: Request, program: ProgramInfo, *, principal: Principal, member: str | None
) -> AsyncIterator[ratelimit.Attempt]:
    """A basket's coupon codes (`baskets/price` and `confirm`): refused with `RateLimited` when
    a bucket of `guarded` is empty; `fail()` (a code that named no coupon) costs one token."""
    async with ratelimit.failures_of(
        ratelimit.limiter_of(request),
        _buckets(request, program, principal, member),
        "failed coupon lookups",
    ) as attempt:
        yield attempt
