"""How events and refunds move a member's tier credits and tier."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo
from habitue.rules.types import Decision, EventInput
from habitue.tiers import periods
from habitue.tiers.kinds import TierChangeReason, TierEffectKind
from habitue.tiers.ladder import (
    Ladder,
    _buckets,
    _contrib,
    _history,
    _members,
    _status,
    _value_out,
    load_ladder,
)
from habitue.tiers.qualify import metric_amount
from habitue.tiers.transition import Cause, Status, Transition, transition


async def _add_to_bucket(
    session: AsyncSession, program_id: int, member_id: int, bucket: date, amount: int
) -> None:
    values = {"program_id": program_id, "member_id": member_id, "bucket": bucket, "value": amount}
    if dialect_name(session) == "postgresql":
        pg = postgresql.insert(_buckets).values(values)
        await session.execute(
            pg.on_conflict_do_update(
                index_elements=[_buckets.c.member_id, _buckets.c.bucket],
                set_={"value": _buckets.c.value + pg.excluded.value},
            )
        )
    else:
        lite = sqlite.insert(_buckets).values(values)
        await session.execute(
            lite.on_conflict_do_update(
                index_elements=[_buckets.c.member_id, _buckets.c.bucket],
                set_={"value": _buckets.c.value + lite.excluded.value},
            )
        )


async def _metric(session: AsyncSession, member_id: int, start: date, end: date) -> int:
    value = (
        await session.execute(
            select(func.coalesce(func.sum(_buckets.c.value), 0)).where(
                _buckets.c.member_id == member_id,
                _buckets.c.bucket >= start,
                _buckets.c.bucket < end,
            )
        )
    ).scalar_one()
    return int(value)


async def _status_row(session: AsyncSession, member_id: int, *, lock: bool) -> Any:
    q = select(_status).where(_status.c.member_id == member_id)
    if lock and dialect_name(session) == "postgresql":
        q = q.with_for_update()
    return (await session.execute(q)).mappings().first()


def _enrolled_local(member: MemberRef, program: ProgramInfo) -> date:
    return periods.local_date(member.enrolled_at, program.timezone)


async def _ensure_status(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, member: MemberRef
) -> Any:
    row = await _status_row(session, member.id, lock=True)
    if row is not None:
        return row
    await session.execute(
        insert(_status).values(
            member_id=member.id,
            program_id=program.id,
            rank=ladder.base_rank,
            anchor_md=periods.anchor_md(_enrolled_local(member, program)),
            since=periods.local_date(clock.now(), program.timezone),
            updated_at=clock.now(),
        )
    )
    return await _status_row(session, member.id, lock=False)


async def _change(
    session: AsyncSession,
    program: ProgramInfo,
    ladder: Ladder,
    *,
    member_id: int,
    public_id: str,
    old: int,
    new: int,
    reason: TierChangeReason,
    metric_value: int | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record one tier change: members.tier, history, and `tier.changed` in the outbox."""
    from_code, to_code = ladder.code(old), ladder.code(new)
    await session.execute(update(_members).where(_members.c.id == member_id).values(tier=to_code))
    await session.execute(
        insert(_history).values(
            program_id=program.id,
            member_id=member_id,
            from_rank=old,
            to_rank=new,
            from_tier=from_code,
            to_tier=to_code,
            reason=str(reason),
            metric_value=metric_value,
            detail=extra or {},
            created_at=now,
        )
    )
    payload = {
        "member_id": public_id,
        "from": from_code,
        "to": to_code,
        "direction": "up" if new > old else "down",
        "reason": str(reason),
    }
    await outbox.emit(
        session, program_id=program.id, type_="tier.changed", member_id=public_id, payload=payload
    )
    return payload


