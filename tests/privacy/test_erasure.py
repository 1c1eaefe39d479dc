"""Erasure (GDPR Art. 17) through the API: nothing of the person left in any table or log line,
points expired through the ledger, the rest of what they held ended."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from habitue.db import Database
from habitue.ledger.verify import verify
from tests.conftest import create_program, enrol, purchase

PERSON: dict[str, Any] = {
    "external_id": "CRM-ZQ-88431",
    "email": "zelda.quixote-7731@example.org",
    "phone": "+33 6 71 42 93 18",
    "first_name": "Zeldarine",
    "last_name": "Quixotelli",
    "birth_date": "1983-07-29",
    "locale": "fr",
    "consents": {"email": True, "sms": True, "profiling": True},
    "attributes": {"favourite_beer": "Orval-Trappist-4471", "diet": "vegetarian-strict-kq"},
}
ERASED_VALUES = [
    "CRM-ZQ-88431",
    "zelda.quixote-7731@example.org",
    "+33 6 71 42 93 18",
    "+33671429318",
    "Zeldarine",
    "Quixotelli",
    "1983-07-29",
    "Orval-Trappist-4471",
    "vegetarian-strict-kq",
]


async def dump(db: Database) -> str:
    """Every row of every table of the database, as text."""

    def tables(conn: Any) -> list[str]:
        return list(inspect(conn).get_table_names())

    out: list[str] = []
    async with db.read() as session:
        conn = await session.connection()
        names = await conn.run_sync(tables)
        assert "members" in names and "outbox" in names
        for name in names:
            query = text(f'SELECT * FROM "{name}"')  # noqa: S608 - the database's own names
            rows = (await session.execute(query)).all()
            out.extend(f"{name}: {tuple(map(str, row))}" for row in rows)
    return "\n".join(out)


def leaked(haystack: str) -> list[str]:
    low = haystack.lower()
    return [v for v in ERASED_VALUES if v.lower() in low]


async def _key(client: httpx.AsyncClient, program: str, *scopes: str) -> dict[str, str]:
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": "-".join(scopes), "scopes": list(scopes)}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _member_with_everything(client: httpx.AsyncClient, program: str) -> dict[str, Any]:
    """A member with points, a coupon, a club trial, an offer, a segment and scores."""
    r = await client.post(
        f"/v1/programs/{program}/members", json=PERSON, headers={"Idempotency-Key": "enrol-zq"}
    )
    assert r.status_code == 201, r.text
    member: dict[str, Any] = r.json()
    m = member["id"]
    base = f"/v1/programs/{program}"
    assert (await purchase(client, program, m, "40.00")).status_code in (200, 201)
    r = await client.post(
        f"{base}/members/{m}/adjustments", json={"points": 1000, "reason": "goodwill"}
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/rewards", json={
        "code": "five", "kind": "voucher", "value": "5.00", "cost_points": 300,
        "coupon_days": 30, "texts": {"en": {"name": "Five"}}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/members/{m}/redemptions", json={"reward": "five"})
    assert r.status_code == 201, r.text
    member["coupon"] = r.json()["coupon"]["code"]
    r = await client.post(f"{base}/club/plans", json={
        "code": "vip", "name": "VIP", "price": "9.90", "currency": "EUR", "period": "monthly",
        "trial_days": 14, "multiplier": "2", "privileges": ["queue"]})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/members/{m}/club/subscriptions", json={"plan": "vip"})
    assert r.status_code == 201, r.text
    member["subscription"] = r.json()["id"]
    now = datetime.now(UTC)
    r = await client.post(f"{base}/offers", json={
        "code": "spring", "texts": {"en": {"name": "Spring"}}, "percent": "25", "cap": "3.00",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=3)).isoformat(), "members": [m]})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/analytics/scores")
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{base}/segments", json={"code": "everyone", "condition": 'member.status == "active"'}
    )
    assert r.status_code == 201, r.text
    members = (await client.get(f"{base}/segments/everyone/members")).json()["members"]
    assert m in members
    r = await client.patch(f"{base}/members/{m}", json={"consents": {"sms": False}})
    assert r.status_code == 200, r.text
    return member


async def test_erasure_leaves_nothing_of_the_person(
    client: httpx.AsyncClient,
    db: Database,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # the server runs at WARNING, without an access log
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    other = await enrol(client, program, email="someone.else@example.org", first_name="Ana")
    member = await _member_with_everything(client, program)
    m, card = member["id"], member["card_number"]
    before = await client.get(f"{base}/members/{m}/balance")
    assert before.json()["available"] > 0
    assert leaked(await dump(db))  # the dump does see them before

    writer = await _key(client, program, "members:write", "members:read")
    r = await client.delete(f"{base}/members/{m}", headers=writer)
    assert r.status_code == 403, r.text
    eraser = await _key(client, program, "members:erase")
    r = await client.delete(f"{base}/members/{m}", headers=eraser)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "erased" and done["already_erased"] is False
    assert done["points_expired"] + done["pending_points_expired"] == (
        before.json()["available"] + before.json()["pending"]
    )
    assert done["coupons_voided"] == 1
    assert done["clubs_ended"] == 1
    assert done["cards_blocked"] == 1
    assert done["offers_ended"] == 1

    # no erased value anywhere in the database, nor in the log
    assert leaked(await dump(db)) == []
    captured = capsys.readouterr()
    server_lines = [  # httpx's lines are the test client's, not the server's
        r.getMessage() for r in caplog.records if not r.name.startswith("httpx")
    ]
    assert leaked(captured.out + captured.err + "\n".join(server_lines)) == []

    # what the API says afterwards
    r = await client.get(f"{base}/members/{m}")
    assert r.status_code == 200
    shown = r.json()
    assert shown["status"] == "erased"
    for field in ("email", "phone", "first_name", "last_name", "birth_date", "external_id"):
        assert shown[field] is None, field
    assert shown["attributes"] == {} and shown["consents"] == {}
    assert shown["card_number"] is None
    assert {c["status"] for c in shown["cards"]} == {"erased"}
    assert (await client.get(f"{base}/cards/{card}")).status_code == 404
    assert (await client.post(f"{base}/cards/{card}/block")).status_code == 404
    assert (await client.get(f"{base}/members", params={"email": PERSON["email"]})).json()[
        "items"
    ] == []
    assert (await client.get(f"{base}/members", params={"card_number": card})).json()["items"] == []
    assert (
        await client.get(f"{base}/members", params={"external_id": PERSON["external_id"]})
    ).json()["items"] == []
    balance = (await client.get(f"{base}/members/{m}/balance")).json()
    assert balance["available"] == 0 and balance["pending"] == 0
    ledger = (await client.get(f"{base}/members/{m}/ledger")).json()
    assert any(item["kind"] == "expire" for item in ledger["items"])
    r = await client.post(f"{base}/coupons/{member['coupon']}/validate", json={"total": "9.00"})
    assert r.status_code == 409 and r.json()["type"].endswith("/coupon-canceled")
    sub = (await client.get(f"{base}/club/subscriptions/{member['subscription']}")).json()
    assert sub["status"] == "canceled"
    benefits = (await client.get(f"{base}/members/{m}/benefits")).json()
    assert [s for s in benefits["sources"] if s["source"] == "club"] == []
    assert (await client.get(f"{base}/members/{m}/offers")).json()["items"] == []
    assert m not in (await client.get(f"{base}/segments/everyone/members")).json()["members"]
    assert (await client.post(f"{base}/segments/everyone/recompute")).status_code == 200
    assert m not in (await client.get(f"{base}/segments/everyone/members")).json()["members"]
    assert (await client.post(f"{base}/analytics/scores")).status_code == 200
    scores = (await client.get(f"{base}/members/{m}/scores")).json()
    assert scores["frequency"] is None and scores["segment"] is None
    r = await purchase(client, program, m, "10.00")
    assert r.status_code == 409, r.text
    # nothing new is written about an erased member
    for path, body in (
        (f"{base}/members/{m}/adjustments", {"points": 5, "reason": "goodwill"}),
        (f"{base}/members/{m}/cards", {"reason": "lost"}),
    ):
        r = await client.post(path, json=body)
        assert r.status_code == 409 and r.json()["type"].endswith("/member-not-active"), r.text
    r = await client.patch(f"{base}/members/{m}", json={"email": PERSON["email"]})
    assert r.status_code == 409, r.text

    # another member keeps their data
    kept = (await client.get(f"{base}/members/{other['id']}")).json()
    assert (kept["first_name"], kept["email"]) == ("Ana", "someone.else@example.org")

    # webhooks learn it with the member's id only
    feed = (await client.get(f"{base}/events-feed", params={"limit": 1000})).json()
    erased = [e for e in feed["items"] if e["type"] == "member.erased"]
    assert [e["data"] for e in erased] == [{"member_id": m}]

    # the ledger stays sound
    async with db.read() as session:
        assert all(not breaches for breaches in (await verify(session)).values())

    # erasing again changes nothing
    r = await client.delete(f"{base}/members/{m}", headers=eraser)
    assert r.status_code == 200 and r.json()["already_erased"] is True
    assert (await client.delete(f"{base}/members/nobody", headers=eraser)).status_code == 404
