"""Lots over time: pending points released, points expired, an event's open lots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name
from habitue.ledger.entries import (
    MemberAccounts,
    _add_balance,
    _lots,
    _transaction,
    accounts_of,
    lock_balance,
)
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
    """Move one due pending lot to the available account, effective when its pending period
    ended."""
    amount = int(lot["remaining"])
    released_at = clock.as_utc(lot["pending_until"])
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
        effective_at=released_at,
    )
    balance = await _add_balance(session, accounts.available, amount)
    open_amount = max(0, min(amount, balance))
    if open_amount:
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


def live(now: datetime) -> ColumnElement[bool]:
    """A lot not past its expiry at `now` (a lot without expiry is always live)."""
    return or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > now)


def expired_sum(account_id: int, now: datetime) -> ScalarSelect[Any]:
    """The points of the account's open lots past their expiry at `now`, as a subquery."""
    return (
        select(func.coalesce(func.sum(_lots.c.remaining), 0))
        .where(
            _lots.c.account_id == account_id,
            _lots.c.remaining > 0,
            _lots.c.expires_at <= now,
        )
        .scalar_subquery()
    )


async def expired_points(session: AsyncSession, account_id: int, now: datetime) -> int:
    """Points of the account's lots past their expiry that the expiry job has not written
    down yet: in the balance column, but not there."""
    return int((await session.execute(select(expired_sum(account_id, now)))).scalar_one())


async def program_expired_points(session: AsyncSession, program_id: int, now: datetime) -> int:
    """Points of the program's lots past their expiry not written down yet (in the members'
    stored balances, but not owed)."""
    total = await session.execute(
        select(func.coalesce(func.sum(_lots.c.remaining), 0)).where(
            _lots.c.program_id == program_id, _lots.c.remaining > 0, _lots.c.expires_at <= now
        )
    )
    return int(total.scalar_one())


Due = tuple[int, int, datetime]
"""A lot due to be written down: its id, what remains of it, when it expired."""


async def _write_expiry(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    account_id: int,
    lots: list[Due],
    *,
    now: datetime,
    actor: str | None,
) -> list[tuple[int, int]]:
    """Close the given lots, one expiry transaction per instant of expiry, each effective at
    that instant (so points expire in the month they expired, however late the job ran);
    returns (points, txn) of each transaction, in order of expiry."""
    ids = [lot_id for lot_id, _, _ in lots]
    points = sum(remaining for _, remaining, _ in lots)
    await session.execute(update(_lots).where(_lots.c.id.in_(ids)).values(remaining=0))
    await _add_balance(session, account_id, -points)
    at: dict[datetime, list[Due]] = {}
    for lot in lots:
        at.setdefault(clock.as_utc(lot[2]), []).append(lot)
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    out: list[tuple[int, int]] = []
    for expired_at in sorted(at):
        group = at[expired_at]
        group_points = sum(remaining for _, remaining, _ in group)
        txn_id = await _transaction(
            session,
            program_id=program.id,
            member_id=member_id,
            kind=EntryKind.EXPIRE,
            reference=f"expire:{member_id}:{stamp}:{group[0][0]}",
            event_id=None,
            actor=actor,
            reason=None,
            postings=[
                {"account_id": account_id, "amount": -group_points},
                {
                    "account_id": program.system_accounts[SystemAccount.EXPIRED],
                    "amount": group_points,
                },
            ],
            now=now,
            effective_at=min(expired_at, now),
        )
        out.append((group_points, txn_id))
    return out


async def write_down_expired(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    account_id: int,
    *,
    now: datetime,
    actor: str | None = None,
) -> int:
    """Write down the account's lots past their expiry (what the expiry job would write),
    under the account's row lock; returns the points. Nothing is read twice: the lots are
    locked (PostgreSQL) or the database has one writer (SQLite)."""
    await lock_balance(session, account_id)
    q = (
        select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at)
        .where(
            _lots.c.account_id == account_id,
            _lots.c.remaining > 0,
            _lots.c.expires_at <= now,
        )
        .order_by(_lots.c.id)
    )
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    lots = [(int(i), int(r), e) for i, r, e in (await session.execute(q)).all()]
    if not lots:
        return 0
    done = await _write_expiry(
        session, program, member_id, account_id, lots, now=now, actor=actor or "expiry"
    )
    return sum(points for points, _ in done)


async def expire_due(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 5000
) -> list[tuple[int, int, int]]:
    """Expire due lots, one expiry transaction per member and instant of expiry (effective
    then); returns (member, points, txn) of each.

    It writes down what is already so: a lot past its expiry counts in no balance and is
    never spent, before this runs as after. Running it twice is safe: expired lots are
    closed, so the second run finds nothing.
    """
    lots = (
        await session.execute(
            select(
                _lots.c.id,
                _lots.c.member_id,
                _lots.c.account_id,
                _lots.c.remaining,
                _lots.c.expires_at,
            )
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
    per_member: dict[int, tuple[int, list[Due]]] = {}
    for lot_id, member_id, account_id, remaining, expires_at in lots:
        per_member.setdefault(member_id, (account_id, []))[1].append(
            (lot_id, remaining, expires_at)
        )
    out: list[tuple[int, int, int]] = []
    for member_id, (account_id, member_lots) in per_member.items():
        done = await _write_expiry(
            session, program, member_id, account_id, member_lots, now=now, actor="expiry"
        )
        out += [(member_id, points, txn_id) for points, txn_id in done]
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
