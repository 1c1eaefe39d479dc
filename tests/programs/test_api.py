"""Programs and scoped API keys."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import table_of
from habitue.programs.models import ApiKey
from tests.conftest import create_program, new_code


async def test_program_defaults_and_validation(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    r = await client.get(f"/v1/programs/{code}")
    body = r.json()
    assert body["earn_rate"] == "1" and body["rounding"] == "down"
    assert body["expiry"] == {"policy": "never", "days": None}
    assert body["card_prefix"].startswith("8") and len(body["card_prefix"]) == 6
    for bad, field in (
        ({"currency": "EUX"}, "currency"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"earn_rate": "-1"}, "earn_rate"),
        ({"expiry": {"policy": "days"}}, "expiry"),
        ({"rounding": "banker"}, "rounding"),
    ):
        r = await client.post("/v1/programs", json={"code": new_code(), "name": "x", **bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"].startswith(field)
    r = await client.post("/v1/programs", json={"code": code, "name": "again"})
    assert r.status_code == 409 and r.json()["type"].endswith("/program-exists")


async def test_key_is_shown_once_stored_hashed_and_scoped(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    code = await create_program(client)
    r = await client.post(f"/v1/programs/{code}/api-keys",
                          json={"name": "till", "scopes": ["members:read", "events:write"]})
    assert r.status_code == 201
    key = r.json()["key"]
    stored = (await session.execute(select(table_of(ApiKey)))).mappings().all()
    assert all(key not in str(dict(row)) for row in stored)
    till = {"Authorization": f"Bearer {key}"}
    r = await client.post(f"/v1/programs/{code}/members", json={}, headers=till)
    assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
    r = await client.get(f"/v1/programs/{code}/members", headers=till)
    assert r.status_code == 200
    r = await client.get(f"/v1/programs/{code}/members", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = await client.post("/v1/programs", json={"code": new_code(), "name": "x"}, headers=till)
    assert r.status_code == 403
    r = await client.post(f"/v1/programs/{code}/api-keys",
                          json={"name": "x", "scopes": ["root"]})
    assert r.status_code == 422


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.delete("/v1/programs")
    assert r.status_code == 405
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert "habitue_http_requests_total" in (await client.get("/metrics")).text
