"""The rules service against the database: counters, budgets under concurrency, the cache,
and the demo rule set."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import enrol, new_code

from habitue import clock
from habitue.db import Database
from habitue.members import service as members_service
from habitue.programs import service as programs_service
from habitue.rules import demo_install
from habitue.rules import service as rules_service
from habitue.rules.compile import rule_cache
from habitue.rules.counters import CounterEvent, counters_at, recompute_counters
from habitue.rules.demo_rules import DEMO_RULES
from habitue.rules.errors import BudgetExhausted
from habitue.rules.types import Decision, EarnPoints


async def _post(client: httpx.AsyncClient, program: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/v1/programs/{program}/events", json=body)


async def test_incremental_counters_match_a_recomputation(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    start = clock.now() - timedelta(days=70)
    times = sorted(start + timedelta(minutes=rng.randrange(70 * 24 * 60)) for _ in range(60))
    events: list[CounterEvent] = []
    purchases: list[tuple[str, int]] = []
    for i, at in enumerate(times):
        kind = rng.choice(["visit", "purchase", "purchase", "review", "referral", "app_open"])
        body: dict[str, Any] = {"type": kind, "member": {"id": m["id"]},
                                "external_id": f"e{i}", "occurred_at": at.isoformat()}
        cats: tuple[str, ...] = ()
        total = 0
        if kind == "purchase":
            cats = tuple(rng.sample(["coffee", "pastry", "tea"], rng.randint(1, 2)))
            lines = [{"category": c, "unit_price": f"{rng.randint(1, 9)}.50"} for c in cats]
            total = sum(int(float(ln["unit_price"]) * 100) for ln in lines)
            body |= {"lines": lines, "total": f"{total / 100:.2f}"}
            purchases.append((f"e{i}", total))
        r = await _post(client, program, body)
        assert r.status_code == 201, r.text
        events.append(CounterEvent(kind, at, total, cats))
    ext, total = purchases[-1]
    r = await _post(client, program, {"type": "refund", "external_id": "refund-1",
                                      "refers_to": ext, "total": "1.00"})
    assert r.status_code == 201, r.text
    events.append(CounterEvent("refund", clock.now(), 100))
    as_of = clock.now()
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        ref = await members_service.resolve(session, info, member_id=m["id"])
        state = await rules_service.counter_state(session, ref.id)
        kept = await rules_service.member_counters(session, info, ref.id, as_of)
    assert kept == recompute_counters(events, as_of, info.timezone)
    assert counters_at(state, as_of, info.timezone) == kept
    assert kept["purchases_lifetime"] == len(purchases)


async def test_rules_read_counters_with_the_event_being_decided(
    client: httpx.AsyncClient, program: str
) -> None:
    rule = {"code": "regular", "event_type": "visit",
            "condition": "member.counters.visits_30d >= 2",
            "effect": {"kind": "fixed", "points": 10}}
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    m = await enrol(client, program)
    earned = []
    for i in range(4):
        r = await _post(client, program, {"type": "visit", "member": {"id": m["id"]},
                                          "external_id": f"v{i}"})
        earned.append(r.json()["points_earned"])
    # "At least 2 visits in 30 days" holds on the 2nd visit: it counts itself.
    assert earned == [0, 10, 10, 10]


async def test_concurrent_events_never_exceed_a_budget(
    client: httpx.AsyncClient, program: str
) -> None:
    rule = {"code": "launch", "event_type": "visit",
            "effect": {"kind": "fixed", "points": 30}, "budget": 100}
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    members = [await enrol(client, program) for _ in range(8)]
    results = await asyncio.gather(
        *(
            _post(client, program, {"type": "visit", "member": {"id": mem["id"]},
                                    "external_id": f"v-{mem['id']}"})
            for mem in members
        )
    )
    assert {r.status_code for r in results} <= {201, 409}
    granted = sum(r.json()["points_earned"] for r in results if r.status_code == 201)
    assert granted <= 100
    got = (await client.get(f"/v1/programs/{program}/rules")).json()
    assert got["items"][0]["code"] == "launch"


async def test_rule_set_is_cached_until_a_rule_changes(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    body = {"code": "visit", "event_type": "visit", "effect": {"kind": "fixed", "points": 3}}
    await client.post(f"/v1/programs/{program}/rules", json=body)
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        first = await rules_service.rule_set(session, info)
    async with db.read() as session:
        assert await rules_service.rule_set(session, info) is first
    await client.patch(f"/v1/programs/{program}/rules/visit", json={"priority": 2})
    async with db.read() as session:
        second = await rules_service.rule_set(session, info)
    assert second is not first
    assert second.rules[0].version == 2
    assert second.rules[0].rule_id == first.rules[0].rule_id
    rule_cache.invalidate(info.id)


async def test_demo_rules_install_once(client: httpx.AsyncClient, db: Database) -> None:
    code = new_code()
    r = await client.post("/v1/programs", json={"code": code, "name": "Demo", "currency": "EUR",
                                                 "timezone": "Europe/Paris"})
    assert r.status_code == 201
    assert await demo_install.install(db, code) == [s.code for s in DEMO_RULES]
    assert await demo_install.install(db, code) == []
    got = (await client.get(f"/v1/programs/{code}/rules")).json()
    assert sorted(i["code"] for i in got["items"]) == sorted(s.code for s in DEMO_RULES)
    lottery = (await client.get(f"/v1/programs/{code}/rules/pastry-lottery")).json()
    assert lottery["expected_cost_per_event"] == "0.02"


async def test_budget_update_refuses_an_overrun(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Two decisions that both saw room in the budget: the conditional update stops the second."""
    rule = {"code": "launch", "event_type": "visit",
            "effect": {"kind": "fixed", "points": 40}, "budget": 100}
    rule_id = (await client.post(f"/v1/programs/{program}/rules", json=rule)).json()["id"]
    m = await enrol(client, program)
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        ref = await members_service.resolve(session, info, member_id=m["id"])
    decision = Decision(effects=(EarnPoints(40, "launch", rule_id, 1),))
    at = clock.now()

    async def apply(session: AsyncSession) -> None:
        await rules_service.record_usage(session, info, ref.id, decision, at)

    await db.write(apply)
    await db.write(apply)
    with pytest.raises(BudgetExhausted):
        await db.write(apply)
    async with db.read() as session:
        usage = await rules_service.load_usage(
            session, info, ref.id, (await rules_service.rule_set(session, info)).rules, at
        )
    assert usage is not None
    assert usage.rules["launch"].budget_used == 80
