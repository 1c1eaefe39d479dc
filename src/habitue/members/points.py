"""A member's points moved by hand: spends through the API and support adjustments, with their
domain events (the ledger writes them; it takes the member's account ids)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import ValidationFailed
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.models import LedgerTransaction
from habitue.ledger.schemas import AdjustmentCreate, MovementRead, SpendCreate
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo

_txns = table_of(LedgerTransaction)


async def _replayed(
    session: AsyncSession, program: ProgramInfo, reference: str, member: MemberRef
) -> MovementRead | None:
    row = (
        (
            await session.execute(
                select(_txns).where(
                    _txns.c.program_id == program.id, _txns.c.reference == reference
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    b = await ledger_service.balances(session, member.accounts)
    return MovementRead(
        transaction_id=row["id"],
        kind=row["kind"],
        points=0,
        balance={"available": b["available"], "pending": b["pending"]},
        reason=row["reason"],
    )


async def spend(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    data: SpendCreate,
    *,
    actor: str,
) -> MovementRead:
    """Spend points for a reason; never below zero; a repeated reference spends once."""
    member = await members_service.with_locked_status(session, program, member)
    member.require_active()
    reference = f"spend:{member.public_id}:{data.reference}" if data.reference else None
    if reference is not None:
        done = await _replayed(session, program, reference, member)
        if done is not None:
            return done
    now = clock.now()
    _, txn_id = await ledger_service.debit(
        session,
        program,
        member.accounts,
        data.points,
        kind=EntryKind.SPEND,
        counter=SystemAccount.REDEEMED,
        reference=reference or f"spend:{member.public_id}:{now.timestamp()}:{id(data)}",
        actor=actor,
        reason=data.reason,
        now=now,
    )
    assert txn_id is not None
    await outbox.emit(
        session,
        program_id=program.id,
        type_="points.spent",
        member_id=member.public_id,
        payload={
            "member_id": member.public_id,
            "points": data.points,
            "reason": data.reason,
            "transaction_id": txn_id,
        },
    )
    b = await ledger_service.balances(session, member.accounts)
    return MovementRead(
        transaction_id=txn_id,
        kind=EntryKind.SPEND,
        points=-data.points,
        balance={"available": b["available"], "pending": b["pending"]},
        reason=data.reason,
    )


async def adjust(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    data: AdjustmentCreate,
    *,
    actor: str,
) -> MovementRead:
    """A support agent's signed correction, with actor and reason; a debit never overdraws.

    The member's status is read under the member's row lock: an adjustment sent while the
    member is being erased waits, then is refused (409 `member-not-active`)."""
    member = await members_service.with_locked_status(session, program, member)
    member.require_not_erased()
    if data.points == 0:
        raise ValidationFailed("points", "must not be zero")
    reference = f"adjust:{member.public_id}:{data.reference}" if data.reference else None
    if reference is not None:
        done = await _replayed(session, program, reference, member)
        if done is not None:
            return done
    now = clock.now()
    ref = reference or f"adjust:{member.public_id}:{now.timestamp()}:{id(data)}"
    if data.points > 0:
        txn_id: int | None = await ledger_service.credit(
            session,
            program,
            member.accounts,
            [Leg(data.points, "adjustment")],
            kind=EntryKind.ADJUST,
            counter=SystemAccount.ADJUSTED,
            reference=ref,
            actor=actor,
            reason=data.reason,
            now=now,
        )
        await members_service.add_lifetime(session, member.id, data.points)
    else:
        _, txn_id = await ledger_service.debit(
            session,
            program,
            member.accounts,
            -data.points,
            kind=EntryKind.ADJUST,
            counter=SystemAccount.ADJUSTED,
            reference=ref,
            actor=actor,
            reason=data.reason,
            now=now,
        )
    assert txn_id is not None
    await outbox.emit(
        session,
        program_id=program.id,
        type_="points.adjusted",
        member_id=member.public_id,
        payload={
            "member_id": member.public_id,
            "points": data.points,
            "reason": data.reason,
            "actor": actor,
            "transaction_id": txn_id,
        },
    )
    b = await ledger_service.balances(session, member.accounts)
    return MovementRead(
        transaction_id=txn_id,
        kind=EntryKind.ADJUST,
        points=data.points,
        balance={"available": b["available"], "pending": b["pending"]},
        reason=data.reason,
    )
