"""The portal keeps its word (issue 19, item 6), through HTTP on both databases: closing the
account ends what the page says it ends, a product asks for an address and shows its order,
a friend's code at sign-up, a password change, the offline page."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from habitue.db import Database, table_of
from habitue.ledger.models import LedgerTransaction
from habitue.members.models import Card, Member
from habitue.rewards.models import Coupon
from tests.conftest import purchase
from tests.web.conftest import PASSWORD, csrf_of, make_staff, signup, staff_signin


async def _member_id(client: httpx.AsyncClient, program: str) -> str:
    return str((await client.get(f"/app/{program}/export")).json()["member"]["id"])


async def _reward(client: httpx.AsyncClient, program: str, code: str, kind: str, cost: int) -> None:
    body: dict[str, object] = {
        "code": code,
        "kind": kind,
        "cost_points": cost,
        "texts": {"en": {"name": f"The {code}"}, "fr": {"name": f"Le {code}"}},
    }
    if kind == "voucher":
        body["value"] = "2.00"
    r = await client.post(f"/v1/programs/{program}/rewards", json=body)
    assert r.status_code == 201, r.text


async def test_closing_ends_points_club_coupons_and_cards(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await signup(client, program, email="leaving@example.com")
    member_id = await _member_id(client, program)
    assert (await purchase(client, program, member_id, "300.00")).status_code == 201
    await _reward(client, program, "coffee", "voucher", 100)
    page = await client.get(f"/app/{program}/rewards/coffee")
    r = await client.post(
        f"/app/{program}/rewards/coffee/redeem",
        data={"csrf_token": csrf_of(page.text), "confirm": "yes"},
    )
    assert r.status_code == 303
    plan: dict[str, object] = {"code": "club", "name": "Club", "price": "5.00"}
    plan |= {"currency": "EUR", "period": "monthly", "trial_days": 14}
    assert (await client.post(f"/v1/programs/{program}/club/plans", json=plan)).status_code == 201
    page = await client.get(f"/app/{program}/club")
    join = {"csrf_token": csrf_of(page.text), "plan": "club"}
    assert (await client.post(f"/app/{program}/club/join", data=join)).status_code == 303
    assert 'id="club-status">' in (await client.get(f"/app/{program}/club")).text

    page = await client.get(f"/app/{program}/profile")
    assert "Your remaining points expire" in page.text
    r = await client.post(
        f"/app/{program}/close", data={"csrf_token": csrf_of(page.text), "confirm": "on"}
    )
    assert r.status_code == 200
    summary = r.text[r.text.index('id="closed-summary"') :]
    assert "Points expired: 200" in summary
    assert "Coupons voided: 1" in summary
    assert "Club memberships ended: 1" in summary

    # What the page said is what the books hold.
    members, cards, coupons = table_of(Member), table_of(Card), table_of(Coupon)
    ledger = table_of(LedgerTransaction)
    async with db.read() as s:
        internal = (
            await s.execute(select(members.c.id).where(members.c.public_id == member_id))
        ).scalar_one()
        kinds = (
            (await s.execute(select(ledger.c.kind).where(ledger.c.member_id == internal)))
            .scalars()
            .all()
        )
        card_states = (
            (await s.execute(select(cards.c.status).where(cards.c.member_id == internal)))
            .scalars()
            .all()
        )
        coupon_states = (
            (await s.execute(select(coupons.c.state).where(coupons.c.member_id == internal)))
            .scalars()
            .all()
        )
    assert "expire" in kinds
    assert set(card_states) == {"erased"}
    assert coupon_states == ["canceled"]
    balance = await client.get(f"/v1/programs/{program}/members/{member_id}/balance")
    assert balance.json()["available"] == 0
    subs = await client.get(f"/v1/programs/{program}/members/{member_id}/club/subscriptions")
    assert subs.status_code == 200, subs.text
    assert [x["status"] for x in subs.json()] == ["canceled"]


async def test_a_product_asks_for_an_address_and_shows_its_order(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await signup(client, program, locale="fr")
    member_id = await _member_id(client, program)
    await _reward(client, program, "mug", "product", 150)
    page = await client.get(f"/app/{program}/rewards")
    assert 'id="choose-mug" aria-describedby="short-mug"' in page.text  # cannot afford it
    assert (await purchase(client, program, member_id, "200.00")).status_code == 201
    page = await client.get(f"/app/{program}/rewards/mug")
    assert "Où devons-nous l'envoyer ?" in page.text
    token = csrf_of(page.text)
    r = await client.post(
        f"/app/{program}/rewards/mug/redeem",
        data={"csrf_token": token, "confirm": "yes", "address_name": "Ana Martin"},
    )
    assert r.status_code == 422
    assert 'id="e-address_city"' in r.text
    assert 'value="Ana Martin"' in r.text  # what was typed stays
    address = {
        "address_name": "Ana Martin",
        "address_street": "3 rue des Lilas",
        "address_postcode": "75011",
        "address_city": "Paris",
        "address_country": "France",
    }
    r = await client.post(
        f"/app/{program}/rewards/mug/redeem",
        data={"csrf_token": token, "confirm": "yes", **address},
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/app/{program}/rewards?redeemed=mug#orders"
    page = await client.get(f"/app/{program}/rewards")
    order = re.search(r'<tr id="order-([^"]+)" data-status="ordered">', page.text)
    assert order is not None
    assert "Commandé : nous le préparons" in page.text
    # The address is stored with the member: in the download, and asked no more.
    export = (await client.get(f"/app/{program}/export")).json()
    assert export["member"]["attributes"]["delivery_address"]["city"] == "Paris"
    # Staff see where to send it on the rewards page, then ship it: the member reads it.
    staff = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    await staff_signin(staff, await make_staff(db, "support"))
    console = await staff.get(f"/admin/{program}/rewards")
    assert "Ship to: Ana Martin, 3 rue des Lilas, 75011, Paris, France" in console.text
    await staff.aclose()
    r = await client.patch(
        f"/v1/programs/{program}/redemptions/{order.group(1)}", json={"status": "shipped"}
    )
    assert r.status_code == 200, r.text
    page = await client.get(f"/app/{program}/rewards")
    assert f'<tr id="order-{order.group(1)}" data-status="shipped">' in page.text
    assert "Expédié : en route vers vous" in page.text
    # Closing the account erases the address.
    profile = await client.get(f"/app/{program}/profile")
    r = await client.post(
        f"/app/{program}/close", data={"csrf_token": csrf_of(profile.text), "confirm": "on"}
    )
    assert r.status_code == 200
    member = await client.get(f"/v1/programs/{program}/members/{member_id}")
    assert "delivery_address" not in member.json()["attributes"]


async def test_a_friends_code_at_sign_up(client: httpx.AsyncClient, program: str) -> None:
    terms = {"referrer_points": 50, "referee_points": 25}
    r = await client.put(f"/v1/programs/{program}/referrals/settings", json=terms)
    assert r.status_code == 200, r.text
    await signup(client, program)
    friend = await client.get(f"/app/{program}/invite")
    found = re.search(r'id="referral-code" data-code="([^"]+)"', friend.text)
    assert found is not None
    code = found.group(1)
    client.cookies.clear()

    page = await client.get(f"/app/{program}/signup?ref={code}")
    assert f'name="referral_code" type="text"\n    value="{code}"' in page.text or (
        f'value="{code}"' in page.text and 'id="f-referral_code"' in page.text
    )
    assert "checked" not in page.text  # no consent ticked in advance
    bad = await signup(client, program, referral_code="NOPE-NOPE")
    assert bad.status_code == 422
    assert 'id="e-referral_code"' in bad.text
    client.cookies.clear()
    r = await signup(client, program, referral_code=code.lower())
    assert r.status_code == 303
    member_id = await _member_id(client, program)
    referrals = await client.get(f"/v1/programs/{program}/members/{member_id}/referrals")
    assert referrals.status_code == 200, referrals.text
    assert [x["status"] for x in referrals.json()] == ["pending"]


async def test_password_change(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program, email="pw@example.com")
    page = await client.get(f"/app/{program}/profile")
    token = csrf_of(page.text)
    wrong = await client.post(
        f"/app/{program}/password",
        data={"csrf_token": token, "current_password": "nope", "new_password": "a-new-passphrase"},
    )
    assert wrong.status_code == 422
    assert 'id="e-current_password"' in wrong.text
    short = await client.post(
        f"/app/{program}/password",
        data={"csrf_token": token, "current_password": PASSWORD, "new_password": "short"},
    )
    assert short.status_code == 422
    assert 'id="e-new_password"' in short.text
    r = await client.post(
        f"/app/{program}/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "a-new-passphrase",
        },
    )
    assert r.status_code == 303
    assert "Your new password is saved." in (await client.get(r.headers["location"])).text
    client.cookies.clear()
    form = await client.get(f"/app/{program}/signin")
    old = await client.post(
        f"/app/{program}/signin",
        data={"csrf_token": csrf_of(form.text), "email": "pw@example.com", "password": PASSWORD},
    )
    assert old.status_code == 422
    new = await client.post(
        f"/app/{program}/signin",
        data={
            "csrf_token": csrf_of(form.text),
            "email": "pw@example.com",
            "password": "a-new-passphrase",
        },
    )
    assert new.status_code == 303


async def test_offline_page_and_service_worker(client: httpx.AsyncClient, program: str) -> None:
    page = await client.get(f"/app/{program}/offline")
    assert page.status_code == 200
    assert 'id="offline-message"' in page.text
    assert f'href="/app/{program}/card"' in page.text
    sw = await client.get(f"/app/{program}/sw.js")
    assert f'const BASE = "/app/{program}";' in sw.text
    assert 'const OFFLINE = BASE + "/offline";' in sw.text
    assert 'request.mode === "navigate"' in sw.text
