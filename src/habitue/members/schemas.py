"""API shapes of members and cards."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

from habitue.bounds import StrictModel
from habitue.timestamps import UtcDatetime

LOCALES = ("en", "fr", "da")
CHANNELS = ("email", "sms", "push", "analytics", "profiling", "partners")


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class MemberCreate(Strict):
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ().-]{6,30}$")
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    locale: str = "en"
    consents: dict[str, bool] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    card_kind: Literal["digital", "physical"] = "digital"
    consent_text_version: str | None = Field(
        default=None,
        max_length=64,
        description="the version of the consent text shown to the member (kept in the history)",
    )

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        base = v.split("-")[0].split("_")[0].lower()
        if base not in LOCALES:
            raise ValueError(f"supported locales: {list(LOCALES)}")
        return base

    @field_validator("consents")
    @classmethod
    def _consents(cls, v: dict[str, bool]) -> dict[str, bool]:
        bad = [k for k in v if k not in CHANNELS]
        if bad:
            raise ValueError(f"unknown consent channels {bad}; known: {list(CHANNELS)}")
        return v

    @field_validator("birth_date")
    @classmethod
    def _birth(cls, v: date | None) -> date | None:
        if v is not None and (v > date.today() or v.year < 1900):
            raise ValueError("not a plausible birth date")
        return v


class MemberUpdate(Strict):
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ().-]{6,30}$")
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    locale: str | None = None
    consents: dict[str, bool] | None = None
    attributes: dict[str, Any] | None = None
    status: Literal["active", "suspended", "closed"] | None = None
    consent_text_version: str | None = Field(
        default=None,
        max_length=64,
        description="the version of the consent text shown to the member (kept in the history)",
    )

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        return None if v is None else MemberCreate._locale(v)

    @field_validator("consents")
    @classmethod
    def _consents(cls, v: dict[str, bool] | None) -> dict[str, bool] | None:
        return None if v is None else MemberCreate._consents(v)


class CardRead(BaseModel):
    number: str
    kind: str
    status: str
    qr_payload: str
    created_at: UtcDatetime
    replaced_by: str | None = None


class BalanceRead(BaseModel):
    available: int
    pending: int
    expiring: list[dict[str, Any]]
    lifetime_earned: int
    tier: str | None


class MemberRead(BaseModel):
    id: str
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    birth_date: date | None
    locale: str
    status: str
    consents: dict[str, Any]
    attributes: dict[str, Any]
    enrolled_at: UtcDatetime
    card_number: str | None
    cards: list[CardRead]
    tier: str | None
    balance: BalanceRead | None = None


class MemberPage(BaseModel):
    items: list[MemberRead]
    next_cursor: str | None = None


class CardLookup(BaseModel):
    member: MemberRead
    card: CardRead


class CardReplace(Strict):
    reason: Literal["lost", "stolen", "damaged", "other"] = "lost"
    kind: Literal["digital", "physical"] = "physical"
