"""API shapes of the clubs room."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from habitue.bounds import StrictInt, StrictModel
from habitue.tiers.schemas import Multiplier, Privileges
from habitue.timestamps import UtcDatetime

BillingPeriod = Literal["monthly", "yearly"]
SubscriptionStatus = Literal["incomplete", "trialing", "active", "past_due", "canceled", "expired"]


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class PlanCreate(Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    price: str = Field(description="decimal string in the program's currency")
    currency: str = Field(min_length=3, max_length=3)
    period: BillingPeriod
    trial_days: StrictInt = Field(default=0, ge=0, le=365)
    grace_days: StrictInt = Field(
        default=0, ge=0, le=60, description="days a past-due subscription keeps its benefits"
    )
    multiplier: Multiplier = "1"
    privileges: Privileges = Field(default_factory=list, max_length=50)
    voucher_points: StrictInt = Field(
        default=0, ge=0, le=1_000_000, description="points each month"
    )


class PlanRead(BaseModel):
    code: str
    name: str
    price: str
    currency: str
    period: BillingPeriod
    trial_days: int
    grace_days: int
    multiplier: str
    privileges: list[str]
    voucher_points: int
    created_at: UtcDatetime


class SubscriptionCreate(Strict):
    plan: str
    provider: Literal["manual", "test"] = "manual"


class SubscriptionRead(BaseModel):
    id: str
    member_id: str
    plan: str
    provider: str
    status: SubscriptionStatus
    benefits_active: bool
    trial_end: UtcDatetime | None
    current_period_start: UtcDatetime
    current_period_end: UtcDatetime
    past_due_since: UtcDatetime | None
    retry_count: int
    next_retry_at: UtcDatetime | None
    cancel_at_period_end: bool
    canceled_at: UtcDatetime | None
    ended_at: UtcDatetime | None
    ended_reason: str | None
    vouchers_granted: int


class CancelRequest(Strict):
    at_period_end: bool = False


class PaymentRecord(Strict):
    amount: str
    reference: str = Field(min_length=1, max_length=200)


class PaymentRead(BaseModel):
    id: str
    subscription_id: str
    provider: str
    reference: str | None
    status: str
    amount: str
    currency: str
    error: str | None
    created_at: UtcDatetime
    refunded_at: UtcDatetime | None


class WebhookSecretRead(BaseModel):
    secret: str


class RenewalRun(BaseModel):
    renewed: int
    failed: int
    expired: int
    ended: int
    vouchers: int
