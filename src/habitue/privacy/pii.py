"""Members' email and phone encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

The columns `members.email` and `members.phone` are declared `Sealed`: every write through
SQLAlchemy stores `pii1:<Fernet token>`, every read gives the clear value back, so no service
changes. Members are still found through the keyed hashes (`email_hash`, `phone_hash`), never
by the stored value, which is random per write.

Keys come from `HABITUE_PII_KEYS`: Fernet keys separated by commas, the newest first (it
encrypts; every listed key decrypts). Unset, one key is derived from `HABITUE_HMAC_KEY`.
Rotation: put the new key first, run `habitue keys rotate-pii` (every row re-encrypted with
it, rows written before encryption was switched on included), then drop the old key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, column, select, table, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from habitue.settings import get_settings

PREFIX = "pii1:"
SEALED_COLUMNS = ("email", "phone")
"""The columns of `members` held encrypted."""


def derived_key(hmac_key: str) -> bytes:
    """The Fernet key used when `HABITUE_PII_KEYS` is unset (derived, never stored)."""
    digest = hmac.new(hmac_key.encode(), b"habitue-pii-v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=4)
def _keyring(pii_keys: str | None, hmac_key: str) -> MultiFernet:
    keys = [k.strip() for k in (pii_keys or "").split(",") if k.strip()]
    return MultiFernet([Fernet(k) for k in keys] or [Fernet(derived_key(hmac_key))])


def keyring() -> MultiFernet:
    """The configured keys (the first encrypts)."""
    settings = get_settings()
    return _keyring(settings.pii_keys, settings.hmac_key)


def keyring_spec() -> str:
    """The configured keys as `HABITUE_PII_KEYS` would list them (for a child process)."""
    settings = get_settings()
    return settings.pii_keys or derived_key(settings.hmac_key).decode()


def seal(value: str) -> str:
    return PREFIX + keyring().encrypt(value.encode()).decode()


def unseal(stored: str) -> str:
    """The clear value of a stored one; a value stored before encryption is returned as is."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return keyring().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError(
            "a member's contact cannot be decrypted with HABITUE_PII_KEYS (a key missing?)"
        ) from exc


class Sealed(TypeDecorator[str]):
    """Text stored encrypted (module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:  # noqa: ARG002
        if value is None or value.startswith(PREFIX):
            return value
        return seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:  # noqa: ARG002
        return None if value is None else unseal(str(value))


_raw = table("members", column("id"), *(column(name, Text) for name in SEALED_COLUMNS))


async def rotate(session: AsyncSession, *, batch: int = 1000) -> dict[str, int]:
    """Re-encrypt every sealed value with the first key (and seal clear ones); returns the
    number of values rewritten per column. Runs in the caller's transaction, in pages."""
    ring = keyring()
    done = dict.fromkeys(SEALED_COLUMNS, 0)
    last = 0
    while True:
        rows: Sequence[Any] = (
            await session.execute(
                select(_raw.c.id, *(_raw.c[n] for n in SEALED_COLUMNS))
                .where(_raw.c.id > last)
                .order_by(_raw.c.id)
                .limit(batch)
            )
        ).all()
        if not rows:
            return done
        for row in rows:
            values = {}
            for name in SEALED_COLUMNS:
                stored = row._mapping[name]
                if stored is None:
                    continue
                if stored.startswith(PREFIX):
                    token = ring.rotate(stored[len(PREFIX) :].encode()).decode()
                else:
                    token = ring.encrypt(stored.encode()).decode()
                values[name] = PREFIX + token
                done[name] += 1
            if values:
                await session.execute(update(_raw).where(_raw.c.id == row.id).values(**values))
        last = int(rows[-1].id)
