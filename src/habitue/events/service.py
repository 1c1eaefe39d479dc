"""Recording events: validate, decide (pure), then apply in one transaction.

Idempotent by (program, source, external_id): a retry returns the first answer and
writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.bounds import MAX_POINTS
from habitue.db import Database, dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.events import apply as apply_effects
from habitue.events.errors import (
    CurrencyMismatch,
    LinesMismatch,
    RefundExceedsPurchase,
    UnknownEventType,
    UnknownPurchase,
)
from habitue.events.models import Event
from habitue.events.pipeline import EventApplied, Pipeline, RefundApplied
from habitue.events.schemas import BUILTIN_TYPES, EffectRead, EventCreate, EventRead
from habitue.events.write import EventRow, write_event
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.errors import MovementLimit
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rules.types import EarnPoints, EventInput, LineInput

_events = table_of(Event)

CENT_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated event: its body, parsed money and the rules' view of it."""

    body: EventCreate
    event: EventInput
    discount_minor: int


def _money(value: str | None, field: str, exponent: int) -> int:
    if value is None:
        raise ValidationFailed(field, "is required")
    try:
        return parse_minor(value, exponent)
    except MoneyFormatError as exc:
        raise ValidationFailed(field, str(exc)) from exc


_ATTRIBUTE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


def _check_attributes(attributes: dict[str, Any], schema: dict[str, Any]) -> None:
    """Attributes of a custom event against its declared schema (no extra, typed, required)."""
    declared: dict[str, str] = schema.get("attributes", {})
    for name, value in attributes.items():
        kind = declared.get(name)
        if kind is None:
            raise ValidationFailed(f"attributes.{name}", "not declared for this event type")
        is_bool = isinstance(value, bool)
        if not isinstance(value, _ATTRIBUTE_TYPES[kind]) or (is_bool and kind != "boolean"):
            raise ValidationFailed(f"attributes.{name}", f"must be {kind}")
    for name in schema.get("required", []):
        if name not in attributes:
            raise ValidationFailed(f"attributes.{name}", "is required")


def prepare(program: ProgramInfo, body: EventCreate, *, now: datetime) -> Prepared:
    """Check an event against the program and turn it into plain values (no I/O)."""
    if body.type not in BUILTIN_TYPES:
        custom = program.event_types.get(body.type)
        if custom is None:
            known = [*BUILTIN_TYPES, *sorted(program.event_types)]
            raise UnknownEventType(
                f"unknown event type {body.type!r}",
                errors=[{"field": "type", "message": f"known types: {known}"}],
            )
        _check_attributes(body.attributes, custom)
    if body.currency is not None and body.currency != program.currency:
        raise CurrencyMismatch(
            f"the program's currency is {program.currency}",
            errors=[{"field": "currency", "message": f"expected {program.currency}"}],
        )
    exp = program.currency_exponent
    total = 0
    if body.type in ("purchase", "refund"):
        total = _money(body.total, "total", exp)
    elif body.total is not None:
        total = _money(body.total, "total", exp)
    if body.type == "refund":
        if body.refers_to is None:
            raise ValidationFailed("refers_to", "a refund names the purchase it refunds")
        if total == 0:
            raise ValidationFailed("total", "a refund must be positive")
    elif body.refers_to is not None and body.type == "purchase":
        raise ValidationFailed("refers_to", "only refunds refer to a purchase")
    if body.member is None and body.type != "refund":
        raise ValidationFailed("member", "is required")
    if body.spend_points and body.type != "purchase":
        raise ValidationFailed("spend_points", "only a purchase can be paid with points")
    lines: list[LineInput] = []
    for i, line in enumerate(body.lines):
        unit = _money(line.unit_price, f"lines[{i}].unit_price", exp)
        amount_dec = (line.quantity * unit).to_integral_value()
        lines.append(
            LineInput(
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price_minor=unit,
                amount_minor=int(amount_dec),
            )
        )
    if lines:
        line_sum = sum(ln.amount_minor for ln in lines)
        if abs(line_sum - total) > CENT_TOLERANCE:
            raise LinesMismatch(
                f"lines add up to {format_minor(line_sum, exp)}, total is "
                f"{format_minor(total, exp)}",
                errors=[{"field": "lines", "message": "do not add up to the total"}],
            )
    discount = 0
    if body.spend_points:
        discount_dec = (Decimal(body.spend_points) * program.redeem_rate).scaleb(exp)
        discount = int(discount_dec.to_integral_value())
        if discount > total:
            raise ValidationFailed("spend_points", "the discount would exceed the basket total")
        if body.spend_points % program.redeem_step:
            raise ValidationFailed("spend_points", f"must be a multiple of {program.redeem_step}")
    occurred = clock.as_utc(body.occurred_at) if body.occurred_at else now
    if occurred > now + timedelta(minutes=10):
        raise ValidationFailed("occurred_at", "is in the future")
    event = EventInput(
        type=body.type,
        external_id=body.external_id,
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
        attributes=body.attributes,
        points_spent=body.spend_points,
        discount_minor=discount,
    )
    return Prepared(body=body, event=event, discount_minor=discount)


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


