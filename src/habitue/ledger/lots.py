"""Lots over time: pending points released, points expired, an event's open lots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.ledger.entries import MemberAccounts, _add_balance, _lots, _transaction, accounts_of
from habitue.ledger.expiry import lot_expiry
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.programs.service import ProgramInfo


async def release_one(
    session: AsyncSession,
    program: ProgramInfo,
    lot: dict[str, Any],
    accounts: MemberAccounts,
    now: datetime,
) -> None:
    """Move one due pending lot to the available account."""
    amount = int(lot["remaining"])
    await session.execute(update(_lots).where(_lots.c.id == lot["id"]).values(remaining=0))
    await _add_balance(session, accounts.pending, -amount)
    txn_id = await _transaction(
        session,
        program_id=program.id,
        member_id=accounts.member_id,
        kind=EntryKind.RELEASE,
        reference=f"release:{lot['id']}",
        event_id=lot["event_id"],
        actor=None,
        reason=None,
        postings=[
            {"account_id": accounts.pending, "amount": -amount},
            {"account_id": accounts.available, "amount": amount},
        ],
        now=now,
    )
    balance = await _add_balance(session, accounts.available, amount)
    open_amount = max(0, min(amount, balance))
    if open_amount:
        released_at = clock.as_utc(lot["pending_until"])
        await session.execute(
            insert(_lots).values(
                program_id=program.id,
                member_id=accounts.member_id,
                account_id=accounts.available,
                transaction_id=txn_id,
                event_id=lot["event_id"],
                amount=amount,
                remaining=open_amount,
                earned_at=clock.as_utc(lot["earned_at"]),
                expires_at=lot_expiry(
                    released_at, program.expiry_policy, program.expiry_days, program.timezone
                ),
                pending_until=None,
            )
        )


async def release_due(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 1000
) -> int:
    """Release pending lots whose return window has closed; returns the points released."""
    lots = (
        (
            await session.execute(
                select(_lots)
                .where(
                    _lots.c.program_id == program.id,
                    _lots.c.pending_until.is_not(None),
                    _lots.c.pending_until <= now,
                    _lots.c.remaining > 0,
                )
                .order_by(_lots.c.id)
                .limit(limit)
            )
        )
        .mappings()
        .all()
    )
    if not lots:
        return 0
    accounts = await accounts_of(session, [lot["member_id"] for lot in lots])
    total = 0
    for lot in lots:
        await release_one(session, program, dict(lot), accounts[lot["member_id"]], now)
        total += int(lot["remaining"])
    return total


async def expire_due(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 5000
) -> list[tuple[int, int, int]]:
    """Expire due lots, one expiry transaction per member; returns (member, points, txn).

    Running it twice is safe: expired lots are closed, so the second run finds nothing.
    """
    lots = (
        await session.execute(
            select(_lots.c.id, _lots.c.member_id, _lots.c.account_id, _lots.c.remaining)
            .where(
                _lots.c.program_id == program.id,
                _lots.c.expires_at.is_not(None),
                _lots.c.expires_at <= now,
                _lots.c.remaining > 0,
            )
            .order_by(_lots.c.member_id, _lots.c.id)
            .limit(limit)
        )
    ).all()
    per_member: dict[int, tuple[int, int, list[int]]] = {}
    for lot_id, member_id, account_id, remaining in lots:
        acc, total, ids = per_member.get(member_id, (account_id, 0, []))
        ids.append(lot_id)
        per_member[member_id] = (acc, total + remaining, ids)
    out: list[tuple[int, int, int]] = []
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    for member_id, (account_id, points, ids) in per_member.items():
        await session.execute(update(_lots).where(_lots.c.id.in_(ids)).values(remaining=0))
        await _add_balance(session, account_id, -points)
        txn_id = await _transaction(
            session,
            program_id=program.id,
            member_id=member_id,
            kind=EntryKind.EXPIRE,
            reference=f"expire:{member_id}:{stamp}:{ids[0]}",
            event_id=None,
            actor="expiry",
            reason=None,
            postings=[
                {"account_id": account_id, "amount": -points},
                {"account_id": program.system_accounts[SystemAccount.EXPIRED], "amount": points},
            ],
            now=now,
        )
        out.append((member_id, points, txn_id))
    return out


async def open_lots_for_event(session: AsyncSession, account_id: int, event_id: str) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(_lots.c.remaining), 0)).where(
                and_(
                    _lots.c.account_id == account_id,
                    _lots.c.event_id == event_id,
                    _lots.c.remaining > 0,
                )
            )
        )
    ).scalar_one()
    return int(total)
