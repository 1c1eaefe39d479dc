"""Partners through the API: attribution by source, refunds, statements, isolation, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from habitue.db import Database
from habitue.partners.models import PartnerMovement
from habitue.partners.service import minor_of
from tests.conftest import create_program, enrol, new_code, purchase

AIR = {"code": "air", "name": "Air Habitué", "funding_rate": "1.00", "reimbursement_rate": "0.75"}


async def _partner(client: httpx.AsyncClient, program: str, **overrides: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/partners", json={**AIR, **overrides})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _refund(
    client: httpx.AsyncClient, program: str, purchase_ref: str, total: str, **extra: Any
) -> dict[str, Any]:
    body = {
        "type": "refund",
        "external_id": new_code("r"),
        "refers_to": purchase_ref,
        "total": total,
        **extra,
    }
    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def _around_today() -> dict[str, str]:
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


async def _statement(
    client: httpx.AsyncClient, program: str, code: str, period: dict[str, str]
) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/partners/{code}/statement", params=period)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def _movements(db: Database) -> int:
    async with db.read() as s:
        return int(
            (await s.execute(select(func.count()).select_from(PartnerMovement))).scalar_one()
        )


async def test_create_list_get_and_update(client: httpx.AsyncClient, program: str) -> None:
    made = await _partner(client, program)
    assert made["code"] == "air"
    assert (made["funding_rate"], made["reimbursement_rate"], made["currency"]) == (
        "1.00",
        "0.75",
        "EUR",
    )
    assert made["active"] is True
    await _partner(client, program, code="books", name="Librairie", funding_rate="0.5")
    r = await client.get(f"/v1/programs/{program}/partners")
    assert [p["code"] for p in r.json()] == ["air", "books"]
    assert r.json()[1]["funding_rate"] == "0.50"
    r = await client.get(f"/v1/programs/{program}/partners/air")
    assert r.status_code == 200
    assert r.json()["name"] == "Air Habitué"
    r = await client.patch(
        f"/v1/programs/{program}/partners/air", json={"funding_rate": "2", "active": False}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["funding_rate"], r.json()["active"]) == ("2.00", False)


async def test_purchases_refunds_and_the_statement_figures(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _partner(client, program)
    m = await enrol(client, program)
    before = await _movements(db)
    # 250 points issued with the partner.
    r = await purchase(client, program, m["id"], "250.00", source="air", external_id="p1")
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 250
    # 100 points paid at the partner's till (1.00 € off), 19 earned on the rest.
    r = await purchase(
        client, program, m["id"], "20.00", source="air", external_id="p2", spend_points=100
    )
    assert r.status_code == 201, r.text
    earned_p2 = r.json()["points_earned"]
    assert (earned_p2, r.json()["points_spent"]) == (19, 100)
    # The program's own till: not the partner's.
    r = await purchase(client, program, m["id"], "50.00", external_id="p3")
    assert r.status_code == 201
    assert await _movements(db) - before == 3  # issued p1, issued p2, redeemed p2
    # Half of p1 refunded: its 125 points come back from the member and from the partner.
    refund = await _refund(client, program, "p1", "125.00", source="air")
    assert refund["points"] == -125
    # Half of p2 refunded: 9 of its 19 points taken back, 50 of the 100 spent given back.
    refund = await _refund(client, program, "p2", "10.00", source="air")
    assert refund["points"] == 50 - 9
    s = await _statement(client, program, "air", _around_today())
    assert s["partner"] == "air"
    assert s["currency"] == "EUR"
    assert (s["points_issued"], s["points_reversed"]) == (269, 134)
    assert (s["points_redeemed"], s["points_returned"]) == (100, 50)
    assert s["net_points"] == 269 - 134 - 100 + 50
    assert s["funding"] == "1.35"  # 135 points at 1.00 € per 100
    assert s["reimbursement"] == "0.38"  # 50 points at 0.75 € per 100 = 0.375, half up
    assert s["balance_due"] == "0.97"
    assert s["movements"] == 6
    assert set(s) >= {"from", "to"}
    # The rest of p1 refunded later: everything issued with p1 is reversed, nothing more.
    await _refund(client, program, "p1", "125.00", source="air")
    s = await _statement(client, program, "air", _around_today())
    assert s["points_reversed"] == 134 + 125
    assert s["funding"] == "0.10"


async def test_a_shortfall_stays_funded(client: httpx.AsyncClient, program: str) -> None:
    await _partner(client, program)
    m = await enrol(client, program)
    r = await purchase(client, program, m["id"], "100.00", source="air", external_id="p")
    assert r.json()["points"] == 100
    r = await client.post(f"/v1/programs/{program}/members/{m['id']}/spends", json={"points": 70})
    assert r.status_code == 201, r.text
    refund = await _refund(client, program, "p", "100.00", source="air")
    assert refund["shortfall"] == 70
    s = await _statement(client, program, "air", _around_today())
    assert (s["points_issued"], s["points_reversed"]) == (100, 30)
    assert s["funding"] == "0.70"
    assert (s["points_redeemed"], s["points_returned"]) == (0, 0)


async def test_inactive_partner_and_new_rates_apply_to_new_events_only(
    client: httpx.AsyncClient, program: str
) -> None:
    await _partner(client, program)
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "100.00", source="air")
    r = await client.patch(f"/v1/programs/{program}/partners/air", json={"funding_rate": "3.00"})
    assert r.status_code == 200
    await purchase(client, program, m["id"], "100.00", source="air")
    s = await _statement(client, program, "air", _around_today())
    assert (s["points_issued"], s["funding"]) == (200, "4.00")  # 1.00 + 3.00
    await client.patch(f"/v1/programs/{program}/partners/air", json={"active": False})
    await purchase(client, program, m["id"], "100.00", source="air")
    s = await _statement(client, program, "air", _around_today())
    assert (s["points_issued"], s["funding"]) == (200, "4.00")


async def test_actions_from_a_partner_issue_points_too(
    client: httpx.AsyncClient, program: str
) -> None:
    await _partner(client, program)
    m = await enrol(client, program)
    rule = {
        "code": "visit-bonus",
        "event_type": "visit",
        "effect": {"kind": "fixed", "points": 40},
    }
    r = await client.post(f"/v1/programs/{program}/rules", json=rule)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/programs/{program}/events",
        json={"type": "visit", "member": {"id": m["id"]}, "external_id": "v1", "source": "air"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 40
    s = await _statement(client, program, "air", _around_today())
    assert (s["points_issued"], s["funding"]) == (40, "0.40")


async def test_statement_periods_follow_the_programs_time_zone(
    client: httpx.AsyncClient, program: str
) -> None:
    await _partner(client, program)
    m = await enrol(client, program)
    # 23:30 UTC on 31 January is 00:30 on 1 February in Paris.
    at = datetime(2025, 1, 31, 23, 30, tzinfo=UTC).isoformat()
    r = await purchase(client, program, m["id"], "10.00", source="air", occurred_at=at)
    assert r.status_code == 201, r.text
    january = await _statement(client, program, "air", {"from": "2025-01-01", "to": "2025-01-31"})
    february = await _statement(client, program, "air", {"from": "2025-02-01", "to": "2025-02-28"})
    assert (january["points_issued"], february["points_issued"]) == (0, 10)
    assert (january["funding"], january["balance_due"], february["funding"]) == (
        "0.00",
        "0.00",
        "0.10",
    )
    assert (february["from"], february["to"]) == ("2025-02-01", "2025-02-28")


async def test_another_programs_partner_is_not_found(
    client: httpx.AsyncClient, program: str
) -> None:
    await _partner(client, program)
    other = await create_program(client)
    r = await client.get(f"/v1/programs/{other}/partners/air")
    assert r.status_code == 404
    assert r.json()["type"].endswith("/errors/partner-not-found")
    r = await client.get(
        f"/v1/programs/{other}/partners/air/statement",
        params={"from": "2025-01-01", "to": "2025-01-31"},
    )
    assert r.status_code == 404
    # A key of the other program sees nothing of this one, not even that it exists.
    r = await client.post(
        f"/v1/programs/{other}/api-keys", json={"name": "ops", "scopes": ["admin"]}
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    r = await client.get(
        f"/v1/programs/{program}/partners/air", headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 404
    # A key without the admin scope may not manage partners.
    r = await client.post(
        f"/v1/programs/{other}/api-keys", json={"name": "till", "scopes": ["events:write"]}
    )
    till = r.json()["key"]
    r = await client.get(
        f"/v1/programs/{other}/partners", headers={"Authorization": f"Bearer {till}"}
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"funding_rate": "1.001"}, "funding_rate"),
        ({"funding_rate": "-1"}, "funding_rate"),
        ({"reimbursement_rate": "abc"}, "reimbursement_rate"),
        ({"code": "default"}, "code"),
        ({"code": "has space"}, "code"),
        ({"name": "  "}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_partners_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, program: str, body: dict[str, Any], field: str
) -> None:
    r = await client.post(f"/v1/programs/{program}/partners", json={**AIR, **body})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/errors/validation")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert (await client.get(f"/v1/programs/{program}/partners")).json() == []


async def test_duplicates_unknown_partners_and_bad_periods(
    client: httpx.AsyncClient, program: str
) -> None:
    await _partner(client, program)
    r = await client.post(
        f"/v1/programs/{program}/partners", json={**AIR, "name": "Another", "funding_rate": "9"}
    )
    assert r.status_code == 409
    assert r.json()["type"].endswith("/errors/partner-exists")
    assert (await client.get(f"/v1/programs/{program}/partners/air")).json()["name"] == AIR["name"]
    base = f"/v1/programs/{program}/partners"
    r = await client.get(
        f"{base}/nope/statement", params={"from": "2025-01-01", "to": "2025-01-02"}
    )
    assert (r.status_code, r.json()["type"].rsplit("/", 1)[1]) == (404, "partner-not-found")
    r = await client.get(f"{base}/air/statement", params={"from": "2025-02-01", "to": "2025-01-01"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "to", "message": "must not be before from"}]
    for params in (
        {"from": "2025-02-30", "to": "2025-03-01"},
        {"from": "yesterday", "to": "2025-03-01"},
        {"to": "2025-03-01"},
        {"from": "0001-01-01", "to": "9999-12-31"},
    ):
        r = await client.get(f"{base}/air/statement", params=params)
        assert r.status_code == 422, params
        assert r.json()["type"].endswith("/errors/validation")
    r = await client.patch(f"{base}/air", json={"funding_rate": "x"})
    assert r.status_code == 422
    assert (await client.get(f"{base}/air")).json()["funding_rate"] == "1.00"
    r = await client.patch(f"{base}/nope", json={"active": False})
    assert r.status_code == 404


def test_amounts_round_half_up_once() -> None:
    assert [minor_of(v) for v in (0, 49, 50, 149, 150, -50, -49, 3750)] == [
        0,
        0,
        1,
        1,
        2,
        -1,
        0,
        38,
    ]
