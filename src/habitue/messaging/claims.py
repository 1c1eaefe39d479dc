"""The delivery worker's hold on deliveries: claiming the due ones, recording what came of them.

**Claim.** Pending deliveries that are due, and the oldest pending one of their `order_key`
(one member on one channel or endpoint), are claimed for `worker_lease_seconds`
(`locked_until`), with `FOR UPDATE SKIP LOCKED` on PostgreSQL so that several workers share
the work and never claim one delivery together. One statement (`UPDATE … WHERE id IN (SELECT
… FOR UPDATE SKIP LOCKED) RETURNING …`) claims and reads the rows.

**Record.** Each attempt and each delivery's new state: `sent`, `skipped` (with the reason),
retried later (exponential back-off with jitter) or, after the retry period, `failed`
(parked). On PostgreSQL one statement whatever the batch (`WITH attempts AS (INSERT … FROM
unnest(…)) UPDATE deliveries … FROM unnest(…)`); on SQLite an `executemany` of each (in
process, no round trips).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, literal, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.messaging.models import Delivery, DeliveryAttempt
from habitue.settings import Settings

_d = table_of(Delivery)
_a = table_of(DeliveryAttempt)

MAX_DELAY_SECONDS = 3600.0


async def claim(session: AsyncSession, *, limit: int, lease_seconds: float) -> list[Row[Any]]:
    """Claim due deliveries, the oldest pending one of each order key only, those due first
    first; their rows, in id order."""
    now = clock.now()
    older = _d.alias("older")
    # `OFFSET 0` keeps the test a subquery run per candidate through `ix_deliveries_order`
    # (order_key, id): flattened into an anti-join, PostgreSQL planned it against a table whose
    # statistics lagged its growth as a scan of every pending row per candidate, quadratic in
    # the backlog (2.4 s to claim 500 of 2,000 in bench/outbox).
    waiting = (
        select(literal(1))
        .where(
            older.c.order_key == _d.c.order_key,
            older.c.status == "pending",
            older.c.id < _d.c.id,
        )
        .correlate(_d)
        .offset(0)
        .exists()
    )
    due = (
        select(_d.c.id)
        .where(
            _d.c.status == "pending",
            _d.c.next_attempt_at <= now,
            or_(_d.c.locked_until.is_(None), _d.c.locked_until < now),
            ~waiting,
        )
        # Due first, in `ix_deliveries_due`'s order (pending rows only): the claim reads about
        # `limit` entries whatever the backlog. In id order it read and sorted every due row
        # (the primary key holds the sent ones too): 0.4 s a claim with 100,000 pending.
        .order_by(_d.c.next_attempt_at, _d.c.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        due = due.with_for_update(skip_locked=True, of=_d)
    rows = (
        await session.execute(
            update(_d)
            .where(_d.c.id.in_(due.scalar_subquery()))
            .values(locked_until=now + timedelta(seconds=lease_seconds))
            .returning(*_d.c),
            execution_options={"synchronize_session": False},
        )
    ).all()
    return sorted(rows, key=lambda r: int(r.id))


async def refresh_statistics(session: AsyncSession) -> None:
    """ANALYZE `deliveries` (PostgreSQL; nothing on SQLite), so that the claim's plan follows
    a backlog that grew faster than autovacuum looks (an import's welcome messages).

    Without statistics the planner takes the pending deliveries for a handful and reads them
    all through a bitmap scan and a sort at every claim: quadratic in the backlog."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("ANALYZE deliveries"))


@dataclass
class Outcome:
    """What one attempt came to. `status`: `sent`, `skipped`, `failed`, `retry` or `defer`
    (not tried: due again at `until`, e.g. the end of quiet hours)."""

    delivery: Any
    status: str
    reason: str | None = None
    attempted: bool = True
    status_code: int | None = None
    duration_ms: int = 0
    until: datetime | None = None


def backoff_seconds(attempts: int, base: float) -> float:
    """The delay after the `attempts`-th failed try: doubling, capped at an hour, with jitter
    (between half and all of it)."""
    delay = min(base * float(2 ** max(0, attempts - 1)), MAX_DELAY_SECONDS)
    jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 (spreads retries, no secret)
    return delay * jitter


_PG_RECORD = text(
    "WITH tried AS ("
    " INSERT INTO delivery_attempts (delivery_id, at, ok, status_code, error, duration_ms)"
    " SELECT t.delivery_id, CAST(:now AS timestamptz), t.ok, t.status_code, t.error,"
    " t.duration_ms FROM unnest("
    "  CAST(:a_ids AS bigint[]), CAST(:a_ok AS boolean[]), CAST(:a_codes AS integer[]),"
    "  CAST(:a_errors AS varchar[]), CAST(:a_ms AS integer[]))"
    "  AS t(delivery_id, ok, status_code, error, duration_ms))"
    " UPDATE deliveries AS d SET status = u.status, reason = u.reason, attempts = u.attempts,"
    " next_attempt_at = u.next_at, sent_at = u.sent_at, locked_until = NULL FROM unnest("
    "  CAST(:ids AS bigint[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[]),"
    "  CAST(:attempts AS integer[]), CAST(:nexts AS timestamptz[]),"
    "  CAST(:sents AS timestamptz[])) AS u(id, status, reason, attempts, next_at, sent_at)"
    " WHERE d.id = u.id"
)


async def record(session: AsyncSession, settings: Settings, outcomes: Sequence[Outcome]) -> None:
    """Write each attempt and each delivery's new state."""
    if not outcomes:
        return
    now = clock.now()
    period = timedelta(hours=settings.retry_period_hours)
    attempts: list[tuple[int, bool, int | None, str | None, int]] = []
    changes: list[tuple[int, str, str | None, int, datetime, datetime | None]] = []
    for o in outcomes:
        d = o.delivery
        n = d.attempts + (1 if o.attempted else 0)
        status, reason, next_at, sent_at = o.status, o.reason, d.next_attempt_at, None
        if o.attempted:
            ok = o.status == "sent"
            error = None if ok else (o.reason or "")[:500]
            attempts.append((d.id, ok, o.status_code, error, o.duration_ms))
        if status == "sent":
            sent_at = now
        elif status == "defer":
            status, next_at = "pending", o.until or now
        elif status == "retry":
            next_at = now + timedelta(seconds=backoff_seconds(n, settings.retry_base_seconds))
            if next_at - clock.as_utc(d.retry_from) > period:
                status = "failed"
                reason = f"gave up after {n} attempts: {o.reason}"[:500]
            else:
                status = "pending"
        changes.append((d.id, status, reason, n, next_at, sent_at))
    if dialect_name(session) == "postgresql":
        a_cols: list[Sequence[Any]] = list(zip(*attempts, strict=True)) or [()] * 5
        c_cols: list[Sequence[Any]] = list(zip(*changes, strict=True))
        params: dict[str, Any] = {"now": now}
        tried = ("a_ids", "a_ok", "a_codes", "a_errors", "a_ms")
        params.update({k: list(v) for k, v in zip(tried, a_cols, strict=True)})
        names = ("ids", "statuses", "reasons", "attempts", "nexts", "sents")
        params.update({k: list(v) for k, v in zip(names, c_cols, strict=True)})
        await session.execute(_PG_RECORD, params)
        return
    if attempts:
        await session.execute(
            insert(_a),
            [
                {
                    "delivery_id": i,
                    "at": now,
                    "ok": ok,
                    "status_code": code,
                    "error": error,
                    "duration_ms": ms,
                }
                for i, ok, code, error, ms in attempts
            ],
        )
    await session.execute(
        update(_d)
        .where(_d.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            reason=bindparam("b_reason"),
            attempts=bindparam("b_attempts"),
            next_attempt_at=bindparam("b_next"),
            sent_at=bindparam("b_sent"),
            locked_until=None,
        ),
        [
            {
                "b_id": i,
                "b_status": status,
                "b_reason": reason,
                "b_attempts": n,
                "b_next": next_at,
                "b_sent": sent_at,
            }
            for i, status, reason, n, next_at, sent_at in changes
        ],
        execution_options={"synchronize_session": False},
    )


def retry_values() -> dict[str, Any]:
    """A parked (or pending) delivery made due now, with a fresh retry period."""
    now = clock.now()
    return {
        "status": "pending",
        "reason": None,
        "next_attempt_at": now,
        "retry_from": now,
        "locked_until": None,
    }
