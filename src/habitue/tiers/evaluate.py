"""Period-end evaluation: close qualification periods and downgrade, in set-based SQL.

A pass closes, for every member of a program at once, the periods that end on one day `end`
(1 January for calendar years, the 1st of each month for rolling windows, and for anniversary
years the members whose anniversary is `end`). It sums each member's buckets over the closing
period and keeps or raises the tier the metric earns, or moves it down one step (never below a
valid guarantee or the base tier), or, with a grace period, schedules that step for
`end + grace days`. Only the members whose status changes are written (history, `tier.changed`
in the outbox, `members.tier`, the status row); the ladder's `closed_through` moves to `end` in
the same transaction, so a pass runs once (idempotent), and a program whose periods were missed
catches up one period, and at most one step down, at a time. `end_grace` applies the
downgrades whose grace ran out.

Every statement is INSERT … SELECT or UPDATE … FROM through a staging table, on PostgreSQL and
SQLite alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    String,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from habitue.db import dialect_name, table_of
from habitue.members.models import Member
from habitue.messaging.models import OutboxEvent
from habitue.programs.service import ProgramInfo
from habitue.tiers import periods
from habitue.tiers.kinds import TierChangeReason
from habitue.tiers.models import (
    TierBucket,
    TierEvalStage,
    TierHistory,
    TierLadder,
    TierStatus,
)
from habitue.tiers.service import Ladder

_status = table_of(TierStatus)
_ladders = table_of(TierLadder)
_buckets = table_of(TierBucket)
_stage = table_of(TierEvalStage)
_history = table_of(TierHistory)
_members = table_of(Member)
_outbox = table_of(OutboxEvent)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did: periods closed, members moved down, downgrades put in grace."""

    closed: int = 0
    downgraded: int = 0
    graced: int = 0
    grace_ended: int = 0

    def __add__(self, other: PassResult) -> PassResult:
        return PassResult(
            self.closed + other.closed,
            self.downgraded + other.downgraded,
            self.graced + other.graced,
            self.grace_ended + other.grace_ended,
        )


