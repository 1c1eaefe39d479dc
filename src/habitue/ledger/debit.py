"""Debiting points: the balance taken, the lots consumed, strict, partial or negative."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name
from habitue.ledger.entries import (
    _RETURN_TXN,
    _TXN_AND_LEGS,
    _WITH_TXN_AND_LEGS,
    DebitMode,
    MemberAccounts,
    _accounts,
    _add_balance,
    _lots,
    _transaction,
    _txn_params,
    check_movement,
    lock_balance,
)
from habitue.ledger.errors import InsufficientPoints
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.lots import expired_points, expired_sum, live, write_down_expired
from habitue.programs.service import ProgramInfo

# The lots a debit takes from, in `_consume_lots`' order, each down by what is still to take
# once the lots before it are used up. It runs after the balance's update, as a statement of
# its own: it then sees (and locks) every lot committed before the account's row was locked.
_DEBIT_REST = """, open_lots AS (
        SELECT id, remaining, expires_at, event_id FROM lots
        WHERE account_id = :account AND remaining > 0 AND :lot_amount > 0
          AND (expires_at IS NULL OR expires_at > :now)
        FOR UPDATE
    ), ranked AS (
        SELECT id, remaining,
               sum(remaining) OVER (ORDER BY (event_id = :prefer_event) IS TRUE DESC,
                                    expires_at IS NULL, expires_at, id) AS upto
        FROM open_lots
    ), consumed AS (
        UPDATE lots
        SET remaining = lots.remaining
                        - least(ranked.remaining, :lot_amount - (ranked.upto - ranked.remaining))
        FROM ranked
        WHERE lots.id = ranked.id AND ranked.upto - ranked.remaining < :lot_amount
        RETURNING least(ranked.remaining, :lot_amount - (ranked.upto - ranked.remaining)) AS took
    )
"""


DEBIT_CTES = _WITH_TXN_AND_LEGS + _DEBIT_REST
"""A debit's CTEs once its balance is taken (`txn`, `legs`, `open_lots`, `ranked`,
`consumed`), for a statement that goes on after them; parameters: `DebitPlan.pg_params()`."""


_DEBIT_PG = text(DEBIT_CTES + _RETURN_TXN)


# A strict debit in one statement: the balance is taken (`taken`: no row when it is short)
# and the lots consumed at once. The lots are read with the statement's snapshot: a lot that
# a concurrent transaction committed while this one waited for the account's row is not
# among them, and `finish_strict_debit` consumes what the statement could not.
_TAKE_STRICT = """
    WITH taken AS (
        UPDATE accounts SET balance = balance - :lot_amount
        WHERE id = :account
          AND balance - (SELECT coalesce(sum(remaining), 0) FROM lots
                         WHERE account_id = :account AND remaining > 0
                           AND expires_at <= :now) >= :lot_amount
        RETURNING balance
    ),"""


STRICT_DEBIT_CTES = _TAKE_STRICT + _TXN_AND_LEGS + _DEBIT_REST
"""`DEBIT_CTES` with the balance taken first (`taken`); parameters: `DebitPlan.pg_params()`
of `plan_strict_debit`; then `finish_strict_debit` with what `taken` and `consumed` hold."""


async def _consume_lots(
    session: AsyncSession,
    account_id: int,
    amount: int,
    prefer_event: str | None,
    now: datetime,
) -> None:
    """Take `amount` from the live lots (an expired lot is never spent, written down or not):
    this event's first, then closest to expiry."""
    if amount <= 0:
        return
    order: list[Any] = []
    if prefer_event is not None:
        order.append((_lots.c.event_id == prefer_event).desc())
    order += [_lots.c.expires_at.is_(None), _lots.c.expires_at, _lots.c.id]
    q = (
        select(_lots.c.id, _lots.c.remaining)
        .where(_lots.c.account_id == account_id, _lots.c.remaining > 0, live(now))
        .order_by(*order)
    )
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    left = amount
    changes: list[dict[str, int]] = []
    for lot_id, remaining in (await session.execute(q)).all():
        take = min(left, remaining)
        changes.append({"b_id": lot_id, "b_remaining": remaining - take})
        left -= take
        if left == 0:
            break
    if changes:
        await session.execute(
            update(_lots)
            .where(_lots.c.id == bindparam("b_id"))
            .values(remaining=bindparam("b_remaining")),
            changes,
            execution_options={"synchronize_session": False},
        )


@dataclass(frozen=True, slots=True)
class DebitPlan:
    """A debit whose points are taken from the balance: its transaction and lots to write."""

    taken: int
    txn: dict[str, Any]
    account: int
    lot_amount: int
    prefer_event: str | None

    def pg_params(self) -> dict[str, Any]:
        """The parameters of `DEBIT_CTES`."""
        return {
            **_txn_params(**self.txn),
            "account": self.account,
            "lot_amount": self.lot_amount,
            "prefer_event": self.prefer_event,
        }


def plan_strict_debit(
    program: ProgramInfo,
    accounts: MemberAccounts,
    amount: int,
    *,
    kind: EntryKind,
    reference: str,
    counter: SystemAccount,
    actor: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    effective_at: datetime | None = None,
) -> DebitPlan:
    """A strict debit of `amount` from the available account, for `STRICT_DEBIT_CTES`."""
    if amount <= 0:
        raise ValueError("a debit must be positive")
    check_movement(amount)
    return _debit_plan(
        program,
        accounts.member_id,
        accounts.available,
        amount,
        amount,
        counter=counter,
        kind=kind,
        reference=reference,
        event_id=None,
        prefer_event=None,
        actor=actor,
        reason=reason,
        now=now or clock.now(),
        effective_at=effective_at,
    )


