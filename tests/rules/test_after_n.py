""" "After N": a counter a condition reads counts the event being decided.

The demo's "fast lane after 19 visits in 30 days" (`member.counters.visits_30d >= 19`) is
granted on the 19th visit, not the 20th. See docs/rules.md ("Counters").
"""

from __future__ import annotations

from typing import Any

import httpx
from tests.conftest import create_program, enrol, new_code

from habitue.rules.demo_rules import DEMO_RULES


def fast_lane_rule() -> dict[str, Any]:
    """The demo's fast-lane rule, as its API body."""
    spec = next(r for r in DEMO_RULES if r.code == "fast-lane")
    return {
        "code": spec.code,
        "name": spec.name,
        "event_type": spec.event_type,
        "condition": spec.condition,
        "effect": {"kind": "benefit", "benefit": spec.effect.benefit, "days": spec.effect.days},
    }


async def test_the_fast_lane_is_granted_on_the_19th_visit(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    rule = fast_lane_rule()
    assert rule["condition"] == "member.counters.visits_30d >= 19"
    assert "after 19 visits" in rule["name"]
    r = await client.post(f"/v1/programs/{program}/rules", json=rule)
    assert r.status_code == 201, r.text
    member = (await enrol(client, program))["id"]
    granted: list[bool] = []
    for _ in range(21):
        body = {"type": "visit", "member": {"id": member}, "external_id": new_code("v")}
        r = await client.post(f"/v1/programs/{program}/events", json=body)
        assert r.status_code == 201, r.text
        granted.append(any(e["kind"] == "benefit" for e in r.json()["effects"]))
        if len(granted) == 18:
            benefits = await client.get(f"/v1/programs/{program}/members/{member}/benefits")
            assert benefits.json()["privileges"] == []
    # Visits 1 to 18: no; the 19th (after 19 visits): yes; the 20th and 21st extend it.
    assert granted == [False] * 18 + [True] * 3
    benefits = (await client.get(f"/v1/programs/{program}/members/{member}/benefits")).json()
    assert benefits["privileges"] == ["fast_lane"]


async def test_a_quote_counts_the_quoted_event_as_the_real_one_does(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    rule = {**fast_lane_rule(), "condition": "member.counters.visits_30d >= 2"}
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    member = (await enrol(client, program))["id"]
    body = {"type": "visit", "member": {"id": member}, "external_id": new_code("v")}
    first = await client.post(f"/v1/programs/{program}/events/quote", json=body)
    assert first.status_code == 200, first.text
    assert [e["kind"] for e in first.json()["effects"]] == []
    assert (await client.post(f"/v1/programs/{program}/events", json=body)).status_code == 201
    body["external_id"] = new_code("v")
    second = (await client.post(f"/v1/programs/{program}/events/quote", json=body)).json()
    real = (await client.post(f"/v1/programs/{program}/events", json=body)).json()
    assert [e["kind"] for e in second["effects"]] == ["benefit"]
    assert [e["kind"] for e in real["effects"]] == ["benefit"]
