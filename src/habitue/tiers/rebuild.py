"""Rebuild members' qualification counters for the current period from the events table.

The bulk CSV import writes events without running the event hooks, so the tiers room never
counted them. `rebuild` recomputes, in set-based SQL, every member's contributions and buckets
of the program's current qualification period from `events` (spend, visits, purchases,
bookings; refunds taken out as the refund hook would), then applies upgrades the way the
after-event hook does (history `qualified`, `members.tier`, `tier.changed` in the outbox, a
member in grace who meets their tier again leaves grace). It never downgrades; running it again
changes nothing.

Tier credits are not in the events table: for a `tier_credits` ladder the buckets are rebuilt
from the contributions the hook recorded (`tier_contributions`), so imported events earn no
credits. Anniversary-year ladders are not supported yet (each member has their own period).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Date,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.errors import HabitueError
from habitue.events.models import Event
from habitue.members.models import Member
from habitue.programs.service import ProgramInfo
from habitue.tiers import periods
from habitue.tiers.evaluate import _apply_stage, _greatest
from habitue.tiers.kinds import TierChangeReason
from habitue.tiers.models import TierBucket, TierContribution, TierEvalStage, TierStatus
from habitue.tiers.service import MONEY_METRIC, Ladder, require_ladder

_events = table_of(Event)
_members = table_of(Member)
_status = table_of(TierStatus)
_buckets = table_of(TierBucket)
_contrib = table_of(TierContribution)
_stage = table_of(TierEvalStage)

_COUNT_TYPES = {"visits": "visit", "purchases": "purchase", "bookings": "booking"}


def cast_result(result: Any) -> CursorResult[Any]:
    return typing.cast(CursorResult[Any], result)


class RebuildUnsupported(HabitueError):
    status = 422
    type = "tier-rebuild-unsupported"
    title = "Tier rebuild not supported"


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: members with a positive metric this period, upgrades, grace left."""

    members: int = 0
    upgraded: int = 0
    left_grace: int = 0


def _instant(day: date, timezone: str) -> datetime:
    """Local midnight of `day` as a UTC instant (how the tables store times)."""
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _bucket_expr(ladder: Ladder, program: ProgramInfo, start: date, end: date) -> Any:
    """The bucket of an event of the current period, in SQL."""
    if ladder.window.kind != periods.ROLLING:
        return literal(start, Date)
    months: list[date] = []
    day = start
    while day < end:
        months.append(day)
        day = periods.add_months(day, 1)
    whens = [
        (_events.c.occurred_at < _instant(periods.add_months(m, 1), program.timezone), m)
        for m in months[:-1]
    ]
    if not whens:
        return literal(months[-1], Date)
    return case(*[(cond, literal(m, Date)) for cond, m in whens], else_=literal(months[-1], Date))


def _amount_expr(session: AsyncSession, ladder: Ladder, program: ProgramInfo) -> Any:
    """What one event adds to the metric (as `tiers.service.metric_amount`), in SQL."""
    if ladder.metric != MONEY_METRIC:
        return literal(1, BigInteger)
    per_point = program.redeem_rate.scaleb(program.currency_exponent)
    spent = _events.c.points_spent
    discount: ColumnElement[Any]
    if per_point == per_point.to_integral_value():
        discount = spent * int(per_point)
    else:  # the current redeem rate, rounded like the till (half away from zero here)
        discount = cast(func.round(spent * literal(float(per_point))), BigInteger)
    return _greatest(
        dialect_name(session), _events.c.total_minor - discount, literal(0, BigInteger)
    )


def _earned(ladder: Ladder, value: Any) -> ColumnElement[Any]:
    """The highest rank `value` reaches (-1: none), in SQL."""
    return case(
        *[(value >= t.threshold, t.rank) for t in reversed(ladder.tiers)],
        else_=-1,
    )


