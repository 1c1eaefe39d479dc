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
    wallet_apple_url: str | None = None
    """The card page's "Add to Apple Wallet" link: a URL template whose `{program}`,
    `{card_number}` and `{member_id}` are replaced, URL-encoded; unset: no link."""
    wallet_google_url: str | None = None
    """The card page's "Save to Google Wallet" link, the same way."""
    redis_url: str | None = None
    """Redis for the rate limits, shared by every worker (`redis://127.0.0.1:6379/0`); unset:
    each process counts on its own."""
    redis_prefix: str = "habitue:rl:"
    rate_card_misses: str = "30/1m"
    """Failed card lookups (unknown card) per API key and per client address, per program."""
    rate_coupon_misses: str = "10/1m"
    """Failed coupon lookups per API key, per member named and per client address, per program."""
    rate_signin_failures: str = "10/15m"
    """Wrong passwords (portal and console) per account and per client address."""
    rate_signin_links: str = "5/1h"
    """Sign-in links asked for per email, per program."""
    rate_signin_links_per_address: str = "20/1h"
    """Sign-in links asked for per client address."""
    rate_limit_max_keys: int = Field(default=100_000, ge=1_000)
    """Buckets kept by the in-process limiter (least recently used dropped beyond)."""

    @field_validator(
        "rate_card_misses",
        "rate_coupon_misses",
        "rate_signin_failures",
        "rate_signin_links",
        "rate_signin_links_per_address",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        from habitue.ratelimit import Rate

        Rate.parse(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("HABITUE_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return value

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
