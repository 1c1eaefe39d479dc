"""The outbox (every change worth telling, written in the transaction that made it) and the
templates of the messages sent to members."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId, JSONType, ident, partial_index


class OutboxEvent(Base):
    """A domain event. `seq` is given after commit, in commit order, by the feed reader."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Only sequenced rows have a feed position (migration 0011).
        partial_index(
            "ux_outbox_program_seq", "program_id", "seq", unique=True, where="seq IS NOT NULL"
        ),
        # Only rows the feed has still to sequence (migration 0013).
        partial_index("ix_outbox_program_unsequenced", "program_id", "id", where="seq IS NULL"),
        Index("ix_outbox_program_member", "program_id", "member_id", "id"),
    )


class MessageTemplate(Base):
    """The text of one message (`welcome`, `tier_up`…) for one channel in one language.

    Subject and body are Jinja templates rendered in a sandbox with the member's variables
    (see `habitue.messaging.render`); they are checked when saved.
    """

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    locale: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(String(500), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code", "channel", "locale"),)
