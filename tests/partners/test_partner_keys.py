"""The partner-key matrix: what a key made with `"partner": "p1"` may do, path by path."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from habitue.db import Database
from habitue.deps import Require
from habitue.events.models import Event
from habitue.partners.access import PartnerAccess
from habitue.programs.schemas import PARTNER_SCOPES
from tests.conftest import enrol, new_code

DOCS = Path(__file__).resolve().parents[2] / "docs" / "partners.md"

PERSONAL = {
    "email": "ana@example.com",
    "phone": "+33612345678",
    "birth_date": "1990-04-01",
    "attributes": {"address": "1 rue de la Paix"},
}
SHARING = {"partners": True}
"""The member shares their data with the program's partners (`test_partner_consent.py`)."""


def _period() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=2)), "to": str(today + timedelta(days=2))}


async def _partner(client: httpx.AsyncClient, program: str, code: str, **extra: Any) -> None:
    body = {"code": code, "name": code.upper(), "funding_rate": "1.00", "reimbursement_rate": "1"}
    r = await client.post(f"/v1/programs/{program}/partners", json={**body, **extra})
    assert r.status_code == 201, r.text


async def _key(
    client: httpx.AsyncClient, program: str, partner: str, scopes: list[str] | None = None
) -> dict[str, str]:
    r = await client.post(
        f"/v1/programs/{program}/api-keys",
        json={
            "name": new_code("k"),
            "partner": partner,
            "scopes": scopes or sorted(PARTNER_SCOPES),
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["partner"] == partner
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _statement(client: httpx.AsyncClient, program: str, code: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/partners/{code}/statement", params=_period())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def _events(db: Database) -> int:
    async with db.read() as s:
        return int((await s.execute(select(func.count()).select_from(Event))).scalar_one())


@pytest.fixture
async def coalition(client: httpx.AsyncClient, program: str) -> dict[str, Any]:
    """A program with partners p1 and p2, a member with personal data, and a key of p1."""
    await _partner(client, program, "p1")
    await _partner(client, program, "p2")
    member = await enrol(
        client, program, external_id=new_code("c"), first_name="Ana", consents=SHARING, **PERSONAL
    )
    return {"program": program, "member": member, "p1": await _key(client, program, "p1")}


async def purchase(
    client: httpx.AsyncClient,
    program: str,
    member_id: str,
    total: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {
        "type": "purchase",
        "member": {"id": member_id},
        "external_id": extra.pop("external_id", new_code("t")),
        "total": total,
        **extra,
    }
    return await client.post(f"/v1/programs/{program}/events", json=body, headers=headers)


def _forbidden(r: httpx.Response) -> bool:
    return r.status_code == 403 and r.json()["type"].endswith("/forbidden")


async def test_events_carry_the_keys_partner_as_source(
    client: httpx.AsyncClient, coalition: dict[str, Any], db: Database
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    before = await _events(db)
    # Another partner's source: refused, nothing written, p2's statement untouched.
    for source in ("p2", "default", "nobody"):
        body = {
            "type": "purchase",
            "member": {"id": m["id"]},
            "external_id": new_code("t"),
            "total": "40.00",
            "source": source,
        }
        r = await client.post(f"/v1/programs/{p}/events", json=body, headers=p1)
        assert _forbidden(r), (source, r.text)
        r = await client.post(f"/v1/programs/{p}/events/quote", json=body, headers=p1)
        assert _forbidden(r), (source, r.text)
    assert await _events(db) == before
    assert (await _statement(client, p, "p2"))["points_issued"] == 0
    # No source: the key's partner is the source, and it funds the points.
    r = await purchase(client, p, m["id"], "40.00", external_id="till-1", headers=p1)
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 40
    # Naming its own partner is the same thing; a retry of either answers the first event.
    again = await purchase(
        client, p, m["id"], "40.00", external_id="till-1", source="p1", headers=p1
    )
    assert again.status_code in (200, 201) and again.json()["id"] == r.json()["id"]
    s1 = await _statement(client, p, "p1")
    assert (s1["points_issued"], s1["funding"]) == (40, "0.40")
    assert (await _statement(client, p, "p2"))["points_issued"] == 0
    async with db.read() as s:
        source = (
            await s.execute(select(Event.source).where(Event.id == r.json()["id"]))
        ).scalar_one()
    assert source == "p1"
    r = await client.post(
        f"/v1/programs/{p}/events/quote",
        json={"type": "purchase", "member": {"id": m["id"]}, "external_id": "q", "total": "9"},
        headers=p1,
    )
    assert r.status_code == 200 and r.json()["points"] == 9


async def test_a_refund_from_a_partner_key_reaches_only_its_own_purchases(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    r = await purchase(client, p, m["id"], "30.00", external_id="shared-ref", source="p2")
    assert r.status_code == 201
    refund = {
        "type": "refund",
        "external_id": new_code("r"),
        "refers_to": "shared-ref",
        "total": "30.00",
    }
    r = await client.post(f"/v1/programs/{p}/events", json=refund, headers=p1)
    # p2's purchase is not p1's to refund: the answer for a purchase that does not exist.
    assert r.status_code == 422 and r.json()["type"].endswith("/unknown-purchase"), r.text
    assert (await _statement(client, p, "p2"))["points_reversed"] == 0
    r = await purchase(client, p, m["id"], "30.00", external_id="shared-ref", headers=p1)
    assert r.status_code == 201
    r = await client.post(f"/v1/programs/{p}/events", json=refund, headers=p1)
    assert r.status_code == 201 and r.json()["points"] == -30, r.text
    assert (await _statement(client, p, "p1"))["points_reversed"] == 30


async def test_an_event_is_read_only_by_its_own_partner(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    own = (await purchase(client, p, m["id"], "5.00", headers=p1)).json()["id"]
    theirs = (await purchase(client, p, m["id"], "5.00", source="p2")).json()["id"]
    program_own = (await purchase(client, p, m["id"], "5.00")).json()["id"]
    r = await client.get(f"/v1/programs/{p}/events/{own}", headers=p1)
    assert r.status_code == 200 and r.json()["id"] == own
    for other in (theirs, program_own):
        r = await client.get(f"/v1/programs/{p}/events/{other}", headers=p1)
        assert r.status_code == 404, r.text
        assert (await client.get(f"/v1/programs/{p}/events/{other}")).status_code == 200


async def test_an_inactive_partners_key_records_nothing(
    client: httpx.AsyncClient, coalition: dict[str, Any], db: Database
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    r = await client.patch(f"/v1/programs/{p}/partners/p1", json={"active": False})
    assert r.status_code == 200
    before = await _events(db)
    r = await purchase(client, p, m["id"], "10.00", headers=p1)
    assert _forbidden(r), r.text
    assert await _events(db) == before
    await client.patch(f"/v1/programs/{p}/partners/p1", json={"active": True})
    assert (await purchase(client, p, m["id"], "10.00", headers=p1)).status_code == 201


async def test_members_are_identified_never_listed_and_always_redacted(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    # The program's own key sees everything: the data is there to leak.
    full = (await client.get(f"/v1/programs/{p}/members/{m['id']}")).json()
    assert full["email"] == PERSONAL["email"] and full["phone"] == PERSONAL["phone"]
    # Listing or searching by email: refused.
    for params in (
        {},
        {"email": PERSONAL["email"]},
        {"limit": "500"},
        {"email": PERSONAL["email"], "external_id": m["external_id"]},
    ):
        r = await client.get(f"/v1/programs/{p}/members", params=params, headers=p1)
        assert _forbidden(r), (params, r.text)

    def redacted(member: dict[str, Any]) -> None:
        assert member["id"] == m["id"] and member["first_name"] == "Ana"
        assert member["card_number"] == m["card_number"]
        assert (member["email"], member["phone"], member["birth_date"]) == (None, None, None)
        assert member["attributes"] == {}
        assert PERSONAL["email"] not in str(member) and "Paix" not in str(member)

    for params in ({"external_id": m["external_id"]}, {"card_number": m["card_number"]}):
        r = await client.get(f"/v1/programs/{p}/members", params=params, headers=p1)
        assert r.status_code == 200, r.text
        [found] = r.json()["items"]
        redacted(found)
    r = await client.get(f"/v1/programs/{p}/members/{m['id']}", headers=p1)
    assert r.status_code == 200
    redacted(r.json())
    r = await client.get(f"/v1/programs/{p}/cards/{m['card_number']}", headers=p1)
    assert r.status_code == 200
    redacted(r.json()["member"])
    r = await client.get(f"/v1/programs/{p}/members/{m['id']}/balance", headers=p1)
    assert r.status_code == 200 and "available" in r.json()


async def test_own_partner_and_statement_only(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1 = coalition["program"], coalition["p1"]
    r = await client.get(f"/v1/programs/{p}/partners/p1", headers=p1)
    assert r.status_code == 200 and r.json()["code"] == "p1"
    r = await client.get(f"/v1/programs/{p}/partners/p1/statement", params=_period(), headers=p1)
    assert r.status_code == 200 and r.json()["partner"] == "p1"
    for path in ("/partners/p2", "/partners/p2/statement", "/partners/nobody/statement"):
        r = await client.get(f"/v1/programs/{p}{path}", params=_period(), headers=p1)
        assert r.status_code == 404 and r.json()["type"].endswith("/partner-not-found"), path
    for method, path in (("GET", "/partners"), ("POST", "/partners"), ("PATCH", "/partners/p1")):
        r = await client.request(method, f"/v1/programs/{p}{path}", json={}, headers=p1)
        assert _forbidden(r), (method, path)
    # Without analytics:read, not even its own statement.
    till = await _key(client, p, "p1", ["events:write"])
    r = await client.get(f"/v1/programs/{p}/partners/p1/statement", params=_period(), headers=till)
    assert _forbidden(r)


async def test_a_partner_key_administers_nothing(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1, m = coalition["program"], coalition["p1"], coalition["member"]
    refused = [
        ("POST", "/v1/programs", {"code": new_code(), "name": "x"}),
        ("POST", f"/v1/programs/{p}/api-keys", {"name": "mine", "scopes": ["events:write"]}),
        ("GET", f"/v1/programs/{p}/api-keys", None),
        ("DELETE", f"/v1/programs/{p}/api-keys/1", None),
        ("POST", f"/v1/programs/{p}/rules", {"code": "x"}),
        ("GET", f"/v1/programs/{p}/rules", None),
        ("POST", f"/v1/programs/{p}/members", {"email": "new@example.com"}),
        ("PATCH", f"/v1/programs/{p}/members/{m['id']}", {"first_name": "Eve"}),
        ("GET", f"/v1/programs/{p}/members/{m['id']}/ledger", None),
        (
            "POST",
            f"/v1/programs/{p}/members/{m['id']}/adjustments",
            {"points": 1000, "reason": "gift"},
        ),
        ("POST", f"/v1/programs/{p}/members/{m['id']}/spends", {"points": 1}),
        ("GET", f"/v1/programs/{p}/events-feed", None),
        ("GET", f"/v1/programs/{p}/reports/monthly", None),
        ("GET", f"/v1/programs/{p}/segments", None),
        ("GET", f"/v1/programs/{p}/message-templates", None),
    ]
    for method, path, body in refused:
        r = await client.request(method, path, json=body, headers=p1)
        assert _forbidden(r), (method, path, r.status_code, r.text)
    # What a till needs is open.
    for path in ("", "/event-types", "/rewards"):
        assert (await client.get(f"/v1/programs/{p}{path}", headers=p1)).status_code == 200


async def test_partner_keys_are_refused_unknown_partners_and_wide_scopes(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _partner(client, program, "p1")
    for body, field in (
        ({"name": "k1", "partner": "p9", "scopes": ["events:write"]}, "partner"),
        ({"name": "k2", "partner": "p1", "scopes": ["admin"]}, "scopes"),
        ({"name": "k3", "partner": "p1", "scopes": ["events:write", "rules:write"]}, "scopes"),
        ({"name": "k4", "partner": "", "scopes": ["events:write"]}, "partner"),
    ):
        r = await client.post(f"/v1/programs/{program}/api-keys", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    assert (await client.get(f"/v1/programs/{program}/api-keys")).json() == []
    # Another program's partner is unknown here too.
    other = new_code()
    r = await client.post(
        "/v1/programs", json={"code": other, "name": "o", "currency": "EUR", "timezone": "UTC"}
    )
    assert r.status_code == 201
    r = await client.post(
        f"/v1/programs/{other}/api-keys",
        json={"name": "k", "partner": "p1", "scopes": ["events:write"]},
    )
    assert r.status_code == 422


# --- the matrix in the code is the matrix in the docs ---------------------------------------


def _routes(app: FastAPI) -> list[APIRoute]:
    def walk(routes: list[Any]) -> list[APIRoute]:
        out: list[APIRoute] = []
        for r in routes:
            if isinstance(r, APIRoute):
                out.append(r)
            elif hasattr(r, "original_router"):
                out += walk(r.original_router.routes)
        return out

    return walk(list(app.routes))


def _access(route: APIRoute) -> PartnerAccess | None:
    found: list[PartnerAccess] = []

    def walk(dep: Any) -> None:
        for sub in dep.dependencies:
            if isinstance(sub.call, Require):
                found.append(sub.call.partner)
            walk(sub)

    walk(route.dependant)
    return found[0] if found else None


def _opened(app: FastAPI) -> dict[str, str]:
    out = {}
    for route in _routes(app):
        access = _access(route)
        if access not in (None, PartnerAccess.NONE):
            for method in route.methods:
                path = route.path.removeprefix("/v1/programs/{program}") or route.path
                out[f"{method} {path}"] = str(access)
    return out


def _documented() -> dict[str, str]:
    text = DOCS.read_text()
    section = text[text.index("## Partner keys") :]
    section = section[: section.index("\n## ", 5)]
    rows = re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| `(\w+)` \|", section, re.M)
    return {f"{m} {p}": a for m, p, a in rows}


async def test_the_routes_open_to_partner_keys_are_the_documented_ones(
    client: httpx.AsyncClient,
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    opened = _opened(app)
    assert opened == _documented()
    assert len(opened) >= 15
    # Every other route that takes a key refuses partner keys.
    closed = [r for r in _routes(app) if _access(r) is PartnerAccess.NONE]
    assert len(closed) >= 60


async def test_every_closed_route_answers_a_partner_key_403(
    client: httpx.AsyncClient, coalition: dict[str, Any]
) -> None:
    p, p1 = coalition["program"], coalition["p1"]
    app = client._transport.app  # type: ignore[attr-defined]
    checked = 0
    for route in _routes(app):
        if _access(route) is not PartnerAccess.NONE:
            continue
        path = re.sub(r"\{(\w+)\}", lambda g: p if g.group(1) == "program" else "1", route.path)
        for method in route.methods:
            r = await client.request(method, path, json={}, headers=p1)
            assert _forbidden(r), (method, route.path, r.status_code, r.text)
            checked += 1
    assert checked >= 60
