"""Configuration from `HABITUE_*` environment variables."""

from __future__ import annotations

import math
import secrets
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_HMAC_KEY = "habitue-development-only-hmac-key"
DEV_PUBLIC_URL = "http://127.0.0.1:8000"
"""The public URL outside production when `HABITUE_PUBLIC_URL` is unset (`habitue serve`'s)."""
MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128
MIN_SECRET_DISTINCT = 8
_SECRET_SETTINGS = ("hmac_key", "admin_key", "session_secret")


def _alphabet_size(value: str) -> int:
    """The size of the smallest usual alphabet the value is written in (hex, base64…)."""
    if value.isascii() and value.isdigit():
        return 10
    if all(c in "0123456789abcdef" for c in value.lower()) and (
        value.lower() == value or value.upper() == value
    ):
        return 16
    if value.isascii() and value.isalnum():
        return 62
    if all(c.isascii() and (c.isalnum() or c in "-_+/=") for c in value):
        return 64
    return 95


def secret_weakness(value: str) -> str | None:
    """Why `value` is too weak for a production secret, or None.

    At least 32 characters, at least 8 different ones, not one block repeated, and at least
    128 bits when each character is counted as a draw from the alphabet the value is written
    in (digits count 3.3 bits a character, hex 4, base64 6); the development default is
    refused.
    """
    if value == _DEV_HMAC_KEY:
        return "is the development default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(value)) < MIN_SECRET_DISTINCT:
        return f"uses fewer than {MIN_SECRET_DISTINCT} different characters"
    if value in (value + value)[1:-1]:
        return "repeats one block of characters"
    if len(value) * math.log2(_alphabet_size(value)) < MIN_SECRET_BITS:
        return f"holds less than {MIN_SECRET_BITS} bits"
    return None


class Settings(BaseSettings):
    """Runtime settings; secrets have no usable default outside development."""

    model_config = SettingsConfigDict(env_prefix="HABITUE_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///habitue.db"
    admin_key: str | None = None
    hmac_key: str = _DEV_HMAC_KEY
    pii_keys: str | None = None
    """Fernet keys that encrypt members' email and phone at rest, comma-separated, the newest
    first (`habitue keys rotate-pii` re-encrypts with it); unset: derived from the HMAC key."""
    session_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    public_url: str | None = None
    """The address members and staff reach the server at (`https://loyalty.example.com`):
    every link sent in a message is built from it, never from a request's `Host`. Required
    in production; elsewhere `DEV_PUBLIC_URL` when unset."""
    signin_link_minutes: int = Field(default=15, ge=1, le=1440)
    """How long an emailed sign-in link works (it works once)."""
    group_commit: bool = True
    group_commit_max: int = 64
    group_commit_lanes: int = 2
    scheduler: bool = True
    scheduler_interval_seconds: int = 300
    max_body_bytes: int = 1_000_000
    pool_size: int = 20
    db_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """How long a request waits for a database connection (pool checkout, connect) before
    it is answered `503 service-unavailable`; also the time `/readyz` allows its probe."""
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    """The longest one statement of the server may wait for PostgreSQL's answer (asyncpg)."""
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
    nats_url: str = "nats://127.0.0.1:4222"
    """The NATS server `habitue consume` reads events from (JetStream)."""
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
    worker: bool = True
    """`habitue serve` runs a delivery worker in its process (`HABITUE_WORKER=false`: none;
    run `habitue worker` instead)."""
    worker_batch: int = Field(default=200, ge=1, le=5000)
    """Deliveries one worker claims at a time (sent concurrently, one per member at most)."""
    worker_idle_seconds: float = Field(default=0.5, gt=0, le=60)
    """How long an idle worker waits before looking at the outbox again."""
    worker_lease_seconds: float = Field(default=120.0, gt=0, le=3600)
    """How long a claimed delivery stays with its worker: one killed meanwhile leaves it to
    another worker after this."""
    retry_period_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    """How long a failing delivery is retried (with back-off) before it is parked."""
    retry_base_seconds: float = Field(default=10.0, gt=0, le=3600)
    """The first retry's delay; each next one doubles (with jitter), up to an hour."""
    smtp_url: str | None = None
    """`smtp://host:port`, `smtp+starttls://user:pass@host:587` or
    `smtps://user:pass@host:465`: email is sent only when set."""
    mail_from: str = "Habitue <no-reply@localhost>"
    """The sender of emails (`From`)."""
    sms_webhook_url: str | None = None
    """An HTTP SMS provider: each text is POSTed as `{"to", "text"}`; unset: no SMS."""
    push_webhook_url: str | None = None
    """An HTTP push provider: `{"to", "title", "body", "data"}`; unset: no push."""
    message_weekly_cap: int = Field(default=0, ge=0)
    """Messages (other than sign-in links and welcome) a member gets per 7 days; 0: no cap.
    A program's `message_weekly_cap` setting wins."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    """How long a webhook receiver (or an SMS/push provider) has to answer."""
    quiet_hours: str | None = None
    """`HH:MM-HH:MM` in the program's time zone (`21:00-08:00`): SMS and push due inside wait
    for its end; unset: none. A program's `quiet_hours` setting wins."""
    points_expiring_days: int = Field(default=14, ge=0, le=366)
    """A `points_expiring` message goes this many days before a lot expires (once per lot);
    0: none. A program's `points_expiring_days` setting wins."""
    timed_scan_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How often the worker looks for timed messages (birthdays, points about to expire,
    rewards now within reach) and newsletters due."""

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from habitue.messaging.timed import parse_quiet_hours

        parse_quiet_hours(value)
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
            raise ValueError(
                "HABITUE_SMTP_URL must be smtp://host:port, smtp+starttls://user:pass@host:587 "
                "or smtps://user:pass@host:465"
            )
        return value

    @field_validator("sms_webhook_url", "push_webhook_url")
    @classmethod
    def _provider_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError("an SMS or push provider must be an http(s) URL")
        return value

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

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("HABITUE_PUBLIC_URL must be an http(s) URL, e.g. https://example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("HABITUE_PUBLIC_URL takes no query, fragment or credentials")
        return value

    @model_validator(mode="after")
    def _secrets_required_in_production(self) -> Settings:
        if self.env != "production":
            if self.public_url is None:
                self.public_url = DEV_PUBLIC_URL
            return self
        if self.hmac_key == _DEV_HMAC_KEY:
            raise ValueError("HABITUE_HMAC_KEY must be set in production")
        for name in _SECRET_SETTINGS:
            value = getattr(self, name)
            weakness = None if value is None else secret_weakness(value)
            if weakness is not None:
                raise ValueError(
                    f"HABITUE_{name.upper()} {weakness}: production needs a strong secret "
                    "(e.g. `openssl rand -hex 32`)"
                )
        if self.public_url is None:
            raise ValueError("HABITUE_PUBLIC_URL must be set in production")
        return self

    @property
    def base_url(self) -> str:
        """`public_url` without its trailing slash (always set once validated)."""
        return self.public_url or DEV_PUBLIC_URL


class SettingsError(RuntimeError):
    """The environment's configuration is refused; the message names the settings, never
    their values (a refused secret must not reach a log)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            e["msg"].removeprefix("Value error, ")
            + (f" ({'.'.join(map(str, e['loc']))})" if e["loc"] else "")
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        )
    # Raised outside the handler: no frame of the traceback holds the refused values.
    raise SettingsError(f"invalid configuration: {problems}")
