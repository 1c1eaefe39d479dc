"""API shapes of the rewards room."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from habitue.bounds import (
    Count,
    NonNegativePoints,
    PositiveCount,
    PositivePoints,
    StrictInt,
    StrictModel,
    decimal_rate,
)
from habitue.timestamps import UtcDatetime

RewardKind = Literal[
    "product", "voucher", "discount", "free_product", "experience", "donation", "partner"
]
Language = Literal["en", "fr", "da"]
Period = Literal["day", "week", "month", "year"]
CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


def _percent(value: str | None) -> str | None:
    if value is None:
        return None
    return decimal_rate(value, "percent", positive=True, most=Decimal(100))


class RewardText(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    image_url: str | None = Field(default=None, max_length=1000)


class DiscountFields(Strict):
    value: str | None = Field(default=None, description="fixed value, a decimal string")
    percent: str | None = Field(default=None, description='percentage off, e.g. "10"')
    cap: str | None = Field(default=None, description="largest discount, a decimal string")
    min_basket: str | None = Field(default=None, description="smallest basket it applies to")

    @field_validator("percent")
    @classmethod
    def _check_percent(cls, v: str | None) -> str | None:
        return _percent(v)


class RewardCreate(DiscountFields):
    code: str = Field(min_length=1, max_length=64, pattern=CODE_PATTERN)
    kind: RewardKind
    cost_points: PositivePoints
    active: bool = True
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    stock: Count | None = Field(default=None, description="null: unlimited")
    per_member_limit: PositiveCount | None = None
    period: Period | None = None
    period_limit: PositiveCount | None = Field(default=None, description="per member per period")
    tiers: list[str] | None = Field(default=None, description="null: every member")
    texts: dict[Language, RewardText] = Field(min_length=1)
    sku: str | None = Field(default=None, max_length=100, description="free product's SKU")
    cause: str | None = Field(default=None, max_length=200, description="donation's cause")
    partner_code: str | None = Field(default=None, max_length=64)
    partner_rate: str | None = Field(default=None, description="partner units per point")
    coupon_days: StrictInt | None = Field(
        default=None, ge=1, le=3650, description="coupon validity"
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> RewardCreate:
        if (self.period is None) != (self.period_limit is None):
            raise ValueError("period and period_limit go together")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.kind == "voucher" and self.value is None:
            raise ValueError("a voucher needs a value")
        if self.kind == "discount" and (self.value is None) == (self.percent is None):
            raise ValueError("a discount needs exactly one of value or percent")
        if self.kind == "free_product" and not self.sku:
            raise ValueError("a free product needs a sku")
        if self.kind == "donation" and not self.cause:
            raise ValueError("a donation needs a cause")
        if self.kind == "partner" and self.partner_rate is None:
            raise ValueError("a partner conversion needs a partner_rate")
        return self


class RewardUpdate(Strict):
    active: bool | None = None
    cost_points: PositivePoints | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    stock: Count | None = None
    per_member_limit: PositiveCount | None = None
    tiers: list[str] | None = None
    texts: dict[Language, RewardText] | None = None
    coupon_days: StrictInt | None = Field(default=None, ge=1, le=3650)


class RewardRead(BaseModel):
    code: str
    kind: str
    cost_points: int
    active: bool
    valid_from: UtcDatetime | None
    valid_until: UtcDatetime | None
    stock: int | None
    per_member_limit: int | None
    period: str | None
    period_limit: int | None
    tiers: list[str] | None
    texts: dict[str, RewardText]
    value: str | None
    percent: str | None
    cap: str | None
    min_basket: str | None
    sku: str | None
    cause: str | None
    partner_code: str | None
    partner_rate: str | None
    coupon_days: int | None
    created_at: UtcDatetime


class RewardPage(BaseModel):
    items: list[RewardRead]


class CouponRead(BaseModel):
    code: str
    state: str
    reward: str
    kind: str
    issued_at: UtcDatetime
    expires_at: UtcDatetime | None
    redeemed_at: UtcDatetime | None = None
    discount: str | None = None
    purchase: str | None = None
    """The `external_id` of the basket it was used on at `POST /baskets/confirm`."""


class RedemptionCreate(Strict):
    reward: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(default=1, ge=1, le=100)


class RedemptionRead(BaseModel):
    id: str
    member_id: str
    reward: str
    kind: str
    quantity: int
    points: int
    status: str
    created_at: UtcDatetime
    coupon: CouponRead | None = None
    coupons: list[CouponRead] = Field(default_factory=list)
    """Every coupon of the redemption, one per unit (`coupon` is the first); listed when the
    redemption is made."""


class RedemptionPage(BaseModel):
    items: list[RedemptionRead]


class FulfilmentUpdate(Strict):
    status: Literal["shipped", "delivered"]


class BasketLineIn(Strict):
    sku: str | None = Field(default=None, max_length=100)
    unit_price: str


class BasketIn(Strict):
    total: str | None = Field(default=None, description="basket total, a decimal string")
    lines: list[BasketLineIn] = Field(default_factory=list, max_length=1000)
    member: str | None = Field(default=None, description="the member at the till (public id)")
    reference: str | None = Field(default=None, max_length=200, description="till reference")


class MemberCouponRead(CouponRead):
    """A coupon of a member; `event_id` names the event whose `coupon` rule issued it."""

    event_id: str | None = None


class MemberCouponPage(BaseModel):
    items: list[MemberCouponRead]


class CouponCheck(BaseModel):
    code: str
    state: str
    reward: str
    kind: str
    applicable: bool
    discount: str
    reason: str | None = None
    expires_at: UtcDatetime | None


MAX_COUPONS_PER_BATCH = 10_000
"""Codes one `POST /coupons/batches` makes at most (`habitue coupons generate` makes more, in
batches of this size)."""


class CouponBatchCreate(Strict):
    reward: str = Field(min_length=1, max_length=64)
    count: StrictInt = Field(ge=1, le=MAX_COUPONS_PER_BATCH)
    campaign: str = Field(min_length=1, max_length=64)
    expires_at: datetime | None = None


class PayQuoteIn(Strict):
    total: str
    max_points: NonNegativePoints | None = None


class PayQuoteRead(BaseModel):
    points: int
    discount: str
    total: str
    to_pay: str
    balance: int
    rate: str
    step: int


class OfferCreate(DiscountFields):
    code: str = Field(min_length=1, max_length=64, pattern=CODE_PATTERN)
    texts: dict[Language, RewardText] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    members: list[str] = Field(default_factory=list, max_length=100_000)
    segment: str | None = Field(default=None, max_length=64)
    """A dynamic segment whose current members are targeted too (see docs/analytics.md)."""

    @model_validator(mode="after")
    def _terms(self) -> OfferCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if (self.value is None) == (self.percent is None):
            raise ValueError("an offer needs exactly one of value or percent")
        return self


class OfferTargets(Strict):
    members: list[str] = Field(default_factory=list, max_length=100_000)
    segment: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _some(self) -> OfferTargets:
        if not self.members and self.segment is None:
            raise ValueError("give members, a segment, or both")
        return self


class OfferRead(BaseModel):
    code: str
    texts: dict[str, RewardText]
    value: str | None
    percent: str | None
    cap: str | None
    min_basket: str | None
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    members: int | None = None
    clipped: bool | None = None
    clipped_at: UtcDatetime | None = None
    used: bool | None = None
    discount: str | None = None


class OfferPage(BaseModel):
    items: list[OfferRead]


class ReferralSettingsIn(Strict):
    referrer_points: StrictInt = Field(ge=0, le=10**9)
    referee_points: StrictInt = Field(ge=0, le=10**9)
    cap_per_referrer: PositiveCount | None = None
    window_days: StrictInt | None = Field(
        default=None, ge=0, le=365, description="null: the program's pending_days"
    )
    min_purchase: str = "0"


class ReferralSettingsRead(ReferralSettingsIn):
    pass


class ReferralCodeRead(BaseModel):
    member_id: str
    code: str


class ReferralCreate(Strict):
    referee: str = Field(description="the new member's public id")
    code: str = Field(min_length=1, max_length=32, description="the referrer's code")


class ReferralRead(BaseModel):
    id: str
    referee: str
    referrer: str
    status: str
    release_at: UtcDatetime | None
    referrer_points: int
    referee_points: int
    created_at: UtcDatetime


class CauseStatement(BaseModel):
    cause: str
    donations: int
    donors: int
    points: int


class DonationStatement(BaseModel):
    year: int
    causes: list[CauseStatement]
