"""The portal's paid club page: plans, joining, the payment that activates, cancelling."""

from __future__ import annotations

import httpx

from tests.web.conftest import csrf_of, signup


async def _member_id(client: httpx.AsyncClient, program: str) -> str:
    return str((await client.get(f"/app/{program}/export")).json()["member"]["id"])


async def test_join_the_club_pay_at_the_counter_and_cancel(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program, locale="en")
    page = await client.get(f"/app/{program}/club")
    assert page.status_code == 200
    assert "This program has no paid club." in page.text
    assert f'href="/app/{program}/club"' in page.text  # in the navigation

    r = await client.post(
        f"/v1/programs/{program}/club/plans",
        json={
            "code": "vip",
            "name": "VIP Club",
            "price": "9.90",
            "currency": "EUR",
            "period": "monthly",
            "multiplier": "2",
            "voucher_points": 50,
            "privileges": ["Free delivery"],
        },
    )
    assert r.status_code == 201, r.text
    page = await client.get(f"/app/{program}/club")
    plan = page.text[page.text.index('id="plan-vip"') :]
    assert "€9.90 per month" in plan
    assert "Points multiplied by 2" in plan
    assert "50 bonus points each period" in plan
    assert "Free delivery" in plan
    token = csrf_of(page.text)

    assert (await client.post(f"/app/{program}/club/join", data={"plan": "vip"})).status_code == 403
    r = await client.post(f"/app/{program}/club/join", data={"csrf_token": token, "plan": "vip"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/app/{program}/club?done=joined"
    page = await client.get(r.headers["location"])
    assert '<dd id="club-status">Waiting for your first payment</dd>' in page.text
    assert "Pay at the counter" in page.text
    assert 'aria-label="Join VIP Club"' not in page.text  # one membership at a time

    again = await client.post(
        f"/app/{program}/club/join", data={"csrf_token": token, "plan": "vip"}
    )
    assert again.status_code == 409
    assert "You are already a member of the club." in again.text

    # Staff record the payment at the counter: the membership is active, with its benefits.
    member_id = await _member_id(client, program)
    subs = await client.get(f"/v1/programs/{program}/members/{member_id}/club/subscriptions")
    sub_id = subs.json()[0]["id"]
    r = await client.post(
        f"/v1/programs/{program}/club/subscriptions/{sub_id}/payments",
        json={"amount": "9.90", "reference": "till-7"},
    )
    assert r.status_code == 201, r.text
    page = await client.get(f"/app/{program}/club")
    assert '<dd id="club-status">Active</dd>' in page.text
    assert "Active now" in page.text

    r = await client.post(f"/app/{program}/club/cancel", data={"csrf_token": token})
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "Your membership will end with the current period." in page.text
    assert "Canceled: your membership ends on" in page.text
    sub = (await client.get(f"/v1/programs/{program}/club/subscriptions/{sub_id}")).json()
    assert (sub["status"], sub["cancel_at_period_end"]) == ("active", True)


async def test_the_club_page_speaks_french(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program, locale="fr")
    page = await client.get(f"/app/{program}/club")
    assert "<h1>Mon club</h1>" in page.text
