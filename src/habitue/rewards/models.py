"""Tables of the rewards room: catalogue, redemptions, coupons, offers, referrals."""

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


class Reward(Base):
    """One entry of a program's catalogue."""

    __tablename__ = "rewards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(ident(64))
    kind: Mapped[str] = mapped_column(String(16))
    cost_points: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stock: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    per_member_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    period_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tiers: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    texts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    value_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    percent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cap_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    min_basket_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sku: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cause: Mapped[str | None] = mapped_column(String(200), nullable=True)
    partner_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    partner_rate: Mapped[str | None] = mapped_column(String(32), nullable=True)
    coupon_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class Redemption(Base):
    """A member's spending of points on a reward."""

    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_redemptions_member_reward", "member_id", "reward_id", "created_at"),
        Index("ix_redemptions_reward_created", "reward_id", "created_at"),
    )


class Coupon(Base):
    """A code a till can validate and burn once."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    code: Mapped[str] = mapped_column(ident(32), unique=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    redemption_id: Mapped[int | None] = mapped_column(
        ForeignKey("redemptions.id"), nullable=True, index=True
    )
    campaign: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    redeemed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    basket_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    discount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_id: Mapped[str | None] = mapped_column(ident(36), nullable=True, index=True)
    """The event whose `coupon` rule issued it (None: a redemption's or a campaign's)."""

    __table_args__ = (
        Index("ix_coupons_state_expires", "state", "expires_at"),
        Index("ix_coupons_member_issued", "member_id", "issued_at"),
    )


class CouponAttempt(Base):
    """A failed coupon lookup (or a refused one), kept for guessing forensics."""

    __tablename__ = "coupon_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    principal: Mapped[str] = mapped_column(String(200))
    code_tried: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_coupon_attempts_program_created", "program_id", "created_at"),)


class Offer(Base):
    """A personal offer: a discount targeted at listed members, clipped before use."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(ident(64))
    texts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    value_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    percent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cap_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    min_basket_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class OfferTarget(Base):
    """One member an offer is meant for, and whether they clipped and used it."""

    __tablename__ = "offer_targets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    clipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (UniqueConstraint("offer_id", "member_id"),)


class ReferralSettings(Base):
    """A program's referral terms."""

    __tablename__ = "referral_settings"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    referrer_points: Mapped[int] = mapped_column(BigInteger)
    referee_points: Mapped[int] = mapped_column(BigInteger)
    cap_per_referrer: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    min_purchase_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class ReferralCode(Base):
    """A member's own referral code."""

    __tablename__ = "referral_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(ident(32))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class Referral(Base):
    """A referee brought by a referrer: pending → qualified → rewarded, or canceled."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    purchase_event_id: Mapped[str | None] = mapped_column(ident(36), nullable=True, index=True)
    release_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_points: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_referrals_status_release", "program_id", "status", "release_at"),)
