"""API keys: listing without secrets, revocation (API and CLI), last use recorded cheaply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from habitue import clock
from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.programs.models import ApiKey
from tests.conftest import create_program, new_code


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from habitue.settings import get_settings

    monkeypatch.setenv("HABITUE_DATABASE_URL", db_url)
    monkeypatch.setenv("HABITUE_HMAC_KEY", "test-hmac-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _cli(*args: str, code: int = 0) -> str:
    from habitue.cli import app

    done = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert done.exit_code == code, done.output
    return done.output


class _Monotonic:
    """`time.monotonic` of the programs service, moved by hand (the cache and the throttle)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import time

        self.offset = 0.0
        self._real = time.monotonic
        fake = type("T", (), {"monotonic": staticmethod(lambda: self._real() + self.offset)})
        monkeypatch.setattr(programs_service, "time", fake)


async def _key(client: httpx.AsyncClient, program: str, **body: Any) -> tuple[int, dict[str, str]]:
    body = {"name": new_code("k"), "scopes": ["members:read"], **body}
    r = await client.post(f"/v1/programs/{program}/api-keys", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), {"Authorization": f"Bearer {r.json()['key']}"}


async def _row(db: Database, key_id: int) -> Any:
    async with db.read() as s:
        return (await s.execute(select(ApiKey.__table__).where(ApiKey.id == key_id))).one()