def _greatest(dialect: str, *args: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.greatest(*args)
    return func.max(*args)


def _json_object(dialect: str, *pairs: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.json_build_object(*pairs)
    return func.json_object(*pairs)


def _code_of(ladder: Ladder, rank: Any) -> ColumnElement[Any]:
    """A rank as its tier code, in SQL (NULL below the ladder)."""
    return case(
        *[(rank == t.rank, literal(t.code, String)) for t in ladder.tiers],
        else_=literal(None, String),
    )


async def _apply_stage(
    session: AsyncSession,
    program: ProgramInfo,
    ladder: Ladder,
    *,
    reason: TierChangeReason,
    now: datetime,
    status_values: dict[str, Any],
) -> None:
    """History, outbox and members.tier for the staged changes, then the status rows."""
    dialect = dialect_name(session)
    st = _stage
    from_code, to_code = _code_of(ladder, st.c.old_rank), _code_of(ladder, st.c.new_rank)
    changed = and_(st.c.program_id == program.id, st.c.new_rank != st.c.old_rank)
    at = literal(now, DateTime(timezone=True))
    await session.execute(
        insert(_history).from_select(
            [
                "program_id",
                "member_id",
                "from_rank",
                "to_rank",
                "from_tier",
                "to_tier",
                "reason",
                "metric_value",
                "created_at",
            ],
            select(
                st.c.program_id,
                st.c.member_id,
                st.c.old_rank,
                st.c.new_rank,
                from_code,
                to_code,
                literal(str(reason), String),
                st.c.metric,
                at,
            )
            .select_from(st)
            .where(changed),
        )
    )
    payload = _json_object(
        dialect,
        literal("member_id", String),
        _members.c.public_id,
        literal("from", String),
        from_code,
        literal("to", String),
        to_code,
        literal("direction", String),
        case((st.c.new_rank > st.c.old_rank, literal("up", String)), else_=literal("down", String)),
        literal("reason", String),
        literal(str(reason), String),
    )
    await session.execute(
        insert(_outbox).from_select(
            ["program_id", "type", "member_id", "payload", "created_at"],
            select(
                st.c.program_id,
                literal("tier.changed", String),
                _members.c.public_id,
                payload,
                at,
            )
            .select_from(st.join(_members, _members.c.id == st.c.member_id))
            .where(changed),
        )
    )
    await session.execute(
        update(_members)
        .where(_members.c.id == st.c.member_id, changed)
        .values(tier=to_code)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(_status)
        .where(_status.c.member_id == st.c.member_id, st.c.program_id == program.id)
        .values(rank=st.c.new_rank, updated_at=at, **status_values)
        .execution_options(synchronize_session=False)
    )


async def _counts(session: AsyncSession, program_id: int) -> tuple[int, int, int]:
    st = _stage
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((st.c.new_rank < st.c.old_rank, 1), else_=0)), 0),
                func.coalesce(func.sum(st.c.graced), 0),
            ).where(st.c.program_id == program_id)
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def close_pass(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, *, end: date, now: datetime
) -> PassResult:
    """Close, for every member at once, the periods that end on `end` (once: the ladder's
    `closed_through` moves to `end` in the same transaction)."""
    dialect = dialect_name(session)
    s, b, st = _status, _buckets, _stage
    q = select(_ladders.c.closed_through).where(_ladders.c.program_id == program.id)
    if dialect == "postgresql":
        q = q.with_for_update()
    closed_through = (await session.execute(q)).scalar_one()
    if closed_through >= end:
        return PassResult()
    start, _ = periods.closing_window(ladder.window, end)
    await session.execute(delete(st).where(st.c.program_id == program.id))
    members = [s.c.program_id == program.id, s.c.since < end]
    if ladder.window.kind == periods.ANNIVERSARY:
        members.append(s.c.anchor_md == end.month * 100 + end.day)
    agg = (
        select(
            s.c.member_id,
            s.c.rank.label("old_rank"),
            s.c.grace_until,
            s.c.guaranteed_rank,
            s.c.guaranteed_until,
            func.coalesce(func.sum(b.c.value), 0).label("metric"),
        )
        .select_from(
            s.outerjoin(
                b,
                and_(b.c.member_id == s.c.member_id, b.c.bucket >= start, b.c.bucket < end),
            )
        )
        .where(*members)
        .group_by(
            s.c.member_id, s.c.rank, s.c.grace_until, s.c.guaranteed_rank, s.c.guaranteed_until
        )
        .subquery("agg")
    )
    earned: ColumnElement[Any] = case(
        *[(agg.c.metric >= t.threshold, t.rank) for t in reversed(ladder.tiers)],
        else_=-1,
    )
    guaranteed = case(
        (
            and_(agg.c.guaranteed_until.is_not(None), agg.c.guaranteed_until >= end),
            agg.c.guaranteed_rank,
        ),
        else_=-1,
    )
    l2 = select(
        agg.c.member_id,
        agg.c.old_rank,
        agg.c.metric,
        agg.c.grace_until,
        earned.label("earned"),
        _greatest(
            dialect, agg.c.old_rank - 1, earned, literal(ladder.base_rank, Integer), guaranteed
        ).label("floor"),
    ).subquery("l2")
    whens: list[tuple[Any, Any]] = [
        (l2.c.earned >= l2.c.old_rank, l2.c.earned),
        (l2.c.floor >= l2.c.old_rank, l2.c.old_rank),
    ]
    graced: Any = literal(0, Integer)
    if ladder.grace_days > 0:
        whens.append((l2.c.grace_until.is_(None), l2.c.old_rank))
        graced = case(
            (
                and_(
                    l2.c.earned < l2.c.old_rank,
                    l2.c.floor < l2.c.old_rank,
                    l2.c.grace_until.is_(None),
                ),
                1,
            ),
            else_=0,
        )
    l3 = select(
        l2.c.member_id,
        l2.c.old_rank,
        case(*whens, else_=l2.c.floor).label("new_rank"),
        l2.c.metric,
        graced.label("graced"),
        l2.c.floor,
        l2.c.grace_until,
    ).subquery("l3")
    # Only the members whose status changes are staged and written.
    await session.execute(
        insert(st).from_select(
            ["program_id", "member_id", "old_rank", "new_rank", "metric", "graced", "grace_rank"],
            select(
                literal(program.id, Integer),
                l3.c.member_id,
                l3.c.old_rank,
                l3.c.new_rank,
                l3.c.metric,
                l3.c.graced,
                l3.c.floor,
            ).where(
                or_(
                    l3.c.new_rank != l3.c.old_rank,
                    l3.c.graced == 1,
                    l3.c.grace_until.is_not(None),
                )
            ),
        )
    )
    closed = (
        await session.execute(select(func.count()).select_from(s).where(*members))
    ).scalar_one()
    staged, down, in_grace = await _counts(session, program.id)
    if staged:
        grace_end = end + timedelta(days=ladder.grace_days)
        await _apply_stage(
            session,
            program,
            ladder,
            reason=TierChangeReason.PERIOD_END,
            now=now,
            status_values={
                "grace_until": case((st.c.graced == 1, literal(grace_end, Date)), else_=None),
                "grace_rank": case((st.c.graced == 1, st.c.grace_rank), else_=None),
            },
        )
        await session.execute(delete(st).where(st.c.program_id == program.id))
    await session.execute(
        update(_ladders).where(_ladders.c.program_id == program.id).values(closed_through=end)
    )
    return PassResult(closed=int(closed), downgraded=down, graced=in_grace)


async def end_grace(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, *, today: date, now: datetime
) -> PassResult:
    """Apply the downgrades whose grace period ended on or before `today`."""
    dialect = dialect_name(session)
    s, st = _status, _stage
    if dialect == "postgresql":  # one evaluator per program at a time (the staging rows)
        await session.execute(
            select(_ladders.c.program_id)
            .where(_ladders.c.program_id == program.id)
            .with_for_update()
        )
    await session.execute(delete(st).where(st.c.program_id == program.id))
    guaranteed = case(
        (
            and_(s.c.guaranteed_until.is_not(None), s.c.guaranteed_until >= today),
            s.c.guaranteed_rank,
        ),
        else_=-1,
    )
    target = _greatest(dialect, s.c.grace_rank, guaranteed, literal(ladder.base_rank, Integer))
    await session.execute(
        insert(st).from_select(
            ["program_id", "member_id", "old_rank", "new_rank", "metric", "graced"],
            select(
                literal(program.id, Integer),
                s.c.member_id,
                s.c.rank,
                case((target < s.c.rank, target), else_=s.c.rank),
                literal(0, Integer),
                literal(0, Integer),
            ).where(
                s.c.program_id == program.id,
                s.c.grace_until.is_not(None),
                s.c.grace_until <= today,
            ),
        )
    )
    closed, down, _ = await _counts(session, program.id)
    if closed:
        await _apply_stage(
            session,
            program,
            ladder,
            reason=TierChangeReason.GRACE_ENDED,
            now=now,
            status_values={"grace_until": None, "grace_rank": None},
        )
        await session.execute(delete(st).where(st.c.program_id == program.id))
    return PassResult(downgraded=down, grace_ended=closed)
