"""Rule drafts through the HTTP API: a draft earns nothing until published, its test answers
are the quote's, its backtest equals a hand computation, publishing writes a version (with its
actor), and bad input is a problem+json that writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import create_program, enrol, new_code, purchase

from habitue.db import Database, table_of
from habitue.rules.builder import Template, build
from habitue.rules.models import RuleDraft

P = "/v1/programs"
COFFEE = [
    {"sku": "esp", "category": "coffee", "quantity": "2", "unit_price": "2.00"},
    {"sku": "cro", "category": "pastry", "quantity": "1", "unit_price": "6.00"},
]
COFFEE_X2 = build(
    Template.CATEGORY_MULTIPLIER, {"code": "coffee-x", "category": "coffee", "factor": "2"}
)
COFFEE_X3 = {**COFFEE_X2, "effect": {"kind": "multiplier", "factor": "3"}}
VISIT_10 = build(Template.PER_VISIT, {"code": "visit-10", "points": "10"})


def problem(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == f"https://habitue.dev/errors/{type_}"
    return body


async def _balance(client: httpx.AsyncClient, program: str, member: str) -> int:
    r = await client.get(f"{P}/{program}/members/{member}/balance")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


async def _visit(client: httpx.AsyncClient, program: str, member: str, **extra: Any) -> Any:
    body = {"type": "visit", "member": {"id": member}, "external_id": new_code("v"), **extra}
    r = await client.post(f"{P}/{program}/events", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_draft_earns_nothing_until_it_is_published(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    r = await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)
    assert r.status_code == 200, r.text
    draft = r.json()
    assert (draft["base_version"], draft["live_version"], draft["outdated"]) == (1, 1, False)
    assert draft["changed"] == ["effect"]
    assert draft["spec"]["line_condition"] == 'line.category == "coffee"'
    r = await client.put(f"{rules}/visit-10/draft", json={k: v for k, v in VISIT_10.items()
                                                          if k != "code"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["base_version"] is None
    listed = (await client.get(f"{P}/{program}/rule-drafts")).json()
    assert [d["code"] for d in listed] == ["coffee-x", "visit-10"]

    # Live: base 10 + coffee 4.00 × (2 − 1) = 14; the visit earns nothing.
    r = await purchase(client, program, member, "10.00", lines=COFFEE)
    assert r.json()["points"] == 14
    assert (await _visit(client, program, member))["points"] == 0
    got = (await client.get(f"{rules}/coffee-x")).json()
    assert got["version"] == 1
    assert (await client.get(f"{rules}/visit-10")).status_code == 404
    assert await _balance(client, program, member) == 14

    r = await client.post(f"{rules}/coffee-x/draft/publish")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    got = (await client.get(f"{rules}/coffee-x")).json()
    assert [(v["version"], v["spec"]["effect"]["factor"]) for v in got["versions"]] == [
        (1, "2"),
        (2, "3"),
    ]
    assert got["versions"][1]["actor"] == "operator"
    problem(await client.get(f"{rules}/coffee-x/draft"), 404, "not-found")
    r = await client.post(f"{rules}/visit-10/draft/publish")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert (await client.get(f"{P}/{program}/rule-drafts")).json() == []

    # Published: base 10 + coffee 4.00 × (3 − 1) = 18; a visit earns 10.
    r = await purchase(client, program, member, "10.00", lines=COFFEE)
    assert r.json()["points"] == 18
    assert (await _visit(client, program, member))["points"] == 10
    assert await _balance(client, program, member) == 14 + 18 + 10


async def test_a_draft_test_answers_what_quote_answers(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)).status_code == 200
    event = {"type": "purchase", "member": {"id": member}, "external_id": "basket-1",
             "total": "10.00", "lines": COFFEE,
             "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}  # fmt: skip
    r = await client.post(f"{rules}/coffee-x/draft/test", json=event)
    assert r.status_code == 200, r.text
    tried = r.json()
    quoted = (await client.post(f"{P}/{program}/events/quote", json=event)).json()
    assert tried["live"] == quoted
    assert (tried["live"]["points"], tried["draft"]["points"], tried["difference"]) == (14, 18, 4)
    assert [(e["rule"], e["points"]) for e in tried["draft"]["effects"]] == [
        ("base", 10),
        ("coffee-x", 8),
    ]
    # Nothing was written: no event, no points.
    assert await _balance(client, program, member) == 0
    r = await client.post(f"{rules}/coffee-x/draft/publish")
    assert r.status_code == 200, r.text
    assert (await client.post(f"{P}/{program}/events/quote", json=event)).json() == tried["draft"]
    recorded = (await client.post(f"{P}/{program}/events", json=event)).json()
    assert recorded["points"] == tried["draft"]["points"]


async def test_a_new_rule_draft_is_tested_beside_the_live_rules(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    assert (await client.put(f"{rules}/visit-10/draft", json=VISIT_10)).status_code == 200
    event = {"type": "visit", "member": {"id": member}, "external_id": "v-1"}
    tried = (await client.post(f"{rules}/visit-10/draft/test", json=event)).json()
    assert (tried["live"]["points"], tried["draft"]["points"]) == (0, 10)
    basket = {"type": "purchase", "member": {"id": member}, "external_id": "b-1",
              "total": "10.00", "lines": COFFEE}  # fmt: skip
    tried = (await client.post(f"{rules}/visit-10/draft/test", json=basket)).json()
    assert tried["live"]["points"] == tried["draft"]["points"] == 14


async def test_a_backtest_equals_a_hand_computation(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    ana = (await enrol(client, program))["id"]
    bo = (await enrol(client, program))["id"]
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    now = datetime.now(UTC)

    def ago(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    pastry = [{"sku": "cro", "category": "pastry", "quantity": "1", "unit_price": "5.00"}]
    # In the last 30 days: Ana's basket with 4.00 € of coffee, Bo's pastry, Ana's visit.
    assert (await purchase(client, program, ana, "10.00", lines=COFFEE,
                           occurred_at=ago(3))).status_code == 201  # fmt: skip
    assert (await purchase(client, program, bo, "5.00", lines=pastry,
                           occurred_at=ago(2))).status_code == 201  # fmt: skip
    await _visit(client, program, ana, occurred_at=ago(1))
    # Forty days ago, outside the default window: Bo's 20.00 € of coffee.
    old = [{"sku": "esp", "category": "coffee", "quantity": "10", "unit_price": "2.00"}]
    assert (await purchase(client, program, bo, "20.00", lines=old,
                           occurred_at=ago(40))).status_code == 201  # fmt: skip
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)).status_code == 200

    r = await client.post(f"{rules}/coffee-x/draft/backtest")
    assert r.status_code == 200, r.text
    result = r.json()
    # Before: Ana 10 + 4 × 1 = 14, Bo 5. After: Ana 10 + 4 × 2 = 18, Bo 5.
    assert (result["events"], result["members"]) == (3, 2)
    assert result["before"]["points_issued"] == 19
    assert result["before"]["by_rule"] == {"base": 15, "coffee-x": 4}
    assert result["after"]["points_issued"] == 23
    assert result["after"]["by_rule"] == {"base": 15, "coffee-x": 8}
    assert (result["difference"], result["members_affected"]) == (4, 1)

    # A window of 60 days takes Bo's old basket in: 20 + 20 × 1 before, 20 + 20 × 2 after.
    r = await client.post(f"{rules}/coffee-x/draft/backtest",
                          json={"since": ago(60), "until": now.isoformat()})  # fmt: skip
    result = r.json()
    assert (result["events"], result["before"]["net_points"]) == (4, 19 + 40)
    assert (result["after"]["net_points"], result["members_affected"]) == (23 + 60, 2)
    # The backtest wrote nothing: the rule is still version 1, balances as they were.
    assert (await client.get(f"{rules}/coffee-x")).json()["version"] == 1
    assert await _balance(client, program, bo) == 5 + 40


async def test_bad_input_is_refused_and_writes_nothing(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    rules = f"{P}/{program}/rules"
    bad = {**COFFEE_X2, "condition": "event.totl > 1.0"}
    body = problem(await client.put(f"{rules}/coffee-x/draft", json=bad), 422, "invalid-rule")
    assert body["errors"][0]["field"] == "condition"
    problem(await client.get(f"{rules}/coffee-x/draft"), 404, "not-found")
    other = {**COFFEE_X2, "code": "another"}
    body = problem(await client.put(f"{rules}/coffee-x/draft", json=other), 422, "invalid-rule")
    assert body["errors"][0]["field"] == "code"
    nope = {**COFFEE_X2, "effect": {"kind": "coupon", "reward_code": "nope"}}
    problem(await client.put(f"{rules}/coffee-x/draft", json=nope), 422, "invalid-rule")
    assert (await client.get(f"{P}/{program}/rule-drafts")).json() == []
    problem(await client.post(f"{rules}/coffee-x/draft/publish"), 404, "not-found")
    problem(await client.post(f"{rules}/coffee-x/draft/backtest"), 404, "not-found")

    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X2)).status_code == 200
    window = {"since": "2026-11-10T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
    problem(await client.post(f"{rules}/coffee-x/draft/backtest", json=window), 422, "validation")
    window = {"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    problem(await client.post(f"{rules}/coffee-x/draft/backtest", json=window), 422, "validation")
    r = await client.post(f"{rules}/coffee-x/draft/backtest", json={"days": 3})
    assert r.status_code == 422
    r = await client.post(f"{rules}/coffee-x/draft/test", json={"type": "purchase"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    event = {"type": "purchase", "member": {"id": "nobody"}, "external_id": "x", "total": "1"}
    problem(await client.post(f"{rules}/coffee-x/draft/test", json=event), 404, "member-not-found")
    assert await _balance(client, program, member) == 0
    assert (await client.get(f"{rules}/coffee-x")).status_code == 404


async def test_publishing_a_draft_that_no_longer_compiles_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await create_program(client)
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)).status_code == 200
    # A draft saved under an older engine, whose CEL the engine of today refuses.
    drafts = table_of(RuleDraft)
    stale = {**COFFEE_X3, "condition": "event.totl > 1.0"}

    async def spoil(session: AsyncSession) -> None:
        await session.execute(update(drafts).where(drafts.c.code == "coffee-x").values(spec=stale))

    await db.write(spoil)
    body = problem(await client.post(f"{rules}/coffee-x/draft/publish"), 422, "invalid-rule")
    assert body["errors"][0]["field"] == "condition"
    problem(await client.post(f"{rules}/coffee-x/draft/backtest"), 422, "invalid-rule")
    got = (await client.get(f"{rules}/coffee-x")).json()
    assert [v["version"] for v in got["versions"]] == [1]
    assert (await client.get(f"{rules}/coffee-x/draft")).status_code == 200


async def test_a_draft_naming_a_reward_switched_off_since_is_not_published(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    reward = {"code": "pastry", "kind": "voucher", "cost_points": 60, "value": "2.00",
              "coupon_days": 14, "texts": {"en": {"name": "A pastry"}}}  # fmt: skip
    assert (await client.post(f"{P}/{program}/rewards", json=reward)).status_code == 201
    lottery = build(Template.RANDOM_REWARD, {"code": "lottery", "event_type": "purchase",
                                             "reward_code": "pastry", "percent": "2"})  # fmt: skip
    rules = f"{P}/{program}/rules"
    assert (await client.put(f"{rules}/lottery/draft", json=lottery)).status_code == 200
    r = await client.patch(f"{P}/{program}/rewards/pastry", json={"active": False})
    assert r.status_code == 200, r.text
    body = problem(await client.post(f"{rules}/lottery/draft/publish"), 422, "invalid-rule")
    assert body["errors"][0]["field"] == "effect.reward_code"
    assert (await client.get(f"{rules}/lottery")).status_code == 404


async def test_a_draft_over_a_rule_changed_since_must_be_saved_again(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    rules = f"{P}/{program}/rules"
    assert (await client.post(rules, json=COFFEE_X2)).status_code == 201
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)).status_code == 200
    r = await client.patch(f"{rules}/coffee-x", json={"active": False})
    assert r.json()["version"] == 2
    assert (await client.get(f"{rules}/coffee-x/draft")).json()["outdated"] is True
    problem(await client.post(f"{rules}/coffee-x/draft/publish"), 409, "draft-outdated")
    assert (await client.get(f"{rules}/coffee-x")).json()["version"] == 2
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X3)).status_code == 200
    r = await client.post(f"{rules}/coffee-x/draft/publish")
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["spec"]["active"]) == (3, True)
    problem(await client.delete(f"{rules}/coffee-x/draft"), 404, "not-found")
    assert (await client.put(f"{rules}/coffee-x/draft", json=COFFEE_X2)).status_code == 200
    assert (await client.delete(f"{rules}/coffee-x/draft")).status_code == 204
    assert (await client.get(f"{rules}/coffee-x")).json()["version"] == 3


async def test_a_backtest_replays_counters_and_counts_grants(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    ana = (await enrol(client, program))["id"]
    bo = (await enrol(client, program))["id"]
    now = datetime.now(UTC)
    for days in (5, 4, 3):
        await _visit(client, program, ana, occurred_at=(now - timedelta(days=days)).isoformat())
    await _visit(client, program, bo, occurred_at=(now - timedelta(days=2)).isoformat())
    lane = build(Template.AFTER_N, {"code": "lane", "event_type": "visit", "count": "2",
                                    "window": "30d", "benefit": "fast_lane",
                                    "benefit_days": "7"})  # fmt: skip
    rules = f"{P}/{program}/rules"
    assert (await client.put(f"{rules}/lane/draft", json=lane)).status_code == 200
    r = await client.post(f"{rules}/lane/draft/backtest")
    assert r.status_code == 200, r.text
    result = r.json()
    # Ana's 2nd and 3rd visits reach 2 visits in 30 days; Bo's one visit does not.
    assert result["before"]["grants_by_rule"] == {}
    assert result["after"]["grants_by_rule"] == {"lane": 2}
    assert (result["events"], result["difference"], result["members_affected"]) == (4, 0, 1)
    # A window that starts after Ana's first visit counts from there: one grant (her 3rd).
    since = (now - timedelta(days=4, hours=12)).isoformat()
    r = await client.post(f"{rules}/lane/draft/backtest", json={"since": since})
    assert r.json()["after"]["grants_by_rule"] == {"lane": 1}