async def test_keys_are_listed_without_their_secrets(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await client.post(
        f"/v1/programs/{program}/api-keys",
        json={"name": "till", "scopes": ["events:write", "members:read"]},
    )
    assert r.status_code == 201
    made = r.json()
    assert made["key"].startswith("hab_") and made["revoked_at"] is None
    assert made["last_used_at"] is None and made["partner"] is None
    r = await client.get(f"/v1/programs/{program}/api-keys")
    assert r.status_code == 200
    [listed] = r.json()
    assert listed["id"] == made["id"] and listed["name"] == "till"
    assert listed["scopes"] == ["events:write", "members:read"]
    assert listed["key"] is None and made["key"] not in r.text
    assert listed["prefix"] == made["prefix"] and made["key"].startswith(f"hab_{listed['prefix']}")
    # Another program's keys are not listed there, and a non-admin key lists nothing.
    other = await create_program(client)
    assert (await client.get(f"/v1/programs/{other}/api-keys")).json() == []
    till = {"Authorization": f"Bearer {made['key']}"}
    r = await client.get(f"/v1/programs/{program}/api-keys", headers=till)
    assert r.status_code == 403


async def test_a_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    key_id, till = await _key(client, program)
    # Used once: the key is now in this process's cache.
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    r = await client.delete(f"/v1/programs/{program}/api-keys/{key_id}")
    assert r.status_code == 204 and r.content == b""
    r = await client.get(f"/v1/programs/{program}", headers=till)
    assert r.status_code == 401 and r.json()["type"].endswith("/unauthorized")
    first = (await _row(db, key_id)).revoked_at
    assert first is not None
    # Revoking again changes nothing; the list shows when.
    clock.advance(timedelta(hours=1))
    assert (await client.delete(f"/v1/programs/{program}/api-keys/{key_id}")).status_code == 204
    assert (await _row(db, key_id)).revoked_at == first
    [listed] = (await client.get(f"/v1/programs/{program}/api-keys")).json()
    assert listed["revoked_at"] is not None


async def test_only_the_programs_admin_revokes_its_keys(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    key_id, till = await _key(client, program)
    other = await create_program(client)
    _, other_admin = await _key(client, other, scopes=["admin"])
    for path, headers in (
        (f"/v1/programs/{other}/api-keys/{key_id}", None),  # the operator, the wrong program
        (f"/v1/programs/{program}/api-keys/{key_id}", other_admin),  # another program's admin
        (f"/v1/programs/{program}/api-keys/999999999", None),
    ):
        r = await client.delete(path, headers=headers)
        assert r.status_code == 404, (path, r.text)
    r = await client.delete(f"/v1/programs/{program}/api-keys/{key_id}", headers=till)
    assert r.status_code == 403
    r = await client.delete(f"/v1/programs/{program}/api-keys/0")
    assert r.status_code == 422
    assert (await _row(db, key_id)).revoked_at is None
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    # A program's own admin key revokes the program's keys.
    _, admin = await _key(client, program, scopes=["admin"])
    r = await client.delete(f"/v1/programs/{program}/api-keys/{key_id}", headers=admin)
    assert r.status_code == 204
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 401


async def test_other_processes_refuse_a_revoked_key_within_the_cache_lifetime(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (here: a revocation that does not touch this process's cache) stops
    accepting the key once its cached entry, at most 5 seconds old, expires."""
    now = _Monotonic(monkeypatch)
    key_id, till = await _key(client, program)
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    await db.write(lambda s: programs_service.revoke_api_key(s, None, key_id))
    now.offset = 4.0
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    now.offset = 5.1
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 401


async def test_keys_are_revoked_and_listed_from_the_cli(
    client: httpx.AsyncClient, program: str, db: Database, cli_env: None
) -> None:
    r = await client.post(
        f"/v1/programs/{program}/partners",
        json={"code": "air", "name": "Air", "funding_rate": "1", "reimbursement_rate": "1"},
    )
    assert r.status_code == 201
    out = await _cli(
        "keys",
        "create",
        "--program",
        program,
        "--scopes",
        "events:write",
        "--partner",
        "air",
        "--name",
        "air-tills",
    )
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("hab_")
    till = {"Authorization": f"Bearer {secret}"}
    assert (
        await client.get(f"/v1/programs/{program}/event-types", headers=till)
    ).status_code == 403
    [made] = (await client.get(f"/v1/programs/{program}/api-keys")).json()
    assert (made["name"], made["partner"], made["scopes"]) == ("air-tills", "air", ["events:write"])
    out = await _cli("keys", "list", "--program", program)
    assert "air-tills" in out and secret not in out
    out = await _cli("keys", "revoke", str(made["id"]))
    assert "revoked" in out
    assert (await _row(db, made["id"])).revoked_at is not None
    r = await client.post(f"/v1/programs/{program}/events/quote", json={}, headers=till)
    assert r.status_code == 401
    # Unknown ids, partners and programs: an error, no traceback, nothing written.
    assert "no API key" in await _cli("keys", "revoke", "999999999", code=1)
    out = await _cli(
        "keys",
        "create",
        "--program",
        program,
        "--scopes",
        "events:write",
        "--partner",
        "nobody",
        "--name",
        "x",
        code=1,
    )
    assert "no partner" in out
    out = await _cli(
        "keys",
        "create",
        "--program",
        program,
        "--scopes",
        "admin",
        "--partner",
        "air",
        "--name",
        "y",
        code=2,
    )
    assert "partner key cannot hold" in out
    assert len((await client.get(f"/v1/programs/{program}/api-keys")).json()) == 1


async def test_last_use_is_recorded_at_most_once_a_minute(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = _Monotonic(monkeypatch)
    key_id, till = await _key(client, program)
    assert (await _row(db, key_id)).last_used_at is None
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    first = clock.as_utc((await _row(db, key_id)).last_used_at)
    assert abs(first - datetime.now(UTC)) < timedelta(seconds=30)
    # More requests within the minute: no write (the stored time stays, though the clock moved).
    clock.advance(timedelta(seconds=40))
    now.offset = 40.0
    for _ in range(5):
        assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    assert clock.as_utc((await _row(db, key_id)).last_used_at) == first
    # A minute later: written again.
    clock.advance(timedelta(seconds=30))
    now.offset = 70.0
    assert (await client.get(f"/v1/programs/{program}", headers=till)).status_code == 200
    later = clock.as_utc((await _row(db, key_id)).last_used_at)
    assert later - first >= timedelta(seconds=60)
    [listed] = (await client.get(f"/v1/programs/{program}/api-keys")).json()
    assert datetime.fromisoformat(listed["last_used_at"]) == later
