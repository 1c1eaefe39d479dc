"""The history of a member's consents: one row per change, never updated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId


class ConsentChange(Base):
    """A consent given or withdrawn for one purpose: when, through what (`source`: `api`,
    `portal`…), by whom, and the version of the text the member was shown."""

    __tablename__ = "member_consent_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    text_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_member_consent_history_member", "member_id", "id"),)


class PrivacySettings(Base):
    """A program's privacy settings (a program without a row has the defaults)."""

    __tablename__ = "privacy_settings"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    min_group_size: Mapped[int] = mapped_column(Integer, default=10)
    """k: the fewest members a released group may hold (smaller cells are suppressed)."""
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
