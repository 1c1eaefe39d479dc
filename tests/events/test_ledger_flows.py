"""Pending points, expiry, paying with points, refunds of spent points, negative balances."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from habitue import clock, jobs
from habitue.db import Database
from tests.conftest import create_program, enrol, purchase


async def _balance(client: httpx.AsyncClient, program: str, member: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    data: dict[str, Any] = r.json()
    return data


async def test_pending_points_release_after_return_window(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client, pending_days=14)
    m = await enrol(client, code)
    r = await purchase(client, code, m["id"], "30.00", external_id="buy")
    assert r.json()["pending"] is True
    assert (await _balance(client, code, m["id"]))["pending"] == 30
    clock.advance(timedelta(days=13))
    assert await jobs.run_release(db, code) == 0
    clock.advance(timedelta(days=2))
    assert await jobs.run_release(db, code) == 30
    assert await jobs.run_release(db, code) == 0
    bal = await _balance(client, code, m["id"])
    assert (bal["available"], bal["pending"]) == (30, 0)


async def test_refund_while_pending_takes_from_pending(client: httpx.AsyncClient) -> None:
    code = await create_program(client, pending_days=30)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "40.00", external_id="buy")
    r = await client.post(f"/v1/programs/{code}/events", json={
        "type": "refund", "external_id": "ref", "refers_to": "buy", "total": "10.00"})
    assert r.json()["points"] == -10
    bal = await _balance(client, code, m["id"])
    assert (bal["available"], bal["pending"]) == (0, 30)


async def test_expiry_is_fifo_and_idempotent(client: httpx.AsyncClient, db: Database) -> None:
    code = await create_program(client, expiry={"policy": "days", "days": 30})
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "10.00")
    clock.advance(timedelta(days=20))
    await purchase(client, code, m["id"], "7.00")
    r = await client.post(f"/v1/programs/{code}/members/{m['id']}/spends", json={"points": 4})
    assert r.status_code == 201
    bal = await _balance(client, code, m["id"])
    assert bal["available"] == 13
    assert [e["points"] for e in bal["expiring"]] == [6, 7]  # the spend took the oldest lot
    clock.advance(timedelta(days=11))
    assert await jobs.run_expiry(db, code) == (1, 6)
    assert await jobs.run_expiry(db, code) == (0, 0)
    assert (await _balance(client, code, m["id"]))["available"] == 7
    feed = (await client.get(f"/v1/programs/{code}/events-feed")).json()["items"]
    expired = [e for e in feed if e["type"] == "points.expired"]
    assert [e["data"]["points"] for e in expired] == [6]


async def test_pay_with_points_and_refund_returns_them(client: httpx.AsyncClient) -> None:
    code = await create_program(client, redeem_rate="0.10", redeem_step=5)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "50.00")
    r = await purchase(client, code, m["id"], "20.00", external_id="paid", spend_points=30)
    body = r.json()
    assert r.status_code == 201, r.text
    assert body["discount"] == "3.00" and body["points_spent"] == 30
    assert body["points_earned"] == 17  # earned on the 17.00 actually paid
    assert (await _balance(client, code, m["id"]))["available"] == 50 - 30 + 17
    r = await client.post(f"/v1/programs/{code}/events", json={
        "type": "refund", "external_id": "back", "refers_to": "paid", "total": "20.00"})
    assert r.json()["points"] == 30 - 17
    assert (await _balance(client, code, m["id"]))["available"] == 50
    r = await purchase(client, code, m["id"], "20.00", spend_points=7)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "spend_points"


async def test_refund_after_spending_records_shortfall(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "40.00", external_id="buy")
    await client.post(f"/v1/programs/{code}/members/{m['id']}/spends", json={"points": 30})
    r = await client.post(f"/v1/programs/{code}/events", json={
        "type": "refund", "external_id": "ref", "refers_to": "buy", "total": "40.00"})
    body = r.json()
    assert body["points"] == -10 and body["shortfall"] == 30
    assert (await _balance(client, code, m["id"]))["available"] == 0


async def test_negative_balance_when_allowed(client: httpx.AsyncClient) -> None:
    code = await create_program(client, allow_negative=True)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "40.00", external_id="buy")
    await client.post(f"/v1/programs/{code}/members/{m['id']}/spends", json={"points": 30})
    r = await client.post(f"/v1/programs/{code}/events", json={
        "type": "refund", "external_id": "ref", "refers_to": "buy", "total": "40.00"})
    assert r.json()["points"] == -40 and r.json()["shortfall"] == 0
    assert (await _balance(client, code, m["id"]))["available"] == -30
    await purchase(client, code, m["id"], "35.00")
    assert (await _balance(client, code, m["id"]))["available"] == 5


async def test_adjustments_need_reason_and_never_overdraw(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program)
    url = f"/v1/programs/{program}/members/{m['id']}/adjustments"
    r = await client.post(url, json={"points": 25, "reason": "goodwill"})
    assert r.status_code == 201 and r.json()["balance"]["available"] == 25
    r = await client.post(url, json={"points": -26, "reason": "correction"})
    assert r.status_code == 409 and r.json()["type"].endswith("/insufficient-points")
    assert (await client.post(url, json={"points": 5})).status_code == 422
    r = await client.post(url, json={"points": -5, "reason": "correction"})
    assert r.json()["balance"]["available"] == 20
    ledger = (await client.get(f"/v1/programs/{program}/members/{m['id']}/ledger")).json()
    assert [(i["kind"], i["points"], i["reason"]) for i in ledger["items"]] == [
        ("adjust", -5, "correction"), ("adjust", 25, "goodwill")]
    assert ledger["items"][0]["actor"] == "operator"


async def test_idempotency_key_replays_first_response(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program)
    url = f"/v1/programs/{program}/members/{m['id']}/adjustments"
    h = {"Idempotency-Key": "adj-1"}
    first = await client.post(url, json={"points": 10, "reason": "goodwill"}, headers=h)
    again = await client.post(url, json={"points": 10, "reason": "goodwill"}, headers=h)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await client.post(url, json={"points": 11, "reason": "goodwill"}, headers=h)
    assert other.status_code == 422
    assert (await _balance(client, program, m["id"]))["available"] == 10
