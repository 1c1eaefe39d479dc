"""Members' email and phone are encrypted at rest, found through the keyed hash, and
re-encrypted with a new key by `habitue keys rotate-pii`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from typer.testing import CliRunner

from habitue.db import Database
from habitue.privacy import pii
from habitue.settings import get_settings
from tests.conftest import enrol, new_code


@pytest.fixture
def keys_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("HABITUE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def _raw(db: Database, public_id: str) -> tuple[str, str]:
    async with db.read() as s:
        row = (
            await s.execute(
                text("SELECT email, phone FROM members WHERE public_id = :id"), {"id": public_id}
            )
        ).one()
    return str(row.email), str(row.phone)


def test_a_value_is_sealed_and_opened() -> None:
    sealed = pii.seal("ada@example.com")
    assert sealed.startswith(pii.PREFIX) and "ada" not in sealed
    assert sealed != pii.seal("ada@example.com")  # random per write
    assert pii.unseal(sealed) == "ada@example.com"
    assert pii.unseal("written-before@example.com") == "written-before@example.com"


async def test_email_and_phone_are_stored_encrypted_and_read_in_clear(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    email = f"{new_code('ada')}@example.com"
    member = await enrol(client, program, email=email, phone="+4520304050")
    stored_email, stored_phone = await _raw(db, member["id"])
    assert stored_email.startswith(pii.PREFIX) and email not in stored_email
    assert stored_phone.startswith(pii.PREFIX) and "20304050" not in stored_phone
    r = await client.get(f"/v1/programs/{program}/members/{member['id']}")
    assert (r.json()["email"], r.json()["phone"]) == (email, "+4520304050")
    found = await client.get(f"/v1/programs/{program}/members", params={"email": email.upper()})
    assert [m["id"] for m in found.json()["items"]] == [member["id"]]


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
