"""The console's member list (issue 19, item 4): filters, pages, CSV export and an offer
given to the members the filters keep; on both databases."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx

from habitue import clock
from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.web import member_list
from tests.conftest import enrol
from tests.web.conftest import csrf_of, make_staff, staff_signin


async def _members(client: httpx.AsyncClient, program: str) -> dict[str, str]:
    ids = {}
    ids["ana"] = (
        await enrol(
            client, program, email="ana@example.com", first_name="Ana", consents={"email": True}
        )
    )["id"]
    ids["bo"] = (
        await enrol(
            client, program, email="bo@example.com", first_name="=Bo", consents={"sms": True}
        )
    )["id"]
    ids["cy"] = (await enrol(client, program, email="cy@example.com", first_name="Cy"))["id"]
    r = await client.patch(
        f"/v1/programs/{program}/members/{ids['cy']}", json={"status": "suspended"}
    )
    assert r.status_code == 200, r.text
    return ids


async def test_filters_pages_and_csv(client: httpx.AsyncClient, program: str, db: Database) -> None:
    ids = await _members(client, program)
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        everyone, cursor, total = await member_list.page(
            session, info, member_list.Filters(), limit=2
        )
        assert total == 3
        assert [r.id for r in everyone] == [ids["cy"], ids["bo"]]  # newest first
        assert cursor is not None
        rest, end, _ = await member_list.page(
            session, info, member_list.Filters(), before=cursor, limit=2
        )
        assert [r.id for r in rest] == [ids["ana"]]
        assert end is None
        emailable, _, n = await member_list.page(
            session, info, member_list.Filters(consent="email")
        )
        assert [r.id for r in emailable] == [ids["ana"]] and n == 1
        suspended, _, _ = await member_list.page(
            session, info, member_list.Filters(status="suspended")
        )
        assert [r.id for r in suspended] == [ids["cy"]]
        untiered, _, _ = await member_list.page(session, info, member_list.Filters(tier="-"))
        assert len(untiered) == 3

    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/members?consent=sms")
    assert page.status_code == 200
    assert 'id="members-table"' in page.text
    assert f'data-id="{ids["bo"]}"' in page.text and f'data-id="{ids["ana"]}"' not in page.text
    assert "1 members match." in page.text
    assert f'href="/admin/{program}/members.csv?consent=sms"' in page.text
    export = await client.get(f"/admin/{program}/members.csv?consent=sms")
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert [r["id"] for r in rows] == [ids["bo"]]
    assert rows[0]["first_name"] == "'=Bo"  # never a formula in a spreadsheet
    assert rows[0]["consent_sms"] == "yes" and rows[0]["consent_email"] == "no"
    french = await client.post(
        "/admin/locale", data={"csrf_token": csrf_of(page.text), "locale": "fr", "next": "/"}
    )
    assert french.status_code == 303
    page = await client.get(f"/admin/{program}/members?status=suspended")
    assert "Suspendu" in page.text and ">suspended<" not in page.text


async def test_an_offer_for_the_filtered_members(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    ids = await _members(client, program)
    now = clock.now()
    r = await client.post(
        f"/v1/programs/{program}/offers",
        json={
            "code": "welcome-back",
            "texts": {"en": {"name": "Welcome back"}},
            "value": "2.00",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get(f"/admin/{program}/members?consent=email")
    assert 'id="offer-filtered"' in page.text
    token = csrf_of(page.text)
    empty = await client.post(
        f"/admin/{program}/members/offer", data={"csrf_token": token, "consent": "email"}
    )
    assert empty.status_code == 409 and 'id="e-offer"' in empty.text
    r = await client.post(
        f"/admin/{program}/members/offer",
        data={"csrf_token": token, "consent": "email", "offer": "welcome-back"},
    )
    assert r.status_code == 303
    assert "offered=welcome-back" in r.headers["location"]
    for name, expected in (("ana", 1), ("bo", 0)):
        offers = await client.get(f"/v1/programs/{program}/members/{ids[name]}/offers")
        assert len(offers.json()["items"]) == expected, name
