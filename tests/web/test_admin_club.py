"""The console's club page (issue 19, item 4): plans, subscribers by status, a payment at the
counter that activates, a cancellation; through the clubs room's services, on both databases."""

from __future__ import annotations

import re

import httpx

from habitue.db import Database
from tests.conftest import enrol
from tests.web.conftest import csrf_of, make_staff, staff_signin


async def test_club_page_payment_at_the_counter_and_cancellation(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    plan = {"code": "vip", "name": "VIP", "price": "9.90", "currency": "EUR", "period": "monthly"}
    assert (await client.post(f"/v1/programs/{program}/club/plans", json=plan)).status_code == 201
    member = await enrol(client, program, email="club@example.com", first_name="Inès")
    r = await client.post(
        f"/v1/programs/{program}/members/{member['id']}/club/subscriptions", json={"plan": "vip"}
    )
    assert r.status_code == 201, r.text
    sub = r.json()["id"]
    assert r.json()["status"] == "incomplete"

    await staff_signin(client, await make_staff(db, "support"))
    page = await client.get(f"/admin/{program}/club")
    assert page.status_code == 200
    assert f'href="/admin/{program}/club" aria-current="page"' in page.text
    assert 'id="plan-vip"' in page.text and "€9.90 per month" in page.text
    row = re.search(rf'<tr id="sub-{sub}" data-status="incomplete">(.*?)</tr>', page.text, re.S)
    assert row is not None and "Waiting for the first payment" in row.group(1)
    token = csrf_of(page.text)

    bad = await client.post(
        f"/admin/{program}/club/{sub}/payment",
        data={"csrf_token": token, "amount": "lots", "nonce": "n1"},
    )
    assert bad.status_code in (409, 422)
    assert f'id="e-{sub}"' in bad.text
    r = await client.post(
        f"/admin/{program}/club/{sub}/payment",
        data={"csrf_token": token, "amount": "9,90", "nonce": "n2"},
    )
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    assert f'<tr id="sub-{sub}" data-status="active">' in page.text
    assert "The payment is recorded" in page.text
    # The same form sent twice records one payment.
    again = await client.post(
        f"/admin/{program}/club/{sub}/payment",
        data={"csrf_token": token, "amount": "9.90", "nonce": "n2"},
    )
    assert again.status_code == 303
    payments = await client.get(f"/v1/programs/{program}/club/subscriptions/{sub}/payments")
    assert len(payments.json()) == 1

    r = await client.post(
        f"/admin/{program}/club/{sub}/cancel", data={"csrf_token": token, "when": "now"}
    )
    assert r.status_code == 303
    page = await client.get(f"/admin/{program}/club?show=canceled")
    assert f'<tr id="sub-{sub}" data-status="canceled">' in page.text
    twice = await client.post(
        f"/admin/{program}/club/{sub}/cancel", data={"csrf_token": token, "when": "now"}
    )
    assert twice.status_code == 409 and "cannot be canceled any more" in twice.text
