"""API shapes of promotions and baskets."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from habitue.bounds import StrictModel
from habitue.events.schemas import EffectRead, MemberSelector
from habitue.promotions.pricing import EffectType, Stacking
from habitue.timestamps import UtcDatetime

Trigger = Literal["automatic", "code", "coupon"]


class BundleItem(StrictModel):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=1, le=1000)


class PromotionEffect(StrictModel):
    """What a promotion takes off (see docs/promotions.md for each `type`)."""

    type: EffectType
    percent: Decimal | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)
    amount: str | None = Field(default=None, description="money, a decimal string")
    buy: int = Field(default=0, ge=0, le=1000)
    get: int = Field(default=0, ge=0, le=1000)
    get_sku: str | None = Field(default=None, max_length=100)
    sku: str | None = Field(default=None, max_length=100)
    quantity: int = Field(default=1, ge=1, le=1000)
    bundle: list[BundleItem] = Field(default_factory=list, max_length=20)


class PromotionFields(StrictModel):
    name: str | None = Field(default=None, max_length=200)
    promo_code: str | None = Field(default=None, min_length=2, max_length=64)
    reward: str | None = Field(default=None, max_length=64)
    condition: str | None = Field(default=None, max_length=4000)
    line_condition: str | None = Field(default=None, max_length=4000)
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    stacking: Stacking | None = None
    stacking_class: str | None = Field(default=None, min_length=1, max_length=64)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_per_order: int | None = Field(default=None, ge=1, le=1000)
    cap: str | None = None
    per_member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    min_basket: str | None = None
    active: bool | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        return v


class PromotionCreate(PromotionFields):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    trigger: Trigger = "automatic"
    effect: PromotionEffect


class PromotionUpdate(PromotionFields):
    effect: PromotionEffect | None = None


class PromotionRead(BaseModel):
    code: str
    name: str | None
    trigger: str
    promo_code: str | None
    reward: str | None
    effect: dict[str, Any]
    condition: str | None
    line_condition: str | None
    priority: int
    stacking: str
    stacking_class: str
    valid_from: UtcDatetime | None
    valid_until: UtcDatetime | None
    max_per_order: int | None
    cap: str | None
    per_member_limit: int | None
    min_basket: str | None
    active: bool


class PromotionPage(BaseModel):
    items: list[PromotionRead]


class BasketLineIn(StrictModel):
    sku: str = Field(default="", max_length=100)
    category: str = Field(default="", max_length=100)
    quantity: Decimal = Field(default=Decimal(1), decimal_places=6, allow_inf_nan=False)
    unit_price: str
    amount: str | None = Field(
        default=None, description="the line's total as charged; wins over quantity × unit price"
    )
    tax_rate: Decimal = Field(default=Decimal(0), ge=0, le=1, allow_inf_nan=False)
    """The tax rate as a fraction (0.15 for 15 %)."""
    tax_included: bool = True
    """Whether `unit_price` and `amount` include the tax (as most tills charge them)."""

    @field_validator("quantity", mode="before")
    @classmethod
    def _qty(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("must be a number, not a boolean")
        if isinstance(v, float):
            return str(v)
        return v


class BasketIn(StrictModel):
    member: MemberSelector | None = None
    occurred_at: datetime | None = None
    total: str | None = Field(default=None, description="the basket total, when the till has it")
    lines: list[BasketLineIn] = Field(min_length=1, max_length=500)
    codes: list[str] = Field(default_factory=list, max_length=20)
    offers: list[str] = Field(default_factory=list, max_length=20)
    points: int = Field(default=0, ge=-(10**12), le=10**12)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        return v


class BasketConfirm(BasketIn):
    external_id: str = Field(min_length=1, max_length=200)
    source: str = Field(default="default", min_length=1, max_length=64)


class LineShare(BaseModel):
    line: int
    amount: str


class DiscountRead(BaseModel):
    source: str
    code: str
    effect: str
    level: str
    amount: str
    lines: list[LineShare]


class RefusalRead(BaseModel):
    field: str
    code: str | None = None
    reason: str


class PricedLine(BaseModel):
    line: int
    sku: str
    amount: str
    discount: str
    net: str


class BasketRead(BaseModel):
    currency: str
    member_id: str | None
    total: str
    discount: str
    points_spent: int
    points_value: str
    to_pay: str
    points_earned: int
    lines: list[PricedLine]
    discounts: list[DiscountRead]
    refused: list[RefusalRead]
    effects: list[EffectRead] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    event_id: str | None = None
    """Confirm only: the recorded purchase event."""
    external_id: str | None = None
