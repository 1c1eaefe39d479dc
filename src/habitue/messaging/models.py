"""The outbox (every change worth telling, written in the transaction that made it) and the
templates of the messages sent to members."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
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


class DeliveryCursor(Base):
    """How far the delivery worker has read a program's outbox (its feed position)."""

    __tablename__ = "delivery_cursors"

    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    skip_through_id: Mapped[int] = mapped_column(BigInteger, default=0)
    """Outbox rows up to this id were written before the worker existed: read, not sent."""


class WebhookEndpoint(Base):
    """A program's webhook receiver: its URL, the event types it wants and its secrets."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_endpoints_program", "program_id"),)


class Delivery(Base):
    """One message or webhook call owed for one domain event, and where it stands.

    `status`: `pending` (to send at `next_attempt_at`), `sent`, `skipped` (with `reason`) or
    `failed` (parked with `reason`: retried on demand). A worker claims a pending delivery
    by setting `locked_until`; deliveries sharing an `order_key` (one member on one channel
    or endpoint) go one at a time, oldest first.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(ident(36), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    order_key: Mapped[str | None] = mapped_column(String(120), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retry_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    newsletter_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The newsletter this delivery is part of (its send report counts it)."""

    __table_args__ = (
        Index("ix_deliveries_newsletter", "newsletter_id", "status"),
        partial_index("ix_deliveries_due", "next_attempt_at", "id", where="status = 'pending'"),
        partial_index("ix_deliveries_order", "order_key", "id", where="status = 'pending'"),
        Index("ix_deliveries_member", "program_id", "member_id", "id"),
        Index("ix_deliveries_endpoint", "endpoint_id", "id"),
    )


class DeliveryAttempt(Base):
    """One try at a delivery: when, the receiver's status code, the error."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class MessageMark(Base):
    """A timed message a member got already: `points_expiring` for a lot (`key`: its id),
    `birthday` for a year (`key`: the year). Written with the message's outbox event, so
    that a second scan (or a second worker) sends nothing twice."""

    __tablename__ = "message_marks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[str] = mapped_column(ident(36))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "member_id", "kind", "key"),)


class RewardLevel(Base):
    """How many times over the member's available points covered the cheapest reward when
    last looked at: a `reward_available` message goes out when it grows."""

    __tablename__ = "reward_levels"

    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    member_id: Mapped[str] = mapped_column(ident(36), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Newsletter(Base):
    """A message (`template`) to the members of a dynamic segment, sent at `send_at`.

    `status`: `scheduled`, `sent` or `canceled`. At sending, the segment's members are split
    by the analytics room's hash into treatment and a hold-out of `holdout_share` (the
    campaign of the same code measures the uplift); `targeted` and `holdout` count them.
    """

    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(ident(36), unique=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(64))
    segment: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(64))
    holdout_share: Mapped[float] = mapped_column(Float)
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    holdout: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        partial_index("ix_newsletters_due", "send_at", where="status = 'scheduled'"),
    )
