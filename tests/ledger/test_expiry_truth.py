"""A lot past its expiry is not there, whether `habitue expire` has run or not.

The balances read by the API (balance, member, till quote), and every spend (spends,
redemptions, points at the till), see the points as they are at this instant; the expiry job
only writes down what is already so. See README ("Expiry is true at every instant").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from habitue import clock, jobs
from habitue.db import Database
from habitue.ledger.verify import verify
from tests.conftest import create_program, enrol, new_code, purchase

P = "/v1/programs"


async def sound(db: Database) -> None:
    async with db.read() as session:
        breaches = await verify(session)
    assert all(not rows for rows in breaches.values()), breaches


async def backdated_member(client: httpx.AsyncClient, **program: Any) -> tuple[str, str]:
    """The issue's example: 30 points earned 400 days ago under a 365-day policy, 20 today."""
    code = await create_program(client, expiry={"policy": "days", "days": 365}, **program)
    member = (await enrol(client, code))["id"]
    old = (clock.now() - timedelta(days=400)).isoformat()
    r = await purchase(client, code, member, "30.00", occurred_at=old)
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 30
    r = await purchase(client, code, member, "20.00")
    assert r.status_code == 201, r.text
    return code, member


async def available(client: httpx.AsyncClient, code: str, member: str) -> int:
    r = await client.get(f"{P}/{code}/members/{member}/balance")
    assert r.status_code == 200, r.text
    value: int = r.json()["available"]
    return value


async def test_an_expired_lot_counts_in_no_balance_before_the_job_runs(
    client: httpx.AsyncClient, db: Database
) -> None:
    code, member = await backdated_member(client)
    r = await client.get(f"{P}/{code}/members/{member}/balance")
    body = r.json()
    assert body["available"] == 20
    # Only the live lot is still to expire; the past one is gone already.
    assert [e["points"] for e in body["expiring"]] == [20]
    profile = (await client.get(f"{P}/{code}/members/{member}")).json()
    assert profile["balance"]["available"] == 20
    quote = await client.post(
        f"{P}/{code}/members/{member}/pay-with-points/quote", json={"total": "100.00"}
    )
    assert quote.status_code == 200, quote.text
    assert quote.json()["balance"] == 20
    await sound(db)
    # The job writes down what was already so: nothing changes for the member.
    assert await jobs.run_expiry(db, code) == (1, 30)
    assert await available(client, code, member) == 20
    assert await jobs.run_expiry(db, code) == (0, 0)
    await sound(db)


async def test_expired_points_cannot_be_spent(client: httpx.AsyncClient, db: Database) -> None:
    code, member = await backdated_member(client)
    spends = f"{P}/{code}/members/{member}/spends"
    r = await client.post(spends, json={"points": 30, "reason": "too much"})
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/insufficient-points")
    assert "20 available" in r.json()["detail"]
    r = await client.post(spends, json={"points": 20, "reason": "all there is"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"]["available"] == 0
    assert await available(client, code, member) == 0
    await sound(db)
    # The expired lot is still open until the job writes it down, and it is never spent.
    assert await jobs.run_expiry(db, code) == (1, 30)
    assert await available(client, code, member) == 0
    await sound(db)


async def test_expired_points_buy_no_reward_and_pay_nothing_at_the_till(
    client: httpx.AsyncClient, db: Database
) -> None:
    code, member = await backdated_member(client)
    reward = {"code": "mug", "kind": "product", "cost_points": 25,
              "texts": {"en": {"name": "A mug"}}}  # fmt: skip
    assert (await client.post(f"{P}/{code}/rewards", json=reward)).status_code == 201
    r = await client.post(f"{P}/{code}/members/{member}/redemptions", json={"reward": "mug"})
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/insufficient-points")
    r = await purchase(client, code, member, "10.00", spend_points=25)
    assert r.status_code == 409, r.text
    r = await purchase(client, code, member, "10.00", spend_points=20)
    assert r.status_code == 201, r.text
    # All 20 live points were spent; what is left is what this purchase earned.
    assert await available(client, code, member) == 20 + r.json()["points"] > 0
    await sound(db)


async def test_a_take_back_writes_the_expired_lots_down_first(
    client: httpx.AsyncClient, db: Database
) -> None:
    code, member = await backdated_member(client, allow_negative=True)
    old = (clock.now() - timedelta(days=1)).isoformat()
    ext = new_code("t")
    r = await purchase(client, code, member, "5.00", external_id=ext, occurred_at=old)
    assert r.status_code == 201, r.text
    assert await available(client, code, member) == 25
    assert (await client.post(f"{P}/{code}/members/{member}/spends",
                              json={"points": 25, "reason": "all"})).status_code == 201  # fmt: skip
    # Refunding takes back 5 points the member no longer has: they go to -5, not to 25.
    r = await client.post(
        f"{P}/{code}/events",
        json={"type": "refund", "external_id": new_code("r"), "refers_to": ext, "total": "5.00"},
    )
    assert r.status_code == 201, r.text
    assert await available(client, code, member) == -5
    await sound(db)
    assert await jobs.run_expiry(db, code) == (0, 0)  # already written down by the take-back
    ledger = (await client.get(f"{P}/{code}/members/{member}/ledger")).json()["items"]
    assert (ledger[0]["kind"], ledger[0]["points"]) == ("takeback", -5)
    # Written down just before it, the expiry takes its place when the lots expired.
    [expired] = [m for m in ledger if m["kind"] == "expire"]
    assert expired["points"] == -30
    assert expired["effective_at"] < expired["created_at"]
