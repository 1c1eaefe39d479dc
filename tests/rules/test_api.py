"""Rules through the HTTP API: CRUD and versions, bad input, and rules applied to events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import create_program, enrol, purchase

from habitue.db import table_of
from habitue.ledger.models import Posting

# Wednesday 18 November 2026, Europe/Paris (UTC+1): 21:30 and 20:30 local.
WED_2130 = "2026-11-18T20:30:00Z"
WED_2030 = "2026-11-18T19:30:00Z"

COFFEE_X2: dict[str, Any] = {
    "code": "coffee-wed-night",
    "event_type": "purchase",
    "line_condition": "line.category == 'coffee'",
    "effect": {"kind": "multiplier", "factor": "2"},
    "schedule": {"days": ["wed"], "start": "21:00", "end": "23:59"},
}
REVIEW_50: dict[str, Any] = {
    "code": "review-50",
    "event_type": "review",
    "effect": {"kind": "fixed", "points": 50},
    "caps": [{"period": "week", "count": 1}],
}


def _rules(program: str) -> str:
    return f"/v1/programs/{program}/rules"


async def _event(
    client: httpx.AsyncClient, program: str, member: str, kind: str, ext: str, **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/programs/{program}/events",
        json={"type": kind, "member": {"id": member}, "external_id": ext, **extra},
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_crud_and_versions(client: httpx.AsyncClient, program: str) -> None:
    r = await client.post(_rules(program), json=REVIEW_50)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["version"] == 1
    assert created["active"] is True
    assert created["spec"]["effect"]["points"] == 50
    r = await client.post(_rules(program), json=REVIEW_50)
    assert r.status_code == 409
    r = await client.patch(f"{_rules(program)}/review-50", json={"effect": {"kind": "fixed",
                                                                          "points": 60}})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    got = (await client.get(f"{_rules(program)}/review-50")).json()
    assert [v["version"] for v in got["versions"]] == [1, 2]
    assert [v["spec"]["effect"]["points"] for v in got["versions"]] == [50, 60]
    assert got["versions"][0]["actor"]
    listed = (await client.get(_rules(program))).json()
    assert [i["code"] for i in listed["items"]] == ["review-50"]
    r = await client.delete(f"{_rules(program)}/review-50")
    assert r.status_code == 204
    assert (await client.get(_rules(program))).json()["items"] == []
    got = (await client.get(f"{_rules(program)}/review-50")).json()
    assert got["active"] is False
    assert got["deleted_at"] is not None
    assert (await client.delete(f"{_rules(program)}/review-50")).status_code == 404
    assert (await client.patch(f"{_rules(program)}/review-50", json={})).status_code == 404
    assert (await client.get(f"{_rules(program)}/nope")).status_code == 404
    # A deleted code may be created again: its next version.
    r = await client.post(_rules(program), json=REVIEW_50)
    assert r.status_code == 201
    assert r.json()["version"] == 3


async def test_postings_carry_rule_id_and_version(
    client: httpx.AsyncClient, program: str, session: AsyncSession
) -> None:
    m = await enrol(client, program)
    rule = (await client.post(_rules(program), json={**REVIEW_50, "caps": []})).json()
    await _event(client, program, m["id"], "review", "rv-1")
    await client.patch(f"{_rules(program)}/review-50", json={"effect": {"kind": "fixed",
                                                                       "points": 70}})
    out = await _event(client, program, m["id"], "review", "rv-2")
    assert out["points_earned"] == 70
    p = table_of(Posting)
    rows = (
        await session.execute(
            select(p.c.rule_id, p.c.rule_version, p.c.amount).where(p.c.rule_id == rule["id"])
        )
    ).all()
    versions = sorted((r.rule_version, abs(r.amount)) for r in rows)
    assert (1, 50) in versions
    assert (2, 70) in versions
    assert {r.rule_version for r in rows} == {1, 2}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"condition": "event.total >"}, "condition"),
        ({"condition": "event.nope > 1"}, "condition"),
        ({"condition": "event.total + 1"}, "condition"),
        ({"line_condition": "line.colour == 'red'"}, "line_condition"),
        ({"caps": [{"period": "week", "count": 0}]}, "caps[0].count"),
        ({"caps": [{"period": "day", "points": -5}]}, "caps[0].points"),
        ({"valid_from": "2026-12-01T00:00:00Z", "valid_to": "2026-11-01T00:00:00Z"}, "valid_to"),
        ({"effect": {"kind": "fixed"}}, "effect.points"),
        ({"priority": "high"}, "priority"),
        ({"colour": "red"}, "colour"),
        ({"budget": 0}, "budget"),
    ],
)
async def test_bad_rules_are_refused_and_nothing_saved(
    client: httpx.AsyncClient, program: str, patch: dict[str, Any], field: str
) -> None:
    r = await client.post(_rules(program), json={**REVIEW_50, **patch})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["field"] == field
    assert (await client.get(_rules(program))).json()["items"] == []


async def test_cel_error_has_a_position(client: httpx.AsyncClient, program: str) -> None:
    r = await client.post(_rules(program), json={**REVIEW_50, "condition": "event.total >"})
    err = r.json()["errors"][0]
    assert err["field"] == "condition"
    assert err["line"] == 1
    assert isinstance(err["column"], int)


async def test_bad_patch_keeps_the_current_version(client: httpx.AsyncClient, program: str) -> None:
    await client.post(_rules(program), json=REVIEW_50)
    r = await client.patch(f"{_rules(program)}/review-50", json={"caps": [{"period": "week",
                                                                         "count": -1}]})
    assert r.status_code == 422
    r = await client.patch(f"{_rules(program)}/review-50", json={"code": "other"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "code"
    got = (await client.get(f"{_rules(program)}/review-50")).json()
    assert got["version"] == 1


async def test_overlapping_exclusive_rules_are_saved_with_a_warning(
    client: httpx.AsyncClient, program: str
) -> None:
    a = {**REVIEW_50, "code": "a", "exclusive": True, "priority": 5}
    assert (await client.post(_rules(program), json=a)).json()["warnings"] == []
    r = await client.post(_rules(program), json={**a, "code": "b"})
    assert r.status_code == 201
    assert len(r.json()["warnings"]) == 1
    assert "a, b" in r.json()["warnings"][0]
    assert len((await client.get(_rules(program))).json()["warnings"]) == 1


async def test_expected_cost_of_a_random_rule(client: httpx.AsyncClient, program: str) -> None:
    body = {"code": "lucky", "event_type": "visit",
            "effect": {"kind": "fixed", "points": 100, "probability": "0.02"}}
    r = await client.post(_rules(program), json=body)
    assert r.status_code == 201, r.text
    got = (await client.get(f"{_rules(program)}/lucky")).json()
    assert got["expected_cost_per_event"] == "2.00"


async def test_coffee_doubled_on_wednesday_night(client: httpx.AsyncClient) -> None:
    code = await create_program(client, earn_rate="1")
    assert (await client.post(_rules(code), json=COFFEE_X2)).status_code == 201
    m = await enrol(client, code)
    lines = [
        {"sku": "ESP", "category": "coffee", "quantity": 2, "unit_price": "2.50"},
        {"sku": "CRO", "category": "pastry", "quantity": 1, "unit_price": "5.00"},
    ]
    r = await purchase(client, code, m["id"], "10.00", lines=lines, occurred_at=WED_2130)
    body = r.json()
    assert r.status_code == 201, r.text
    # base 10 points; the multiplier doubles the coffee's share of the base (5 → +5).
    assert body["points_earned"] == 15
    assert {e["rule"]: e["points"] for e in body["effects"]} == {"base": 10,
                                                                "coffee-wed-night": 5}
    r = await purchase(client, code, m["id"], "10.00", lines=lines, occurred_at=WED_2030)
    assert r.json()["points_earned"] == 10


async def test_review_capped_at_one_a_week(client: httpx.AsyncClient, program: str) -> None:
    assert (await client.post(_rules(program), json=REVIEW_50)).status_code == 201
    m = await enrol(client, program)
    first = await _event(client, program, m["id"], "review", "r1", occurred_at=WED_2030)
    second = await _event(client, program, m["id"], "review", "r2", occurred_at=WED_2130)
    # Monday 23 November 2026 starts the next ISO week.
    third = await _event(client, program, m["id"], "review", "r3",
                         occurred_at="2026-11-23T09:00:00Z")
    assert [first["points_earned"], second["points_earned"], third["points_earned"]] == [50, 0, 50]


async def test_runtime_error_skips_the_rule_and_the_purchase_succeeds(
    client: httpx.AsyncClient, program: str
) -> None:
    rule = {"code": "div", "event_type": "purchase",
            "condition": "event.total_minor / (event.line_count - event.line_count) > 1",
            "effect": {"kind": "fixed", "points": 5}}
    r = await client.post(_rules(program), json=rule)
    assert r.status_code == 201, r.text
    m = await enrol(client, program)
    r = await purchase(client, program, m["id"], "10.00")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["points_earned"] == 10
    assert body["errors"][0]["rule"] == "div"


async def test_budget_is_never_exceeded(client: httpx.AsyncClient, program: str) -> None:
    rule = {"code": "launch", "event_type": "visit", "effect": {"kind": "fixed", "points": 40},
            "budget": 100}
    assert (await client.post(_rules(program), json=rule)).status_code == 201
    members = [await enrol(client, program) for _ in range(4)]
    earned = [
        (await _event(client, program, mem["id"], "visit", f"v{i}"))["points_earned"]
        for i, mem in enumerate(members)
    ]
    assert earned == [40, 40, 20, 0]


async def test_rule_edit_applies_to_the_next_event(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    body = {"code": "visit", "event_type": "visit", "effect": {"kind": "fixed", "points": 3}}
    await client.post(_rules(program), json=body)
    assert (await _event(client, program, m["id"], "visit", "v1"))["points_earned"] == 3
    await client.patch(f"{_rules(program)}/visit", json={"active": False})
    assert (await _event(client, program, m["id"], "visit", "v2"))["points_earned"] == 0
    await client.patch(f"{_rules(program)}/visit", json={"active": True})
    assert (await _event(client, program, m["id"], "visit", "v3"))["points_earned"] == 3
    await client.delete(f"{_rules(program)}/visit")
    assert (await _event(client, program, m["id"], "visit", "v4"))["points_earned"] == 0
