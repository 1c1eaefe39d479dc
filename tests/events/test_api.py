"""Purchases, refunds and retries through the HTTP API."""

from __future__ import annotations

import httpx

from tests.conftest import create_program, enrol, purchase


async def test_purchase_earns_rate_times_amount_rounded_down(client: httpx.AsyncClient) -> None:
    code = await create_program(client, earn_rate="1.75")
    m = await enrol(client, code, email="ana@example.com")
    r = await purchase(client, code, m["id"], "40.00", external_id="t-1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["points"] == 70
    assert body["effects"] == [
        {"kind": "earn", "rule": "base", "points": 70, "detail": {},
         "benefit": None, "until": None, "coupon": None, "reward": None}
    ]  # fmt: skip
    r = await purchase(client, code, m["id"], "0.99")
    assert r.json()["points"] == 1  # 1.7325 rounded down
    bal = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 71
    assert bal["lifetime_earned"] == 71


async def test_refund_takes_back_in_proportion(client: httpx.AsyncClient) -> None:
    code = await create_program(client, earn_rate="1.75")
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "40.00", external_id="buy-1")
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "ref-1", "refers_to": "buy-1", "total": "20.00",
              "member": {"id": m["id"]}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["points"] == -35
    bal = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 35
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "ref-2", "refers_to": "buy-1", "total": "20.01"},
    )
    assert r.status_code == 422
    assert r.json()["type"].endswith("/refund-exceeds-purchase")


async def test_retry_returns_first_answer_and_writes_nothing(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    first = await purchase(client, code, m["id"], "12.50", external_id="same")
    again = await purchase(client, code, m["id"], "12.50", external_id="same")
    assert first.status_code == 201
    assert again.json() == first.json()
    bal = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 12
