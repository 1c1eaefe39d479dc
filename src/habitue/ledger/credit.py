"""Crediting points: a transaction, the balance and a lot (planned, then written)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Part, dialect_name
from habitue.ledger.entries import (
    _LOT_INSERT,
    _RETURN_TXN,
    _TXN_AND_LEGS,
    _WITH_TXN_AND_LEGS,
    Leg,
    MemberAccounts,
    _add_balance,
    _transaction,
    _txn_params,
    check_movement,
)
from habitue.ledger.expiry import lot_expiry
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.programs.service import ProgramInfo

# On a negative balance the new points first repay the debt: the lot opens with what is left
# over (`least(total, new balance)`), or not at all.
_CREDIT_REST = """, account AS (
        UPDATE accounts SET balance = balance + :total WHERE id = :target RETURNING balance
    ), lot AS (
        INSERT INTO lots (program_id, member_id, account_id, transaction_id, event_id, amount,
                          remaining, earned_at, expires_at, pending_until)
        SELECT :program_id, :member_id, :target, txn.id, :event_id, :total,
               least(:total, account.balance), :earned_at, :expires_at, :pending_until
        FROM txn, account
        WHERE least(:total, account.balance) > 0
    )
"""


CREDIT_CTES = _WITH_TXN_AND_LEGS + _CREDIT_REST
"""A credit's CTEs (`txn`, `legs`, `account`, `lot`), for a statement that goes on after them
with `, name AS (...)` and a last statement; its parameters are `CreditPlan.pg_params()`."""


_CREDIT_PG = text(CREDIT_CTES + _RETURN_TXN)


@dataclass(frozen=True, slots=True)
class CreditPlan:
    """A credit decided but not written: its transaction, the account and the lot to open."""

    txn: dict[str, Any]
    target: int
    total: int
    earned_at: datetime
    expires_at: datetime | None
    pending_until: datetime | None

    def part(self) -> Part:
        """The credit as the first CTEs (`txn`, `legs`, `account`, `lot`) of a composed
        statement (`db.compose`), its parameters under the `ledger` namespace."""
        return Part("ledger", _TXN_AND_LEGS + _CREDIT_REST, self.pg_params())

    def pg_params(self) -> dict[str, Any]:
        """The parameters of `CREDIT_CTES`."""
        return {
            **_txn_params(**self.txn),
            "total": self.total,
            "target": self.target,
            "earned_at": self.earned_at,
            "expires_at": self.expires_at,
            "pending_until": self.pending_until,
        }


def plan_credit(
    program: ProgramInfo,
    accounts: MemberAccounts,
    legs: Sequence[Leg],
    *,
    kind: EntryKind,
    reference: str,
    counter: SystemAccount = SystemAccount.ISSUED,
    event_id: str | None = None,
    earned_at: datetime | None = None,
    pending_until: datetime | None = None,
    actor: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    effective_at: datetime | None = None,
) -> CreditPlan:
    """What `credit` writes (pending when `pending_until` is in the future), as plain values.

    The transaction is booked at `now` and effective at `effective_at`, by default when the
    points were earned (`earned_at`: an event's `occurred_at`), else `now`."""
    now = now or clock.now()
    total = sum(leg.amount for leg in legs)
    if total <= 0:
        raise ValueError("a credit must be positive")
    check_movement(total)
    earned_at = earned_at or now
    pending = pending_until is not None and pending_until > now
    target = accounts.pending if pending else accounts.available
    postings = [
        {
            "account_id": target,
            "amount": leg.amount,
            "rule_code": leg.rule_code,
            "rule_id": leg.rule_id,
            "rule_version": leg.rule_version,
        }
        for leg in legs
        if leg.amount
    ]
    postings.append({"account_id": program.system_accounts[counter], "amount": -total})
    expires_at = (
        None
        if pending
        else lot_expiry(
            max(earned_at, now) if kind == EntryKind.RELEASE else earned_at,
            program.expiry_policy,
            program.expiry_days,
            program.timezone,
        )
    )
    txn: dict[str, Any] = {
        "program_id": program.id,
        "member_id": accounts.member_id,
        "kind": str(kind),
        "reference": reference,
        "event_id": event_id,
        "actor": actor,
        "reason": reason,
        "postings": postings,
        "now": now,
        "effective_at": effective_at or earned_at,
    }
    return CreditPlan(
        txn=txn,
        target=target,
        total=total,
        earned_at=earned_at,
        expires_at=expires_at,
        pending_until=pending_until if pending else None,
    )


async def apply_credit(session: AsyncSession, plan: CreditPlan) -> int:
    """Write a planned credit as one lot; returns its transaction's id."""
    if dialect_name(session) == "postgresql":
        result = await session.execute(_CREDIT_PG, plan.pg_params())
        return int(result.scalar_one())
    txn_id = await _transaction(session, **plan.txn)
    balance = await _add_balance(session, plan.target, plan.total)
    # On a negative balance, new points first repay the debt: only the rest opens a lot.
    open_amount = max(0, min(plan.total, balance))
    if open_amount > 0:
        await session.execute(
            _LOT_INSERT,
            {
                "program_id": plan.txn["program_id"],
                "member_id": plan.txn["member_id"],
                "account_id": plan.target,
                "transaction_id": txn_id,
                "event_id": plan.txn["event_id"],
                "amount": plan.total,
                "remaining": open_amount,
                "earned_at": plan.earned_at,
                "expires_at": plan.expires_at,
                "pending_until": plan.pending_until,
            },
        )
    return txn_id


async def credit(
    session: AsyncSession,
    program: ProgramInfo,
    accounts: MemberAccounts,
    legs: Sequence[Leg],
    *,
    kind: EntryKind,
    reference: str,
    counter: SystemAccount = SystemAccount.ISSUED,
    event_id: str | None = None,
    earned_at: datetime | None = None,
    pending_until: datetime | None = None,
    actor: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    effective_at: datetime | None = None,
) -> int:
    """Credit points to the member (pending when `pending_until` is in the future) as one lot,
    effective at `effective_at` (see `plan_credit`)."""
    plan = plan_credit(
        program,
        accounts,
        legs,
        kind=kind,
        reference=reference,
        counter=counter,
        event_id=event_id,
        earned_at=earned_at,
        pending_until=pending_until,
        actor=actor,
        reason=reason,
        now=now,
        effective_at=effective_at,
    )
    return await apply_credit(session, plan)
