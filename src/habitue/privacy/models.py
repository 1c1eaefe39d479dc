"""The history of a member's consents: one row per change, never updated."""

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

from habitue.db import Base, BigId, JSONType


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


class AuditEntry(Base):
    """One read or change of a member, rule, reward, tier, key or setting: who, what, with
    which request. Rows are only appended; each carries the keyed hash of the previous row of
    its chain (one chain per program, `chain` 0 for the server's own), so a deleted or altered
    row breaks the chain (`habitue audit verify`)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chain: Mapped[int] = mapped_column(BigInteger)
    """The program's id, or 0 for actions outside any program (creating a program)."""
    seq: Mapped[int] = mapped_column(BigInteger)
    """1, 2, 3… within the chain, without gaps."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_log_chain_resource", "chain", "resource", "resource_id"),
    )


class AuditHead(Base):
    """The last row of each audit chain: appends lock it, verify checks that the chain ends
    there (so deleting the newest rows is seen too)."""

    __tablename__ = "audit_heads"

    chain: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class FraudSettings(Base):
    """A program's velocity limits (a program without a row watches nothing)."""

    __tablename__ = "fraud_settings"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FraudHold(Base):
    """A member held for review after tripping a velocity limit: `held` until a reviewer
    `released` them (active again) or `suspended` them."""

    __tablename__ = "fraud_holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_fraud_holds_program_status", "program_id", "status", "id"),)
