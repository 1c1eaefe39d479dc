"""API shapes of the tiers room."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from habitue.bounds import MAX_BALANCE, StrictInt, StrictModel, decimal_rate
from habitue.timestamps import UtcDatetime

Metric = Literal["tier_credits", "qualifying_spend", "visits", "purchases", "bookings"]
WindowKind = Literal["rolling_months", "calendar_year", "anniversary_year"]
CODE = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def _multiplier(v: str) -> str:
    d = Decimal(decimal_rate(v, "multiplier", most=Decimal(100)))
    if d < 1:
        raise ValueError("multiplier must be between 1 and 100")
    return str(d)


def _privileges(v: list[str]) -> list[str]:
    if any(not p or len(p) > 64 for p in v):
        raise ValueError("privileges are names of 1 to 64 characters")
    return sorted(set(v))


Multiplier = Annotated[str, AfterValidator(_multiplier)]
"""A points multiplier as a decimal string, from 1 to 100 (tiers and club plans)."""
Privileges = Annotated[list[str], AfterValidator(_privileges)]
"""Names of privileges, 1 to 64 characters each, kept sorted and once each."""


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class WindowSpec(Strict):
    kind: WindowKind
    months: StrictInt | None = Field(default=None, ge=1, le=60)


class TierWrite(Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    threshold: Annotated[int, Field(strict=True, ge=0, le=MAX_BALANCE)] | str = Field(
        description="integer for counts and credits; a decimal money string for qualifying_spend"
    )
    multiplier: Multiplier = "1"
    privileges: Privileges = Field(default_factory=list, max_length=50)


class LadderWrite(Strict):
    metric: Metric
    window: WindowSpec
    grace_days: StrictInt = Field(default=0, ge=0, le=366)
    tiers: list[TierWrite] = Field(min_length=1, max_length=20)


class TierRead(BaseModel):
    code: str
    name: str
    rank: int
    threshold: int | str
    multiplier: str
    privileges: list[str]


class LadderRead(BaseModel):
    metric: Metric
    window: WindowSpec
    grace_days: int
    tiers: list[TierRead]
    updated_at: UtcDatetime


class GuaranteeWrite(Strict):
    tier: str
    until: date = Field(description="the last day (local) the tier is held at least")


class GuaranteeRead(BaseModel):
    tier: str
    until: date


class TierProgress(BaseModel):
    member_id: str
    tier: str | None
    tier_name: str | None
    rank: int | None
    metric: Metric
    value: StrictInt | str = Field(description="the metric so far in the current period")
    next_tier: str | None
    to_next: int | str | None = Field(description="what remains to reach the next tier")
    to_keep: int | str | None = Field(description="what remains to keep the current tier")
    period_start: date
    period_end: date = Field(description="the last day of the period (local)")
    closes_at: UtcDatetime = Field(description="the instant the period closes")
    grace_until: date | None = None
    guaranteed: GuaranteeRead | None = None


class BenefitSource(BaseModel):
    source: Literal["tier", "club", "rule"]
    """`rule`: granted by a `benefit` rule (`code` names the rule, `until` when it ends)."""
    code: str
    multiplier: str
    privileges: list[str]
    until: UtcDatetime | None = None


class BenefitsRead(BaseModel):
    member_id: str
    tier: str | None
    multiplier: str
    privileges: list[str]
    sources: list[BenefitSource]


class HistoryRead(BaseModel):
    from_tier: str | None
    to_tier: str | None
    reason: str
    metric_value: int | None
    created_at: UtcDatetime


class EvaluationRead(BaseModel):
    program: str
    closed: int
    downgraded: int
    graced: int
