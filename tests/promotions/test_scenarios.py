"""The fifteen scenario families of issue 21, re-derived from Odoo's `loyalty`, `sale_loyalty`
and `pos_loyalty` tests, each through the HTTP API on both databases, with exact amounts.

Every program here is in EUR, 1 point per euro paid (`earn_rate` 1, rounded down), a point
worth 0.01 at the till (`redeem_rate`), unless the test says otherwise. The expected amounts are
derived by hand in the comments; what a confirm answers is checked against what it left behind
(balance, ledger, coupon state, the recorded purchase).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from habitue import clock
from tests.conftest import create_program, enrol
from tests.promotions.helpers import (
    confirm,
    confirmed,
    coupon_of,
    coupon_state,
    food_rule_and_ten_code,
    ledger,
    offs,
    price,
    promo,
    refusals,
)
from tests.rewards.conftest import balance, give, problem, reward

P = "/v1/programs"


def item(sku: str, unit: str, qty: int = 1, category: str = "", **kw: object) -> dict[str, object]:
    return {"sku": sku, "category": category, "quantity": qty, "unit_price": unit, **kw}


async def test_buy_three_get_one(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="b3g1", effect={"type": "buy_x_get_y", "buy": 3, "get": 1},
        line_condition="line.sku == 'MUG'",
    )  # fmt: skip
    # 4 mugs at 4.50 = 18.00: one group of 3 + 1, the 4th free: −4.50, 13.50 to pay.
    a = await price(client, program, lines=[item("MUG", "4.50", 4)])
    assert (offs(a), a["total"], a["to_pay"]) == ({"promotion:b3g1": "4.50"}, "18.00", "13.50")
    # 7 mugs = 31.50: still one complete group (7 // 4 = 1): −4.50, 27.00.
    a = await price(client, program, lines=[item("MUG", "4.50", 7)])
    assert (offs(a), a["to_pay"]) == ({"promotion:b3g1": "4.50"}, "27.00")
    # A member's 8 mugs (36.00) and a coffee (2.00) = 38.00: two groups, −9.00, 29.00 to pay,
    # 29 points; the mug line nets 36.00 − 9.00 = 27.00.
    m = await enrol(client, program, external_id="m1")
    done = await confirmed(
        client, program, member={"id": m["id"]},
        lines=[item("MUG", "4.50", 8), item("COFFEE", "2.00")],
    )  # fmt: skip
    assert (done["discount"], done["to_pay"], done["points_earned"]) == ("9.00", "29.00", 29)
    assert [ln["net"] for ln in done["lines"]] == ["27.00", "2.00"]
    assert await balance(client, program, m["id"]) == 29
    event = (await client.get(f"{P}/{program}/events/{done['event_id']}")).json()
    assert (event["total"], event["points"]) == ("29.00", 29)


async def test_minimum_amount_tax_included(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="big10", trigger="code", promo_code="BIG10",
        effect={"type": "order_amount", "amount": "10.00"}, min_basket="1006.00",
    )  # fmt: skip
    # A desk at 875.00 without tax, 15 %: 875.00 × 1.15 = 1,006.25 ≥ 1,006.00: −10.00.
    desk = item("DESK", "875.00", tax_rate="0.15", tax_included=False)
    m = await enrol(client, program, external_id="m1")
    done = await confirmed(client, program, member={"id": m["id"]}, lines=[desk], codes=["big10"])
    assert (done["total"], offs(done), done["to_pay"]) == (
        "1006.25", {"promotion:big10": "10.00"}, "996.25",
    )  # fmt: skip
    assert done["points_earned"] == 996  # 996.25 rounded down
    assert await balance(client, program, m["id"]) == 996
    # At 874.00: 874.00 × 1.15 = 1,005.10 < 1,006.00: the code is refused, with its reason.
    a = await price(client, program, lines=[{**desk, "unit_price": "874.00"}], codes=["BIG10"])
    assert (a["total"], offs(a), a["to_pay"]) == ("1005.10", {}, "1005.10")
    assert refusals(a) == {("codes", "big10", "the basket is below the minimum amount")}


async def test_minimum_amount_tax_excluded(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="excl10", trigger="code", promo_code="EXCL10",
        effect={"type": "order_amount", "amount": "10.00"}, condition="basket.total_excl >= 1006.0",
    )  # fmt: skip
    desk = item("DESK", "875.00", tax_rate="0.15", tax_included=False)
    # One desk: 875.00 without tax < 1,006.00 (1,006.25 with it): refused.
    a = await price(client, program, lines=[desk], codes=["EXCL10"])
    assert (offs(a), a["to_pay"]) == ({}, "1006.25")
    assert refusals(a) == {("codes", "excl10", "its condition does not hold for this basket")}
    # A desk charged 1,150.00 tax included is 1,150.00 / 1.15 = 1,000.00 without: refused too.
    a = await price(client, program, lines=[item("DESK", "1150.00", tax_rate="0.15")],
                    codes=["EXCL10"])  # fmt: skip
    assert offs(a) == {}
    # Two desks: 1,750.00 without tax ≥ 1,006.00: −10.00 off 2 × 1,006.25 = 2,012.50.
    a = await price(client, program, lines=[{**desk, "quantity": 2}], codes=["EXCL10"])
    assert (a["total"], offs(a), a["to_pay"]) == (
        "2012.50", {"promotion:excl10": "10.00"}, "2002.50",
    )  # fmt: skip


async def test_best_discount_only(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="ten", trigger="code", promo_code="TEN",
        effect={"type": "order_percent", "percent": "10"}, stacking="best_of",
        stacking_class="welcome",
    )  # fmt: skip
    await promo(
        client, program, code="chair20", trigger="code", promo_code="CHAIR20",
        effect={"type": "lines_percent", "percent": "20"}, line_condition="line.sku == 'CHAIR'",
        stacking="best_of", stacking_class="welcome",
    )  # fmt: skip
    codes = ["CHAIR20", "TEN"]
    # Chair 60.00 + desk 100.00: 10 % of 160.00 = 16.00 beats 20 % of 60.00 = 12.00.
    a = await price(client, program, lines=[item("CHAIR", "60.00"), item("DESK", "100.00")],
                    codes=codes)  # fmt: skip
    assert (offs(a), a["to_pay"]) == ({"promotion:ten": "16.00"}, "144.00")
    assert refusals(a) == {("codes", "chair20", "promotion:ten gives more")}
    # Chair 60.00 + desk 5.00: 10 % of 65.00 = 6.50 loses to 12.00.
    a = await price(client, program, lines=[item("CHAIR", "60.00"), item("DESK", "5.00")],
                    codes=codes[::-1])  # fmt: skip
    assert (offs(a), a["to_pay"]) == ({"promotion:chair20": "12.00"}, "53.00")
    assert refusals(a) == {("codes", "ten", "promotion:chair20 gives more")}


async def test_validity_window(client: httpx.AsyncClient, program: str) -> None:
    now = clock.now()
    await promo(
        client, program, code="week", trigger="code", promo_code="WEEK",
        effect={"type": "order_amount", "amount": "5.00"},
        valid_from=(now - timedelta(days=1)).isoformat(),
        valid_until=(now + timedelta(days=1)).isoformat(),
    )  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    body = {"member": {"id": m["id"]}, "lines": [item("A", "20.00")], "codes": ["WEEK"]}
    # Inside the window: 20.00 − 5.00 = 15.00.
    assert (await price(client, program, **body))["to_pay"] == "15.00"
    # A basket of two days ago, before the window opened: refused, and a confirm writes nothing.
    early = {**body, "occurred_at": (now - timedelta(days=2)).isoformat()}
    assert refusals(await price(client, program, **early)) == {("codes", "week", "not valid yet")}
    r = await confirm(client, program, external_id="early", **early)
    problem(r, 422, "basket-refused")
    assert r.json()["errors"] == [{"field": "codes", "message": "not valid yet", "code": "week"}]
    # Two days on, the window has closed.
    clock.advance(timedelta(days=2))
    late = await price(client, program, **body)
    assert (refusals(late), late["to_pay"]) == ({("codes", "week", "no longer valid")}, "20.00")
    problem(await confirm(client, program, external_id="late", **body), 422, "basket-refused")
    assert await ledger(client, program, m["id"]) == []
    # Nothing was stored under either external_id: a good basket confirms under it.
    plain = {"member": {"id": m["id"]}, "lines": [item("A", "20.00")]}
    assert (await confirmed(client, program, external_id="late", **plain))["points_earned"] == 20


async def test_usage_limits(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="twice", trigger="code", promo_code="TWICE",
        effect={"type": "order_amount", "amount": "1.00"}, per_member_limit=2,
    )  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    body = {"member": {"id": m["id"]}, "lines": [item("A", "10.00")], "codes": ["TWICE"]}
    # Two orders use it: 10.00 − 1.00 = 9.00 each, 9 points each, 18 in all.
    for _ in range(2):
        assert (await confirmed(client, program, **body))["to_pay"] == "9.00"
    assert await balance(client, program, m["id"]) == 18
    third = await price(client, program, **body)
    assert refusals(third) == {("codes", "twice", "already used 2 times by this member (limit 2)")}
    assert third["to_pay"] == "10.00"
    r = await confirm(client, program, **body)
    problem(r, 422, "basket-refused")
    assert await balance(client, program, m["id"]) == 18
    # The limit is per member: another member still gets it.
    other = await enrol(client, program, external_id="m2")
    a = await price(client, program, **{**body, "member": {"id": other["id"]}})
    assert offs(a) == {"promotion:twice": "1.00"}


async def test_gift_card_with_a_code(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1000)
    await reward(client, program, code="gift50", kind="voucher", value="50.00", cost_points=500)
    (gift,) = await coupon_of(client, program, m["id"], "gift50")
    assert await balance(client, program, m["id"]) == 500
    await promo(
        client, program, code="ten", trigger="code", promo_code="TENOFF",
        effect={"type": "order_percent", "percent": "10"},
    )  # fmt: skip
    lines = [item("A", "100.00")]
    # 100.00: 10 % off the order first (−10.00), then the gift card pays 50.00 of the 90.00
    # left: 40.00 to pay and 40 points, whichever order the codes are typed in.
    answers = [
        await price(client, program, member={"id": m["id"]}, lines=lines, codes=codes)
        for codes in (["tenoff", gift], [gift, "TEN-OFF"])
    ]
    for a in answers:
        assert offs(a) == {"promotion:ten": "10.00", f"coupon:{gift}": "50.00"}
        assert [d["level"] for d in a["discounts"]] == ["order", "payment"]
        assert (a["to_pay"], a["points_earned"]) == ("40.00", 40)
    done = await confirmed(client, program, member={"id": m["id"]}, lines=lines,
                           codes=[gift, "TENOFF"], external_id="order-gift")  # fmt: skip
    assert (done["to_pay"], done["points_earned"]) == ("40.00", 40)
    assert await balance(client, program, m["id"]) == 540
    state = await coupon_state(client, program, gift)
    # The gift card names the purchase it paid.
    assert (state["state"], state["discount"], state["purchase"]) == (
        "redeemed", "50.00", "order-gift",
    )  # fmt: skip


async def test_points_after_discounts(client: httpx.AsyncClient) -> None:
    program = await create_program(client, earn_rate="0")
    await food_rule_and_ten_code(client, program)
    m = await enrol(client, program, external_id="m1")
    body = {
        "member": {"id": m["id"]},
        "codes": ["TEN"],
        "lines": [item("BREAD", "25.00", 4, "food"), item("SOAP", "100.00", 1, "home")],
    }
    # 10 % of 200.00 = 20.00, shared pro rata: 10.00 off each line, both net 90.00; only the
    # food line earns: 90 points, not 100.
    priced = await price(client, program, **body)
    assert (priced["to_pay"], [ln["net"] for ln in priced["lines"]]) == (
        "180.00", ["90.00", "90.00"],
    )  # fmt: skip
    assert priced["points_earned"] == 90
    done = await confirmed(client, program, **body)
    assert done["points_earned"] == 90
    assert await balance(client, program, m["id"]) == 90
    event = (await client.get(f"{P}/{program}/events/{done['event_id']}")).json()
    assert (event["total"], event["points"]) == ("180.00", 90)


async def test_reward_steps(client: httpx.AsyncClient) -> None:
    # Points pay in steps of 100 (1.00 at 0.01 a point).
    program = await create_program(client, redeem_step=100)
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1000)
    body = {"member": {"id": m["id"]}, "lines": [item("A", "20.00")]}
    a = await price(client, program, **body, points=250)
    assert refusals(a) == {("points", None, "must be a multiple of 100")}
    assert (a["points_spent"], a["to_pay"]) == (0, "20.00")
    r = await confirm(client, program, **body, points=250)
    problem(r, 422, "basket-refused")
    assert r.json()["errors"] == [{"field": "points", "message": "must be a multiple of 100"}]
    assert await balance(client, program, m["id"]) == 1000
    # 200 points = 2.00: 18.00 to pay, 18 points earned on what was paid in money;
    # 1,000 − 200 + 18 = 818.
    done = await confirmed(client, program, **body, points=200)
    assert (done["points_spent"], done["points_value"], done["to_pay"]) == (200, "2.00", "18.00")
    assert done["points_earned"] == 18
    assert await balance(client, program, m["id"]) == 818


async def test_discount_caps(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="half", trigger="code", promo_code="HALF",
        effect={"type": "order_percent", "percent": "50"}, cap="30.00",
    )  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    # 50 % of 80.00 + 20.00 = 50.00, capped at 30.00, shared 80:20 = 24.00 / 6.00: nets 56.00
    # and 14.00, 70.00 to pay, 70 points.
    done = await confirmed(
        client, program, member={"id": m["id"]}, codes=["HALF"],
        lines=[item("A", "80.00"), item("B", "20.00")],
    )  # fmt: skip
    assert (offs(done), done["to_pay"]) == ({"promotion:half": "30.00"}, "70.00")
    assert [ln["net"] for ln in done["lines"]] == ["56.00", "14.00"]
    assert done["points_earned"] == 70
    # A catalogue coupon capped too: 20 % of 100.00 = 20.00, capped at 5.00: 95.00.
    await give(client, program, m["id"], 100)
    await reward(client, program, code="twenty", kind="discount", percent="20", cap="5.00",
                 cost_points=100)  # fmt: skip
    (twenty,) = await coupon_of(client, program, m["id"], "twenty")
    a = await price(client, program, member={"id": m["id"]}, lines=[item("A", "100.00")],
                    codes=[twenty])  # fmt: skip
    assert (offs(a), a["to_pay"]) == ({f"coupon:{twenty}": "5.00"}, "95.00")


async def test_expiry_order(client: httpx.AsyncClient) -> None:
    program = await create_program(client, expiry={"policy": "days", "days": 365})
    m = await enrol(client, program, external_id="m1")
    member = {"id": m["id"]}
    old = (clock.now() - timedelta(days=300)).isoformat()
    # Lot A: 30 points earned 300 days ago (65 days left); lot B: 20 points today.
    a = await confirmed(client, program, member=member, lines=[item("A", "30.00")], occurred_at=old)
    b = await confirmed(client, program, member=member, lines=[item("B", "20.00")])
    assert (a["points_earned"], b["points_earned"]) == (30, 20)
    bal = (await client.get(f"{P}/{program}/members/{m['id']}/balance")).json()
    assert [e["points"] for e in bal["expiring"]] == [30, 20]
    # 40 points at the till take lot A whole (30), then 10 of lot B: oldest first. 50.00 − 0.40
    # = 49.60 to pay, 49 points (lot C): 50 − 40 + 49 = 59.
    c = await confirmed(client, program, member=member, lines=[item("C", "50.00")], points=40)
    assert (c["points_value"], c["to_pay"], c["points_earned"]) == ("0.40", "49.60", 49)
    bal = (await client.get(f"{P}/{program}/members/{m['id']}/balance")).json()
    assert bal["available"] == 59
    assert [e["points"] for e in bal["expiring"]] == [10, 49]
    # 100 days on, lot A's date has passed: nothing is lost, it had been spent first.
    clock.advance(timedelta(days=100))
    assert await balance(client, program, m["id"]) == 59


async def test_refunds(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="ten", trigger="code", promo_code="TEN",
        effect={"type": "order_percent", "percent": "10"},
    )  # fmt: skip
    m = await enrol(client, program, external_id="m1")
    # 4 × 25.00 + 100.00 = 200.00, 10 % off: 180.00 paid, 180 points.
    done = await confirmed(
        client, program, member={"id": m["id"]}, external_id="order-1", codes=["TEN"],
        lines=[item("BREAD", "25.00", 4), item("SOAP", "100.00")],
    )  # fmt: skip
    assert (done["to_pay"], done["points_earned"]) == ("180.00", 180)
    refund = {"type": "refund", "member": {"id": m["id"]}, "refers_to": "order-1"}
    # Half of what was paid comes back: 90.00 of 180.00 takes back 180 × 90 / 180 = 90.
    r = await client.post(f"{P}/{program}/events",
                          json={**refund, "external_id": "r1", "total": "90.00"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["points"] == -90
    # The purchase was 180.00 paid, not the 200.00 basket: 90.01 more is above what is left.
    r = await client.post(f"{P}/{program}/events",
                          json={**refund, "external_id": "r2", "total": "90.01"})  # fmt: skip
    problem(r, 422, "refund-exceeds-purchase")
    assert await balance(client, program, m["id"]) == 90


async def test_server_side_decisions(client: httpx.AsyncClient, program: str) -> None:
    await promo(client, program, code="auto5", effect={"type": "order_amount", "amount": "5.00"})
    m = await enrol(client, program, external_id="m1")
    body = {"member": {"id": m["id"]}, "lines": [item("A", "30.00")]}
    # The till asked for no promotion: the server applies it (30.00 − 5.00 = 25.00).
    assert offs(await price(client, program, **body)) == {"promotion:auto5": "5.00"}
    # The promotion ends between the till's price and its confirm: the confirm prices again on
    # the server and charges 30.00, earning 30 points.
    r = await client.patch(f"{P}/{program}/promotions/auto5", json={"active": False})
    assert r.status_code == 200, r.text
    done = await confirmed(client, program, **body)
    assert (done["discount"], done["to_pay"], done["points_earned"]) == ("0.00", "30.00", 30)
    assert await balance(client, program, m["id"]) == 30
    # A till cannot bring its own discount: not as a field, not as a negative line.
    r = await confirm(client, program, **body, discount="30.00")
    assert r.status_code == 422, r.text
    r = await confirm(client, program, **{**body, "lines": [item("A", "30.00"),
                                                             item("OFF", "-30.00")]})  # fmt: skip
    problem(r, 422, "basket-refused")
    assert [e["field"] for e in r.json()["errors"]] == ["lines[1].unit_price"]
    assert await balance(client, program, m["id"]) == 30


async def test_one_coupon_on_two_orders(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 2000)
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=500)
    (first,) = await coupon_of(client, program, m["id"], "five")
    (second,) = await coupon_of(client, program, m["id"], "five")
    assert await balance(client, program, m["id"]) == 1000
    body = {"member": {"id": m["id"]}, "lines": [item("A", "20.00")]}
    # One after the other: 20.00 − 5.00 = 15.00, 15 points; the second order is refused whole.
    assert (await confirmed(client, program, **body, codes=[first]))["points_earned"] == 15
    r = await confirm(client, program, **body, codes=[first])
    problem(r, 422, "basket-refused")
    assert r.json()["errors"] == [
        {"field": "codes", "message": "this code was redeemed", "code": first}
    ]
    assert await balance(client, program, m["id"]) == 1015
    # At the same time at two tills: one wins, the other is refused and writes nothing.
    tills = await asyncio.gather(
        confirm(client, program, **body, codes=[second], external_id="till-a"),
        confirm(client, program, **body, codes=[second], external_id="till-b"),
    )
    assert sorted(t.status_code for t in tills) == [200, 409] or sorted(
        t.status_code for t in tills
    ) == [200, 422], [t.text for t in tills]
    loser = next(t for t in tills if t.status_code != 200)
    assert loser.json()["type"].rsplit("/", 1)[1] in {"coupon-already-redeemed", "basket-refused"}
    assert await balance(client, program, m["id"]) == 1030
    purchases = [e for e in await ledger(client, program, m["id"]) if e["points"] == 15]
    assert len(purchases) == 2
    assert (await coupon_state(client, program, second))["discount"] == "5.00"


async def test_discount_on_specific_products(client: httpx.AsyncClient, program: str) -> None:
    await promo(
        client, program, code="p60", trigger="code", promo_code="P60OFF",
        effect={"type": "lines_percent", "percent": "10"}, line_condition="line.sku == 'P60'",
    )  # fmt: skip
    await promo(
        client, program, code="p60order", trigger="code", promo_code="P60ORDER",
        effect={"type": "order_percent", "percent": "10"}, line_condition="line.sku == 'P60'",
    )  # fmt: skip
    lines = [item("P60", "60.00"), item("P6", "6.00")]
    # 10 % limited to the 60.00 product is 6.00 (not 10 % of the 6.00 one, 0.60): 60.00.
    for code, name in (("P60OFF", "p60"), ("P60ORDER", "p60order")):
        a = await price(client, program, lines=lines, codes=[code])
        assert (offs(a), a["to_pay"]) == ({f"promotion:{name}": "6.00"}, "60.00")
        assert [ln["net"] for ln in a["lines"]] == ["54.00", "6.00"]
