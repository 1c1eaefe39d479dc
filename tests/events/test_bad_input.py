"""Every kind of bad event gets a 4xx problem naming the field, and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from habitue.members.cards import luhn_check_digit
from tests.conftest import enrol, purchase


async def _nothing_written(client: httpx.AsyncClient, program: str, member: str) -> None:
    bal = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert bal["available"] == 100 and bal["lifetime_earned"] == 100
    feed = (await client.get(f"/v1/programs/{program}/events-feed?limit=1000")).json()
    assert sum(1 for e in feed["items"] if e["type"] == "event.recorded") == 1


@pytest.mark.parametrize(
    ("body", "status", "kind", "field"),
    [
        ({"total": "-5.00"}, 422, "validation", "total"),
        ({"total": "abc"}, 422, "validation", "total"),
        ({"total": "1.234"}, 422, "validation", "total"),
        ({"currency": "USD"}, 422, "currency-mismatch", "currency"),
        ({"lines": [{"sku": "a", "quantity": 2, "unit_price": "3.00"}]}, 422,
         "lines-do-not-add-up", "lines"),
        ({"colour": "red"}, 422, "validation", "colour"),
        ({"type": "teleport"}, 422, "unknown-event-type", "type"),
        ({"member": {"id": "00000000-0000-0000-0000-000000000000"}}, 404, "member-not-found",
         None),
        ({"occurred_at": "2020-01-01T10:00:00"}, 422, "validation", "occurred_at"),
        ({"spend_points": 1000}, 409, "insufficient-points", None),
    ],
)
async def test_bad_purchase(
    client: httpx.AsyncClient, program: str, body: dict[str, Any], status: int, kind: str,
    field: str | None,
) -> None:
    m = await enrol(client, program)
    assert (await purchase(client, program, m["id"], "100.00")).status_code == 201
    payload = {"type": "purchase", "member": {"id": m["id"]}, "external_id": "bad",
               "total": "10.00", **body}
    r = await client.post(f"/v1/programs/{program}/events", json=payload)
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["type"].endswith("/" + kind)
    if field is not None:
        assert problem["errors"][0]["field"] == field
    await _nothing_written(client, program, m["id"])


async def test_luhn_invalid_card_in_event(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    wrong = m["card_number"][:-1] + str((int(m["card_number"][-1]) + 3) % 10)
    r = await client.post(f"/v1/programs/{program}/events", json={
        "type": "purchase", "member": {"card_number": wrong}, "external_id": "x", "total": "1.00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "card_number"
    body = "123456789012345"
    r = await client.post(f"/v1/programs/{program}/events", json={
        "type": "purchase", "member": {"card_number": body + luhn_check_digit(body)},
        "external_id": "x", "total": "1.00"})
    assert r.status_code == 404


async def test_refund_errors(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "100.00", external_id="p1")
    for body, kind, field in (
        ({"refers_to": "nope", "total": "1.00"}, "unknown-purchase", "refers_to"),
        ({"refers_to": "p1", "total": "100.01"}, "refund-exceeds-purchase", "total"),
        ({"total": "1.00"}, "validation", "refers_to"),
    ):
        r = await client.post(f"/v1/programs/{program}/events",
                              json={"type": "refund", "external_id": "r", **body})
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("/" + kind) and r.json()["errors"][0]["field"] == field
    await _nothing_written(client, program, m["id"])


async def test_ten_megabyte_body_is_refused(client: httpx.AsyncClient, program: str) -> None:
    blob = "x" * (10 * 1024 * 1024)
    r = await client.post(f"/v1/programs/{program}/events",
                          content=b'{"type": "purchase", "pad": "' + blob.encode() + b'"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["type"].endswith("/payload-too-large")


async def test_malformed_json(client: httpx.AsyncClient, program: str) -> None:
    r = await client.post(f"/v1/programs/{program}/events", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
