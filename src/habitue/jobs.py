"""Periodic work: release pending points, expire lots (and, as rooms land, tier periods)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database
from habitue.ledger import operations
from habitue.programs import service as programs_service
from habitue.settings import Settings

log = structlog.get_logger()


async def _drain(db: Database, step: Callable[[AsyncSession], Awaitable[int]]) -> int:
    total = 0
    while True:
        n = await db.write(step)
        total += n
        if n == 0:
            return total


async def run_expiry(
    db: Database, code: str, *, progress: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """Expire every due lot of a program in batches; returns (member transactions, points)."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()
    members = points = 0
    while True:
        m, p = await db.write(lambda s: operations.expire_program(s, program, now=now))
        if m == 0:
            return members, points
        members += m
        points += p
        if progress:
            progress(m)


async def run_release(db: Database, code: str) -> int:
    """Release every pending lot whose window has closed."""
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
    now = clock.now()
    return await _drain(db, lambda s: operations.release_program(s, program, now=now))


async def run_all(db: Database) -> None:
    async with db.read() as session:
        codes = await programs_service.list_programs(session)
    for code in codes:
        await run_program(db, code)


async def run_program(db: Database, code: str) -> None:
    """Every periodic job of one program, in the scheduler's order."""
    await run_release(db, code)
    await run_expiry(db, code)
    await __import__("habitue.tiers.jobs", fromlist=["x"]).run_evaluation(db, code)  # tiers
    await __import__("habitue.clubs.jobs", fromlist=["x"]).run_renewals(db, code)  # clubs
    await __import__("habitue.rewards.tasks", fromlist=["x"]).run_for_program(db, code)
    await __import__("habitue.analytics.service", fromlist=["x"]).run_scheduled(db, code)


async def purge_idempotency(db: Database, ttl_hours: int) -> int:
    """Delete the Idempotency-Key records older than `ttl_hours`; returns how many."""
    from habitue.events import idempotency

    ttl = timedelta(hours=ttl_hours)
    return await _drain(db, lambda s: idempotency.purge(s, ttl))


async def scheduler(db: Database, settings: Settings) -> None:
    """The server's scheduler: runs the periodic jobs every interval, logging failures."""
    while True:
        try:
            await purge_idempotency(db, settings.idempotency_ttl_hours)
            await run_all(db)
        except Exception:  # a failed run is retried at the next interval
            log.exception("scheduled jobs failed")
        await asyncio.sleep(settings.scheduler_interval_seconds)