async def _rebuild_contributions(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, start: date, end: date
) -> None:
    lo, hi = _instant(start, program.timezone), _instant(end, program.timezone)
    in_period = and_(
        _events.c.program_id == program.id,
        _events.c.type == (_COUNT_TYPES.get(ladder.metric, "purchase")),
        _events.c.occurred_at >= lo,
        _events.c.occurred_at < hi,
    )
    await session.execute(
        delete(_contrib).where(
            _contrib.c.program_id == program.id,
            or_(
                and_(_contrib.c.bucket >= start, _contrib.c.bucket < end),
                _contrib.c.event_id.in_(select(_events.c.id).where(in_period)),
            ),
        )
    )
    amount = _amount_expr(session, ladder, program)
    reversed_ = case(
        (_events.c.total_minor > 0, amount * _events.c.refunded_minor // _events.c.total_minor),
        else_=literal(0, BigInteger),
    )
    rows = (
        select(
            _events.c.id,
            _events.c.program_id,
            _events.c.member_id,
            _bucket_expr(ladder, program, start, end).label("bucket"),
            amount.label("amount"),
            reversed_.label("reversed"),
        )
        .where(in_period)
        .subquery("ev")
    )
    await session.execute(
        insert(_contrib).from_select(
            ["event_id", "program_id", "member_id", "bucket", "amount", "reversed"],
            select(*rows.c).where(rows.c.amount > 0),
        )
    )


async def _ensure_statuses(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, start: date, end: date
) -> None:
    """Status rows for members who qualify for the first time (anniversary worked out here)."""
    has_value = (
        select(_buckets.c.member_id)
        .where(_buckets.c.member_id == _members.c.id, _buckets.c.bucket >= start)
        .where(_buckets.c.bucket < end, _buckets.c.value > 0)
        .exists()
    )
    no_status = ~select(_status.c.member_id).where(_status.c.member_id == _members.c.id).exists()
    rows = (
        await session.execute(
            select(_members.c.id, _members.c.enrolled_at).where(
                _members.c.program_id == program.id, has_value, no_status
            )
        )
    ).all()
    if not rows:
        return
    now = clock.now()
    today = periods.local_date(now, program.timezone)
    values = [
        {
            "member_id": r.id,
            "program_id": program.id,
            "rank": ladder.base_rank,
            "anchor_md": periods.anchor_md(
                periods.local_date(clock.as_utc(r.enrolled_at), program.timezone)
            ),
            "since": today,
            "updated_at": now,
        }
        for r in rows
    ]
    for i in range(0, len(values), 5000):
        await session.execute(insert(_status), values[i : i + 5000])


async def rebuild(session: AsyncSession, program: ProgramInfo) -> RebuildResult:
    """Recompute the current period's counters from the events and apply upgrades (idempotent)."""
    ladder = await require_ladder(session, program)
    if ladder.window.kind == periods.ANNIVERSARY:
        raise RebuildUnsupported("rebuilding anniversary-year counters is not supported yet")
    now = clock.now()
    today = periods.local_date(now, program.timezone)
    start, end = periods.period_of(ladder.window, today, today)
    if ladder.metric != "tier_credits":
        await _rebuild_contributions(session, program, ladder, start, end)
    in_range = and_(
        _buckets.c.program_id == program.id, _buckets.c.bucket >= start, _buckets.c.bucket < end
    )
    await session.execute(delete(_buckets).where(in_range))
    c = _contrib
    await session.execute(
        insert(_buckets).from_select(
            ["member_id", "bucket", "program_id", "value"],
            select(c.c.member_id, c.c.bucket, c.c.program_id, func.sum(c.c.amount - c.c.reversed))
            .where(c.c.program_id == program.id, c.c.bucket >= start, c.c.bucket < end)
            .group_by(c.c.member_id, c.c.bucket, c.c.program_id),
        )
    )
    await _ensure_statuses(session, program, ladder, start, end)

    s, b, st = _status, _buckets, _stage
    agg = (
        select(b.c.member_id, func.sum(b.c.value).label("metric"))
        .where(in_range)
        .group_by(b.c.member_id)
        .subquery("agg")
    )
    members = int(
        (
            await session.execute(select(func.count()).select_from(agg).where(agg.c.metric > 0))
        ).scalar_one()
    )
    earned = _earned(ladder, agg.c.metric)
    await session.execute(delete(st).where(st.c.program_id == program.id))
    await session.execute(
        insert(st).from_select(
            ["program_id", "member_id", "old_rank", "new_rank", "metric", "graced", "grace_rank"],
            select(
                s.c.program_id,
                s.c.member_id,
                s.c.rank,
                earned,
                agg.c.metric,
                literal(0),
                literal(None, BigInteger),
            )
            .select_from(s.join(agg, agg.c.member_id == s.c.member_id))
            .where(s.c.program_id == program.id, earned > s.c.rank),
        )
    )
    upgraded = int(
        (
            await session.execute(
                select(func.count()).select_from(st).where(st.c.program_id == program.id)
            )
        ).scalar_one()
    )
    if upgraded:
        first_this_period = or_(s.c.upgrade_period_end.is_(None), s.c.upgrade_period_end != end)
        await _apply_stage(
            session,
            program,
            ladder,
            reason=TierChangeReason.QUALIFIED,
            now=now,
            status_values={
                "grace_until": None,
                "grace_rank": None,
                "upgrade_event_id": None,
                "upgrade_from_rank": case(
                    (first_this_period, st.c.old_rank), else_=s.c.upgrade_from_rank
                ),
                "upgrade_period_end": end,
            },
        )
        await session.execute(delete(st).where(st.c.program_id == program.id))
    value = (
        select(func.coalesce(func.sum(b.c.value), 0))
        .where(b.c.member_id == s.c.member_id, b.c.bucket >= start, b.c.bucket < end)
        .scalar_subquery()
    )
    left = await session.execute(
        update(s)
        .where(
            s.c.program_id == program.id,
            s.c.grace_until.is_not(None),
            _earned(ladder, value) >= s.c.rank,
        )
        .values(grace_until=None, grace_rank=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return RebuildResult(
        members=members, upgraded=upgraded, left_grace=int(cast_result(left).rowcount or 0)
    )
