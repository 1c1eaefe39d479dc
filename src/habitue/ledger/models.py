"""Double-entry points ledger: accounts, transactions of postings, lots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from habitue.bounds import MAX_BALANCE
from habitue.db import Base, BigId, ident, partial_index, sqlite_foreign_key
from habitue.ledger.kinds import ACCOUNT_KIND_CHECK, ENTRY_KIND_CHECK

BALANCE_BOUNDS = f"{{column}} BETWEEN -{MAX_BALANCE} AND {MAX_BALANCE}"
"""The CHECK that keeps a balance, a posting or a lot within ±`MAX_BALANCE` (0015)."""


class Account(Base):
    """A member's `available`/`pending` account, or a program's system account.

    Member balances are materialised here in the same transaction as their postings. System
    accounts (issued, redeemed, expired, adjusted) are touched by every transaction, so their
    balance is the sum of their postings, computed when read, to avoid a global hot row.
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    kind: Mapped[str] = mapped_column(ident(16))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        # Migration 0015: no balance can come near 2**63 (see habitue.bounds).
        CheckConstraint(BALANCE_BOUNDS.format(column="balance"), name="balance_bounds"),
        # Migration 0024: a member's or a system account (`habitue.ledger.kinds`).
        CheckConstraint(ACCOUNT_KIND_CHECK, name="kind_known"),
        Index("ux_accounts_member_kind", "member_id", "kind", unique=True),
        partial_index(
            "ux_accounts_system_kind", "program_id", "kind", unique=True, where="member_id IS NULL"
        ),
    )


class LedgerTransaction(Base):
    """One movement of points, its postings summing to zero; `kind` says what it records."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigId)
    member_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(ident(200))
    event_id: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When the transaction was booked."""
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When what it records happened (migration 0032): an event's `occurred_at`, a lot's
    expiry, the booking time for what happens as it is booked. Reports, charts and the
    member's history place a movement by it."""

    __table_args__ = (
        # Migration 0024: one of `habitue.ledger.kinds.EntryKind`.
        CheckConstraint(ENTRY_KIND_CHECK, name="kind_known"),
        Index("ux_ledger_transactions_reference", "program_id", "reference", unique=True),
        # Migration 0032: a member's history in order of effect.
        Index("ix_ledger_transactions_member", "member_id", "effective_at", "id"),
        # Migration 0038: a foreign key on SQLite only (`habitue.db.sqlite_foreign_key`).
        sqlite_foreign_key("program_id", "programs.id"),
    )


class Posting(Base):
    """One leg of a transaction; a positive amount credits the account."""

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int] = mapped_column(BigId, index=True)
    account_id: Mapped[int] = mapped_column(BigId, index=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    rule_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rule_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(BALANCE_BOUNDS.format(column="amount"), name="amount_bounds"),
        # Migration 0038: foreign keys on SQLite only (`habitue.db.sqlite_foreign_key`).
        sqlite_foreign_key("transaction_id", "ledger_transactions.id"),
        sqlite_foreign_key("account_id", "accounts.id"),
    )


class Lot(Base):
    """Points credited together, consumed by spends, take-backs and expiry."""

    __tablename__ = "lots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigId)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pending_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        CheckConstraint(BALANCE_BOUNDS.format(column="amount"), name="amount_bounds"),
        CheckConstraint(BALANCE_BOUNDS.format(column="remaining"), name="remaining_bounds"),
        Index("ix_lots_account_open", "account_id", "remaining"),
        Index("ix_lots_program_expires", "program_id", "expires_at"),
        # Only pending lots have a release time (migration 0011).
        partial_index(
            "ix_lots_program_pending",
            "program_id",
            "pending_until",
            where="pending_until IS NOT NULL",
        ),
        Index("ix_lots_event", "event_id"),
        # Migration 0038: a foreign key on SQLite only (`habitue.db.sqlite_foreign_key`).
        sqlite_foreign_key("account_id", "accounts.id"),
    )
