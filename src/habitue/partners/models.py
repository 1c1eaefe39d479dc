"""Tables of the partners room: coalition partners and the points issued or redeemed with them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId


class Partner(Base):
    """A merchant of a coalition: events whose `source` is its `code` belong to it.

    Rates are integer minor units of the program's currency per 100 points (EUR: 100 is
    1.00 € per 100 points), so that every amount of a statement is computed exactly.
    """

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    funding_minor_per_100: Mapped[int] = mapped_column(BigInteger)
    """What the partner pays for every 100 points issued with it."""
    reimbursement_minor_per_100: Mapped[int] = mapped_column(BigInteger)
    """What the partner is paid for every 100 points redeemed with it."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class PartnerMovement(Base):
    """Points issued, redeemed, or given back by a refund, with a partner.

    `kind` is `issued` (earned on the partner's event), `redeemed` (spent at the partner's
    till), `reversed` (issued points a refund took back) or `returned` (redeemed points a
    refund gave back). `points` is positive; `rate_minor_per_100` is the partner's rate
    that applied when the original movement was recorded, so a later change of rate never
    rewrites a past statement.
    """

    __tablename__ = "partner_movements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    event_id: Mapped[str] = mapped_column(String(36))
    refers_to: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """For `reversed` and `returned`: the purchase whose movement the refund undoes."""
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    rate_minor_per_100: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "event_id", "kind"),
        Index("ix_partner_movements_statement", "program_id", "partner_id", "occurred_at"),
        Index("ix_partner_movements_refers_to", "program_id", "refers_to"),
    )
