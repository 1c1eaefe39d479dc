"""Nothing half-applied: when an applier fails, the whole event rolls back and the answer
is a problem+json. Bad rules and rewards are refused when saved (see docs/rules.md, "Bad
input"); here the catalogue is changed behind the API's back, in the database directly."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database, table_of
from habitue.events.models import Event
from habitue.ledger.verify import verify
from habitue.programs import service as programs_service
from habitue.rewards.models import Reward
from tests.conftest import create_program, enrol, purchase

_rewards = table_of(Reward)
_events = table_of(Event)
P = "/v1/programs"


async def test_a_coupon_of_a_reward_switched_off_in_the_database_rolls_the_event_back(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await create_program(client)
    reward = {"code": "pastry", "kind": "voucher", "cost_points": 60, "value": "2.00",
              "coupon_days": 14, "texts": {"en": {"name": "A pastry"}}}  # fmt: skip
    assert (await client.post(f"{P}/{program}/rewards", json=reward)).status_code == 201
    rules = [
        {"code": "lane", "event_type": "purchase",
         "effect": {"kind": "benefit", "benefit": "fast_lane", "days": 30}},
        {"code": "lottery", "event_type": "purchase",
         "effect": {"kind": "coupon", "reward_code": "pastry", "probability": "1"}},
    ]  # fmt: skip
    for rule in rules:
        r = await client.post(f"{P}/{program}/rules", json=rule)
        assert r.status_code == 201, r.text
    # Through the API the reward cannot be switched off while the rule names it…
    r = await client.patch(f"{P}/{program}/rewards/pastry", json={"active": False})
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/reward-in-use")
    # …so it is switched off in the database directly.
    async with db.read() as session:
        info = await programs_service.get_info(session, program)

    async def switch_off(session: AsyncSession) -> None:
        await session.execute(
            update(_rewards)
            .where(_rewards.c.program_id == info.id, _rewards.c.code == "pastry")
            .values(active=False)
        )

    await db.write(switch_off)
    member = (await enrol(client, program))["id"]
    r = await purchase(client, program, member, "9.00", external_id="half")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/reward-not-available")
    # Nothing of it was written: no points, no benefit (applied before the coupon), no coupon,
    # no event row; the ledger is sound.
    balance = (await client.get(f"{P}/{program}/members/{member}/balance")).json()
    assert balance["available"] == 0 and balance["pending"] == 0
    held = (await client.get(f"{P}/{program}/members/{member}/benefits")).json()
    assert held["privileges"] == []
    assert (await client.get(f"{P}/{program}/members/{member}/coupons")).json()["items"] == []
    async with db.read() as session:
        rows = await session.execute(
            select(_events.c.id).where(
                _events.c.program_id == info.id, _events.c.external_id == "half"
            )
        )
        assert rows.all() == []
        breaches = await verify(session)
    assert all(not found for found in breaches.values()), breaches

    # Switched on again, the same event goes through once, whole.
    async def switch_on(session: AsyncSession) -> None:
        await session.execute(
            update(_rewards)
            .where(_rewards.c.program_id == info.id, _rewards.c.code == "pastry")
            .values(active=True)
        )

    await db.write(switch_on)
    r = await purchase(client, program, member, "9.00", external_id="half")
    assert r.status_code == 201, r.text
    assert sorted(e["kind"] for e in r.json()["effects"]) == ["benefit", "coupon", "earn"]
    assert len((await client.get(f"{P}/{program}/members/{member}/coupons")).json()["items"]) == 1
