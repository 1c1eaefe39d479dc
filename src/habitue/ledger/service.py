"""The only writer of points: transactions of postings that sum to zero, balances, lots.

Every function here runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn

from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.bounds import MAX_BALANCE
from habitue.db import Part, dialect_name, table_of
from habitue.ledger.errors import BalanceLimit, InsufficientPoints
from habitue.ledger.expiry import lot_expiry
from habitue.ledger.kinds import EntryKind, MemberAccount, SystemAccount
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.programs.service import ProgramInfo

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
) -> int:
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
            (program_id, member_id, kind, reference, event_id, actor, reason, created_at)
        VALUES (:program_id, :member_id, :kind, :reference, :event_id, :actor, :reason, :now)
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
_RETURN_TXN = """
    SELECT txn.id FROM txn
"""
CREDIT_CTES = _WITH_TXN_AND_LEGS + _CREDIT_REST
"""A credit's CTEs (`txn`, `legs`, `account`, `lot`), for a statement that goes on after them
with `, name AS (...)` and a last statement; its parameters are `CreditPlan.pg_params()`."""
_CREDIT_PG = text(CREDIT_CTES + _RETURN_TXN)
# The lots a debit takes from, in `_consume_lots`' order, each down by what is still to take
# once the lots before it are used up. It runs after the balance's update, as a statement of
# its own: it then sees (and locks) every lot committed before the account's row was locked.
_DEBIT_REST = """, open_lots AS (
        SELECT id, remaining, expires_at, event_id FROM lots
        WHERE account_id = :account AND remaining > 0 AND :lot_amount > 0
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
        WHERE id = :account AND balance >= :lot_amount
        RETURNING balance
    ),"""
STRICT_DEBIT_CTES = _TAKE_STRICT + _TXN_AND_LEGS + _DEBIT_REST
"""`DEBIT_CTES` with the balance taken first (`taken`); parameters: `DebitPlan.pg_params()`
of `plan_strict_debit`; then `finish_strict_debit` with what `taken` and `consumed` hold."""


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
        "accounts": [p["account_id"] for p in legs],
        "amounts": [p["amount"] for p in legs],
        "rule_codes": [p.get("rule_code") for p in legs],
        "rule_ids": [p.get("rule_id") for p in legs],
        "rule_versions": [p.get("rule_version") for p in legs],
    }


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
) -> CreditPlan:
    """What `credit` writes (pending when `pending_until` is in the future), as plain values."""
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
) -> int:
    """Credit points to the member (pending when `pending_until` is in the future) as one lot."""
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
    )
    return await apply_credit(session, plan)


async def _lock_balance(session: AsyncSession, account_id: int) -> int:
    q = select(_accounts.c.balance).where(_accounts.c.id == account_id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    return int((await session.execute(q)).scalar_one())


async def _consume_lots(
    session: AsyncSession, account_id: int, amount: int, prefer_event: str | None
) -> None:
    """Take `amount` from the open lots: this event's first, then closest to expiry."""
    if amount <= 0:
        return
    order: list[Any] = []
    if prefer_event is not None:
        order.append((_lots.c.event_id == prefer_event).desc())
    order += [_lots.c.expires_at.is_(None), _lots.c.expires_at, _lots.c.id]
    q = (
        select(_lots.c.id, _lots.c.remaining)
        .where(_lots.c.account_id == account_id, _lots.c.remaining > 0)
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
) -> DebitPlan:
    """`taken` points from `account` to the program's `counter` account, as a plan."""
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
    }
    return DebitPlan(taken, txn, account, lot_amount, prefer_event)


async def _refuse(session: AsyncSession, account: int, amount: int) -> NoReturn:
    have = await _lock_balance(session, account)
    raise InsufficientPoints(f"needs {amount} points, {max(have, 0)} available")


