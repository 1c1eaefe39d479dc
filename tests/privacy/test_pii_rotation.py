"""`habitue keys rotate-pii` re-encrypts every member's email and phone with a new key.

On a database of its own: the rotation re-encrypts every contact of the database with a key
the run's other tests do not have (on the shared database, the messaging worker of a later
test met contacts it could not decrypt)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from typer.testing import CliRunner

from habitue.db import Database
from habitue.privacy import pii
from habitue.settings import get_settings
from tests.conftest import enrol, fresh_database, new_code
from tests.privacy.test_pii import _raw


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(db_kind, tmp_path) as url:
        yield url


@pytest.fixture
def keys_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("HABITUE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def test_keys_are_rotated(
    client: httpx.AsyncClient, program: str, db: Database, keys_env: pytest.MonkeyPatch
) -> None:
    email = f"{new_code('bo')}@example.com"
    member = await enrol(client, program, email=email, phone="+4511223344")
    legacy = await enrol(client, program)

    async def clear_legacy(s: object) -> None:
        await s.execute(  # type: ignore[attr-defined]
            text("UPDATE members SET email = 'old@example.com' WHERE public_id = :id"),
            {"id": legacy["id"]},
        )

    await db.write(clear_legacy)  # as a row written before encryption was switched on
    before, _ = await _raw(db, member["id"])
    old = pii.derived_key(get_settings().hmac_key).decode()
    new = Fernet.generate_key().decode()
    keys_env.setenv("HABITUE_PII_KEYS", f"{new},{old}")
    get_settings.cache_clear()
    from habitue.cli import app

    done = await asyncio.to_thread(CliRunner().invoke, app, ["keys", "rotate-pii"])
    assert done.exit_code == 0, done.output
    assert "re-encrypted" in done.output
    # Only the new key left: everything still reads, the old ciphertext is gone.
    keys_env.setenv("HABITUE_PII_KEYS", new)
    get_settings.cache_clear()
    after, _ = await _raw(db, member["id"])
    assert after != before and after.startswith(pii.PREFIX)
    r = await client.get(f"/v1/programs/{program}/members/{member['id']}")
    assert r.json()["email"] == email
    legacy_stored, _ = await _raw(db, legacy["id"])
    assert legacy_stored.startswith(pii.PREFIX)
    assert pii.unseal(legacy_stored) == "old@example.com"
    # The old key alone no longer opens them.
    keys_env.setenv("HABITUE_PII_KEYS", old)
    get_settings.cache_clear()
    with pytest.raises(RuntimeError, match="HABITUE_PII_KEYS"):
        pii.unseal(after)