async def on_event(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    *,
    event: EventInput,
    event_id: str,
    decision: Decision,
    now: datetime,
) -> list[dict[str, Any]]:
    """Count the event toward the member's metric and upgrade at once when a threshold is met."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return []
    amount = metric_amount(ladder.metric, event, decision)
    if amount <= 0:
        return []
    enrolled = _enrolled_local(member, program)
    bucket = periods.bucket_of(
        ladder.window, enrolled, periods.local_date(event.occurred_at, program.timezone)
    )
    today = periods.local_date(now, program.timezone)
    status = await _ensure_status(session, program, ladder, member)
    await _add_to_bucket(session, program.id, member.id, bucket, amount)
    await session.execute(
        insert(_contrib).values(
            event_id=event_id,
            program_id=program.id,
            member_id=member.id,
            bucket=bucket,
            amount=amount,
            reversed=0,
        )
    )
    start, end = periods.period_of(ladder.window, enrolled, today)
    value = await _metric(session, member.id, start, end)
    move = transition(
        Status.of(status), ladder, cause=Cause.EVENT, metric=value, today=today,
        period_end=end, event_id=event_id,
    )  # fmt: skip
    effect = await _write(
        session, program, ladder, member, move, metric=value, now=now,
        extra={"event_id": event_id},
    )  # fmt: skip
    return [effect] if effect is not None else []


async def on_refund(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    *,
    purchase_id: str,
    purchase_total_minor: int,
    refunded_total_minor: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Take a refunded purchase's share out of the metric; reverse this period's upgrade
    when the metric falls back below the tier's threshold."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return []
    row = (
        (await session.execute(select(_contrib).where(_contrib.c.event_id == purchase_id)))
        .mappings()
        .first()
    )
    if row is None:
        return []
    amount = int(row["amount"])
    target = amount * refunded_total_minor // purchase_total_minor if purchase_total_minor else 0
    delta = target - int(row["reversed"])
    if delta <= 0:
        return []
    await session.execute(
        update(_contrib).where(_contrib.c.event_id == purchase_id).values(reversed=target)
    )
    await session.execute(
        update(_buckets)
        .where(_buckets.c.member_id == member.id, _buckets.c.bucket == row["bucket"])
        .values(value=_buckets.c.value - delta)
    )
    row = await _status_row(session, member.id, lock=True)
    if row is None:
        return []
    status = Status.of(row)
    today = periods.local_date(now, program.timezone)
    start, end = periods.period_of(ladder.window, _enrolled_local(member, program), today)
    if not status.upgraded_in(end):
        return []  # what `transition` would say, without reading the metric
    value = await _metric(session, member.id, start, end)
    move = transition(
        status, ladder, cause=Cause.REFUND, metric=value, today=today, period_end=end
    )
    effect = await _write(
        session, program, ladder, member, move, metric=value, now=now,
        extra={"purchase_id": purchase_id},
    )  # fmt: skip
    return [effect] if effect is not None else []


_EFFECT_KIND = {
    TierChangeReason.QUALIFIED: TierEffectKind.TIER_UPGRADE,
    TierChangeReason.REFUND: TierEffectKind.TIER_REVERSAL,
}


async def _write(
    session: AsyncSession,
    program: ProgramInfo,
    ladder: Ladder,
    member: MemberRef,
    move: Transition,
    *,
    metric: int,
    now: datetime,
    extra: dict[str, Any],
) -> dict[str, Any] | None:
    """Write what a transition says: the status columns, and a change of rank (history,
    `tier.changed`, and the event's effect)."""
    if move.writes:
        await session.execute(
            update(_status)
            .where(_status.c.member_id == member.id)
            .values(**move.writes, updated_at=now)
        )
    if not move.changed or move.reason is None:
        return None
    payload = await _change(
        session,
        program,
        ladder,
        member_id=member.id,
        public_id=member.public_id,
        old=move.old,
        new=move.new,
        reason=move.reason,
        metric_value=metric,
        now=now,
        extra=extra,
    )
    return {
        "kind": _EFFECT_KIND[move.reason],
        "rule": None,
        "points": 0,
        "detail": {**payload, "value": _value_out(ladder, program, metric)},
    }


async def current_rank(session: AsyncSession, ladder: Ladder, member_id: int) -> int:
    """The member's rank now (the ladder's base rank when they never qualified)."""
    rank = (
        await session.execute(select(_status.c.rank).where(_status.c.member_id == member_id))
    ).scalar()
    return ladder.base_rank if rank is None else int(rank)
