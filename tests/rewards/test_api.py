"""Catalogue, redemption, coupons, offers and referrals through the API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from habitue import clock
from habitue.db import Database
from habitue.ledger.verify import verify
from habitue.rewards import codes
from tests.conftest import enrol, new_code, purchase
from tests.rewards.conftest import balance, give, problem, reward


async def test_catalogue_crud_and_languages(client: httpx.AsyncClient, program: str) -> None:
    made = await reward(
        client, program, code="coffee10", kind="discount", percent="10", cap="5.00",
        min_basket="20.00", texts={"en": {"name": "10% off"}, "fr": {"name": "10 % de remise"},
                                   "da": {"name": "10 % rabat"}},
    )  # fmt: skip
    assert made["cap"] == "5.00"
    assert made["min_basket"] == "20.00"
    assert made["percent"] == "10"
    assert set(made["texts"]) == {"en", "fr", "da"}
    r = await client.patch(f"/v1/programs/{program}/rewards/coffee10", json={"stock": 3})
    assert r.status_code == 200
    assert r.json()["stock"] == 3
    r = await client.get(f"/v1/programs/{program}/rewards")
    assert [i["code"] for i in r.json()["items"]] == ["coffee10"]
    problem(await client.get(f"/v1/programs/{program}/rewards/nope"), 404, "reward-not-found")
    r = await client.post(
        f"/v1/programs/{program}/rewards",
        json={
            "code": "coffee10",
            "kind": "product",
            "cost_points": 1,
            "texts": {"en": {"name": "x"}},
        },
    )
    problem(r, 409, "reward-exists")
    r = await client.post(
        f"/v1/programs/{program}/rewards",
        json={"code": "v", "kind": "voucher", "cost_points": 1, "texts": {"en": {"name": "x"}}},
    )
    problem(r, 422, "validation")


async def test_redeem_spends_takes_stock_and_issues_coupon(
    client: httpx.AsyncClient, program: str
) -> None:
    await reward(client, program, code="five", kind="voucher", value="5.00", cost_points=300,
                 stock=2, coupon_days=30)  # fmt: skip
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 1000)
    r = await client.post(
        f"/v1/programs/{program}/members/{m}/redemptions", json={"reward": "five"}
    )
    assert r.status_code == 201, r.text
    red = r.json()
    assert red["points"] == 300
    assert red["status"] == "issued"
    assert red["coupon"]["state"] == "issued"
    assert len(red["coupon"]["code"]) == 17
    assert await balance(client, program, m) == 700
    assert (await client.get(f"/v1/programs/{program}/rewards/five")).json()["stock"] == 1
    code = red["coupon"]["code"]
    v = await client.post(f"/v1/programs/{program}/coupons/{code}/validate", json={"total": "3.20"})
    assert v.status_code == 200
    assert v.json()["discount"] == "3.20"
    # cancel: points and stock come back, the coupon dies
    c = await client.post(f"/v1/programs/{program}/redemptions/{red['id']}/cancel")
    assert c.status_code == 200
    assert c.json()["status"] == "canceled"
    assert c.json()["coupon"]["state"] == "canceled"
    assert await balance(client, program, m) == 1000
    assert (await client.get(f"/v1/programs/{program}/rewards/five")).json()["stock"] == 2
    problem(await client.post(f"/v1/programs/{program}/coupons/{code}/redeem",
                              json={"total": "9.00"}), 409, "coupon-canceled")  # fmt: skip
    problem(await client.post(f"/v1/programs/{program}/redemptions/{red['id']}/cancel"),
            409, "redemption-not-cancelable")  # fmt: skip


async def test_bad_redemptions_spend_nothing(client: httpx.AsyncClient, program: str) -> None:
    now = datetime.now(UTC)
    await reward(client, program, code="dear", cost_points=5000)
    await reward(client, program, code="gone", stock=0)
    await reward(client, program, code="later", valid_from=(now + timedelta(days=2)).isoformat())
    await reward(client, program, code="once", per_member_limit=1)
    await reward(client, program, code="daily", period="day", period_limit=1)
    await reward(client, program, code="gold", tiers=["gold"])
    await reward(client, program, code="miles", kind="partner", partner_rate="0.5")
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 1000)
    url = f"/v1/programs/{program}/members/{m}/redemptions"
    assert (await client.post(url, json={"reward": "once"})).status_code == 201
    assert (await client.post(url, json={"reward": "daily"})).status_code == 201
    cases = [
        ("dear", 409, "insufficient-points"),
        ("gone", 409, "out-of-stock"),
        ("later", 409, "reward-not-available"),
        ("once", 409, "member-limit-reached"),
        ("daily", 409, "period-limit-reached"),
        ("gold", 409, "tier-not-eligible"),
        ("miles", 409, "reward-not-redeemable"),
        ("nope", 404, "reward-not-found"),
    ]
    for code, status, type_ in cases:
        problem(await client.post(url, json={"reward": code}), status, type_)
    assert await balance(client, program, m) == 800
    problem(await client.post(url, json={"reward": "once", "quantity": 0}), 422, "validation")
    clock.advance(timedelta(days=1, hours=1))
    assert (await client.post(url, json={"reward": "daily"})).status_code == 201
    assert await balance(client, program, m) == 700


async def test_coupon_states_and_guessing(client: httpx.AsyncClient, program: str) -> None:
    await reward(client, program, code="pct", kind="discount", percent="20", cap="4.00",
                 min_basket="10.00", coupon_days=7)  # fmt: skip
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 500)
    red = (await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                             json={"reward": "pct"})).json()  # fmt: skip
    code = red["coupon"]["code"]
    base = f"/v1/programs/{program}/coupons/{code}"
    v = (await client.post(base + "/validate", json={"total": "9.99"})).json()
    assert v["applicable"] is False
    assert v["discount"] == "0.00"
    problem(await client.post(base + "/redeem", json={"total": "9.99"}), 422,
            "coupon-not-applicable")  # fmt: skip
    r = await client.post(base + "/redeem", json={"total": "30.00", "reference": "till-1"})
    assert r.status_code == 200
    assert r.json()["discount"] == "4.00"
    problem(await client.post(base + "/redeem", json={"total": "30.00"}), 409,
            "coupon-already-redeemed")  # fmt: skip
    # another program's coupon is not found
    other = (await client.post("/v1/programs", json={"code": program + "x", "name": "o",
             "currency": "EUR", "timezone": "UTC"})).json()["code"]  # fmt: skip
    problem(await client.post(f"/v1/programs/{other}/coupons/{code}/redeem",
                              json={"total": "30.00"}), 404, "coupon-not-found")  # fmt: skip
    # expiry
    red2 = (await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                              json={"reward": "pct"})).json()  # fmt: skip
    clock.advance(timedelta(days=8))
    problem(await client.post(f"/v1/programs/{program}/coupons/{red2['coupon']['code']}/redeem",
                              json={"total": "30.00"}), 409, "coupon-expired")  # fmt: skip
    # guessing: ten failed lookups, then 429, and every attempt is logged
    for i in range(10):
        r = await client.post(f"/v1/programs/{program}/coupons/AAAA-AAAA-AAAA-A{i}/validate",
                              json={"total": "1.00", "member": m})  # fmt: skip
        assert r.status_code in (404, 422), r.text
    problem(await client.post(base + "/validate", json={"total": "30.00", "member": m}), 429,
            "rate-limited")  # fmt: skip


async def test_last_units_under_concurrency(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await reward(client, program, code="last", cost_points=50, stock=10)
    members = [(await enrol(client, program))["id"] for _ in range(100)]
    for m in members:
        await give(client, program, m, 50)
    results = await asyncio.gather(*[
        client.post(f"/v1/programs/{program}/members/{m}/redemptions", json={"reward": "last"})
        for m in members
    ])  # fmt: skip
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 10
    assert codes.count(409) == 90
    assert all(r.json()["type"].endswith("out-of-stock") for r in results if r.status_code == 409)
    assert (await client.get(f"/v1/programs/{program}/rewards/last")).json()["stock"] == 0
    balances = [await balance(client, program, m) for m in members]
    assert sorted(balances) == [0] * 10 + [50] * 90
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_one_coupon_twenty_tills(client: httpx.AsyncClient, program: str) -> None:
    await reward(client, program, code="v10", kind="voucher", value="10.00", cost_points=10)
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 10)
    code = (await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                              json={"reward": "v10"})).json()["coupon"]["code"]  # fmt: skip
    results = await asyncio.gather(*[
        client.post(f"/v1/programs/{program}/coupons/{code}/redeem",
                    json={"total": "25.00", "reference": f"till-{i}"})
        for i in range(20)
    ])  # fmt: skip
    assert sorted(r.status_code for r in results) == [200] + [409] * 19


async def test_pay_with_points_quote_and_purchase(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/programs", json={"code": new_code("pw"),
                          "name": "p", "currency": "EUR", "timezone": "UTC",
                          "redeem_rate": "1.5", "redeem_step": 3})  # fmt: skip
    assert r.status_code == 201, r.text
    program = r.json()["code"]
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 10)
    url = f"/v1/programs/{program}/members/{m}/pay-with-points/quote"
    q = (await client.post(url, json={"total": "50.00"})).json()
    assert (q["points"], q["discount"], q["to_pay"], q["balance"]) == (9, "13.50", "36.50", 10)
    q2 = (await client.post(url, json={"total": "12.00"})).json()
    assert (q2["points"], q2["discount"], q2["to_pay"]) == (6, "9.00", "3.00")
    p = await purchase(client, program, m, "50.00", spend_points=q["points"])
    assert p.status_code == 201, p.text
    assert p.json()["discount"] == "13.50"
    assert p.json()["points_earned"] == 36
    assert await balance(client, program, m) == 10 - 9 + 36


async def test_product_fulfilment_and_donations(client: httpx.AsyncClient, program: str) -> None:
    await reward(client, program, code="mug", cost_points=100)
    await reward(client, program, code="trees", kind="donation", cause="Plant trees",
                 cost_points=10)  # fmt: skip
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 500)
    red = (await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                             json={"reward": "mug"})).json()  # fmt: skip
    assert red["status"] == "ordered"
    assert red["coupon"] is None
    url = f"/v1/programs/{program}/redemptions/{red['id']}"
    problem(await client.patch(url, json={"status": "delivered"}), 409,
            "invalid-fulfilment-transition")  # fmt: skip
    assert (await client.patch(url, json={"status": "shipped"})).json()["status"] == "shipped"
    problem(await client.post(url + "/cancel"), 409, "redemption-not-cancelable")
    for q in (2, 3):
        r = await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                              json={"reward": "trees", "quantity": q})  # fmt: skip
        assert r.json()["status"] == "donated"
    year = clock.now().year
    st = (await client.get(f"/v1/programs/{program}/donations/statement?year={year}")).json()
    assert st["causes"] == [{"cause": "Plant trees", "donations": 2, "donors": 1, "points": 50}]


async def test_personal_offers(client: httpx.AsyncClient, program: str) -> None:
    a = (await enrol(client, program))["id"]
    b = (await enrol(client, program))["id"]
    now = datetime.now(UTC)
    r = await client.post(f"/v1/programs/{program}/offers", json={
        "code": "spring", "texts": {"en": {"name": "Spring"}}, "percent": "25", "cap": "3.00",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=3)).isoformat(), "members": [a]})  # fmt: skip
    assert r.status_code == 201
    assert r.json()["members"] == 1
    assert (
        len((await client.get(f"/v1/programs/{program}/members/{a}/offers")).json()["items"]) == 1
    )
    assert (await client.get(f"/v1/programs/{program}/members/{b}/offers")).json()["items"] == []
    problem(await client.post(f"/v1/programs/{program}/members/{b}/offers/spring/clip"), 404,
            "offer-not-found")  # fmt: skip
    use = f"/v1/programs/{program}/members/{a}/offers/spring/use"
    problem(await client.post(use, json={"total": "10.00"}), 409, "offer-not-clipped")
    assert (await client.post(f"/v1/programs/{program}/members/{a}/offers/spring/clip")).json()[
        "clipped"
    ]
    till = await client.get(f"/v1/programs/{program}/members/{a}/offers?clipped=true")
    assert [o["code"] for o in till.json()["items"]] == ["spring"]
    r = await client.post(use, json={"total": "10.00"})
    assert r.status_code == 200
    assert r.json()["discount"] == "2.50"
    problem(await client.post(use, json={"total": "10.00"}), 409, "offer-already-used")


async def test_referrals(client: httpx.AsyncClient, db: Database) -> None:
    r = await client.post("/v1/programs", json={"code": new_code("rf"),
                          "name": "r", "currency": "EUR", "timezone": "UTC",
                          "pending_days": 14})  # fmt: skip
    program = r.json()["code"]
    base = f"/v1/programs/{program}"
    referrer = (await enrol(client, program))["id"]
    problem(await client.post(base + "/referrals", json={"referee": referrer, "code": "X"}),
            409, "referrals-not-configured")  # fmt: skip
    s = await client.put(base + "/referrals/settings", json={
        "referrer_points": 500, "referee_points": 200, "cap_per_referrer": 2,
        "min_purchase": "10.00"})  # fmt: skip
    assert s.status_code == 200, s.text
    code = (await client.get(f"{base}/members/{referrer}/referral-code")).json()["code"]
    assert (await client.get(f"{base}/members/{referrer}/referral-code")).json()["code"] == code
    problem(await client.post(base + "/referrals", json={"referee": referrer, "code": code}),
            422, "self-referral")  # fmt: skip
    x, y, z = [(await enrol(client, program))["id"] for _ in range(3)]
    assert (
        await client.post(base + "/referrals", json={"referee": x, "code": code})
    ).status_code == 201
    problem(await client.post(base + "/referrals", json={"referee": x, "code": code}), 409,
            "already-referred")  # fmt: skip
    assert (
        await client.post(base + "/referrals", json={"referee": y, "code": code})
    ).status_code == 201
    problem(await client.post(base + "/referrals", json={"referee": z, "code": code}), 409,
            "referral-cap-reached")  # fmt: skip
    problem(await client.post(base + "/referrals", json={"referee": z, "code": "ZZZZ"}), 404,
            "referral-code-not-found")  # fmt: skip
    # x buys and keeps; y buys and refunds within the window
    px = await purchase(client, program, x, "20.00")
    assert any(e["kind"] == "referral" for e in px.json()["effects"])
    await purchase(client, program, y, "20.00", external_id="y-buy")
    ref = await client.post(base + "/events", json={"type": "refund", "external_id": "y-ref",
                            "refers_to": "y-buy", "total": "20.00"})  # fmt: skip
    assert ref.status_code == 201, ref.text
    from habitue import jobs

    clock.advance(timedelta(days=15))
    await jobs.run_program(db, program)
    mine = (await client.get(f"{base}/members/{referrer}/referrals")).json()
    assert sorted(i["status"] for i in mine) == ["canceled", "rewarded"]
    assert await balance(client, program, referrer) == 500
    assert await balance(client, program, x) == 20 + 200


async def test_expiry_job_marks_coupons(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await reward(client, program, code="short", kind="voucher", value="1.00", cost_points=1,
                 coupon_days=1)  # fmt: skip
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 5)
    red = (await client.post(f"/v1/programs/{program}/members/{m}/redemptions",
                             json={"reward": "short"})).json()  # fmt: skip
    clock.advance(timedelta(days=2))
    from habitue import jobs

    await jobs.run_program(db, program)
    r = await client.get(f"/v1/programs/{program}/coupons/{red['coupon']['code']}")
    assert r.json()["state"] == "expired"
    problem(await client.post(f"/v1/programs/{program}/redemptions/{red['id']}/cancel"), 409,
            "redemption-not-cancelable")  # fmt: skip
    assert await balance(client, program, m) == 4


async def test_redemption_spends_lots_closest_to_expiry(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/programs", json={"code": new_code("ex"), "name": "e",
                          "currency": "EUR", "timezone": "UTC",
                          "expiry": {"policy": "days", "days": 365}})  # fmt: skip
    assert r.status_code == 201, r.text
    program = r.json()["code"]
    await reward(client, program, code="big", cost_points=150)
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 100)
    clock.advance(timedelta(days=30))
    await give(client, program, m, 100)
    r = await client.post(f"/v1/programs/{program}/members/{m}/redemptions", json={"reward": "big"})
    assert r.status_code == 201, r.text
    b = (await client.get(f"/v1/programs/{program}/members/{m}/balance")).json()
    assert b["available"] == 50
    assert [e["points"] for e in b["expiring"]] == [50]
    later = datetime.fromisoformat(b["expiring"][0]["expires_at"])
    assert later > clock.now() + timedelta(days=364)


async def test_a_coupon_code_drawn_twice_is_drawn_again(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await reward(client, program, code="v5", kind="voucher", value="5.00", cost_points=10)
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 100)
    taken, fresh = codes.new_code(), codes.new_code()
    draws = iter([taken, taken, fresh])
    monkeypatch.setattr(codes, "new_code", lambda: next(draws))
    url = f"/v1/programs/{program}/members/{m}/redemptions"
    first = await client.post(url, json={"reward": "v5"})
    second = await client.post(url, json={"reward": "v5"})
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert first.json()["coupon"]["code"] == codes.display(taken)
    assert second.json()["coupon"]["code"] == codes.display(fresh)
    assert await balance(client, program, m) == 80
    listed = (await client.get(url)).json()["items"]
    assert sorted(r["coupon"]["code"] for r in listed) == sorted(
        codes.display(c) for c in (taken, fresh)
    )
