"""Members and their cards."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident
from habitue.privacy.pii import Sealed


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    external_id: Mapped[str | None] = mapped_column(ident(200), nullable=True)
    email: Mapped[str | None] = mapped_column(Sealed(), nullable=True)  # encrypted at rest
    email_hash: Mapped[str | None] = mapped_column(ident(64), nullable=True)
    phone: Mapped[str | None] = mapped_column(Sealed(), nullable=True)  # encrypted at rest
    phone_hash: Mapped[str | None] = mapped_column(ident(64), nullable=True)
    first_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    status: Mapped[str] = mapped_column(String(16), default="active")
    tier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consents: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        UniqueConstraint("program_id", "email_hash"),
        Index("ix_members_program_phone_hash", "program_id", "phone_hash"),
    )


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    number: Mapped[str] = mapped_column(ident(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="digital")
    status: Mapped[str] = mapped_column(String(16), default="active")
    replaced_by: Mapped[str | None] = mapped_column(ident(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
