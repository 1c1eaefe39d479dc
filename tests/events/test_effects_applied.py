"""What an event's `effects` say has happened, has: benefits granted, coupons issued (API path).

See API.md "What an event's effects say has happened" and docs/rules.md "Effect kinds".
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from habitue import clock
from habitue.events import apply
from habitue.rewards.errors import RewardNotFound
from habitue.rules.types import EffectKind
from tests.conftest import change_pipeline, create_program, enrol, new_code, purchase

BENEFIT_RULE = {
    "code": "fast-lane",
    "event_type": "visit",
    "effect": {"kind": "benefit", "benefit": "fast_lane", "days": 30},
}
LANE_BONUS = {
    "code": "lane-bonus",
    "event_type": "purchase",
    "condition": "'fast_lane' in member.benefits",
    "effect": {"kind": "fixed", "points": 7},
}
COUPON_RULE = {
    "code": "lottery",
    "event_type": "purchase",
    "effect": {"kind": "coupon", "reward_code": "pastry", "probability": "1"},
}


def problem(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == f"https://habitue.dev/errors/{type_}"
    return body


async def add_rule(client: httpx.AsyncClient, program: str, rule: dict[str, Any]) -> None:
    r = await client.post(f"/v1/programs/{program}/rules", json=rule)
    assert r.status_code == 201, r.text


async def add_reward(client: httpx.AsyncClient, program: str, **fields: Any) -> None:
    body = {"code": "pastry", "kind": "voucher", "cost_points": 60, "value": "2.00",
            "coupon_days": 14, "texts": {"en": {"name": "A pastry"}}, **fields}  # fmt: skip
    r = await client.post(f"/v1/programs/{program}/rewards", json=body)
    assert r.status_code == 201, r.text


async def visit(client: httpx.AsyncClient, program: str, member: str, **extra: Any) -> Any:
    body = {"type": "visit", "member": {"id": member}, "external_id": new_code("v"), **extra}
    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def benefits(client: httpx.AsyncClient, program: str, member: str) -> Any:
    r = await client.get(f"/v1/programs/{program}/members/{member}/benefits")
    assert r.status_code == 200, r.text
    return r.json()


async def coupons(client: httpx.AsyncClient, program: str, member: str) -> list[Any]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/coupons")
    assert r.status_code == 200, r.text
    items: list[Any] = r.json()["items"]
    return items


def of_kind(answer: Any, kind: str) -> list[Any]:
    return [e for e in answer["effects"] if e["kind"] == kind]


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


async def test_a_benefit_is_granted_listed_extended_and_read_by_conditions(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    await add_rule(client, program, BENEFIT_RULE)
    await add_rule(client, program, LANE_BONUS)
    member = (await enrol(client, program))["id"]
    before = (await purchase(client, program, member, "10.00")).json()
    assert of_kind(before, "earn") == [
        {"kind": "earn", "rule": "base", "points": 10, "detail": {}, "benefit": None,
         "until": None, "coupon": None, "reward": None}
    ]  # fmt: skip
    assert (await benefits(client, program, member))["privileges"] == []

    answer = await visit(client, program, member)
    [granted] = of_kind(answer, "benefit")
    until = at(granted["until"])
    assert granted["rule"] == "fast-lane" and granted["benefit"] == "fast_lane"
    assert until is not None and abs(until - (clock.now() + timedelta(days=30))) < timedelta(
        seconds=5
    )
    held = await benefits(client, program, member)
    assert held["privileges"] == ["fast_lane"]
    [source] = [s for s in held["sources"] if s["source"] == "rule"]
    assert (source["code"], source["privileges"], at(source["until"])) == (
        "fast-lane", ["fast_lane"], until)  # fmt: skip

    # The next event's conditions see it.
    after = (await purchase(client, program, member, "10.00")).json()
    assert [(e["rule"], e["points"]) for e in of_kind(after, "earn")] == [
        ("base", 10), ("lane-bonus", 7)]  # fmt: skip

    # A repeat grant extends it: one privilege, the later end.
    clock.advance(timedelta(days=3))
    again = of_kind(await visit(client, program, member), "benefit")[0]
    later = at(again["until"])
    assert later is not None and later - until >= timedelta(days=3) - timedelta(seconds=5)
    held = await benefits(client, program, member)
    assert held["privileges"] == ["fast_lane"]
    assert [at(s["until"]) for s in held["sources"] if s["source"] == "rule"] == [later]

    # Once it has ended, it is gone from the list and from the conditions.
    clock.advance(timedelta(days=31))
    assert (await benefits(client, program, member))["privileges"] == []
    ended = (await purchase(client, program, member, "10.00")).json()
    assert [e["rule"] for e in of_kind(ended, "earn")] == ["base"]


async def test_an_open_ended_benefit_has_no_until(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    rule = {**BENEFIT_RULE, "effect": {"kind": "benefit", "benefit": "vip_corner"}}
    await add_rule(client, program, rule)
    member = (await enrol(client, program))["id"]
    [granted] = of_kind(await visit(client, program, member), "benefit")
    assert (granted["benefit"], granted["until"]) == ("vip_corner", None)
    # A later grant with an end does not shorten an open-ended one.
    await add_rule(client, program, {**BENEFIT_RULE, "code": "short",
                   "effect": {"kind": "benefit", "benefit": "vip_corner", "days": 1}})  # fmt: skip
    clock.advance(timedelta(days=400))
    [_, second] = of_kind(await visit(client, program, member), "benefit")
    assert second["until"] is None
    held = await benefits(client, program, member)
    assert held["privileges"] == ["vip_corner"]


async def test_a_coupon_is_issued_listed_and_burns_once(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    await add_reward(client, program)
    await add_rule(client, program, COUPON_RULE)
    member = (await enrol(client, program))["id"]
    assert await coupons(client, program, member) == []

    body = {"type": "purchase", "member": {"id": member}, "external_id": "t-1", "total": "8.00"}
    quoted = await client.post(f"/v1/programs/{program}/events/quote", json=body)
    assert quoted.status_code == 200, quoted.text
    assert [(e["coupon"], e["reward"]) for e in of_kind(quoted.json(), "coupon")] == [
        (None, "pastry")]  # fmt: skip
    assert await coupons(client, program, member) == []  # a quote writes nothing

    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert r.status_code == 201, r.text
    answer = r.json()
    [issued] = of_kind(answer, "coupon")
    assert issued["rule"] == "lottery" and issued["reward"] == "pastry"
    assert re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{2}", issued["coupon"])

    # A retry issues nothing twice and answers the same.
    retry = await client.post(f"/v1/programs/{program}/events", json=body)
    assert retry.status_code == 201, retry.text
    assert retry.json() == answer
    [listed] = await coupons(client, program, member)
    assert (listed["code"], listed["reward"], listed["state"], listed["event_id"]) == (
        issued["coupon"], "pastry", "issued", answer["id"])  # fmt: skip
    issued_at, expires = at(listed["issued_at"]), at(listed["expires_at"])
    assert issued_at is not None and expires == issued_at + timedelta(days=14)
    # No points were spent on it.
    balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert balance["available"] == 8

    till = f"/v1/programs/{program}/coupons/{issued['coupon']}/redeem"
    burnt = await client.post(till, json={"total": "5.00"})
    assert burnt.status_code == 200, burnt.text
    assert burnt.json()["discount"] == "2.00"
    problem(await client.post(till, json={"total": "5.00"}), 409, "coupon-already-redeemed")
    [listed] = await coupons(client, program, member)
    assert listed["state"] == "redeemed"


async def test_a_refund_voids_an_unused_coupon_and_leaves_a_used_one(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    await add_reward(client, program)
    await add_rule(client, program, COUPON_RULE)
    member = (await enrol(client, program))["id"]
    unused = (await purchase(client, program, member, "8.00", external_id="a")).json()
    used = (await purchase(client, program, member, "8.00", external_id="b")).json()
    unused_code = of_kind(unused, "coupon")[0]["coupon"]
    used_code = of_kind(used, "coupon")[0]["coupon"]
    burnt = await client.post(
        f"/v1/programs/{program}/coupons/{used_code}/redeem", json={"total": "5.00"}
    )
    assert burnt.status_code == 200, burnt.text

    async def refund(of: str, total: str) -> Any:
        body = {"type": "refund", "external_id": new_code("r"), "refers_to": of, "total": total}
        r = await client.post(f"/v1/programs/{program}/events", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    refunded = await refund("a", "8.00")
    assert [(e["coupon"], e["reward"]) for e in of_kind(refunded, "coupon_voided")] == [
        (unused_code, "pastry")]  # fmt: skip
    assert of_kind(await refund("b", "8.00"), "coupon_voided") == []
    states = {c["code"]: c["state"] for c in await coupons(client, program, member)}
    assert states == {unused_code: "voided", used_code: "redeemed"}
    problem(
        await client.post(f"/v1/programs/{program}/coupons/{unused_code}/redeem",
                          json={"total": "5.00"}), 409, "coupon-voided")  # fmt: skip


async def test_a_failing_applier_rolls_the_whole_event_back(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await create_program(client)
    await add_reward(client, program)
    await add_rule(client, program, {**BENEFIT_RULE, "event_type": "purchase"})
    await add_rule(client, program, COUPON_RULE)
    member = (await enrol(client, program))["id"]

    async def broken(*_: Any) -> apply.IssuedCoupon:
        raise RewardNotFound("the reward vanished")

    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    appliers = transport.app.state.pipeline.appliers  # type: ignore[attr-defined]
    change_pipeline(client, monkeypatch, appliers=replace(appliers, coupon=broken))
    r = await purchase(client, program, member, "9.00", external_id="x")
    problem(r, 404, "reward-not-found")
    # Nothing of it was written: no points, no benefit (applied before the coupon), no event.
    balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert balance["available"] == 0
    assert (await benefits(client, program, member))["privileges"] == []
    monkeypatch.undo()
    r = await purchase(client, program, member, "9.00", external_id="x")
    assert r.status_code == 201, r.text
    assert [e["kind"] for e in r.json()["effects"]] == ["earn", "benefit", "coupon"]
    assert len(await coupons(client, program, member)) == 1


async def test_effect_kinds_are_snake_case_words(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    await add_reward(client, program)
    for code, effect in (
        ("double", {"kind": "multiplier", "factor": "2"}),
        ("credits", {"kind": "tier_credits", "points": 5}),
        ("bonus", {"kind": "fixed", "points": 3}),
    ):
        await add_rule(client, program, {"code": code, "event_type": "purchase", "effect": effect})
    await add_rule(client, program, COUPON_RULE)
    await add_rule(client, program, {**BENEFIT_RULE, "event_type": "purchase"})
    member = (await enrol(client, program))["id"]
    answer = (await purchase(client, program, member, "10.00")).json()
    kinds = sorted(e["kind"] for e in answer["effects"])
    assert kinds == ["benefit", "coupon", "earn", "earn", "multiplier", "tier_credits"]
    assert set(kinds) == {k.value for k in EffectKind}
    assert all(re.fullmatch(r"[a-z][a-z_]*", k) for k in kinds)


async def test_bad_input_is_refused_when_saved(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    rules = f"/v1/programs/{program}/rules"

    def field_of(body: dict[str, Any]) -> str:
        return str(body["errors"][0]["field"])

    unknown = problem(await client.post(rules, json=COUPON_RULE), 422, "invalid-rule")
    assert field_of(unknown) == "effect.reward_code"
    await add_reward(client, program, code="mug", kind="product", value=None, coupon_days=None)
    mug = {**COUPON_RULE, "effect": {"kind": "coupon", "reward_code": "mug"}}
    assert field_of(problem(await client.post(rules, json=mug), 422, "invalid-rule")) == (
        "effect.reward_code"
    )
    await add_reward(client, program, active=False)
    inactive = problem(await client.post(rules, json=COUPON_RULE), 422, "invalid-rule")
    assert "inactive" in inactive["errors"][0]["message"]
    for bad in ("Fast Lane", "fast-lane", "9lives", "a" * 65, ""):
        rule = {**BENEFIT_RULE, "effect": {"kind": "benefit", "benefit": bad}}
        body = problem(await client.post(rules, json=rule), 422, "invalid-rule")
        assert field_of(body) == "effect.benefit", bad

    # A reward a live rule names cannot be switched off; once the rule is gone, it can.
    reward = f"/v1/programs/{program}/rewards/pastry"
    assert (await client.patch(reward, json={"active": True})).status_code == 200
    await add_rule(client, program, COUPON_RULE)
    problem(await client.patch(reward, json={"active": False}), 409, "reward-in-use")
    assert (await client.get(reward)).json()["active"] is True
    # Nor can a saved rule be pointed at a reward that does not exist.
    patched = await client.patch(
        rules + "/lottery", json={"effect": {"kind": "coupon", "reward_code": "nope"}}
    )
    assert field_of(problem(patched, 422, "invalid-rule")) == "effect.reward_code"
    assert (await client.delete(rules + "/lottery")).status_code == 204
    assert (await client.patch(reward, json={"active": False})).status_code == 200
