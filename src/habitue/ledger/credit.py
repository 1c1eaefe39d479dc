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


# Many credits in one statement (a batch's group, PostgreSQL): the CTEs `ledger_txns`,
# `ledger_legs`, `ledger_balances` and `ledger_lots`, each credit's rows joined to its
# transaction by its reference. The accounts are found by their key (`id = ANY(...)`), never by
# a scan of the table: without it the planner may hash the whole table (and its dead rows).
# Each credit's account is credited once in the group, so the balance an account has after
# the statement is the one its lot is opened against, as `_CREDIT_REST` does for one credit
# (a debt is repaid first).
_CREDITS_SQL = """
    ledger_txns AS (
        INSERT INTO ledger_transactions (program_id, member_id, kind, reference, event_id,
                                         actor, reason, created_at, effective_at)
        SELECT t.program_id, t.member_id, t.kind, t.reference, t.event_id, t.actor, t.reason,
               t.created_at, t.effective_at
        FROM unnest(CAST(:t_programs AS bigint[]), CAST(:t_members AS bigint[]),
                    CAST(:t_kinds AS varchar[]), CAST(:t_refs AS varchar[]),
                    CAST(:t_events AS varchar[]), CAST(:t_actors AS varchar[]),
                    CAST(:t_reasons AS varchar[]), CAST(:t_created AS timestamptz[]),
                    CAST(:t_effective AS timestamptz[]))
             AS t(program_id, member_id, kind, reference, event_id, actor, reason, created_at,
                  effective_at)
        RETURNING id, reference
    ), ledger_legs AS (
        INSERT INTO postings (program_id, transaction_id, account_id, member_id, amount,
                              rule_code, rule_id, rule_version, created_at)
        SELECT p.program_id, ledger_txns.id, p.account_id, p.member_id, p.amount, p.rule_code,
               p.rule_id, p.rule_version, p.created_at
        FROM unnest(CAST(:p_refs AS varchar[]), CAST(:p_programs AS bigint[]),
                    CAST(:p_accounts AS bigint[]), CAST(:p_members AS bigint[]),
                    CAST(:p_amounts AS bigint[]), CAST(:p_rule_codes AS varchar[]),
                    CAST(:p_rule_ids AS bigint[]), CAST(:p_rule_versions AS integer[]),
                    CAST(:p_created AS timestamptz[]))
             AS p(reference, program_id, account_id, member_id, amount, rule_code, rule_id,
                  rule_version, created_at)
        JOIN ledger_txns ON ledger_txns.reference = p.reference
    ), ledger_balances AS (
        UPDATE accounts SET balance = accounts.balance + c.total
        FROM unnest(CAST(:c_targets AS bigint[]), CAST(:c_totals AS bigint[])) AS c(target, total)
        WHERE accounts.id = c.target AND accounts.id = ANY(CAST(:c_targets AS bigint[]))
        RETURNING accounts.id, accounts.balance
    ), ledger_lots AS (
        INSERT INTO lots (program_id, member_id, account_id, transaction_id, event_id, amount,
                          remaining, earned_at, expires_at, pending_until)
        SELECT c.program_id, c.member_id, c.target, ledger_txns.id, c.event_id, c.total,
               least(c.total, ledger_balances.balance), c.earned_at, c.expires_at,
               c.pending_until
        FROM unnest(CAST(:c_refs AS varchar[]), CAST(:c_programs AS bigint[]),
                    CAST(:c_members AS bigint[]), CAST(:c_targets AS bigint[]),
                    CAST(:c_event_ids AS varchar[]), CAST(:c_totals AS bigint[]),
                    CAST(:c_earned AS timestamptz[]), CAST(:c_expires AS timestamptz[]),
                    CAST(:c_pending AS timestamptz[]))
             AS c(reference, program_id, member_id, target, event_id, total, earned_at,
                  expires_at, pending_until)
        JOIN ledger_txns ON ledger_txns.reference = c.reference
        JOIN ledger_balances ON ledger_balances.id = c.target
        WHERE least(c.total, ledger_balances.balance) > 0
    )
"""


def credits_part(plans: Sequence[CreditPlan]) -> Part:
    """Several planned credits, each to an account of its own, as the CTEs of a composed
    statement (`db.compose`, PostgreSQL), under the `ledger` namespace: what `apply_credit`
    writes for each, in one statement."""
    targets = [plan.target for plan in plans]
    if len(set(targets)) != len(targets):
        raise AssertionError("credits_part credits each account once")
    t: dict[str, list[Any]] = {k: [] for k in (
        "t_programs", "t_members", "t_kinds", "t_refs", "t_events", "t_actors", "t_reasons",
        "t_created", "t_effective", "p_refs", "p_programs", "p_accounts", "p_members",
        "p_amounts", "p_rule_codes", "p_rule_ids", "p_rule_versions", "p_created", "c_refs",
        "c_programs", "c_members", "c_targets", "c_event_ids", "c_totals", "c_earned",
        "c_expires", "c_pending",
    )}  # fmt: skip
    for plan in plans:
        txn = plan.txn
        postings = txn["postings"]
        if sum(p["amount"] for p in postings) != 0:
            raise AssertionError("postings of a transaction must sum to zero")
        ref, program_id, member_id = txn["reference"], txn["program_id"], txn["member_id"]
        now = txn["now"]
        t["t_programs"].append(program_id)
        t["t_members"].append(member_id)
        t["t_kinds"].append(str(txn["kind"]))
        t["t_refs"].append(ref)
        t["t_events"].append(txn["event_id"])
        t["t_actors"].append(txn["actor"])
        t["t_reasons"].append(txn["reason"])
        t["t_created"].append(now)
        t["t_effective"].append(txn["effective_at"] or now)
        for p in postings:
            if not p["amount"]:
                continue
            t["p_refs"].append(ref)
            t["p_programs"].append(program_id)
            t["p_accounts"].append(p["account_id"])
            t["p_members"].append(member_id)
            t["p_amounts"].append(p["amount"])
            t["p_rule_codes"].append(p.get("rule_code"))
            t["p_rule_ids"].append(p.get("rule_id"))
            t["p_rule_versions"].append(p.get("rule_version"))
            t["p_created"].append(now)
        t["c_refs"].append(ref)
        t["c_programs"].append(program_id)
        t["c_members"].append(member_id)
        t["c_targets"].append(plan.target)
        t["c_event_ids"].append(txn["event_id"])
        t["c_totals"].append(plan.total)
        t["c_earned"].append(plan.earned_at)
        t["c_expires"].append(plan.expires_at)
        t["c_pending"].append(plan.pending_until)
    return Part("ledger", _CREDITS_SQL, t)
