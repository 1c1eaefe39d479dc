"""Programs and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(ident(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    points_name: Mapped[str] = mapped_column(String(64))
    earn_rate: Mapped[str] = mapped_column(String(32))
    rounding: Mapped[str] = mapped_column(String(16))
    pending_days: Mapped[int] = mapped_column(Integer, default=0)
    expiry_policy: Mapped[str] = mapped_column(String(16))
    expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    redeem_rate: Mapped[str] = mapped_column(String(32))
    redeem_step: Mapped[int] = mapped_column(Integer, default=1)
    card_prefix: Mapped[str] = mapped_column(String(8))
    feed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(ident(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    partner_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (UniqueConstraint("program_id", "name"),)
