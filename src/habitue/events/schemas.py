"""API shapes of events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from habitue.bounds import NonNegativePoints, StrictModel
from habitue.timestamps import UtcDatetime

BUILTIN_TYPES = (
    "purchase",
    "refund",
    "visit",
    "review",
    "referral",
    "social",
    "app_open",
    "booking",
)


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class MemberSelector(Strict):
    id: str | None = None
    card_number: str | None = None
    external_id: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberSelector:
        given = [v for v in (self.id, self.card_number, self.external_id) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of id, card_number, external_id")
        return self


class LineIn(Strict):
    sku: str | None = Field(default=None, max_length=100)
    category: str | None = Field(default=None, max_length=100)
    quantity: Decimal = Field(
        default=Decimal(1), gt=0, le=Decimal(1_000_000), decimal_places=6, allow_inf_nan=False
    )
    unit_price: str
    """Price of one unit; up to 4 decimals beyond the currency's (a price per gram)."""
    amount: str | None = None
    """The line's total as the till charged it (6 for 313.00); wins over quantity × unit_price."""
    tax_rate: Decimal | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    """The line's tax rate as a fraction (0.15 for 15 %), as a basket's line carries it; a
    program that earns on amounts without tax (`earn_on`) earns on the line less its tax."""
    tax_included: bool = True
    """Whether `unit_price` and `amount` include the tax (the default); false: they are
    without it, and the line is charged with it (875.00 at 0.15 is 1,006.25)."""

    @field_validator("quantity", mode="before")
    @classmethod
    def _qty(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("must be a number, not a boolean")
        if isinstance(v, float):
            return str(v)
        return v


class EventCreate(Strict):
    type: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    member: MemberSelector | None = None
    external_id: str = Field(min_length=1, max_length=200)
    source: str = Field(default="default", min_length=1, max_length=64)
    occurred_at: datetime | None = None
    total: str | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    refers_to: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict)
    spend_points: NonNegativePoints = 0
    """Points the member pays with at the till on this basket."""

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        return v


class EffectRead(BaseModel):
    """One effect of an event; `kind` is a snake_case word (see docs/rules.md)."""

    kind: str
    rule: str | None
    points: int
    detail: dict[str, Any] = Field(default_factory=dict)
    benefit: str | None = None
    """`benefit`: the privilege's code."""
    until: datetime | None = None
    """`benefit`: when the member's privilege ends (null: open-ended)."""
    coupon: str | None = None
    """`coupon` and `coupon_voided`: the coupon's code (null in a quote)."""
    reward: str | None = None
    """`coupon` and `coupon_voided`: the reward the coupon is for."""


class EventRead(BaseModel):
    id: str
    type: str
    external_id: str
    member_id: str
    occurred_at: UtcDatetime
    total: str | None
    points: int
    points_earned: int
    points_spent: int
    discount: str | None
    pending: bool
    effects: list[EffectRead]
    errors: list[dict[str, Any]] = Field(default_factory=list)
    shortfall: int = 0
    balance: dict[str, int] | None = None
