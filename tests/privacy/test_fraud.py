"""Velocity rules: many purchases or refunds in a short time, or a card used at distant places,
hold the member's earning and spending for review; a reviewer releases or suspends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from habitue.privacy.fraud import Limits, Seen, assess
from tests.conftest import enrol, new_code, purchase

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_rules() -> None:
    limits = Limits(purchases_per_hour=3, refunds_per_day=2, max_speed_kmh=900)
    three = [Seen("purchase", T0 + timedelta(minutes=i)) for i in range(3)]
    assert assess(limits, three[:2], three[2]) is None
    tripped = assess(limits, three, Seen("purchase", T0 + timedelta(minutes=5)))
    assert tripped is not None and tripped[0] == "purchases_per_hour"
    # An hour later the old purchases no longer count.
    assert assess(limits, three, Seen("purchase", T0 + timedelta(minutes=61))) is None
    refunds = [Seen("refund", T0), Seen("refund", T0 + timedelta(hours=3))]
    tripped = assess(limits, refunds, Seen("refund", T0 + timedelta(hours=20)))
    assert tripped is not None and tripped[0] == "refunds_per_day"
    paris, copenhagen = (48.8566, 2.3522), (55.6761, 12.5683)
    at_paris = [Seen("purchase", T0, paris)]
    tripped = assess(limits, at_paris, Seen("visit", T0 + timedelta(minutes=20), copenhagen))
    assert tripped is not None and tripped[0] == "max_speed_kmh"
    assert assess(limits, at_paris, Seen("visit", T0 + timedelta(hours=3), copenhagen)) is None
    assert assess(Limits(), three, Seen("purchase", T0 + timedelta(minutes=5))) is None


async def test_a_member_over_the_limit_is_held_then_released_or_suspended(
    client: httpx.AsyncClient, program: str
) -> None:
    base = f"/v1/programs/{program}"
    assert (await client.get(f"{base}/fraud/settings")).json()["purchases_per_hour"] is None
    r = await client.put(f"{base}/fraud/settings", json={"purchases_per_hour": 3})
    assert r.status_code == 200, r.text
    calm = await enrol(client, program)
    busy = await enrol(client, program)
    for _ in range(3):
        assert (await purchase(client, program, busy["id"], "10.00")).status_code == 201
    assert (await purchase(client, program, calm["id"], "10.00")).status_code == 201
    # The fourth purchase within the hour is recorded, and holds the member.
    r = await purchase(client, program, busy["id"], "10.00")
    assert r.status_code == 201, r.text
    [hold] = (await client.get(f"{base}/fraud/holds")).json()["items"]
    assert (hold["member_id"], hold["rule"], hold["status"]) == (
        busy["id"],
        "purchases_per_hour",
        "held",
    )
    r = await purchase(client, program, busy["id"], "10.00")
    assert r.status_code == 409, r.text
    assert (await client.get(f"{base}/members/{busy['id']}")).json()["status"] == "held"
    r = await client.post(
        f"{base}/members/{busy['id']}/spends", json={"points": 5, "reference": new_code("s")}
    )
    assert r.status_code == 409, r.text
    assert (await purchase(client, program, calm["id"], "10.00")).status_code == 201
    # Released: earning again.
    r = await client.post(f"{base}/fraud/holds/{hold['id']}/release")
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert r.json()["decided_by"] == "operator"
    assert (await client.post(f"{base}/fraud/holds/{hold['id']}/release")).status_code == 409
    assert (await client.get(f"{base}/fraud/holds")).json()["items"] == []
    r = await client.get(f"{base}/members/{busy['id']}")
    assert r.json()["status"] == "active"
    # Ids past the database's integers are refused as invalid, not an unhandled error.
    huge = "9" * 40
    assert (await client.post(f"{base}/fraud/holds/{huge}/release")).status_code == 422
    assert (await client.get(f"{base}/audit", params={"after": huge})).status_code == 422


async def test_a_card_used_far_away_within_minutes_is_held_and_suspended(
    client: httpx.AsyncClient, program: str
) -> None:
    base = f"/v1/programs/{program}"
    await client.put(f"{base}/fraud/settings", json={"max_speed_kmh": 900})
    m = await enrol(client, program)
    now = datetime.now(UTC)
    paris = {"lat": 48.8566, "lon": 2.3522}
    copenhagen = {"lat": 55.6761, "lon": 12.5683}
    r = await purchase(
        client, program, m["id"], "5.00", attributes=paris, occurred_at=now.isoformat()
    )
    assert r.status_code == 201, r.text
    later = (now + timedelta(minutes=10)).isoformat()
    r = await purchase(client, program, m["id"], "5.00", attributes=copenhagen, occurred_at=later)
    assert r.status_code == 201, r.text
    [hold] = (await client.get(f"{base}/fraud/holds")).json()["items"]
    assert hold["rule"] == "max_speed_kmh"
    r = await client.post(f"{base}/fraud/holds/{hold['id']}/suspend")
    assert r.json()["status"] == "suspended"
    assert (await client.get(f"{base}/members/{m['id']}")).json()["status"] == "suspended"
    assert (await purchase(client, program, m["id"], "5.00")).status_code == 409
    r = await client.get(f"{base}/fraud/holds", params={"status": "suspended"})
    assert [h["id"] for h in r.json()["items"]] == [hold["id"]]
