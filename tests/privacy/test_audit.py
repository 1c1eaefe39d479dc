"""The audit log: who read or changed which member, rule or setting, with the request id;
hash-chained so that a deleted or altered row is found (API and `habitue audit verify`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from habitue.db import Database
from habitue.privacy import audit
from habitue.privacy.audit_http import classify
from habitue.privacy.models import AuditEntry
from tests.conftest import enrol, new_code

_log = AuditEntry.__table__


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


async def _key(client: httpx.AsyncClient, program: str, *scopes: str) -> dict[str, str]:
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": new_code("k"), "scopes": list(scopes)}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _entries(client: httpx.AsyncClient, program: str, **query: Any) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/programs/{program}/audit", params=query)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_what_is_audited() -> None:
    read = classify("GET", "/v1/programs/p/members/abc")
    assert read is not None and (read.resource, read.action, read.resource_id) == (
        "member",
        audit.Action.READ,
        "abc",
    )
    erase = classify("DELETE", "/v1/programs/p/members/abc")
    assert erase is not None and erase.action is audit.Action.DELETE
    adjust = classify("POST", "/v1/programs/p/members/abc/adjustments")
    assert adjust is not None and adjust.action is audit.Action.UPDATE
    export = classify("GET", "/v1/programs/p/members/abc/export")
    assert export is not None and export.action is audit.Action.EXPORT
    rule = classify("PATCH", "/v1/programs/p/rules/double")
    assert rule is not None and (rule.resource, rule.resource_id) == ("rule", "double")
    assert classify("POST", "/v1/programs/p/events") is None
    assert classify("GET", "/v1/programs/p/cards/8000011") is None
    assert classify("GET", "/healthz") is None
    page = classify("GET", "/admin/p/audit")
    assert page is not None and (page.resource, page.action, page.session) == (
        "audit", audit.Action.READ, "staff")  # fmt: skip
    csv = classify("GET", "/admin/p/audit.csv")
    assert csv is not None and csv.action is audit.Action.EXPORT


async def test_reads_and_changes_are_recorded_with_who_and_the_request_id(
    client: httpx.AsyncClient, program: str
) -> None:
    email = f"{new_code('a')}@example.com"
    member = await enrol(client, program, email=email, first_name="Ada")
    reader = await _key(client, program, "members:read")
    r = await client.get(
        f"/v1/programs/{program}/members/{member['id']}",
        headers={**reader, "X-Request-ID": "req-123"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-123"
    found = await client.get(f"/v1/programs/{program}/members", params={"email": email})
    assert found.status_code == 200 and found.headers["x-request-id"]
    r = await client.patch(
        f"/v1/programs/{program}/members/{member['id']}", json={"first_name": "Ada L."}
    )
    assert r.status_code == 200, r.text

    rows = await _entries(client, program, resource="member", resource_id=member["id"])
    kinds = [(e["actor_kind"], e["action"]) for e in rows]
    assert kinds == [
        ("operator", "create"),
        ("key", "read"),
        ("operator", "read"),
        ("operator", "update"),
    ]
    assert rows[1]["request_id"] == "req-123"
    assert rows[1]["actor"].startswith("key:")
    assert rows[2]["detail"]["query"] == ["email"]
    assert all(email not in str(e) for e in rows)
    # A failed request read nothing: no entry; the audit log is the owner's alone.
    missing = await client.get(f"/v1/programs/{program}/members/nobody", headers=reader)
    assert missing.status_code == 404
    assert not await _entries(client, program, resource_id="nobody")
    r = await client.get(f"/v1/programs/{program}/audit", headers=reader)
    assert r.status_code == 403


async def test_rules_and_settings_changes_are_recorded(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await client.put(f"/v1/programs/{program}/privacy", json={"min_group_size": 12})
    assert r.status_code == 200
    rows = await _entries(client, program, resource="setting")
    assert [(e["action"], e["resource_id"]) for e in rows] == [("update", None)]


async def test_a_deleted_or_altered_row_breaks_the_chain(
    client: httpx.AsyncClient, program: str, db: Database, cli_env: None
) -> None:
    member = await enrol(client, program, first_name="Bo")
    for _ in range(4):
        assert (
            await client.get(f"/v1/programs/{program}/members/{member['id']}")
        ).status_code == 200
    r = await client.get(f"/v1/programs/{program}/audit/verify")
    assert r.json() == {"ok": True, "breaches": []}
    await _cli("audit", "verify", "--program", program)
    exported = await client.get(f"/v1/programs/{program}/audit/export")
    assert exported.status_code == 200
    assert len(exported.text.splitlines()) >= 5

    async with db.read() as s:
        chain = (
            (await s.execute(select(_log.c.chain).where(_log.c.resource_id == member["id"])))
            .scalars()
            .first()
        )

    async def tamper(statement: Any) -> None:
        async def work(s: Any) -> None:
            await s.execute(statement)

        await db.write(work)

    # Altered: a read made to look like someone else's.
    await tamper(
        update(_log).where(_log.c.chain == chain, _log.c.seq == 3).values(actor="key:innocent#1")
    )
    r = await client.get(f"/v1/programs/{program}/audit/verify")
    assert not r.json()["ok"]
    assert any("altered" in b["problem"] for b in r.json()["breaches"])
    out = await _cli("audit", "verify", "--program", program, code=1)
    assert "row 3" in out


async def test_deleting_rows_is_seen_in_the_middle_and_at_the_end(
    client: httpx.AsyncClient, program: str, db: Database, cli_env: None
) -> None:
    member = await enrol(client, program, first_name="Cy")
    for _ in range(4):
        assert (
            await client.get(f"/v1/programs/{program}/members/{member['id']}")
        ).status_code == 200
    async with db.read() as s:
        chain, last = (
            await s.execute(
                select(_log.c.chain, _log.c.seq)
                .where(_log.c.resource_id == member["id"])
                .order_by(_log.c.seq.desc())
            )
        ).first() or (0, 0)

    async def remove(seq: int) -> None:
        async def work(s: Any) -> None:
            await s.execute(delete(_log).where(_log.c.chain == chain, _log.c.seq == seq))

        await db.write(work)

    await remove(last)  # the newest row: only the head knows it existed
    out = await _cli("audit", "verify", "--program", program, code=1)
    assert "rows deleted" in out
    await remove(2)
    r = await client.get(f"/v1/programs/{program}/audit/verify")
    problems = [b["problem"] for b in r.json()["breaches"]]
    assert any("missing" in p for p in problems)
    assert any("prev_hash" in p for p in problems)


async def test_console_and_portal_reads_name_the_staff_user_and_the_member(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    from habitue.programs import service as programs_service
    from tests.web.conftest import make_staff, signup, staff_signin

    transport = client._transport
    portal = httpx.AsyncClient(transport=transport, base_url="http://test")
    signed = await signup(portal, program)
    assert signed.status_code in (200, 303)
    assert (await portal.get(f"/app/{program}/profile")).status_code == 200
    mine = [e for e in await _entries(client, program) if e["actor_kind"] == "member"]
    assert mine and mine[-1]["action"] == "read" and mine[-1]["detail"]["sub"] == "profile"
    member_id = mine[-1]["resource_id"]
    assert mine[-1]["actor"] == f"member:{member_id}"

    async with db.read() as s:
        info = await programs_service.get_info(s, program)
    console = httpx.AsyncClient(transport=transport, base_url="http://test")
    email = await make_staff(db, "support", info.id)
    assert (await staff_signin(console, email)).status_code in (200, 303)
    r = await console.get(f"/admin/{program}/members/{member_id}")
    assert r.status_code == 200, r.text
    staff = [e for e in await _entries(client, program) if e["actor_kind"] == "staff"]
    assert [(e["action"], e["resource_id"]) for e in staff] == [("read", member_id)]
    assert staff[0]["actor"].startswith("staff#")
    await portal.aclose()
    await console.aclose()
