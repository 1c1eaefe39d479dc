"""Answers of the privacy routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErasureRead(BaseModel):
    """What an erasure did (all zeros when the member was already erased)."""

    member_id: str
    status: str
    points_expired: int
    pending_points_expired: int
    coupons_voided: int
    clubs_ended: int
    cards_blocked: int
    offers_ended: int
    already_erased: bool


class ExportRead(BaseModel):
    """Everything held on one member, section by section (see `habitue.privacy.export`)."""

    format: str
    generated_at: str
    program: str
    member_id: str
    sections: dict[str, Any]


class PrivacySettingsRead(BaseModel):
    min_group_size: int
    """k: analytics released to a key without `admin` hold groups of at least k members."""


class PrivacySettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_group_size: int = Field(ge=2, le=100_000)


class AuditEntryRead(BaseModel):
    """One row of the audit log: who (`actor_kind`, `actor`) did what (`action`) to which
    resource, in which request; `hash` chains it to the row before."""

    seq: int
    at: datetime
    actor_kind: str
    actor: str
    action: str
    resource: str
    resource_id: str | None
    request_id: str | None
    detail: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_after: int | None
    """Pass as `after` for the next page (None: no more rows)."""


class AuditVerifyRead(BaseModel):
    ok: bool
    breaches: list[dict[str, Any]]


class FraudLimits(BaseModel):
    """Velocity limits; null turns one off (`habitue.privacy.fraud`)."""

    model_config = ConfigDict(extra="forbid")

    purchases_per_hour: int | None = Field(default=None, ge=1, le=100_000)
    refunds_per_day: int | None = Field(default=None, ge=1, le=100_000)
    max_speed_kmh: int | None = Field(default=None, ge=10, le=100_000)
    """Two events whose till positions (`attributes.lat`/`lon`) are further apart than this
    speed allows (and over 50 km apart) hold the member."""


class FraudHoldRead(BaseModel):
    id: int
    member_id: str
    rule: str
    reason: str
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class FraudQueue(BaseModel):
    items: list[FraudHoldRead]
