"""Baskets priced and confirmed through the API, and promotions' CRUD (both databases)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from habitue import clock
from habitue.db import Database
from habitue.settings import Settings
from tests.clients import limited, new_key, serve
from tests.conftest import create_program, enrol
from tests.promotions.helpers import cab, confirm, coupon_of, offs, price, promo
from tests.rewards.conftest import balance, give, problem, reward


async def test_promotion_crud_and_validation(client: httpx.AsyncClient, program: str) -> None:
    created = await promo(
        client, program, code="b3g1", effect={"type": "buy_x_get_y", "buy": 3, "get": 1},
        line_condition="line.sku == 'CAB'", priority=5,
    )  # fmt: skip
    assert created["effect"] == {"type": "buy_x_get_y", "buy": 3, "get": 1, "quantity": 1}
    r = await client.patch(
        f"/v1/programs/{program}/promotions/b3g1", json={"max_per_order": 2, "active": False}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["max_per_order"], r.json()["active"], r.json()["priority"]) == (2, False, 5)
    listed = (await client.get(f"/v1/programs/{program}/promotions")).json()["items"]
    assert [p["code"] for p in listed] == ["b3g1"]
    bad = await client.post(
        f"/v1/programs/{program}/promotions",
        json={"code": "x", "effect": {"type": "order_percent", "percent": 10},
              "condition": "basket.totl > 5.0"},
    )  # fmt: skip
    problem(bad, 422, "invalid-promotion")
    assert bad.json()["errors"][0]["field"] == "condition"
    assert "basket.totl" in bad.json()["detail"]
    missing = await client.post(
        f"/v1/programs/{program}/promotions",
        json={"code": "y", "effect": {"type": "order_amount"}},
    )
    problem(missing, 422, "invalid-promotion")
    assert missing.json()["errors"][0]["field"] == "effect.amount"
    dup = await client.post(
        f"/v1/programs/{program}/promotions",
        json={"code": "b3g1", "effect": {"type": "cheapest"}},
    )
    problem(dup, 409, "promotion-exists")
    assert (await client.delete(f"/v1/programs/{program}/promotions/b3g1")).status_code == 204
    problem(await client.get(f"/v1/programs/{program}/promotions/b3g1"), 404, "promotion-not-found")


async def test_buy_three_get_one_for_a_guest_and_a_member(
    client: httpx.AsyncClient, program: str
) -> None:
    await promo(
        client, program, code="b3g1", effect={"type": "buy_x_get_y", "buy": 3, "get": 1},
        line_condition="line.sku == 'CAB'",
    )  # fmt: skip
    guest = await price(client, program, lines=[cab(4), {"sku": "MUG", "unit_price": "5.00"}])
    assert offs(guest) == {"promotion:b3g1": "320.00"}
    assert (guest["total"], guest["to_pay"], guest["points_earned"]) == (
        "1285.00", "965.00", 0,
    )  # fmt: skip
    assert guest["lines"][0] == {
        "line": 0, "sku": "CAB", "amount": "1280.00", "discount": "320.00", "net": "960.00",
    }  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    mine = await price(client, program, member={"id": m["id"]}, lines=[cab(8)])
    assert mine["discount"] == "640.00"
    assert mine["points_earned"] == 1920  # earns on the 1,920.00 paid, at 1 point per euro


async def test_gift_card_and_percent_code_give_the_same_in_any_order(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1000)
    await reward(client, program, code="gift50", kind="voucher", value="50.00", cost_points=500)
    (gift,) = await coupon_of(client, program, m["id"], "gift50")
    await promo(
        client, program, code="ten", trigger="code", promo_code="TENOFF",
        effect={"type": "order_percent", "percent": "10"},
    )  # fmt: skip
    lines = [{"sku": "A", "unit_price": "100.00"}]
    answers = [
        await price(client, program, member={"id": m["id"]}, lines=lines, codes=codes)
        for codes in (["tenoff", gift], [gift, "TEN-OFF"])
    ]
    for a in answers:
        assert offs(a) == {"promotion:ten": "10.00", f"coupon:{gift}": "50.00"}
        assert [d["level"] for d in a["discounts"]] == ["order", "payment"]
        assert a["to_pay"] == "40.00"
    assert answers[0]["points_earned"] == 40


async def test_confirm_burns_spends_and_is_idempotent(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1500)
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=500)
    (five,) = await coupon_of(client, program, m["id"], "five")
    body = {
        "member": {"id": m["id"]},
        "external_id": "till-1",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "10.00"}],
        "codes": [five],
        "points": 300,
    }
    first = await confirm(client, program, **body)
    assert first.status_code == 200, first.text
    a = first.json()
    assert (a["discount"], a["points_value"], a["to_pay"], a["points_earned"]) == (
        "5.00", "3.00", "12.00", 12,
    )  # fmt: skip
    assert await balance(client, program, m["id"]) == 1000 - 300 + 12
    again = await confirm(client, program, **body)
    assert again.json() == a
    assert await balance(client, program, m["id"]) == 712
    state = await client.get(f"/v1/programs/{program}/coupons/{five}")
    assert state.json()["state"] == "redeemed"
    assert state.json()["discount"] == "5.00"
    # one coupon on two orders: the second is refused whole, nothing written
    second = await confirm(client, program, **{**body, "external_id": "till-2"})
    problem(second, 422, "basket-refused")
    assert second.json()["errors"] == [
        {"field": "codes", "message": "this code was redeemed", "code": five}
    ]
    assert await balance(client, program, m["id"]) == 712


async def test_a_coupon_burnt_meanwhile_refuses_the_whole_confirm(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1000)
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=500)
    (five,) = await coupon_of(client, program, m["id"], "five")
    from sqlalchemy import update

    from habitue.promotions import till
    from habitue.rewards import codes as coupon_codes
    from habitue.rewards.models import Coupon

    real = till.price_in

    async def racing(session: Any, pipeline: Any, program_info: Any, body: Any, *, now: Any) -> Any:
        priced = await real(session, pipeline, program_info, body, now=now)
        # Another till burns the coupon between this confirm's pricing and its burn.
        await session.execute(
            update(Coupon)
            .where(Coupon.code == coupon_codes.normalise(five))
            .values(state="redeemed")
        )
        return priced

    till.price_in = racing  # type: ignore[assignment]
    try:
        r = await confirm(
            client, program, member={"id": m["id"]}, lines=[{"unit_price": "20.00"}],
            codes=[five], points=100,
        )  # fmt: skip
    finally:
        till.price_in = real  # type: ignore[assignment]
    problem(r, 409, "coupon-already-redeemed")
    assert r.json()["detail"] == f"coupon {five} was redeemed meanwhile: nothing written"
    assert await balance(client, program, m["id"]) == 500
    ledger = (await client.get(f"/v1/programs/{program}/members/{m['id']}/ledger")).json()
    assert len(ledger["items"]) == 2  # the grant and the redemption: no purchase, no spend


async def test_two_unit_redemption_issues_two_coupons_the_till_applies_both(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 2000)
    await reward(client, program, code="cabinet", kind="free_product", sku="CAB", cost_points=800)
    codes = await coupon_of(client, program, m["id"], "cabinet", quantity=2)
    assert len(set(codes)) == 2
    assert await balance(client, program, m["id"]) == 400
    a = await price(client, program, member={"id": m["id"]}, lines=[cab(2)], codes=codes)
    assert sorted(offs(a).values()) == ["320.00", "320.00"]
    assert a["to_pay"] == "0.00"


async def test_minimum_amount_tax_included_and_excluded(
    client: httpx.AsyncClient, program: str
) -> None:
    for code, field in (("incl", "total"), ("excl", "total_excl")):
        await promo(
            client, program, code=code, effect={"type": "order_amount", "amount": "10.00"},
            condition=f"basket.{field} >= 1006.0",
        )  # fmt: skip
    desk = {"sku": "DESK", "unit_price": "875.00", "tax_rate": "0.15", "tax_included": False}
    a = await price(client, program, lines=[desk])
    assert a["total"] == "1006.25"
    assert offs(a) == {"promotion:incl": "10.00"}
    a = await price(client, program, lines=[{**desk, "unit_price": "875.00", "quantity": 2}])
    assert offs(a) == {"promotion:excl": "10.00", "promotion:incl": "10.00"}


async def test_per_member_limit_and_validity(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="once", effect={"type": "order_amount", "amount": "2.00"},
        per_member_limit=1,
    )  # fmt: skip
    await promo(
        client, program, code="past", effect={"type": "order_amount", "amount": "2.00"},
        valid_until="2020-01-01T00:00:00Z",
    )  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    body = {"member": {"id": m["id"]}, "lines": [{"unit_price": "10.00"}]}
    assert offs(await price(client, program, **body)) == {"promotion:once": "2.00"}
    assert (await confirm(client, program, **body)).status_code == 200
    assert offs(await price(client, program, **body)) == {}
    assert offs(await price(client, program, lines=body["lines"])) == {"promotion:once": "2.00"}


async def test_bad_input_is_refused_with_its_reason_and_nothing_written(
    client: httpx.AsyncClient, program: str
) -> None:
    other = await create_program(client)
    m = await enrol(client, program, external_id="m1")
    o = await enrol(client, other, external_id="o1")
    await give(client, program, m["id"], 100)
    await give(client, other, o["id"], 100)
    await reward(client, other, code="five", kind="discount", value="5.00", cost_points=10)
    (foreign,) = await coupon_of(client, other, o["id"], "five")
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=10)
    (mine,) = await coupon_of(client, program, m["id"], "five")
    body = {
        "member": {"id": m["id"]},
        "lines": [
            {"sku": "A", "unit_price": "10.00"},
            {"sku": "DISC", "unit_price": "-2.00"},
            {"sku": "B", "quantity": -1, "unit_price": "3.00"},
        ],
        "codes": ["NOSUCHCODE", foreign, mine, mine],
        "points": 500,
    }
    a = await price(client, program, **body)
    refused = {(r["field"], r["code"], r["reason"]) for r in a["refused"]}
    assert ("lines[1].unit_price", None,
            "a discount line: send discounts as promotions or coupon codes, not as negative lines"
            ) in refused  # fmt: skip
    assert ("lines[2].quantity", None, "must be positive") in refused
    assert ("codes", "NOSUCHCODE", "not a coupon code (check character mismatch)") in refused
    assert ("codes", foreign, "no such coupon in this program") in refused
    assert ("codes", mine, "the same code twice") in refused
    assert ("points", None, "above the balance (90)") in refused
    assert offs(a) == {f"coupon:{mine}": "5.00"}
    assert a["points_earned"] == 0
    r = await confirm(client, program, **body)
    problem(r, 422, "basket-refused")
    assert {e["field"] for e in r.json()["errors"]} == {
        "lines[1].unit_price", "lines[2].quantity", "codes", "points",
    }  # fmt: skip
    assert await balance(client, program, m["id"]) == 90
    state = await client.get(f"/v1/programs/{program}/coupons/{mine}")
    assert state.json()["state"] == "issued"
    lines = await price(client, program, total="12.00", lines=[{"unit_price": "10.00"}])
    assert lines["refused"] == [
        {"field": "lines", "code": None,
         "reason": "the lines add up to 10.00, the total is 12.00"},
    ]  # fmt: skip


async def test_a_two_unit_redemption_cancels_whole_or_not_at_all(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 2000)
    await reward(client, program, code="cabinet", kind="free_product", sku="CAB", cost_points=500)

    async def redeem_two() -> tuple[str, list[str]]:
        r = await client.post(
            f"/v1/programs/{program}/members/{m['id']}/redemptions",
            json={"reward": "cabinet", "quantity": 2},
        )
        assert r.status_code == 201, r.text
        return r.json()["id"], [c["code"] for c in r.json()["coupons"]]

    first, codes = await redeem_two()
    r = await client.post(f"/v1/programs/{program}/redemptions/{first}/cancel")
    assert r.status_code == 200, r.text
    for code in codes:
        state = await client.get(f"/v1/programs/{program}/coupons/{code}")
        assert state.json()["state"] == "canceled"
    assert await balance(client, program, m["id"]) == 2000
    second, codes = await redeem_two()
    used = await confirm(client, program, member={"id": m["id"]}, lines=[cab()], codes=codes[:1])
    assert used.status_code == 200, used.text
    assert used.json()["to_pay"] == "0.00"
    problem(
        await client.post(f"/v1/programs/{program}/redemptions/{second}/cancel"),
        409,
        "redemption-not-cancelable",
    )
    state = await client.get(f"/v1/programs/{program}/coupons/{codes[1]}")
    assert state.json()["state"] == "issued"
    assert await balance(client, program, m["id"]) == 1000


async def test_codes_that_name_no_coupon_drain_the_guessing_buckets(
    settings: Settings, db: Database
) -> None:
    async with serve(settings, db) as served:
        async with served.at("10.4.0.1") as admin:
            program = await create_program(admin)
            till_key = await new_key(admin, program, "till", "events:write")
        basket = f"/v1/programs/{program}/baskets/price"
        lines = [{"unit_price": "10.00"}]
        async with served.at("10.4.0.2", till_key) as guesser:
            for i in range(10):
                r = await guesser.post(basket, json={"lines": lines, "codes": [f"GUESS{i}"]})
                assert r.status_code == 200, r.text
                assert r.json()["refused"][0]["code"] == f"GUESS{i}"
            limited(await guesser.post(basket, json={"lines": lines, "codes": ["GUESS"]}), 6)
            r = await guesser.post(
                f"/v1/programs/{program}/baskets/confirm",
                json={"lines": lines, "external_id": "g1"},
            )
            limited(r, 6)
        async with served.at("10.4.0.3", till_key) as same_key:
            limited(await same_key.post(basket, json={"lines": lines}), 6)


async def test_a_clipped_offer_is_priced_and_used_once_by_a_confirm(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program, external_id="m1")
    now = clock.now()
    r = await client.post(f"/v1/programs/{program}/offers", json={
        "code": "spring", "texts": {"en": {"name": "Spring"}}, "percent": "25", "cap": "3.00",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=3)).isoformat(), "members": [m["id"]]})  # fmt: skip
    assert r.status_code == 201, r.text
    body = {"member": {"id": m["id"]}, "lines": [{"sku": "A", "unit_price": "20.00"}],
            "offers": ["spring"]}  # fmt: skip
    # Not clipped yet: refused, and a confirm writes nothing.
    a = await price(client, program, **body)
    assert [(x["field"], x["code"], x["reason"]) for x in a["refused"]] == [
        ("codes", "spring", "this offer was not clipped")
    ]
    problem(await confirm(client, program, **body), 422, "basket-refused")
    clip = await client.post(f"/v1/programs/{program}/members/{m['id']}/offers/spring/clip")
    assert clip.status_code == 200, clip.text
    # 25 % of 20.00 = 5.00, capped at 3.00: 17.00 to pay, 17 points.
    done = await confirm(client, program, **body)
    assert done.status_code == 200, done.text
    assert offs(done.json()) == {"offer:spring": "3.00"}
    assert (done.json()["to_pay"], done.json()["points_earned"]) == ("17.00", 17)
    # Used: gone from the member's offers, and the till's own use of it is refused.
    mine = await client.get(f"/v1/programs/{program}/members/{m['id']}/offers")
    assert mine.json()["items"] == []
    use = f"/v1/programs/{program}/members/{m['id']}/offers/spring/use"
    problem(await client.post(use, json={"total": "10.00"}), 409, "offer-already-used")
    again = await price(client, program, **body)
    assert offs(again) == {}
    assert again["refused"][0]["reason"] == "this offer was used"
    assert await balance(client, program, m["id"]) == 17


async def test_a_ritual_is_a_condition_on_the_basket_local_time(
    client: httpx.AsyncClient, program: str
) -> None:
    await promo(
        client, program, code="wed-night", effect={"type": "order_percent", "percent": "20"},
        condition="now.weekday == 2 && now.hour >= 21",
    )  # fmt: skip
    paris = ZoneInfo("Europe/Paris")
    today = clock.now().astimezone(paris).date()
    wednesday = today - timedelta(days=(today.weekday() - 2) % 7 or 7)
    lines = [{"sku": "A", "unit_price": "10.00"}]
    # Wednesday 21:30 in Paris (the program's zone): 20 % off, 8.00; 20:30: nothing off.
    for hour, to_pay in ((21, "8.00"), (20, "10.00")):
        when = datetime(wednesday.year, wednesday.month, wednesday.day, hour, 30, tzinfo=paris)
        a = await price(client, program, lines=lines, occurred_at=when.isoformat())
        assert a["to_pay"] == to_pay, hour