async def finish_strict_debit(
    session: AsyncSession, plan: DebitPlan, *, taken: bool, consumed: int
) -> None:
    """After `STRICT_DEBIT_CTES`: refuse (InsufficientPoints, the caller's unit is rolled back)
    when the balance was short; consume the lots the statement's snapshot missed."""
    if not taken:
        await _refuse(session, plan.account, plan.taken)
    await _consume_lots(session, plan.account, plan.lot_amount - consumed, plan.prefer_event)


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
) -> DebitPlan | None:
    """The first half of `debit`: take the points from the balance (locking the account's
    row), and plan the rest; None when there was nothing to take (`partial`)."""
    if amount <= 0:
        raise ValueError("a debit must be positive")
    check_movement(amount)
    now = now or clock.now()
    account = accounts.pending if from_pending else accounts.available
    if mode == "strict":
        result = await session.execute(
            update(_accounts)
            .where(_accounts.c.id == account, _accounts.c.balance >= amount)
            .values(balance=_accounts.c.balance - amount)
            .returning(_accounts.c.balance)
        )
        if result.first() is None:
            await _refuse(session, account, amount)
        before = None
        taken = amount
    else:
        before = await _lock_balance(session, account)
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
    )


async def apply_debit(session: AsyncSession, plan: DebitPlan) -> int:
    """The second half of `debit`: its transaction, and the lots it consumes; the txn's id.

    It must run after `take_balance`, in a statement of its own (or as the CTEs of a later
    one): it then sees, and locks, every lot committed before the account's row was locked.
    """
    if dialect_name(session) == "postgresql":
        return int((await session.execute(_DEBIT_PG, plan.pg_params())).scalar_one())
    txn_id = await _transaction(session, **plan.txn)
    await _consume_lots(session, plan.account, plan.lot_amount, plan.prefer_event)
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
    )
    if plan is None:
        return 0, None
    return plan.taken, await apply_debit(session, plan)


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


async def balances(
    session: AsyncSession, accounts: MemberAccounts, *, expiring: int = 3
) -> dict[str, Any]:
    """Available and pending points, and the next lots to expire."""
    rows = dict(
        (
            await session.execute(
                select(_accounts.c.kind, _accounts.c.balance).where(
                    _accounts.c.member_id == accounts.member_id
                )
            )
        ).all()
    )
    exp = (
        await session.execute(
            select(_lots.c.expires_at, func.sum(_lots.c.remaining))
            .where(
                _lots.c.account_id == accounts.available,
                _lots.c.remaining > 0,
                _lots.c.expires_at.is_not(None),
            )
            .group_by(_lots.c.expires_at)
            .order_by(_lots.c.expires_at)
            .limit(expiring)
        )
    ).all()
    return {
        "available": int(rows.get("available", 0)),
        "pending": int(rows.get("pending", 0)),
        "expiring": [
            {"points": int(points), "expires_at": clock.as_utc(at).isoformat()}
            for at, points in exp
        ],
    }


async def history(
    session: AsyncSession, member_id: int, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The member's movements, newest first, one row per transaction."""
    member_accounts = select(_accounts.c.id).where(_accounts.c.member_id == member_id)
    q = (
        select(
            _txns.c.id,
            _txns.c.kind,
            _txns.c.event_id,
            _txns.c.reason,
            _txns.c.actor,
            _txns.c.created_at,
            _accounts.c.kind.label("account"),
            func.sum(_postings.c.amount).label("amount"),
        )
        .join(_postings, _postings.c.transaction_id == _txns.c.id)
        .join(_accounts, _accounts.c.id == _postings.c.account_id)
        .where(_txns.c.member_id == member_id, _postings.c.account_id.in_(member_accounts))
        .group_by(
            _txns.c.id,
            _txns.c.kind,
            _txns.c.event_id,
            _txns.c.reason,
            _txns.c.actor,
            _txns.c.created_at,
            _accounts.c.kind,
        )
        .order_by(_txns.c.id.desc())
    )
    if before is not None:
        q = q.where(_txns.c.id < before)
    rows = (await session.execute(q.limit(limit * 2))).all()
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        item = merged.setdefault(
            r.id,
            {
                "id": r.id,
                "kind": r.kind,
                "event_id": r.event_id,
                "reason": r.reason,
                "actor": r.actor,
                "created_at": clock.as_utc(r.created_at).isoformat(),
                "available": 0,
                "pending": 0,
            },
        )
        item[r.account] = int(r.amount)
    items = sorted(merged.values(), key=lambda i: -int(i["id"]))[:limit]
    for item in items:
        item["points"] = item["available"] + item["pending"]
    return items


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
