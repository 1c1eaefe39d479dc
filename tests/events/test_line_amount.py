"""Baskets as tills sell them: a line's `amount` (its total as charged) wins over quantity ×
unit price, unit prices may carry 4 decimals beyond the currency's, and the cent tolerance
applies to the sum of the line amounts (API.md, `POST /events`)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import enrol, new_code, purchase
from tests.test_bounds import assert_refused, state


async def test_a_multiple_sold_at_a_line_price_is_accepted_and_earns_on_it(
    client: httpx.AsyncClient, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    # 6 units sold together for 313.00 (52.1666… each): quantity × unit price cannot say it.
    lines = [
        {"sku": "beer-6", "category": "drinks", "quantity": 6, "unit_price": "52.1667",
         "amount": "313.00"},
        {"sku": "bread", "category": "bakery", "quantity": 1, "unit_price": "2.50"},
    ]  # fmt: skip
    r = await purchase(client, program, member, "315.50", lines=lines)
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 315
    balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert balance["available"] == 315


async def test_quote_prices_the_same_lines_the_same_way(
    client: httpx.AsyncClient, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    body: dict[str, Any] = {
        "type": "purchase", "member": {"id": member}, "external_id": new_code("q"),
        "total": "313.00",
        "lines": [{"sku": "beer-6", "quantity": 6, "unit_price": "52.1667", "amount": "313.00"}],
    }  # fmt: skip
    q = await client.post(f"/v1/programs/{program}/events/quote", json=body)
    assert q.status_code == 200, q.text
    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert r.status_code == 201, r.text
    assert q.json()["points"] == r.json()["points"] == 313


async def test_a_price_per_gram_rounds_the_line_half_up(
    client: httpx.AsyncClient, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    # 333 g at 0.0125 a gram = 4.1625 -> 4.16; 0.0135 a gram = 4.4955 -> 4.50 (4.4955 + 0.0045)
    lines = [{"sku": "coffee-beans", "quantity": 333, "unit_price": "0.0125"},
             {"sku": "tea", "quantity": 333, "unit_price": "0.0135"}]  # fmt: skip
    r = await purchase(client, program, member, "8.66", lines=lines)
    assert r.status_code == 201, r.text
    # one cent off the sum of the lines is within the tolerance
    r = await purchase(client, program, member, "8.67", lines=lines)
    assert r.status_code == 201, r.text
    r = await purchase(client, program, member, "8.68", lines=lines)
    assert_refused(r, "lines")


async def test_bad_amounts_name_their_line_and_change_nothing(
    client: httpx.AsyncClient, program: str
) -> None:
    member = (await enrol(client, program))["id"]
    before = await state(client, program, member)
    for line, field in [
        ({"sku": "a", "unit_price": "1.0000001"}, "lines[0].unit_price"),  # 7 places (EUR: 6)
        ({"sku": "a", "unit_price": "-1.00"}, "lines[0].unit_price"),
        ({"sku": "a", "unit_price": "1.00", "amount": "1.001"}, "lines[0].amount"),
        ({"sku": "a", "unit_price": "1.00", "amount": "-1.00"}, "lines[0].amount"),
        ({"sku": "a", "unit_price": "1.00", "amount": "1e3"}, "lines[0].amount"),
        ({"sku": "a", "unit_price": "1.00", "amount": "2.00"}, "lines"),  # not the total 1.00
        ({"sku": "a", "unit_price": "999999999999.99", "quantity": 1000000}, "lines[0]"),
    ]:
        r = await purchase(client, program, member, "1.00", lines=[line])
        assert_refused(r, field)
    assert await state(client, program, member) == before
