"""Properties of `POST /baskets/price` through the API (issue 21, Tests), on both databases:
the answer does not depend on the order the till typed its codes in, and the amount to pay is
never negative and never above the basket. Random baskets, codes (promo codes of every stacking
and coupons of the catalogue, repeats included) and points payments."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from habitue import clock
from habitue.api import create_app
from habitue.db import Database
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol
from tests.promotions.helpers import coupon_of, promo
from tests.rewards.conftest import give, reward

_STATE: dict[str, Any] = {}

PROMO_CODES: list[dict[str, Any]] = [
    {"code": "ten", "promo_code": "TEN", "effect": {"type": "order_percent", "percent": "10"}},
    {"code": "five", "promo_code": "FIVE", "effect": {"type": "order_amount", "amount": "5.00"},
     "min_basket": "20.00"},
    {"code": "a20", "promo_code": "A20", "effect": {"type": "lines_percent", "percent": "20"},
     "line_condition": "line.sku == 'A'", "stacking": "best_of", "stacking_class": "x"},
    {"code": "half", "promo_code": "HALF", "effect": {"type": "order_percent", "percent": "50"},
     "stacking": "best_of", "stacking_class": "x", "cap": "15.00"},
    {"code": "b1g1", "promo_code": "B1G1", "effect": {"type": "buy_x_get_y", "buy": 1, "get": 1},
     "line_condition": "line.sku == 'B'", "priority": 3},
    {"code": "cheap", "promo_code": "CHEAP", "effect": {"type": "cheapest"}},
    {"code": "menu", "promo_code": "MENU",
     "effect": {"type": "bundle_price", "amount": "5.00",
                "bundle": [{"sku": "A"}, {"sku": "B"}]}},
    {"code": "vip", "promo_code": "VIP", "effect": {"type": "order_percent", "percent": "30"},
     "stacking": "exclusive", "condition": "basket.total >= 80.0"},
]  # fmt: skip


@pytest.fixture
def _url(db_url: str) -> None:
    _STATE["url"] = db_url


async def _app_client(url: str) -> tuple[Database, httpx.AsyncClient]:
    # a fresh pool per example: under load a connect may outlast the server's 2-second wait
    db = Database(url, timeout=20)
    app = create_app(
        Settings(env="test", database_url=url, admin_key=ADMIN_KEY, scheduler=False, worker=False,
                 hmac_key="test-hmac-key"),
        db=db,
    )  # fmt: skip
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    return db, client


async def _setup(client: httpx.AsyncClient) -> dict[str, Any]:
    """A program with eight promo codes and a member with 300 points and three coupons."""
    program = await create_program(client)
    for body in PROMO_CODES:
        await promo(client, program, trigger="code", **body)
    m = await enrol(client, program)
    await give(client, program, m["id"], 600)
    await reward(client, program, code="gift", kind="voucher", value="25.00", cost_points=100)
    await reward(client, program, code="pct", kind="discount", percent="15", cost_points=100)
    await reward(client, program, code="freec", kind="free_product", sku="C", cost_points=100)
    coupons = [(await coupon_of(client, program, m["id"], r))[0] for r in ("gift", "pct", "freec")]
    codes = [b["promo_code"] for b in PROMO_CODES] + coupons
    return {"program": program, "member": m["id"], "codes": codes}


_lines = st.lists(
    st.fixed_dictionaries(
        {
            "sku": st.sampled_from(["A", "B", "C", "D"]),
            "quantity": st.integers(1, 4),
            "unit_price": st.integers(1, 9999).map(lambda c: f"{c // 100}.{c % 100:02d}"),
        }
    ),
    min_size=1,
    max_size=5,
)


async def _check(lines: list[dict[str, Any]], picks: list[int], points: int, seed: int) -> None:
    clock.reset()
    programs_service.forget()
    db, client = await _app_client(_STATE["url"])
    try:
        if "setup" not in _STATE:
            _STATE["setup"] = await _setup(client)
        s = _STATE["setup"]
        codes = [s["codes"][i % len(s["codes"])] for i in picks]
        shuffled = list(codes)
        random.Random(seed).shuffle(shuffled)
        url = f"/v1/programs/{s['program']}/baskets/price"
        body = {"member": {"id": s["member"]}, "lines": lines, "points": points}
        first = await client.post(url, json={**body, "codes": codes})
        second = await client.post(url, json={**body, "codes": shuffled})
        assert first.status_code == second.status_code == 200, first.text
        a = first.json()
        assert a == second.json(), (codes, shuffled)
        total, to_pay = Decimal(a["total"]), Decimal(a["to_pay"])
        assert Decimal(0) <= to_pay <= total, a
        # What the lines net is the total less the discounts; points pay part of it.
        nets = sum(Decimal(ln["net"]) for ln in a["lines"])
        assert nets == total - Decimal(a["discount"])
        assert to_pay == nets - Decimal(a["points_value"])
        assert a["points_spent"] in (0, points)
    finally:
        await client.aclose()
        await db.dispose()


@pytest.mark.usefixtures("_url")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=_lines,
    picks=st.lists(st.integers(0, 10), max_size=5),
    points=st.sampled_from([0, 0, 100, 250, 300, 5000]),
    seed=st.integers(0, 2**16),
)
def test_price_does_not_depend_on_the_order_of_the_codes_and_stays_in_bounds(
    lines: list[dict[str, Any]], picks: list[int], points: int, seed: int
) -> None:
    asyncio.run(_check(lines, picks, points, seed))
