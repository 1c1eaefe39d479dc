"""Tables of the tiers room: the ladder, members' status, qualification buckets, history."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident


class TierLadder(Base):
    """A program's qualification settings: one metric over one window."""

    __tablename__ = "tier_ladders"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32))
    window: Mapped[str] = mapped_column(String(32))
    window_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    grace_days: Mapped[int] = mapped_column(Integer, default=0)
    closed_through: Mapped[date] = mapped_column(Date)
    """Every qualification period ending on or before this local day has been evaluated."""
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Tier(Base):
    """One rung of the ladder, ranked from 0 (the lowest)."""

    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    rank: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(BigInteger)
    multiplier: Mapped[str] = mapped_column(String(32), default="1")
    privileges: Mapped[list[str]] = mapped_column(JSONType, default=list)

    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        UniqueConstraint("program_id", "rank"),
    )


class TierStatus(Base):
    """A member's current tier, grace and guarantee (dates are local to the program).

    Periods are not stored per member: they follow from the ladder's window and, for
    anniversary years, from `anchor_md` (month × 100 + day of the member's anniversary), so
    closing a period writes only the members whose tier changes.
    """

    __tablename__ = "tier_status"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    rank: Mapped[int] = mapped_column(Integer)
    anchor_md: Mapped[int] = mapped_column(Integer)
    since: Mapped[date] = mapped_column(Date)
    """The local day the member entered the ladder: periods closing on or before it are not
    theirs to close."""
    grace_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    grace_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    guaranteed_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    guaranteed_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    upgrade_event_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    upgrade_from_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    upgrade_period_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_tier_status_program_anchor", "program_id", "anchor_md"),)


class TierBucket(Base):
    """A member's qualification metric accumulated in one bucket (a month or a period)."""

    __tablename__ = "tier_buckets"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    bucket: Mapped[date] = mapped_column(Date, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class TierContribution(Base):
    """What one event added to the metric, so that its refund can take it back."""

    __tablename__ = "tier_contributions"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    bucket: Mapped[date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class TierHistory(Base):
    """Each change of a member's tier, with its reason."""

    __tablename__ = "tier_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_rank: Mapped[int] = mapped_column(Integer)
    to_rank: Mapped[int] = mapped_column(Integer)
    from_tier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_tier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(String(32))
    metric_value: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TierEvalStage(Base):
    """Scratch rows of one evaluation pass (set-based period close); empty between passes."""

    __tablename__ = "tier_eval_stage"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    old_rank: Mapped[int] = mapped_column(Integer)
    new_rank: Mapped[int] = mapped_column(Integer)
    metric: Mapped[int] = mapped_column(BigInteger)
    graced: Mapped[int] = mapped_column(Integer, default=0)
    grace_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)


class MemberBenefit(Base):
    """A privilege a `benefit` rule granted a member, until a moment (None: open-ended).

    One row per member and code: a repeat grant extends `until` to the later of the two.
    """

    __tablename__ = "member_benefits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rule_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The rule of the latest grant."""
    event_id: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    """The event of the latest grant."""
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("member_id", "code"),)
