"""A refund through the pipeline: points taken back and returned in proportion, its purchase
updated, the `after_refund` stages run and its unused coupons voided."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.events import apply as apply_effects
from habitue.events.errors import (
    RefundExceedsPurchase,
    UnknownPurchase,
)
from habitue.events.kinds import RefundEffectKind
from habitue.events.pipeline import Pipeline, RefundApplied
from habitue.events.prepare import Prepared, _events, _member_for, _row
from habitue.events.schemas import EffectRead, EventRead
from habitue.events.write import EventWrite, write_event
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.messaging import outbox
from habitue.money import format_minor
from habitue.privacy import fraud
from habitue.programs.service import ProgramInfo


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
        reads=(members_service.LOCKED_STATUS,),
    )
    # An erased member's points are gone and nothing more is written about them.
    member.require_not_erased()
    if body.member is not None:
        named = await _member_for(session, pipeline, program, body)
        if named.id != member.id:
            raise ValidationFailed("member", "the purchase belongs to another member")
    await fraud.watch(session, program, member.id, kind="refund", at=event.occurred_at)
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
                effective_at=event.occurred_at,
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
                effective_at=event.occurred_at,
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
            effective_at=event.occurred_at,
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
                kind=RefundEffectKind.TAKEBACK,
                rule=None,
                points=-taken,
                detail={"purchase": purchase["id"], "shortfall": shortfall},
            )
        )
    if to_return > 0:
        effects.append(EffectRead(kind=RefundEffectKind.RETURN, rule=None, points=to_return))
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
        session, EventWrite(row, lifetime=-taken, outbox_rows=[refunded_row], writes=after.writes)
    )
    return response


async def _public_id(session: AsyncSession, member_id: int) -> str:
    from habitue.members.models import Member

    t = table_of(Member)
    return str(
        (await session.execute(select(t.c.public_id).where(t.c.id == member_id))).scalar_one()
    )
