"""The portal's "close my account": it says what happens, and the API shows that it did."""

from __future__ import annotations

import httpx

from tests.conftest import purchase
from tests.web.conftest import csrf_of, signup


async def test_closing_in_the_portal_erases_and_says_what_it_did(
    client: httpx.AsyncClient, program: str
) -> None:
    base = f"/v1/programs/{program}"
    email = "yolandrix.pemberworth@example.net"
    r = await signup(
        client,
        program,
        email=email,
        first_name="Yolandrix",
        last_name="Pemberworth",
        phone="+45 20 93 71 55",
        birth_date="1979-11-02",
    )
    assert r.status_code == 303, r.text
    member = (await client.get(f"/app/{program}/export")).json()["member"]
    m, card = member["id"], member["card_number"]
    assert (await purchase(client, program, m, "40.00")).status_code == 201
    r = await client.post(f"{base}/members/{m}/adjustments", json={"points": 500, "reason": "gift"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/rewards", json={
        "code": "five", "kind": "voucher", "value": "5.00", "cost_points": 300,
        "coupon_days": 30, "texts": {"en": {"name": "Five"}}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/members/{m}/redemptions", json={"reward": "five"})
    coupon = r.json()["coupon"]["code"]
    r = await client.post(f"{base}/club/plans", json={
        "code": "vip", "name": "VIP", "price": "9.90", "currency": "EUR", "period": "monthly",
        "trial_days": 14, "multiplier": "2", "privileges": ["queue"]})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/members/{m}/club/subscriptions", json={"plan": "vip"})
    assert r.status_code == 201, r.text
    sub = r.json()["id"]
    left = (await client.get(f"{base}/members/{m}/balance")).json()
    points = left["available"] + left["pending"]
    assert points == 240

    page = await client.get(f"/app/{program}/profile")
    for promise in (
        "erases your name, email, phone, date of birth and preferences",
        "Your remaining points expire",
        "Your unused coupons are voided.",
        "Your paid club membership ends now",
        "Your cards stop working",
    ):
        assert promise in page.text
    r = await client.post(
        f"/app/{program}/close", data={"csrf_token": csrf_of(page.text), "confirm": "on"}
    )
    assert r.status_code == 200
    assert f"Points expired: {points}" in r.text
    assert "Coupons voided: 1" in r.text
    assert "Club memberships ended: 1" in r.text

    # what the page said is what the API shows
    shown = (await client.get(f"{base}/members/{m}")).json()
    assert shown["status"] == "erased"
    assert (shown["email"], shown["phone"], shown["first_name"], shown["last_name"]) == (
        None,
        None,
        None,
        None,
    )
    assert shown["birth_date"] is None
    balance = (await client.get(f"{base}/members/{m}/balance")).json()
    assert (balance["available"], balance["pending"]) == (0, 0)
    r = await client.post(f"{base}/coupons/{coupon}/validate", json={"total": "9.00"})
    assert r.status_code == 409 and r.json()["type"].endswith("/coupon-canceled")
    assert (await client.get(f"{base}/club/subscriptions/{sub}")).json()["status"] == "canceled"
    assert (await client.get(f"{base}/cards/{card}")).status_code == 404
    assert (await client.get(f"{base}/members", params={"email": email})).json()["items"] == []
    assert (await client.get(f"/app/{program}/card")).status_code == 303
