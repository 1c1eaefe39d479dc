"""The console's lists: `redeem.recent` (redemptions) and `offers.list_offers` (offer counts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.programs import service as programs_service
from habitue.rewards import offers, redeem
from tests.conftest import create_program, enrol
from tests.rewards.conftest import give, reward


async def _redeem(client: httpx.AsyncClient, program: str, member: str, code: str) -> Any:
    r = await client.post(
        f"/v1/programs/{program}/members/{member}/redemptions", json={"reward": code}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_recent_redemptions_newest_first_by_status_with_coupons(
    client: httpx.AsyncClient, program: str, session: AsyncSession
) -> None:
    await reward(client, program, code="mug", kind="product", cost_points=50)
    await reward(client, program, code="coffee", kind="voucher", value="3.00", cost_points=100)
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 1000)
    r1 = await _redeem(client, program, m, "mug")
    r2 = await _redeem(client, program, m, "coffee")
    r3 = await _redeem(client, program, m, "mug")
    r4 = await _redeem(client, program, m, "coffee")
    base = f"/v1/programs/{program}/redemptions"
    assert (await client.patch(f"{base}/{r1['id']}", json={"status": "shipped"})).status_code == 200
    assert (await client.post(f"{base}/{r2['id']}/cancel")).status_code == 200
    used = await client.post(
        f"/v1/programs/{program}/coupons/{r4['coupon']['code']}/redeem", json={"total": "5.00"}
    )
    assert used.status_code == 200, used.text
    other = await create_program(client)  # another program's redemptions stay out of the list
    await reward(client, other, code="mug", kind="product", cost_points=1)
    x = (await enrol(client, other))["id"]
    await give(client, other, x, 10)
    await _redeem(client, other, x, "mug")

    info = await programs_service.get_info(session, program)
    got = await redeem.recent(session, info)
    assert [(g.id, g.reward, g.status, g.points, g.member_id) for g in got] == [
        (r4["id"], "coffee", "issued", 100, m),
        (r3["id"], "mug", "ordered", 50, m),
        (r2["id"], "coffee", "canceled", 100, m),
        (r1["id"], "mug", "shipped", 50, m),
    ]
    coupons = [None if g.coupon is None else (g.coupon.code, g.coupon.state) for g in got]
    assert coupons == [
        (r4["coupon"]["code"], "redeemed"),
        None,
        (r2["coupon"]["code"], "canceled"),
        None,
    ]
    assert got[0].coupon is not None
    assert got[0].coupon.discount == "3.00"

    assert [g.id for g in await redeem.recent(session, info, limit=2)] == [r4["id"], r3["id"]]
    by_status = {
        status: [g.id for g in await redeem.recent(session, info, status=status)]
        for status in ("issued", "ordered", "canceled", "shipped", "delivered")
    }
    assert by_status == {
        "issued": [r4["id"]],
        "ordered": [r3["id"]],
        "canceled": [r2["id"]],
        "shipped": [r1["id"]],
        "delivered": [],
    }
    shipped = (await redeem.recent(session, info, status="shipped"))[0]
    assert shipped.coupon is None
    assert (shipped.kind, shipped.quantity) == ("product", 1)


async def _offer(
    client: httpx.AsyncClient, program: str, code: str, starts: Any, members: list[str]
) -> None:
    r = await client.post(
        f"/v1/programs/{program}/offers",
        json={
            "code": code,
            "texts": {"en": {"name": code.title()}},
            "value": "2.00",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(days=7)).isoformat(),
            "members": members,
        },
    )
    assert r.status_code == 201, r.text


async def test_offers_latest_start_first_with_targeted_activated_used(
    client: httpx.AsyncClient, program: str, session: AsyncSession
) -> None:
    a, b, c, d = [(await enrol(client, program))["id"] for _ in range(4)]
    now = clock.now().replace(microsecond=0)
    await _offer(client, program, "latte", now - timedelta(hours=1), [a, b, c])
    await _offer(client, program, "croissant", now - timedelta(hours=2), [])
    await _offer(client, program, "bagel", now - timedelta(hours=2), [d])
    await _offer(client, program, "soon", now + timedelta(days=1), [a])
    again = await client.post(
        f"/v1/programs/{program}/offers/bagel/members", json={"members": [a, d]}
    )
    assert again.status_code == 200, again.text  # d was targeted already: counted once
    member = f"/v1/programs/{program}/members"
    for who in (a, b):
        assert (await client.post(f"{member}/{who}/offers/latte/clip")).status_code == 200
    r = await client.post(f"{member}/{a}/offers/latte/use", json={"total": "10.00"})
    assert r.status_code == 200, r.text
    assert (await client.post(f"{member}/{a}/offers/latte/clip")).status_code == 409  # used
    other = await create_program(client)  # the same code elsewhere counts nothing here
    x = (await enrol(client, other))["id"]
    await _offer(client, other, "latte", now - timedelta(hours=1), [x])
    assert (await client.post(f"/v1/programs/{other}/members/{x}/offers/latte/clip")).is_success

    info = await programs_service.get_info(session, program)
    got = await offers.list_offers(session, info)
    assert [(s.offer.code, s.targeted, s.clipped, s.used) for s in got] == [
        ("soon", 1, 0, 0),
        ("latte", 3, 2, 1),  # a clipped and used it, b clipped it, c did neither
        ("bagel", 2, 0, 0),  # same start as croissant: by code
        ("croissant", 0, 0, 0),  # an offer nobody is targeted by is listed all the same
    ]
    assert [s.offer.members for s in got] == [1, 3, 2, 0]
    latte = got[1].offer
    assert (latte.value, latte.percent, latte.texts["en"].name) == ("2.00", None, "Latte")
    assert (latte.starts_at, latte.ends_at) == (
        now - timedelta(hours=1),
        now - timedelta(hours=1) + timedelta(days=7),
    )
    assert (latte.clipped, latte.used) == (None, None)  # per-member flags are not a list's


async def test_a_program_without_offers_lists_none(program: str, session: AsyncSession) -> None:
    info = await programs_service.get_info(session, program)
    assert await offers.list_offers(session, info) == []
    assert await redeem.recent(session, info) == []