async def _member_for(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> MemberRef:
    sel = body.member
    assert sel is not None
    return await members_service.resolve_in_batch(
        session,
        program,
        member_id=sel.id,
        card_number=sel.card_number,
        external_id=sel.external_id,
        reads=pipeline.member_reads,
    )


def lock_key(body: EventCreate) -> str:
    """The member an event will lock, as a sort key for grouped commits."""
    sel = body.member
    if sel is None:
        return "~refund:" + (body.refers_to or "")
    return sel.id or sel.card_number or sel.external_id or ""


async def quote(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> EventRead:
    """What the event would earn, computed by the same `decide`, writing nothing."""
    now = clock.now()
    prepared = prepare(program, body, now=now)
    if body.type == "refund":
        raise ValidationFailed("type", "refunds cannot be quoted")
    member = await _member_for(session, pipeline, program, body)
    decision = await pipeline.decide(session, program, member, prepared.event, now)
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


async def record_event(
    db: Database, pipeline: Pipeline, program: ProgramInfo, body: EventCreate
) -> EventRead:
    """The request path: one unit of work, no pre-check; a retry reads the first answer.

    The unique (program, source, external_id) index decides: a duplicate rolls its unit of
    work back whole, and the stored response of the first is returned.
    """
    member_id = body.member.id if body.member is not None and body.type != "refund" else None
    prefetch = (
        members_service.prefetch(program, member_id, pipeline.member_reads)
        if member_id is not None
        else None
    )
    # Late: the batch writes its events at its end. Not when the event pays with points: its
    # debit reads the lots, which an earlier event of the member in the batch may credit.
    late = member_id is not None and not body.spend_points
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


async def _earn(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    prepared: Prepared,
    now: datetime,
) -> EventRead:
    body, event = prepared.body, prepared.event
    member = await _member_for(session, pipeline, program, body)
    member.require_active()
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
    pending_until = (
        event.occurred_at + timedelta(days=program.pending_days) if program.pending_days else None
    )
    pending = pending_until is not None and pending_until > now
    # Written with the event's row (one statement on PostgreSQL): nothing in between reads it.
    credit = (
        ledger_service.plan_credit(
            program,
            member.accounts,
            earn_legs,
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
                "points.spent",
                member.public_id,
                {
                    "member_id": member.public_id,
                    "points": spent,
                    "event_id": event_id,
                    "reason": "till",
                },
            )
        )
    if earned:
        rows.append(
            outbox.outbox_row(
                program.id,
                "points.earned",
                member.public_id,
                {
                    "member_id": member.public_id,
                    "points": earned,
                    "event_id": event_id,
                    "event_type": body.type,
                    "pending": pending,
                },
            )
        )
    rows.append(
        outbox.outbox_row(
            program.id,
            "event.recorded",
            member.public_id,
            {
                "member_id": member.public_id,
                "event_id": event_id,
                "type": body.type,
                "external_id": body.external_id,
                "total": response.total,
            },
        )
    )
    row = _row(program, member, prepared, event_id, response, now, points=earned, refers_to=None)
    await write_event(
        session, row, lifetime=earned, outbox_rows=rows, credit=credit, writes=after.writes
    )
    await pipeline.recorded(session, applied)
    return response


def _row(
    program: ProgramInfo,
    member: MemberRef,
    prepared: Prepared,
    event_id: str,
    response: EventRead,
    now: datetime,
    *,
    points: int,
    refers_to: str | None,
) -> EventRow:
    body = prepared.body
    return EventRow(
        id=event_id,
        program_id=program.id,
        member_id=member.id,
        type=body.type,
        source=body.source,
        external_id=body.external_id,
        event=prepared.event,
        points=points,
        points_spent=body.spend_points,
        refers_to=refers_to,
        attributes=body.attributes,
        response=response,
        created_at=now,
    )


async def _refund(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    prepared: Prepared,
    now: datetime,
) -> EventRead:
    body, event = prepared.body, prepared.event
    q = select(_events).where(
        _events.c.program_id == program.id,
        _events.c.source == body.source,
        _events.c.external_id == body.refers_to,
        _events.c.type == "purchase",
    )
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    purchase = (await session.execute(q)).mappings().first()
    if purchase is None:
        raise UnknownPurchase(
            f"no purchase {body.refers_to!r} in this program",
            errors=[{"field": "refers_to", "message": "unknown purchase"}],
        )
    member = await members_service.resolve(
        session,
        program,
        member_id=(await _public_id(session, purchase["member_id"])),
    )
    if body.member is not None:
        named = await _member_for(session, pipeline, program, body)
        if named.id != member.id:
            raise ValidationFailed("member", "the purchase belongs to another member")
    left = purchase["total_minor"] - purchase["refunded_minor"]
    exp = program.currency_exponent
    if event.total_minor > left:
        raise RefundExceedsPurchase(
            f"only {format_minor(left, exp)} of the purchase is left to refund",
            errors=[{"field": "total", "message": "larger than what is left of the purchase"}],
        )
    refunded = purchase["refunded_minor"] + event.total_minor
    full = purchase["total_minor"]
    target_back = (purchase["points"] * refunded) // full if full else purchase["points"]
    to_take = target_back - purchase["points_taken_back"]
    spent_target = (purchase["points_spent"] * refunded) // full if full else 0
    to_return = spent_target - purchase["spent_returned"]
    event_id = new_id()
    taken = 0
    if to_take > 0:
        in_pending = await ledger_service.open_lots_for_event(
            session, member.accounts.pending, purchase["id"]
        )
        from_pending = min(in_pending, to_take)
        if from_pending:
            got, _ = await ledger_service.debit(
                session,
                program,
                member.accounts,
                from_pending,
                kind=EntryKind.TAKEBACK,
                counter=SystemAccount.ISSUED,
                reference=f"event:{event_id}:takeback-pending",
                from_pending=True,
                event_id=event_id,
                prefer_event=purchase["id"],
                mode="partial",
                now=now,
            )
            taken += got
        rest = to_take - taken
        if rest:
            got, _ = await ledger_service.debit(
                session,
                program,
                member.accounts,
                rest,
                kind=EntryKind.TAKEBACK,
                counter=SystemAccount.ISSUED,
                reference=f"event:{event_id}:takeback",
                event_id=event_id,
                prefer_event=purchase["id"],
                mode="negative" if program.allow_negative else "partial",
                now=now,
            )
            taken += got
    shortfall = to_take - taken if to_take > 0 else 0
    if to_return > 0:
        await ledger_service.credit(
            session,
            program,
            member.accounts,
            [Leg(to_return, "refund")],
            kind=EntryKind.RETURN,
            counter=SystemAccount.REDEEMED,
            reference=f"event:{event_id}:return",
            event_id=event_id,
            now=now,
        )
    await session.execute(
        update(_events)
        .where(_events.c.id == purchase["id"])
        .values(
            refunded_minor=refunded,
            points_taken_back=purchase["points_taken_back"] + max(to_take, 0),
            spent_returned=purchase["spent_returned"] + max(to_return, 0),
        )
    )
    after = await pipeline.refunded(
        session,
        RefundApplied(
            program=program,
            member=member,
            refund_event_id=event_id,
            purchase_id=purchase["id"],
            purchase_external_id=purchase["external_id"],
            amount_minor=event.total_minor,
            purchase_total_minor=full,
            refunded_total_minor=refunded,
            points_taken_back=taken,
            now=now,
        ),
    )
    effects = list(after.effects)
    effects += await apply_effects.undo_for_refund(
        session, pipeline.appliers, program, purchase["id"], purchase["response"]
    )
    if to_take > 0:
        effects.append(
            EffectRead(
                kind=EntryKind.TAKEBACK,
                rule=None,
                points=-taken,
                detail={"purchase": purchase["id"], "shortfall": shortfall},
            )
        )
    if to_return > 0:
        effects.append(EffectRead(kind="return", rule=None, points=to_return))
    response = EventRead(
        id=event_id,
        type="refund",
        external_id=body.external_id,
        member_id=member.public_id,
        occurred_at=event.occurred_at,
        total=format_minor(event.total_minor, exp),
        points=to_return - taken,
        points_earned=0,
        points_spent=0,
        discount=None,
        pending=False,
        effects=effects,
        shortfall=shortfall,
    )
    refunded_row = outbox.outbox_row(
        program.id,
        "event.refunded",
        member.public_id,
        {
            "member_id": member.public_id,
            "event_id": event_id,
            "purchase_id": purchase["id"],
            "amount": format_minor(event.total_minor, exp),
            "points_taken_back": taken,
            "points_returned": to_return,
            "shortfall": shortfall,
        },
    )
    row = _row(
        program,
        member,
        prepared,
        event_id,
        response,
        now,
        points=to_return - taken,
        refers_to=purchase["id"],
    )
    await write_event(
        session, row, lifetime=-taken, outbox_rows=[refunded_row], writes=after.writes
    )
    return response


async def _public_id(session: AsyncSession, member_id: int) -> str:
    from habitue.members.models import Member

    t = table_of(Member)
    return str(
        (await session.execute(select(t.c.public_id).where(t.c.id == member_id))).scalar_one()
    )


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
