"""Tables of the promotions room: promotions, their uses, and confirmed baskets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident


class Promotion(Base):
    """An automatic promotion, a promo code, or the terms of a reward's coupons."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(ident(64))
    trigger: Mapped[str] = mapped_column(String(16))
    promo_code: Mapped[str | None] = mapped_column(ident(64), nullable=True)
    reward_code: Mapped[str | None] = mapped_column(ident(64), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class PromotionStamp(Base):
    """A random token replaced with every change of a program's promotions: the till's
    process cache of the live promotions is current while the token is the same."""

    __tablename__ = "promotion_stamps"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(32))


class PromotionUse(Base):
    """One confirmed basket a promotion took something off (for per-member limits)."""

    __tablename__ = "promotion_uses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    external_id: Mapped[str] = mapped_column(String(200))
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_promotion_uses_member", "promotion_id", "member_id"),)


class BasketConfirmation(Base):
    """A confirmed basket, by the purchase's external id: a retry returns `response`."""

    __tablename__ = "basket_confirmations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "external_id"),)
