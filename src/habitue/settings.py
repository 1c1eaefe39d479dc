"""Configuration from `HABITUE_*` environment variables."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_HMAC_KEY = "habitue-development-only-hmac-key"


class Settings(BaseSettings):
    """Runtime settings; secrets have no usable default outside development."""

    model_config = SettingsConfigDict(env_prefix="HABITUE_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///habitue.db"
    admin_key: str | None = None
    hmac_key: str = _DEV_HMAC_KEY
    session_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    group_commit: bool = True
    group_commit_max: int = 64
    group_commit_lanes: int = 2
    scheduler: bool = True
    scheduler_interval_seconds: int = 300
    max_body_bytes: int = 1_000_000
    pool_size: int = 20
    idempotency_lease_seconds: int = Field(default=30, ge=1, le=3600)
    """How long a request holding an `Idempotency-Key` keeps it before a retry may take over
    (a server killed mid-request blocks its key no longer than this)."""
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 90)
    """How long an `Idempotency-Key` is remembered; after that it may be used again."""
    wallet_apple_url: str | None = None
    """The card page's "Add to Apple Wallet" link: a URL template whose `{program}`,
    `{card_number}` and `{member_id}` are replaced, URL-encoded; unset: no link."""
    wallet_google_url: str | None = None
    """The card page's "Save to Google Wallet" link, the same way."""

    @field_validator("wallet_apple_url", "wallet_google_url")
    @classmethod
    def _wallet_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError("a wallet link must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _secrets_required_in_production(self) -> Settings:
        if self.env == "production" and self.hmac_key == _DEV_HMAC_KEY:
            raise ValueError("HABITUE_HMAC_KEY must be set in production")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
