"""Helpers of the promotions tests: promotions, baskets and what a confirm left behind."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import new_code


def cab(qty: int = 1, price: str = "320.00", **kw: Any) -> dict[str, Any]:
    return {"sku": "CAB", "category": "furniture", "quantity": qty, "unit_price": price, **kw}


async def promo(client: httpx.AsyncClient, program: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/promotions", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def price(client: httpx.AsyncClient, program: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/baskets/price", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def confirm(client: httpx.AsyncClient, program: str, **body: Any) -> httpx.Response:
    body.setdefault("external_id", new_code("o"))
    return await client.post(f"/v1/programs/{program}/baskets/confirm", json=body)


async def confirmed(client: httpx.AsyncClient, program: str, **body: Any) -> dict[str, Any]:
    r = await confirm(client, program, **body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def offs(answer: dict[str, Any]) -> dict[str, str]:
    """`source:code` → amount of every discount the answer applied."""
    return {f"{d['source']}:{d['code']}": d["amount"] for d in answer["discounts"]}


def refusals(answer: dict[str, Any]) -> set[tuple[str, str | None, str]]:
    return {(r["field"], r["code"], r["reason"]) for r in answer["refused"]}


async def coupon_of(
    client: httpx.AsyncClient, program: str, member: str, reward_code: str, quantity: int = 1
) -> list[str]:
    r = await client.post(
        f"/v1/programs/{program}/members/{member}/redemptions",
        json={"reward": reward_code, "quantity": quantity},
    )
    assert r.status_code == 201, r.text
    return [c["code"] for c in r.json()["coupons"]]


async def coupon_state(client: httpx.AsyncClient, program: str, code: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/coupons/{code}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def ledger(client: httpx.AsyncClient, program: str, member: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/ledger")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def food_rule_and_ten_code(client: httpx.AsyncClient, program: str) -> None:
    """The Odoo-derived setup of "points after discounts": 1 point per unit of currency on
    food lines (rule `food`), and a code `TEN` for 10 % off the order."""
    r = await client.post(
        f"/v1/programs/{program}/rules",
        json={"code": "food", "event_type": "purchase",
              "effect": {"kind": "per_currency_unit", "rate": "1"},
              "line_condition": "line.category == 'food'"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    await promo(
        client, program, code="ten", trigger="code", promo_code="TEN",
        effect={"type": "order_percent", "percent": "10"},
    )  # fmt: skip
