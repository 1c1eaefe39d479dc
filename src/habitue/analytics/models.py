"""Tables of the analytics room: member scores, dynamic segments and campaigns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId


class MemberScore(Base):
    """A member's latest RFM scores, named segment, lifetime value and probability alive."""

    __tablename__ = "member_scores"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    recency_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frequency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monetary_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    r: Mapped[int | None] = mapped_column(Integer, nullable=True)
    f: Mapped[int | None] = mapped_column(Integer, nullable=True)
    m: Mapped[int | None] = mapped_column(Integer, nullable=True)
    segment: Mapped[str | None] = mapped_column(String(32), nullable=True)
    clv: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Discounted expected revenue over the horizon, in minor units of the currency."""
    p_alive: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_purchases: Mapped[float | None] = mapped_column(Float, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "member_id"),
        Index("ix_member_scores_member", "member_id"),
    )


class Segment(Base):
    """A dynamic segment: a CEL condition over member features, recomputed on a schedule."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[str] = mapped_column(Text)
    members: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class SegmentMember(Base):
    """A member of a dynamic segment at its last computation."""

    __tablename__ = "segment_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    member_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("segment_id", "member_id"),
        Index("ix_segment_members_member", "member_id"),
    )


class Campaign(Base):
    """An offer, bonus rule or newsletter measured against a deterministic hold-out group."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The code of the rule, offer or newsletter (of `kind`) the campaign measures."""
    holdout_share: Mapped[float] = mapped_column(Float)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class CampaignAssignment(Base):
    """A member's group in a campaign: 'treatment' or 'holdout' (hash of campaign and member)."""

    __tablename__ = "campaign_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    member_id: Mapped[int] = mapped_column(BigInteger)
    group: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("campaign_id", "member_id"),
        Index("ix_campaign_assignments_member", "member_id"),
    )