def _debit_plan(
    program: ProgramInfo,
    member_id: int,
    account: int,
    taken: int,
    lot_amount: int,
    *,
    counter: SystemAccount,
    kind: EntryKind,
    reference: str,
    event_id: str | None,
    prefer_event: str | None,
    actor: str | None,
    reason: str | None,
    now: datetime,
    effective_at: datetime | None,
) -> DebitPlan:
    """`taken` points from `account` to the program's `counter` account, as a plan, booked at
    `now` and effective at `effective_at` (`now` when not given)."""
    txn: dict[str, Any] = {
        "program_id": program.id,
        "member_id": member_id,
        "kind": str(kind),
        "reference": reference,
        "event_id": event_id,
        "actor": actor,
        "reason": reason,
        "postings": [
            {"account_id": account, "amount": -taken},
            {"account_id": program.system_accounts[counter], "amount": taken},
        ],
        "now": now,
        "effective_at": effective_at or now,
    }
    return DebitPlan(taken, txn, account, lot_amount, prefer_event)


async def _refuse(session: AsyncSession, account: int, amount: int, now: datetime) -> NoReturn:
    have = await lock_balance(session, account) - await expired_points(session, account, now)
    raise InsufficientPoints(f"needs {amount} points, {max(have, 0)} available")


async def finish_strict_debit(
    session: AsyncSession, plan: DebitPlan, *, taken: bool, consumed: int
) -> None:
    """After `STRICT_DEBIT_CTES`: refuse (InsufficientPoints, the caller's unit is rolled back)
    when the balance was short; consume the lots the statement's snapshot missed."""
    if not taken:
        await _refuse(session, plan.account, plan.taken, plan.txn["now"])
    await _consume_lots(
        session, plan.account, plan.lot_amount - consumed, plan.prefer_event, plan.txn["now"]
    )


async def take_balance(
    session: AsyncSession,
    program: ProgramInfo,
    accounts: MemberAccounts,
    amount: int,
    *,
    kind: EntryKind,
    reference: str,
    counter: SystemAccount,
    mode: DebitMode = "strict",
    from_pending: bool = False,
    event_id: str | None = None,
    prefer_event: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    effective_at: datetime | None = None,
) -> DebitPlan | None:
    """The first half of `debit`: take the points from the balance (locking the account's
    row), and plan the rest; None when there was nothing to take (`partial`)."""
    if amount <= 0:
        raise ValueError("a debit must be positive")
    check_movement(amount)
    now = now or clock.now()
    account = accounts.pending if from_pending else accounts.available
    if mode == "strict":
        # Points of a lot past its expiry are not there, whether the expiry job has written
        # them down yet or not: they are neither counted nor consumed.
        result = await session.execute(
            update(_accounts)
            .where(
                _accounts.c.id == account,
                _accounts.c.balance - expired_sum(account, now) >= amount,
            )
            .values(balance=_accounts.c.balance - amount)
            .returning(_accounts.c.balance)
        )
        if result.first() is None:
            await _refuse(session, account, amount, now)
        before = None
        taken = amount
    else:
        # What may go below what is truly there (a take-back, an erasure) first writes the
        # account's expired lots down, so the balance it works from is the true one.
        if not from_pending:  # pending lots have no expiry
            await write_down_expired(session, program, accounts.member_id, account, now=now)
        before = await lock_balance(session, account)
        taken = amount if mode == "negative" else min(amount, max(before, 0))
        if taken == 0:
            return None
        await _add_balance(session, account, -taken)
    return _debit_plan(
        program,
        accounts.member_id,
        account,
        taken,
        taken if before is None else min(taken, max(before, 0)),
        counter=counter,
        kind=kind,
        reference=reference,
        event_id=event_id,
        prefer_event=prefer_event,
        actor=actor,
        reason=reason,
        now=now,
        effective_at=effective_at,
    )


async def apply_debit(session: AsyncSession, plan: DebitPlan) -> int:
    """The second half of `debit`: its transaction, and the lots it consumes; the txn's id.

    It must run after `take_balance`, in a statement of its own (or as the CTEs of a later
    one): it then sees, and locks, every lot committed before the account's row was locked.
    """
    if dialect_name(session) == "postgresql":
        return int((await session.execute(_DEBIT_PG, plan.pg_params())).scalar_one())
    txn_id = await _transaction(session, **plan.txn)
    await _consume_lots(session, plan.account, plan.lot_amount, plan.prefer_event, plan.txn["now"])
    return txn_id


async def debit(
    session: AsyncSession,
    program: ProgramInfo,
    accounts: MemberAccounts,
    amount: int,
    *,
    kind: EntryKind,
    reference: str,
    counter: SystemAccount,
    mode: DebitMode = "strict",
    from_pending: bool = False,
    event_id: str | None = None,
    prefer_event: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    effective_at: datetime | None = None,
) -> tuple[int, int | None]:
    """Take points from the member; returns (points taken, transaction id).

    `strict` refuses with InsufficientPoints, `partial` takes what there is down to zero,
    `negative` takes all even below zero. Two concurrent debits never take the same points:
    the account row is locked (PostgreSQL) or the database has one writer (SQLite).
    """
    plan = await take_balance(
        session,
        program,
        accounts,
        amount,
        kind=kind,
        reference=reference,
        counter=counter,
        mode=mode,
        from_pending=from_pending,
        event_id=event_id,
        prefer_event=prefer_event,
        actor=actor,
        reason=reason,
        now=now,
        effective_at=effective_at,
    )
    if plan is None:
        return 0, None
    return plan.taken, await apply_debit(session, plan)
