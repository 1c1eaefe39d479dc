"""Recorded events (purchases, refunds, actions) and their basket lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident, sqlite_foreign_key


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(ident(36), primary_key=True)
    program_id: Mapped[int] = mapped_column(BigId)
    member_id: Mapped[int] = mapped_column(BigId)
    type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(ident(64))
    external_id: Mapped[str] = mapped_column(ident(200))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    points_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    refers_to: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points_taken_back: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_returned: Mapped[int] = mapped_column(BigInteger, default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "source", "external_id"),
        Index("ix_events_member_occurred", "member_id", "occurred_at"),
        Index("ix_events_program_occurred", "program_id", "occurred_at"),
        # Migration 0038: foreign keys on SQLite only (`habitue.db.sqlite_foreign_key`).
        sqlite_foreign_key("program_id", "programs.id"),
        sqlite_foreign_key("member_id", "members.id"),
    )


class EventLine(Base):
    __tablename__ = "event_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(ident(36), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str | None] = mapped_column(String(100), nullable=True)
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    quantity: Mapped[str] = mapped_column(String(20))
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The tax in `amount_minor` (0: none known)."""

    # Migration 0038: a foreign key on SQLite only (`habitue.db.sqlite_foreign_key`).
    __table_args__ = (sqlite_foreign_key("event_id", "events.id"),)


class IdempotencyRecord(Base):
    """A POST carrying an `Idempotency-Key`: claimed, then answered (habitue.events.idempotency).

    Scoped to the credential that sent it (`credential`: "admin" for the operator key, else
    the API key's SHA-256, as `api_keys.key_hash`). While `status_code` is NULL the request is
    in progress, held by `token` until `lease_until`; `committed_at` is set in the transaction
    of the request's work, with the response when it is known there. Expires `created_at` +
    `HABITUE_IDEMPOTENCY_TTL_HOURS`.
    """

    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    credential: Mapped[str] = mapped_column(ident(64))
    key: Mapped[str] = mapped_column(ident(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(32))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    body: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "credential", "key"),
        Index("ix_idempotency_records_created_at", "created_at"),
    )


class IntakeParked(Base):
    """A stream message `habitue consume` could not record, kept with the reason."""

    __tablename__ = "intake_parked"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    stream: Mapped[str] = mapped_column(ident(64))
    subject: Mapped[str] = mapped_column(String(255))
    stream_seq: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("stream", "stream_seq", name="uq_intake_parked_stream"),
        Index("ix_intake_parked_program_parked", "program_id", "parked_at"),
    )
