"""Answers of the privacy routes."""

from __future__ import annotations

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
