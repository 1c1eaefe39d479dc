"""Program-defined event types with a declared attribute schema, earning through rules."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import enrol


async def test_custom_event_type(client: httpx.AsyncClient, program: str) -> None:
    r = await client.put(
        f"/v1/programs/{program}/event-types/workshop",
        json={
            "attributes": {"topic": "string", "minutes": "integer", "online": "boolean"},
            "required": ["topic"],
        },
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/programs/{program}/rules",
        json={
            "code": "long-workshop",
            "event_type": "workshop",
            "condition": "event.attributes.minutes >= 60",
            "effect": {"kind": "fixed", "points": 30},
        },
    )
    assert r.status_code == 201, r.text
    m = await enrol(client, program)

    async def send(n: int, attributes: dict[str, Any], type_: str = "workshop") -> httpx.Response:
        return await client.post(
            f"/v1/programs/{program}/events",
            json={
                "type": type_,
                "member": {"id": m["id"]},
                "external_id": f"w{n}",
                "attributes": attributes,
            },
        )

    ok = await send(1, {"topic": "latte art", "minutes": 90, "online": False})
    assert ok.status_code == 201, ok.text
    assert ok.json()["points"] == 30
    assert (await send(2, {"topic": "cupping", "minutes": 45})).json()["points"] == 0
    for n, attrs, field in (
        (3, {"topic": "x", "minutes": "long"}, "attributes.minutes"),
        (4, {"topic": "x", "minutes": True}, "attributes.minutes"),
        (5, {"topic": "x", "colour": "red"}, "attributes.colour"),
        (6, {"minutes": 90}, "attributes.topic"),
    ):
        r = await send(n, attrs)
        assert r.status_code == 422, attrs
        assert r.json()["errors"][0]["field"] == field
    r = await send(7, {}, type_="séance")
    assert r.status_code == 422
    r = await send(8, {}, type_="seance")
    assert r.status_code == 422 and r.json()["type"].endswith("/unknown-event-type")
    listed = (await client.get(f"/v1/programs/{program}/event-types")).json()["items"]
    assert [t["code"] for t in listed] == ["workshop"]
    bal = (await client.get(f"/v1/programs/{program}/members/{m['id']}/balance")).json()
    assert bal["available"] == 30


async def test_bad_event_type_declarations(client: httpx.AsyncClient, program: str) -> None:
    url = f"/v1/programs/{program}/event-types"
    assert (await client.put(f"{url}/purchase", json={})).status_code == 422
    assert (await client.put(f"{url}/x", json={"attributes": {"a": "date"}})).status_code == 422
    r = await client.put(f"{url}/x", json={"attributes": {}, "required": ["a"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "required"
    assert (await client.put(f"{url}/Bad-Code", json={})).status_code == 422
    assert (await client.get(url)).json()["items"] == []
