"""The ledger's core: accounts, transactions of postings that sum to zero, balances.

Every function here runs inside the caller's transaction and never commits. The ledger takes
account ids (`MemberAccounts`), never members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.bounds import MAX_BALANCE
from habitue.db import dialect_name, table_of
from habitue.ledger.errors import BalanceLimit
from habitue.ledger.kinds import EntryKind, MemberAccount
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting

_accounts = table_of(Account)


_txns = table_of(LedgerTransaction)


_postings = table_of(Posting)


_lots = table_of(Lot)


# Hot-path statements, built once: reused statement objects keep their compiled form.
_TXN_INSERT = insert(_txns).returning(_txns.c.id)


_POSTINGS_INSERT = insert(_postings)


_LOT_INSERT = insert(_lots)


_ADD_BALANCE = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("acc_id"))
    .values(balance=_accounts.c.balance + bindparam("acc_delta"))
    .returning(_accounts.c.balance)
)


DebitMode = Literal["strict", "partial", "negative"]


@dataclass(frozen=True, slots=True)
class MemberAccounts:
    """The member's internal id and its two point accounts."""

    member_id: int
    available: int
    pending: int


@dataclass(frozen=True, slots=True)
class Leg:
    """Points credited to the member by one rule (for the rule id on the posting)."""

    amount: int
    rule_code: str | None = None
    rule_id: int | None = None
    rule_version: int | None = None


async def open_accounts(session: AsyncSession, program_id: int, member_id: int) -> MemberAccounts:
    """Create a new member's `available` and `pending` accounts."""
    ids = (
        await session.execute(
            insert(_accounts).returning(
                _accounts.c.id, _accounts.c.kind, sort_by_parameter_order=True
            ),
            [
                {
                    "program_id": program_id,
                    "member_id": member_id,
                    "kind": str(MemberAccount.AVAILABLE),
                    "balance": 0,
                },
                {
                    "program_id": program_id,
                    "member_id": member_id,
                    "kind": str(MemberAccount.PENDING),
                    "balance": 0,
                },
            ],
        )
    ).all()
    by_kind = {kind: i for i, kind in ids}
    return MemberAccounts(member_id, by_kind["available"], by_kind["pending"])


async def _transaction(
    session: AsyncSession,
    *,
    program_id: int,
    member_id: int | None,
    kind: EntryKind,
    reference: str,
    event_id: str | None,
    actor: str | None,
    reason: str | None,
    postings: Sequence[dict[str, Any]],
    now: datetime,
    effective_at: datetime | None = None,
) -> int:
    """Write a transaction and its postings: booked at `now`, effective at `effective_at`
    (when what it records happened; `now` when not given)."""
    if sum(p["amount"] for p in postings) != 0:
        raise AssertionError("postings of a transaction must sum to zero")
    txn_id = (
        await session.execute(
            _TXN_INSERT,
            {
                "program_id": program_id,
                "member_id": member_id,
                "kind": str(kind),
                "reference": reference,
                "event_id": event_id,
                "actor": actor,
                "reason": reason,
                "created_at": now,
                "effective_at": effective_at or now,
            },
        )
    ).scalar_one()
    rows = [
        {
            "program_id": program_id,
            "transaction_id": txn_id,
            "member_id": member_id,
            "rule_code": None,
            "rule_id": None,
            "rule_version": None,
            "created_at": now,
            **p,
        }
        for p in postings
        if p["amount"] != 0
    ]
    await session.execute(_POSTINGS_INSERT, rows)
    return int(txn_id)


def check_movement(points: int) -> None:
    """Refuse a movement larger than any balance may be: it could only overflow one."""
    if abs(points) > MAX_BALANCE:
        raise BalanceLimit(f"a movement of {points} points is beyond the ledger's limit")


async def _add_balance(session: AsyncSession, account_id: int, amount: int) -> int:
    result = await session.execute(_ADD_BALANCE, {"acc_id": account_id, "acc_delta": amount})
    return int(result.scalar_one())


# PostgreSQL: the ledger's writes in one round trip each, as data-modifying CTEs (foreign
# keys are checked at the statement's end, when the transaction's row exists). `txn` and
# `legs` write the transaction and its postings; the credit adds the balance and the lot,
# the debit consumes the lots. SQLite runs the same writes statement by statement.
_TXN_AND_LEGS = """
    txn AS (
        INSERT INTO ledger_transactions
            (program_id, member_id, kind, reference, event_id, actor, reason, created_at,
             effective_at)
        VALUES (:program_id, :member_id, :kind, :reference, :event_id, :actor, :reason, :now,
                :effective_at)
        RETURNING id
    ), legs AS (
        INSERT INTO postings (program_id, transaction_id, account_id, member_id, amount,
                              rule_code, rule_id, rule_version, created_at)
        SELECT :program_id, txn.id, leg.account_id, :member_id, leg.amount,
               leg.rule_code, leg.rule_id, leg.rule_version, :now
        FROM txn, unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[]),
                         CAST(:rule_codes AS varchar[]), CAST(:rule_ids AS bigint[]),
                         CAST(:rule_versions AS integer[]))
             AS leg(account_id, amount, rule_code, rule_id, rule_version)
    )
"""


_WITH = """
    WITH"""


_WITH_TXN_AND_LEGS = _WITH + _TXN_AND_LEGS


_RETURN_TXN = """
    SELECT txn.id FROM txn
"""


def _txn_params(
    *,
    program_id: int,
    member_id: int | None,
    kind: EntryKind,
    reference: str,
    event_id: str | None,
    actor: str | None,
    reason: str | None,
    postings: Sequence[dict[str, Any]],
    now: datetime,
    effective_at: datetime | None = None,
) -> dict[str, Any]:
    """The parameters of `_WITH_TXN_AND_LEGS` (the postings must sum to zero)."""
    if sum(p["amount"] for p in postings) != 0:
        raise AssertionError("postings of a transaction must sum to zero")
    legs = [p for p in postings if p["amount"] != 0]
    return {
        "program_id": program_id,
        "member_id": member_id,
        "kind": str(kind),
        "reference": reference,
        "event_id": event_id,
        "actor": actor,
        "reason": reason,
        "now": now,
        "effective_at": effective_at or now,
        "accounts": [p["account_id"] for p in legs],
        "amounts": [p["amount"] for p in legs],
        "rule_codes": [p.get("rule_code") for p in legs],
        "rule_ids": [p.get("rule_id") for p in legs],
        "rule_versions": [p.get("rule_version") for p in legs],
    }


async def accounts_of(
    session: AsyncSession, member_ids: Sequence[int]
) -> dict[int, MemberAccounts]:
    rows = (
        await session.execute(
            select(_accounts.c.member_id, _accounts.c.kind, _accounts.c.id).where(
                _accounts.c.member_id.in_(list(member_ids))
            )
        )
    ).all()
    acc: dict[int, dict[str, int]] = {}
    for member_id, kind, account_id in rows:
        acc.setdefault(member_id, {})[kind] = account_id
    return {m: MemberAccounts(m, k["available"], k["pending"]) for m, k in acc.items()}


async def lock_balance(session: AsyncSession, account_id: int) -> int:
    """The account's balance, its row locked until the transaction ends (PostgreSQL)."""
    q = select(_accounts.c.balance).where(_accounts.c.id == account_id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    return int((await session.execute(q)).scalar_one())
