"""API shapes of programs and keys."""

from __future__ import annotations

import base64
import binascii
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
    earn_on: Literal["tax_included", "tax_excluded"] = "tax_included"
    """The amounts purchases earn on: with tax (as charged) or without it (each line's net
    less its tax, from the lines' `tax_rate`)."""
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


_HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"
MAX_LOGO_BYTES = 64 * 1024
MAX_LOGO_CHARS = 100_000
LOGO_TYPES = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "image/webp": b"RIFF",
}


class Branding(Strict):
    """How the portal and the wallet pass look: a logo and two colours."""

    logo: str | None = Field(
        default=None,
        max_length=MAX_LOGO_CHARS,
        description="the logo as a data URL: `data:image/png;base64,…` (PNG, JPEG or WebP, "
        "at most 64 KiB); the portal serves it at `/app/{program}/logo`",
    )
    primary_color: str = Field(default="#1d4e89", pattern=_HEX_COLOUR)
    """The colour of the portal's header, buttons and the pass's background (white text on it)."""
    background_color: str = Field(default="#ffffff", pattern=_HEX_COLOUR)
    """The page's background (dark text on it)."""

    @field_validator("logo")
    @classmethod
    def _logo(cls, v: str | None) -> str | None:
        if v is not None:
            logo_bytes(v)
        return v

    @model_validator(mode="after")
    def _readable(self) -> Branding:
        if contrast(self.primary_color, "#ffffff") < 4.5:
            raise ValueError("primary_color is too light for white text (contrast below 4.5:1)")
        if contrast(self.background_color, "#1a1a1a") < 4.5:
            raise ValueError("background_color is too dark for dark text (contrast below 4.5:1)")
        return self


def logo_bytes(data_url: str) -> tuple[str, bytes]:
    """The media type and bytes of a logo's data URL; ValueError unless it is a PNG, JPEG or
    WebP image of at most 64 KiB whose bytes match its type."""
    head, sep, body = data_url.partition(",")
    media = head.removeprefix("data:").removesuffix(";base64")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("not a base64 data URL")
    if media not in LOGO_TYPES:
        raise ValueError("the logo must be a PNG, JPEG or WebP image")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError("not valid base64") from exc
    if len(raw) > MAX_LOGO_BYTES:
        raise ValueError("the logo is larger than 64 KiB")
    magic = LOGO_TYPES[media]
    if not raw.startswith(magic) or (media == "image/webp" and raw[8:12] != b"WEBP"):
        raise ValueError("the file is not the image its type says")
    return media, raw


def _luminance(colour: str) -> float:
    channels = []
    for i in (1, 3, 5):
        c = int(colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, other: str) -> float:
    """The WCAG 2 contrast ratio of two `#rrggbb` colours (1 to 21)."""
    a, b = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (a + 0.05) / (b + 0.05)


class ProgramRead(BaseModel):
    code: str
    name: str
    currency: str
    timezone: str
    points_name: str
    earn_rate: str
    rounding: str
    earn_on: str
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
