"""The console's simulator prices a basket as the till does (issue 21, item 7): the same
discounts, amount to pay and points as `POST /baskets/price`, through the page, on both
databases; nothing written; the labels in the staff member's language."""

from __future__ import annotations

import re
from typing import Any

import httpx

from habitue.db import Database
from tests.conftest import enrol
from tests.promotions.helpers import coupon_of, coupon_state, ledger, price, promo
from tests.rewards.conftest import balance, give, reward
from tests.web.conftest import cell_texts, csrf_of, make_staff, staff_signin


def basket_rows(page: str) -> list[tuple[str, str, str, str]]:
    """(source, code, what it does, amount) per discount row of the simulator's basket."""
    table = re.search(r'<table class="history" id="basket">(.*?)</table>', page, re.S)
    assert table, page
    out = []
    for source, code, cells in re.findall(
        r'<tr data-source="([a-z]+)" data-code="([^"]+)">(.*?)</tr>', table.group(1), re.S
    ):
        texts = cell_texts(cells)
        out.append((source, code, texts[1], texts[2]))
    return out


def to_pay(page: str) -> str:
    found = re.search(r'<tr id="b-to-pay">.*?data-amount="([^"]+)"', page, re.S)
    assert found, page
    return found.group(1)


def sim_points(page: str) -> int:
    found = re.search(r'<span id="sim-points">([\d,.\s]+)</span>', page)
    assert found, page
    return int(re.sub(r"\D", "", found.group(1)))


async def setup(client: httpx.AsyncClient, program: str) -> tuple[dict[str, Any], str]:
    await promo(
        client, program, code="b3g1", effect={"type": "buy_x_get_y", "buy": 3, "get": 1},
        line_condition="line.sku == 'MUG'",
    )  # fmt: skip
    await promo(
        client, program, code="ten", trigger="code", promo_code="TEN",
        effect={"type": "order_percent", "percent": "10"},
    )  # fmt: skip
    m = await enrol(client, program, external_id="sim-basket")
    await give(client, program, m["id"], 1000)
    await reward(client, program, code="gift5", kind="voucher", value="5.00", cost_points=100)
    (gift,) = await coupon_of(client, program, m["id"], "gift5")
    return m, gift


async def test_simulator_prices_the_basket_as_the_till(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m, gift = await setup(client, program)
    assert await balance(client, program, m["id"]) == 900
    before = await ledger(client, program, m["id"])
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/simulator")
    assert 'id="f-codes"' in page.text and 'id="f-points"' in page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "member": m["card_number"],
        "type": "purchase",
        "lines": "MUG,kitchen,4,4.50\nBREAD,food,1,12.00",
        "codes": f"ten, {gift}",
        "points": "200",
    }
    r = await client.post(f"/admin/{program}/simulator", data=form)
    assert r.status_code == 200, r.text
    # 4 mugs at 4.50 + bread 12.00 = 30.00. Lines first: the 4th mug free, −4.50 (25.50
    # left). Then the order: 10 % of 25.50 = −2.55 (22.95). Then the 5.00 voucher pays 5.00
    # (17.95), then 200 points pay 2.00: 15.95 to pay, 15 points on the 15.95 paid in money.
    assert basket_rows(r.text) == [
        ("promotion", "b3g1", "Buy X get Y", "−€4.50"),
        ("promotion", "ten", "Percent off the order", "−€2.55"),
        ("coupon", gift, "Voucher or gift card", "−€5.00"),
    ]
    assert to_pay(r.text) == "15.95"
    assert sim_points(r.text) == 15
    # The API's answer for the same basket: the same discounts, the same amount, the same points.
    api = await price(
        client, program, member={"id": m["id"]}, codes=["TEN", gift], points=200,
        lines=[{"sku": "MUG", "category": "kitchen", "quantity": 4, "unit_price": "4.50"},
               {"sku": "BREAD", "category": "food", "quantity": 1, "unit_price": "12.00"}],
    )  # fmt: skip
    assert [(d["source"], d["code"], d["amount"]) for d in api["discounts"]] == [
        ("promotion", "b3g1", "4.50"),
        ("promotion", "ten", "2.55"),
        ("coupon", gift, "5.00"),
    ]
    assert (api["to_pay"], api["points_earned"]) == ("15.95", 15)
    # The simulator wrote nothing: points, ledger and coupon as they were.
    assert await balance(client, program, m["id"]) == 900
    assert await ledger(client, program, m["id"]) == before
    assert (await coupon_state(client, program, gift))["state"] == "issued"


async def test_simulator_shows_what_a_confirm_would_refuse_in_french(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m, gift = await setup(client, program)
    await staff_signin(client, await make_staff(db, "owner"))
    client.cookies.set("habitue_locale", "fr")
    page = await client.get(f"/admin/{program}/simulator")
    r = await client.post(
        f"/admin/{program}/simulator",
        data={
            "csrf_token": csrf_of(page.text),
            "member": m["card_number"],
            "lines": "BREAD,food,1,12.00",
            "codes": f"{gift} {gift}",
        },
    )
    assert r.status_code == 200, r.text
    # The voucher once (−5.00 of 12.00: 7.00 to pay), the repeat refused in French.
    rows = basket_rows(r.text)
    assert [(s, c, what) for s, c, what, _ in rows] == [
        ("coupon", gift, "Bon d’achat ou carte cadeau")
    ]
    assert to_pay(r.text) == "7.00"
    twice = re.search(rf'<li data-field="codes" data-code="{gift}">(.*?)</li>', r.text)
    assert twice is not None and twice.group(1) == f"<code>{gift}</code>: le même code deux fois"
    assert 'id="b-refused-whole"' in r.text
    assert "Le panier en caisse" in r.text
    bad = await client.post(
        f"/admin/{program}/simulator",
        data={"csrf_token": csrf_of(page.text), "member": m["card_number"],
              "lines": "BREAD,food,1,12.00", "points": "lots"},
    )  # fmt: skip
    assert bad.status_code == 422 and 'id="e-points"' in bad.text
