"""Dynamic segments as rule audiences: a rule for a segment pays only its members."""

from __future__ import annotations

import httpx

from tests.conftest import create_program, enrol


async def test_rule_audience_by_segment(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    parisian = await enrol(client, code, attributes={"city": "Paris"})
    other = await enrol(client, code, attributes={"city": "Aarhus"})
    r = await client.post(
        f"/v1/programs/{code}/segments",
        json={"code": "paris", "condition": 'member.attributes.city == "Paris"'},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/programs/{code}/rules",
        json={
            "code": "paris-visit",
            "event_type": "visit",
            "audience": {"segments": ["paris"]},
            "effect": {"kind": "fixed", "points": 10},
        },
    )
    assert r.status_code == 201, r.text
    late = await enrol(client, code, attributes={"city": "Paris"})  # not recomputed yet

    async def visit(member: str, n: int) -> int:
        r = await client.post(
            f"/v1/programs/{code}/events",
            json={"type": "visit", "member": {"id": member}, "external_id": f"v{n}"},
        )
        assert r.status_code == 201, r.text
        points: int = r.json()["points"]
        return points

    assert await visit(parisian["id"], 1) == 10
    assert await visit(other["id"], 2) == 0
    assert await visit(late["id"], 3) == 0
    r = await client.post(f"/v1/programs/{code}/segments/paris/recompute")
    assert r.status_code in (200, 201), r.text
    assert await visit(late["id"], 4) == 10


async def test_offer_targets_a_segment(client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime, timedelta

    code = await create_program(client)
    paris = [(await enrol(client, code, attributes={"city": "Paris"}))["id"] for _ in range(2)]
    other = (await enrol(client, code, attributes={"city": "Lyon"}))["id"]
    r = await client.post(
        f"/v1/programs/{code}/segments",
        json={"code": "paris", "condition": 'member.attributes.city == "Paris"'},
    )
    assert r.status_code == 201, r.text
    now = datetime.now(UTC)
    offer = {
        "code": "croissant",
        "texts": {"en": {"name": "Croissant"}},
        "value": "1.60",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "segment": "paris",
    }
    r = await client.post(f"/v1/programs/{code}/offers", json=offer)
    assert r.status_code == 201, r.text
    assert r.json()["members"] == 2
    for member, expected in ((paris[0], 1), (paris[1], 1), (other, 0)):
        items = (await client.get(f"/v1/programs/{code}/members/{member}/offers")).json()["items"]
        assert len(items) == expected
    r = await client.post(f"/v1/programs/{code}/offers/croissant/members", json={"segment": "x"})
    assert r.status_code == 404
    r = await client.post(f"/v1/programs/{code}/offers/croissant/members", json={})
    assert r.status_code == 422
