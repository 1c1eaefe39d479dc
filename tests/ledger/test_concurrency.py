"""Concurrent spends never overdraw; concurrent retries never credit twice.

On PostgreSQL these run with group commit off too, so that the requests are truly
concurrent transactions on separate connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from habitue.api import create_app
from habitue.db import Database
from habitue.ledger.verify import verify
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol, purchase


@pytest.fixture(params=["grouped", "separate"])
async def cclient(
    request: pytest.FixtureRequest, settings: Settings, db_kind: str
) -> AsyncIterator[httpx.AsyncClient]:
    grouped = request.param == "grouped"
    if not grouped and db_kind != "postgres":
        pytest.skip("SQLite has one writer: its writes always go through the group committer")
    # 50 requests at once open up to 50 connections: on a loaded machine a connect can take
    # longer than the server's 2-second wait (a 503), which is not what these tests are about.
    database = Database(settings.database_url, group_commit=grouped, pool_size=60, timeout=20)
    app = create_app(settings, db=database)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c:
            yield c
    await database.dispose()


async def test_fifty_spends_of_ten_from_a_hundred(cclient: httpx.AsyncClient) -> None:
    code = await create_program(cclient)
    m = await enrol(cclient, code)
    await purchase(cclient, code, m["id"], "100.00")
    url = f"/v1/programs/{code}/members/{m['id']}/spends"
    results = await asyncio.gather(*[cclient.post(url, json={"points": 10}) for _ in range(50)])
    codes = sorted(r.status_code for r in results)
    odd = [r.text for r in results if r.status_code not in (201, 409)]
    assert codes.count(201) == 10, odd
    assert codes.count(409) == 40, odd
    assert all(r.json()["type"].endswith("/insufficient-points")
               for r in results if r.status_code == 409)
    bal = (await cclient.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 0 and bal["expiring"] == []


async def test_twenty_retries_of_one_purchase_credit_once(cclient: httpx.AsyncClient) -> None:
    code = await create_program(cclient)
    m = await enrol(cclient, code)
    results = await asyncio.gather(*[
        purchase(cclient, code, m["id"], "42.00", external_id="same-receipt") for _ in range(20)
    ])
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    bal = (await cclient.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 42 and bal["lifetime_earned"] == 42


async def test_thirty_redemptions_of_ten_from_a_hundred(
    cclient: httpx.AsyncClient, db: Database
) -> None:
    """On PostgreSQL a redemption takes the balance and the lots in one statement."""
    code = await create_program(cclient)
    m = await enrol(cclient, code)
    for total in ("30.00", "30.00", "40.00"):  # three lots
        await purchase(cclient, code, m["id"], total)
    r = await cclient.post(f"/v1/programs/{code}/rewards", json={
        "code": "tea", "kind": "product", "cost_points": 10,
        "texts": {"en": {"name": "Tea"}}})  # fmt: skip
    assert r.status_code == 201, r.text
    url = f"/v1/programs/{code}/members/{m['id']}/redemptions"
    results = await asyncio.gather(*[cclient.post(url, json={"reward": "tea"}) for _ in range(30)])
    codes = sorted(r.status_code for r in results)
    assert (codes.count(201), codes.count(409)) == (10, 20)
    bal = (await cclient.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 0 and bal["expiring"] == []
    async with db.read() as session:
        assert not any((await verify(session)).values())
