"""The webhook event catalogue: one JSON Schema per event type, served and in docs/, and real
deliveries that validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema_rs

from habitue.messaging import catalogue, webhooks
from tests.conftest import create_program, enrol, purchase

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks"


def test_every_catalogue_type_has_fields_a_schema_and_a_file_in_docs() -> None:
    assert set(catalogue.FIELDS) == set(webhooks.CATALOGUE)
    files = {p.stem for p in (DOCS / "schemas").glob("*.json")}
    assert files == set(webhooks.CATALOGUE), "run python -m habitue.messaging.catalogue"
    for type_ in webhooks.CATALOGUE:
        stored = (DOCS / "schemas" / f"{type_}.json").read_text(encoding="utf-8")
        assert stored == catalogue.dump(type_), f"docs/webhooks/schemas/{type_}.json is stale"
        jsonschema_rs.meta.validate(json.loads(stored))
    text = (DOCS / "catalogue.md").read_text(encoding="utf-8")
    for type_ in webhooks.CATALOGUE:
        assert f"`{type_}`" in text, f"{type_} is not in docs/webhooks/catalogue.md"


async def test_schemas_are_served_without_a_key(client: httpx.AsyncClient) -> None:
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anonymous:
        index = await anonymous.get("/v1/webhook-events/schemas")
        assert index.status_code == 200
        assert index.json()["version"] == catalogue.VERSION
        assert {t["type"] for t in index.json()["types"]} == set(webhooks.CATALOGUE)
        for path in ("points.earned", "points.earned.json"):
            r = await anonymous.get(f"/v1/webhook-events/schemas/{path}")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/schema+json")
            assert r.json() == catalogue.schema("points.earned")
        r = await anonymous.get("/v1/webhook-events/schemas/points.stolen")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_real_events_validate_against_their_schemas(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    m = await enrol(client, program, email="s@example.com", consents={"email": True})
    assert (await purchase(client, program, m["id"], "12.00")).status_code == 201
    r = await client.post(
        f"/v1/programs/{program}/members/{m['id']}/adjustments",
        json={"points": -2, "reason": "goodwill"},
    )
    assert r.status_code == 201, r.text
    feed = (await client.get(f"/v1/programs/{program}/events-feed?limit=100")).json()["items"]
    checked = 0
    for event in feed:
        if event["type"] not in webhooks.CATALOGUE:
            continue
        body = {"type": event["type"], "timestamp": event["created_at"], "data": event["data"]}
        validator = jsonschema_rs.validator_for(catalogue.schema(event["type"]))
        assert validator.is_valid(body), list(validator.iter_errors(body))
        declared = set(catalogue.FIELDS[event["type"]])
        assert declared & set(event["data"]), event  # the fields documented are the real ones
        checked += 1
    assert checked >= 3
