"""The outbox: every change worth telling, written in the transaction that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType


class OutboxEvent(Base):
    """A domain event. `seq` is given after commit, in commit order, by the feed reader."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ux_outbox_program_seq", "program_id", "seq", unique=True),
        Index("ix_outbox_program_unsequenced", "program_id", "id"),
    )
