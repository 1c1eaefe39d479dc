"""API shapes of programs and keys."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import list_currencies
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from habitue.bounds import MAX_EARN_RATE, MAX_REDEEM_RATE, StrictInt, StrictModel, decimal_rate
from habitue.timestamps import UtcDatetime

_CURRENCIES = frozenset(list_currencies())

SCOPES = (
    "admin",
    "members:read",
    "members:write",
    "members:erase",
    "events:write",
    "events:read",
    "points:write",
    "rules:write",
    "rewards:write",
    "coupons:redeem",
    "analytics:read",
)

PARTNER_SCOPES = frozenset(
    {"members:read", "events:write", "events:read", "coupons:redeem", "analytics:read"}
)
"""The scopes a partner key may hold: what its tills and its own statement need
(see `habitue.partners.access` for what each path lets a partner key do)."""


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class Expiry(Strict):
    policy: Literal["never", "days", "end_of_month", "end_of_year"] = "never"
    days: StrictInt | None = Field(default=None, ge=1, le=36500)

    @model_validator(mode="after")
    def _days_with_policy(self) -> Expiry:
        if self.policy == "days" and self.days is None:
            raise ValueError("days is required when policy is 'days'")
        if self.policy != "days" and self.days is not None:
            raise ValueError("days is only meaningful when policy is 'days'")
        return self


class ProgramCreate(Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    timezone: str = "UTC"
    points_name: str = Field(default="points", min_length=1, max_length=64)
    earn_rate: str = "1"
    rounding: Literal["down", "half_up", "up"] = "down"
    pending_days: StrictInt = Field(default=0, ge=0, le=365)
    expiry: Expiry = Field(default_factory=Expiry)
    allow_negative: bool = False
    redeem_rate: str = "0.01"
    """Money one point is worth when paying at the till."""
    redeem_step: StrictInt = Field(default=1, ge=1, le=100000)

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        if v not in _CURRENCIES:
            raise ValueError("not an ISO 4217 currency code")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone") from exc
        return v

    @field_validator("earn_rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        return decimal_rate(v, "earn_rate", most=MAX_EARN_RATE)

    @field_validator("redeem_rate")
    @classmethod
    def _redeem_rate(cls, v: str) -> str:
        return decimal_rate(v, "redeem_rate", positive=True, most=MAX_REDEEM_RATE)


class ProgramRead(BaseModel):
    code: str
    name: str
    currency: str
    timezone: str
    points_name: str
    earn_rate: str
    rounding: str
    pending_days: int
    expiry: Expiry
    allow_negative: bool
    redeem_rate: str
    redeem_step: int
    card_prefix: str
    created_at: UtcDatetime


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    partner: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="a partner of the program: the key then acts only as that partner's tills",
    )
    scopes: list[str] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str], info: ValidationInfo) -> list[str]:
        bad = [s for s in v if s not in SCOPES]
        if bad:
            raise ValueError(f"unknown scopes {bad}; known: {list(SCOPES)}")
        if info.data.get("partner") is not None:
            bad = [s for s in v if s not in PARTNER_SCOPES]
            if bad:
                raise ValueError(
                    f"a partner key cannot hold {bad}; it may hold {sorted(PARTNER_SCOPES)}"
                )
        return sorted(set(v))


class ApiKeyRead(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    partner: str | None = None
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None = None
    """Within a minute: the write is throttled to once a minute per key and server process."""
    revoked_at: UtcDatetime | None = None
    key: str | None = None
    """The secret, shown only in the response that created it."""


AttributeType = Literal["string", "number", "integer", "boolean"]


class EventTypeSpec(Strict):
    """A program-defined event type: the attributes its events carry."""

    attributes: dict[str, AttributeType] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)

    @field_validator("attributes")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        import re

        bad = [k for k in v if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", k)]
        if bad:
            raise ValueError(f"attribute names must be snake_case identifiers: {bad}")
        return v
