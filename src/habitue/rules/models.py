"""Tables of the rules room: rules and their versions, caps and budget usage, member counters."""

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


class Rule(Base):
    """A program's earning rule; its spec lives in `rule_versions` (one row per edit)."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    current_version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """False once deleted (soft): the rule no longer applies, its history stays."""
    revision: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped on every change; the sum over a program is the rule cache's version stamp."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class RuleVersionRow(Base):
    """One saved version of a rule: the spec as written, who wrote it and when."""

    __tablename__ = "rule_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("rule_id", "version"),)


class RuleUsageRow(Base):
    """Points and grants of a rule: per member and period key (`week:2026-W48`), or over all
    members in the budget row (`member_id` NULL, period `budget`)."""

    __tablename__ = "rule_usage"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"))
    period: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("member_id", "rule_id", "period"),
        Index("ix_rule_usage_budget", "rule_id", "period"),
    )


class MemberCounters(Base):
    """A member's incremental counters (`CounterState` as JSON)."""

    __tablename__ = "member_counters"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RuleDraft(Base):
    """A rule saved without applying: a new rule, or the next version of a live one (one per
    program and code). Events never read it; publishing makes it a version of `rules`."""

    __tablename__ = "rule_drafts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The live rule's version the draft was written over (None: a new rule)."""
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)
