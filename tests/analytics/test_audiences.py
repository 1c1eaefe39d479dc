"""Dynamic segments as rule audiences: a rule for a segment pays only its members."""

from __future__ import annotations

import httpx

from tests.conftest import create_program, enrol


async def test_rule_audience_by_segment(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    parisian = await enrol(client, code, attributes={"city": "Paris"})
    other = await enrol(client, code, attributes={"city": "Aarhus"})
    r = await client.post(f"/v1/programs/{code}/segments",
                          json={"code": "paris", "condition": 'member.attributes.city == "Paris"'})
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/programs/{code}/rules", json={
        "code": "paris-visit", "event_type": "visit", "audience": {"segments": ["paris"]},
        "effect": {"kind": "fixed", "points": 10}})
    assert r.status_code == 201, r.text
    late = await enrol(client, code, attributes={"city": "Paris"})  # not recomputed yet

    async def visit(member: str, n: int) -> int:
        r = await client.post(f"/v1/programs/{code}/events", json={
            "type": "visit", "member": {"id": member}, "external_id": f"v{n}"})
        assert r.status_code == 201, r.text
        points: int = r.json()["points"]
        return points

    assert await visit(parisian["id"], 1) == 10
    assert await visit(other["id"], 2) == 0
    assert await visit(late["id"], 3) == 0
    r = await client.post(f"/v1/programs/{code}/segments/paris/recompute")
    assert r.status_code in (200, 201), r.text
    assert await visit(late["id"], 4) == 10
