"""A member's tier as read: its benefits, progress, history and guarantee."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.errors import ValidationFailed
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.tiers import periods
from habitue.tiers.kinds import TierChangeReason
from habitue.tiers.ladder import TierDef, _history, _status, _value_out, load_ladder, require_ladder
from habitue.tiers.movement import (
    _change,
    _enrolled_local,
    _ensure_status,
    _metric,
    _status_row,
    current_rank,
)
from habitue.tiers.schemas import (
    GuaranteeRead,
    GuaranteeWrite,
    HistoryRead,
    TierProgress,
)


async def tier_benefits(
    session: AsyncSession, program: ProgramInfo, member_id: int
) -> TierDef | None:
    """The member's current tier (None without a ladder or a tier)."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return None
    rank = await current_rank(session, ladder, member_id)
    return ladder.tiers[rank] if 0 <= rank < len(ladder.tiers) else None


def _closes_at(program: ProgramInfo, day: date) -> datetime:
    return datetime.combine(day, dtime(0), tzinfo=ZoneInfo(program.timezone))


async def progress(session: AsyncSession, program: ProgramInfo, member: MemberRef) -> TierProgress:
    """Current tier, metric so far, what remains to the next tier and to keep this one."""
    ladder = await require_ladder(session, program)
    today = periods.local_date(clock.now(), program.timezone)
    status = await _status_row(session, member.id, lock=False)
    enrolled = _enrolled_local(member, program)
    start, end = periods.period_of(ladder.window, enrolled, today)
    value = await _metric(session, member.id, start, end)
    rank = ladder.base_rank if status is None else int(status["rank"])
    tier = ladder.tiers[rank] if rank >= 0 else None
    nxt = ladder.tiers[rank + 1] if rank + 1 < len(ladder.tiers) else None
    guaranteed = None
    if status is not None and status["guaranteed_until"] is not None:
        code = ladder.code(status["guaranteed_rank"])
        if code is not None and status["guaranteed_until"] >= today:
            guaranteed = GuaranteeRead(tier=code, until=status["guaranteed_until"])
    return TierProgress(
        member_id=member.public_id,
        tier=tier.code if tier else None,
        tier_name=tier.name if tier else None,
        rank=rank if rank >= 0 else None,
        metric=ladder.metric,
        value=_value_out(ladder, program, value),
        next_tier=nxt.code if nxt else None,
        to_next=_value_out(ladder, program, max(nxt.threshold - value, 0)) if nxt else None,
        to_keep=_value_out(ladder, program, max(tier.threshold - value, 0)) if tier else None,
        period_start=start,
        period_end=end - timedelta(days=1),
        closes_at=_closes_at(program, end),
        grace_until=status["grace_until"] if status is not None else None,
        guaranteed=guaranteed,
    )


async def history(session: AsyncSession, member: MemberRef) -> list[HistoryRead]:
    """The member's tier changes, newest first."""
    rows = (
        await session.execute(
            select(_history)
            .where(_history.c.member_id == member.id)
            .order_by(_history.c.id.desc())
            .limit(200)
        )
    ).mappings()
    return [
        HistoryRead(
            from_tier=r["from_tier"],
            to_tier=r["to_tier"],
            reason=r["reason"],
            metric_value=r["metric_value"],
            created_at=clock.as_utc(r["created_at"]),
        )
        for r in rows
    ]


async def guarantee(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, data: GuaranteeWrite
) -> TierProgress:
    """Hold the member at least at a tier until a date; raises them to it at once if below."""
    ladder = await require_ladder(session, program)
    rank = ladder.rank_of(data.tier)
    now = clock.now()
    today = periods.local_date(now, program.timezone)
    if data.until < today:
        raise ValidationFailed("until", "is in the past")
    status = await _ensure_status(session, program, ladder, member)
    current = int(status["rank"])
    values: dict[str, Any] = {
        "guaranteed_rank": rank,
        "guaranteed_until": data.until,
        "updated_at": now,
    }
    if rank > current:
        values.update(rank=rank, grace_until=None, grace_rank=None)
    elif status["grace_rank"] is not None and rank >= current:
        values.update(grace_until=None, grace_rank=None)
    await session.execute(update(_status).where(_status.c.member_id == member.id).values(values))
    if rank > current:
        await _change(
            session,
            program,
            ladder,
            member_id=member.id,
            public_id=member.public_id,
            old=current,
            new=rank,
            reason=TierChangeReason.GUARANTEE,
            metric_value=None,
            now=now,
            extra={"until": data.until.isoformat()},
        )
    return await progress(session, program, member)
