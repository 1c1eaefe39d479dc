"""Recording events: validate, decide (pure), then apply in one transaction.

Idempotent by (program, source, external_id): a retry returns the first answer and
writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.bounds import MAX_POINTS
from habitue.db import Database, dialect_name
from habitue.errors import ValidationFailed
from habitue.events import apply as apply_effects
from habitue.events import rows as event_rows
from habitue.events.pipeline import EventApplied, Pipeline
from habitue.events.prepare import (
    CENT_TOLERANCE,
    Prepared,
    _events,
    _member_for,
    _row,
    prepare,
)
from habitue.events.refund import _refund
from habitue.events.schemas import EffectRead, EventCreate, EventRead
from habitue.events.write import EventWrite, write_event
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.errors import MovementLimit
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.money import format_minor
from habitue.privacy import fraud
from habitue.programs.service import ProgramInfo
from habitue.rules.compile import CompiledRule
from habitue.rules.types import Decision, EarnPoints, EventInput, MemberSnapshot


async def _existing(
    session: AsyncSession, program: ProgramInfo, source: str, external_id: str
) -> EventRead | None:
    row = (
        await session.execute(
            select(_events.c.response).where(
                _events.c.program_id == program.id,
                _events.c.source == source,
                _events.c.external_id == external_id,
            )
        )
    ).first()
    return None if row is None else EventRead.model_validate(row.response)


def lock_key(body: EventCreate) -> str:
    """The member an event will lock, as a sort key for grouped commits."""
    sel = body.member
    if sel is None:
        return "~refund:" + (body.refers_to or "")
    return sel.id or sel.card_number or sel.external_id or ""


async def quote(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    body: EventCreate,
    *,
    rules: Sequence[CompiledRule] | None = None,
) -> EventRead:
    """What the event would earn, computed by the same `decide`, writing nothing (with
    `rules` in place of the program's live rules when given: a draft's test)."""
    now = clock.now()
    prepared = prepare(program, body, now=now)
    if body.type == "refund":
        raise ValidationFailed("type", "refunds cannot be quoted")
    member = await _member_for(session, pipeline, program, body)
    decision = await pipeline.decide(session, program, member, prepared.event, now, rules=rules)
    earned = decision.points
    return EventRead(
        id="",
        type=body.type,
        external_id=body.external_id,
        member_id=member.public_id,
        occurred_at=prepared.event.occurred_at,
        total=body.total,
        points=earned - body.spend_points,
        points_earned=earned,
        points_spent=body.spend_points,
        discount=format_minor(prepared.discount_minor, program.currency_exponent),
        pending=program.pending_days > 0 and earned > 0,
        effects=apply_effects.entries(decision, now),
        errors=[{"rule": e.rule_code, "message": e.message} for e in decision.errors],
    )


async def quote_input(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    member: MemberRef,
    event: EventInput,
    snap: MemberSnapshot | None = None,
) -> tuple[int, list[EffectRead]]:
    """`quote`'s `points_earned` and `effects` of an event already prepared for `member`
    (a basket's purchase: `promotions.basket.quote_event`), by the same `decide`; `snap`:
    the member as `pipeline.snapshot` made them for this request already (the till's)."""
    now = clock.now()
    decision = await pipeline.decide(session, program, member, event, now, snap)
    return decision.points, apply_effects.entries(decision, now)


async def record(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> EventRead:
    """Record an event in the caller's transaction; a retry returns the first answer."""
    found = await _existing(session, program, body.source, body.external_id)
    if found is not None:
        return found
    try:
        async with session.begin_nested():
            return await apply(session, pipeline, program, body)
    except IntegrityError:
        found = await _existing(session, program, body.source, body.external_id)
        if found is None:
            raise
        return found


async def apply(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> EventRead:
    """Apply a new event; raises IntegrityError when its external_id was recorded already."""
    now = clock.now()
    prepared = prepare(program, body, now=now)
    if body.type == "refund":
        return await _refund(session, pipeline, program, prepared, now)
    return await _earn(session, pipeline, program, prepared, now)


async def apply_prepared(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, prepared: Prepared
) -> EventRead:
    """`apply` of a purchase `prepare`d already (a confirmed basket's: its body, and the
    event as `promotions.basket.quote_event` computes what `prepare` would make of it)."""
    if prepared.body.type != "purchase":
        raise ValueError("only a purchase is applied prepared")
    return await _earn(session, pipeline, program, prepared, clock.now())


async def earn_prepared(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, prepared: Prepared
) -> Recorded:
    """`apply_prepared` to stage 5: the answer and the writes, not written. The caller
    writes `Recorded.write` (`write_event`, or with writes of its own at a grouped batch's
    end: `events.write.write_runs`) and runs `pipeline.recorded(session, Recorded.applied)`,
    in this unit of work, as `_earn` does (a confirmed basket's purchase)."""
    if prepared.body.type != "purchase":
        raise ValueError("only a purchase is applied prepared")
    decided = await decide_earn(session, pipeline, program, prepared, clock.now())
    return await finish_earn(session, pipeline, program, decided)


async def record_event(
    db: Database, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> EventRead:
    """The request path: one unit of work, no pre-check; a retry reads the first answer.

    The unique (program, source, external_id) index decides: a duplicate rolls its unit of
    work back whole, and the stored response of the first is returned.
    """
    sel = body.member if body.type != "refund" else None
    # The members of a batch of grouped units are read in one query, however each is named.
    prefetch = (
        members_service.prefetch_named(
            program,
            member_id=sel.id,
            card_number=sel.card_number,
            external_id=sel.external_id,
            reads=pipeline.member_reads,
        )
        if sel is not None
        else None
    )
    # Late: the batch writes its events at its end. Not when the event pays with points: its
    # debit reads the lots, which an earlier event of the member in the batch may credit.
    late = prefetch is not None and not body.spend_points
    try:
        return await db.write(
            lambda s: apply(s, pipeline, program, body),
            key=lock_key(body),
            prefetch=prefetch,
            late=late,
        )
    except IntegrityError:
        async with db.read() as session:
            found = await _existing(session, program, body.source, body.external_id)
        if found is None:
            raise
        return found


@dataclass(frozen=True, slots=True)
class Decided:
    """A purchase (or custom event) after stage 3: the member read, the decision made, the
    points it earns counted. Nothing written yet but the spend (when it pays with points)."""

    prepared: Prepared
    member: MemberRef
    event_id: str
    decision: Decision
    earn_legs: list[Leg]
    earned: int
    now: datetime


@dataclass(frozen=True, slots=True)
class Recorded:
    """A purchase after stage 5: its answer, the writes left to stage 6, and what the
    `after_record` stages are told once they are written."""

    response: EventRead
    write: EventWrite
    applied: EventApplied


async def _earn(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    prepared: Prepared,
    now: datetime,
) -> EventRead:
    decided = await decide_earn(session, pipeline, program, prepared, now)
    recorded = await finish_earn(session, pipeline, program, decided)
    await write_event(session, recorded.write)
    await pipeline.recorded(session, recorded.applied)
    return recorded.response


async def decide_earn(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    prepared: Prepared,
    now: datetime,
) -> Decided:
    """Stages 1 to 3 of an event that earns: the member (active), the velocity limits, the
    spend when it pays with points, the decision. An error raised here (the member unknown
    or not active, too many points) has written nothing but, for a spend, its debit."""
    body, event = prepared.body, prepared.event
    member = await _member_for(session, pipeline, program, body)
    member.require_active()
    # The privacy room's velocity limits (cached: nothing is read when the program sets none).
    at, attributes = event.occurred_at, body.attributes
    await fraud.watch(session, program, member.id, kind=body.type, at=at, attributes=attributes)
    event_id = new_id()
    spent = body.spend_points
    if spent:
        await ledger_service.debit(
            session,
            program,
            member.accounts,
            spent,
            kind=EntryKind.SPEND,
            counter=SystemAccount.REDEEMED,
            reference=f"event:{event_id}:spend",
            event_id=event_id,
            reason=f"paid at the till ({body.external_id})",
            now=now,
            effective_at=event.occurred_at,
        )
    decision = await pipeline.decide(session, program, member, event, now)
    earn_legs = [
        Leg(e.amount, e.rule_code, e.rule_id, e.rule_version)
        for e in decision.effects
        if isinstance(e, EarnPoints) and e.amount > 0
    ]
    earned = sum(leg.amount for leg in earn_legs)
    if earned > MAX_POINTS:
        raise MovementLimit(f"this event would earn {earned} points; at most {MAX_POINTS} at once")
    return Decided(prepared, member, event_id, decision, earn_legs, earned, now)


async def finish_earn(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, decided: Decided
) -> Recorded:
    """Stages 4 and 5: the credit planned, the effects applied (a coupon issued, a benefit
    granted: written now), the `after_event` stages run; the event's own writes are returned,
    for `write_event` (one event) or `write_events` (a batch's group), not written."""
    prepared, member, event_id = decided.prepared, decided.member, decided.event_id
    now = decided.now
    body, event, decision, earned = prepared.body, prepared.event, decided.decision, decided.earned
    spent = body.spend_points
    pending_until = (
        event.occurred_at + timedelta(days=program.pending_days) if program.pending_days else None
    )
    pending = pending_until is not None and pending_until > now
    # Written with the event's row (one statement on PostgreSQL): nothing in between reads it.
    credit = (
        ledger_service.plan_credit(
            program,
            member.accounts,
            decided.earn_legs,
            kind=EntryKind.EARN,
            reference=f"event:{event_id}:earn",
            event_id=event_id,
            earned_at=event.occurred_at,
            pending_until=pending_until,
            now=now,
        )
        if earned
        else None
    )
    applied = EventApplied(
        program=program,
        member=member,
        event=event,
        event_id=event_id,
        decision=decision,
        points_earned=earned,
        now=now,
        source=body.source,
    )
    target = apply_effects.Target(program, member.id, event_id, now)
    delivered = await apply_effects.deliver(session, pipeline.appliers, target, decision)
    after = await pipeline.after(session, applied)
    response = EventRead(
        id=event_id,
        type=body.type,
        external_id=body.external_id,
        member_id=member.public_id,
        occurred_at=event.occurred_at,
        total=format_minor(event.total_minor, program.currency_exponent) if body.total else None,
        points=earned - spent,
        points_earned=earned,
        points_spent=spent,
        discount=format_minor(prepared.discount_minor, program.currency_exponent)
        if spent
        else None,
        pending=pending and earned > 0,
        effects=[*delivered, *after.effects],
        errors=[{"rule": e.rule_code, "message": e.message} for e in decision.errors],
    )
    rows = []
    if spent:
        rows.append(
            outbox.outbox_row(
                program.id,
                event_rows.POINTS_SPENT,
                member.public_id,
                event_rows.spent_payload(member.public_id, spent, event_id),
            )
        )
    if earned:
        rows.append(
            outbox.outbox_row(
                program.id,
                event_rows.POINTS_EARNED,
                member.public_id,
                event_rows.earned_payload(member.public_id, earned, event_id, body.type, pending),
            )
        )
    rows.append(
        outbox.outbox_row(
            program.id,
            event_rows.EVENT_RECORDED,
            member.public_id,
            event_rows.recorded_payload(
                member.public_id, event_id, body.type, body.external_id, response.total
            ),
        )
    )
    # Made once on PostgreSQL, where the event's row stores the text: a batch's slot answers
    # with it (SQLite stores the answer as a dict: its slot makes the text itself).
    text = response.model_dump_json() if dialect_name(session) == "postgresql" else None
    row = _row(
        program, member, prepared, event_id, response, now, points=earned, refers_to=None,
        response_json=text,
    )  # fmt: skip
    write = EventWrite(row, lifetime=earned, outbox_rows=rows, credit=credit, writes=after.writes)
    return Recorded(response, write, applied)


async def get(
    session: AsyncSession, program: ProgramInfo, event_id: str, *, source: str | None = None
) -> EventRead:
    """An event by id (among the events of `source` when given); raises NotFound."""
    q = select(_events.c.response).where(
        _events.c.program_id == program.id, _events.c.id == event_id
    )
    if source is not None:
        q = q.where(_events.c.source == source)
    row = (await session.execute(q)).first()
    if row is None:
        from habitue.errors import NotFound

        raise NotFound(f"no event {event_id}")
    return EventRead.model_validate(row.response)


def response_balance(resp: EventRead, balance: dict[str, Any]) -> EventRead:
    return resp.model_copy(
        update={"balance": {"available": balance["available"], "pending": balance["pending"]}}
    )


__all__ = [
    "CENT_TOLERANCE",
    "Prepared",
    "prepare",
]
