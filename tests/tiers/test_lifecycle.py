"""Upgrades, refunds, period-end downgrades one step at a time, grace and guarantees."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.messaging.models import OutboxEvent
from tests.conftest import create_program, enrol, purchase
from tests.tiers.helpers import evaluate, event, ladder, set_now, tier


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def history(client: httpx.AsyncClient, code: str, member_id: str) -> list[tuple[Any, ...]]:
    r = await client.get(f"/v1/programs/{code}/members/{member_id}/tier/history")
    assert r.status_code == 200, r.text
    return [(h["from_tier"], h["to_tier"], h["reason"]) for h in r.json()]


async def test_tier_multiplier_shows_in_purchase_points(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    m = await enrol(client, code)
    assert (await event(client, code, m["id"], "purchase", total="10.00"))["points"] == 10
    await event(client, code, m["id"], "purchase", total="90.00")  # silver ×1.5
    assert (await event(client, code, m["id"], "purchase", total="10.00"))["points"] == 15
    await event(client, code, m["id"], "purchase", total="400.00")  # gold ×2
    assert (await event(client, code, m["id"], "purchase", total="10.00"))["points"] == 20
    r = await client.get(f"/v1/programs/{code}/members/{m['id']}/benefits")
    assert r.status_code == 200
    assert r.json() == {
        "member_id": m["id"],
        "tier": "gold",
        "multiplier": "2",
        "privileges": ["free_delivery", "lounge", "presale"],
        "sources": [
            {
                "source": "tier",
                "code": "gold",
                "multiplier": "2",
                "privileges": ["free_delivery", "lounge", "presale"],
                "until": None,
            }
        ],
    }


async def test_refund_reverses_an_upgrade_of_this_period(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "150.00", external_id="big")
    assert (await tier(client, code, m["id"]))["tier"] == "silver"
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "r1", "refers_to": "big", "total": "40.00"},
    )
    assert r.status_code == 201, r.text
    assert [e["kind"] for e in r.json()["effects"]] == ["takeback"]  # 110 still ≥ 100
    assert (await tier(client, code, m["id"]))["tier"] == "silver"
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "r2", "refers_to": "big", "total": "20.00"},
    )
    effects = r.json()["effects"]
    assert effects[0]["kind"] == "tier_reversal"
    assert effects[0]["detail"]["to"] == "bronze"
    assert effects[0]["detail"]["value"] == "90.00"
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_next"]) == ("bronze", "90.00", "10.00")
    assert await history(client, code, m["id"]) == [
        ("silver", "bronze", "refund"),
        ("bronze", "silver", "qualified"),
    ]


async def test_refund_of_last_period_keeps_the_tier(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 12, 20, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "150.00", external_id="xmas")
    set_now(utc(2027, 1, 5, 12, 0))
    await evaluate(client, code)
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "r", "refers_to": "xmas", "total": "150.00"},
    )
    assert r.status_code == 201
    assert (await tier(client, code, m["id"]))["tier"] == "silver"


async def test_downgrade_one_step_per_closed_period(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    gold = await enrol(client, code)
    silver = await enrol(client, code)
    await purchase(client, code, gold["id"], "600.00")
    await purchase(client, code, silver["id"], "100.00")
    # 1 January 2028 local: 2026 (kept) and 2027 (empty) both close, one pass each.
    set_now(utc(2027, 12, 31, 23, 30))
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"], done["graced"]) == (4, 2, 0)
    assert (await tier(client, code, gold["id"]))["tier"] == "silver"
    assert (await tier(client, code, silver["id"]))["tier"] == "bronze"
    assert (await evaluate(client, code))["closed"] == 0
    assert await history(client, code, gold["id"]) == [
        ("gold", "silver", "period_end"),
        ("bronze", "gold", "qualified"),
    ]
    changed = (
        await session.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.type == "tier.changed", OutboxEvent.member_id == gold["id"])
            .order_by(OutboxEvent.id)
        )
    ).scalars()
    assert [(p["from"], p["to"], p["direction"], p["reason"]) for p in changed] == [
        ("bronze", "gold", "up", "qualified"),
        ("gold", "silver", "down", "period_end"),
    ]
    member = (await client.get(f"/v1/programs/{code}/members/{gold['id']}")).json()
    assert member["tier"] == "silver"
    set_now(utc(2028, 12, 31, 23, 30))
    await evaluate(client, code)
    assert (await tier(client, code, gold["id"]))["tier"] == "bronze"
    assert (await evaluate(client, code))["closed"] == 0


async def test_grace_delays_the_downgrade_and_requalifying_cancels_it(
    client: httpx.AsyncClient,
) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code, grace_days=31)
    lapsing = await enrol(client, code)
    back = await enrol(client, code)
    await purchase(client, code, lapsing["id"], "600.00")
    await purchase(client, code, back["id"], "600.00")
    set_now(utc(2027, 12, 31, 23, 30))  # 00:30 on 1 January 2028 local
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"], done["graced"]) == (4, 0, 2)
    got = await tier(client, code, lapsing["id"])
    assert (got["tier"], got["grace_until"]) == ("gold", "2028-02-01")
    await purchase(client, code, back["id"], "500.00")  # back above gold in 2028
    assert (await tier(client, code, back["id"]))["grace_until"] is None
    set_now(utc(2028, 1, 31, 12, 0))
    assert (await evaluate(client, code))["downgraded"] == 0
    assert (await tier(client, code, lapsing["id"]))["tier"] == "gold"
    set_now(utc(2028, 1, 31, 23, 30))  # 1 February local
    assert (await evaluate(client, code))["downgraded"] == 1
    assert (await tier(client, code, lapsing["id"]))["tier"] == "silver"
    assert (await tier(client, code, back["id"]))["tier"] == "gold"
    assert (await history(client, code, lapsing["id"]))[0] == ("gold", "silver", "grace_ended")


async def test_guaranteed_tier_holds_until_its_date(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    m = await enrol(client, code)
    url = f"/v1/programs/{code}/members/{m['id']}/tier/guarantee"
    r = await client.put(url, json={"tier": "gold", "until": "2027-12-31"})
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == "gold"
    assert r.json()["guaranteed"] == {"tier": "gold", "until": "2027-12-31"}
    set_now(utc(2027, 1, 1, 12, 0))
    assert (await evaluate(client, code))["downgraded"] == 0
    assert (await tier(client, code, m["id"]))["tier"] == "gold"
    set_now(utc(2028, 1, 1, 12, 0))
    assert (await evaluate(client, code))["downgraded"] == 1
    assert (await tier(client, code, m["id"]))["tier"] == "silver"
    r = await client.put(url, json={"tier": "platinum", "until": "2028-12-31"})
    assert r.status_code == 422
    assert r.json()["type"].endswith("/unknown-tier")


async def test_bad_ladders_are_refused_and_nothing_is_written(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    m = await enrol(client, code)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"tiers": [{"code": "a", "name": "A", "threshold": "10.00"},
                    {"code": "b", "name": "B", "threshold": "5.00"}]}, "invalid-tier-ladder"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": "10.00"},
                    {"code": "b", "name": "B", "threshold": "10.00"}]}, "invalid-tier-ladder"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": "-1.00"}]}, "invalid-tier-ladder"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": 10}]}, "invalid-tier-ladder"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": "1.001"}]}, "invalid-tier-ladder"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": "1"},
                    {"code": "a", "name": "A2", "threshold": "2"}]}, "invalid-tier-ladder"),
        ({"window": {"kind": "rolling_months"}}, "invalid-tier-ladder"),
        ({"window": {"kind": "calendar_year", "months": 3}}, "invalid-tier-ladder"),
        ({"metric": "visits", "tiers": [{"code": "a", "name": "A", "threshold": "1.00"}]},
         "invalid-tier-ladder"),
        ({"metric": "likes"}, "validation"),
        ({"tiers": []}, "validation"),
        ({"tiers": [{"code": "a", "name": "A", "threshold": "1", "multiplier": "0.5"}]},
         "validation"),
    ]  # fmt: skip
    for overrides, kind in bad:
        r = await ladder(client, code, **overrides)
        assert r.status_code == 422, (overrides, r.text)
        assert r.json()["type"].endswith("/" + kind), r.text
    assert (await client.get(f"/v1/programs/{code}/tiers")).status_code == 404
    assert (await client.get(f"/v1/programs/{code}/members/{m['id']}/tier")).status_code == 404


async def test_ladder_metric_cannot_change_once_members_qualify(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    await ladder(client, code)
    m = await enrol(client, code)
    await purchase(client, code, m["id"], "120.00")
    tiers = [{"code": "x", "name": "X", "threshold": 0}, {"code": "y", "name": "Y", "threshold": 1}]
    r = await ladder(client, code, metric="visits", tiers=tiers)
    assert r.status_code == 409
    assert r.json()["type"].endswith("/tier-ladder-in-use")
    got = (await client.get(f"/v1/programs/{code}/tiers")).json()
    assert got["metric"] == "qualifying_spend"
    assert [t["threshold"] for t in got["tiers"]] == ["0.00", "100.00", "500.00"]
    # Renaming and re-pricing the rungs is allowed; the member keeps the rank.
    renamed = [
        {"code": "blue", "name": "Blue", "threshold": "0.00"},
        {"code": "red", "name": "Red", "threshold": "200.00"},
    ]
    r = await ladder(client, code, tiers=renamed)
    assert r.status_code == 201, r.text
    got_member = (await client.get(f"/v1/programs/{code}/members/{m['id']}")).json()
    assert got_member["tier"] == "red"


async def test_members_who_joined_on_closing_day_keep_their_new_tier(
    client: httpx.AsyncClient,
) -> None:
    set_now(utc(2026, 3, 1, 12, 0))
    code = await create_program(client)
    await ladder(client, code)
    old = await enrol(client, code)
    await purchase(client, code, old["id"], "600.00")
    set_now(utc(2027, 1, 1, 9, 0))  # the job has not run yet this morning
    new = await enrol(client, code)
    await purchase(client, code, new["id"], "600.00")
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)  # only the member of 2026
    assert (await tier(client, code, new["id"]))["tier"] == "gold"
    assert (await tier(client, code, old["id"]))["tier"] == "gold"


async def test_anniversary_closes_each_member_on_their_own_day(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 1, 5, 12, 0))
    code = await create_program(client)
    tiers = [
        {"code": "basic", "name": "Basic", "threshold": 0},
        {"code": "plus", "name": "Plus", "threshold": 1},
    ]
    await ladder(client, code, metric="purchases", window={"kind": "anniversary_year"}, tiers=tiers)
    january = await enrol(client, code)
    await purchase(client, code, january["id"], "1.00")
    set_now(utc(2026, 3, 10, 12, 0))
    march = await enrol(client, code)
    await purchase(client, code, march["id"], "1.00")
    set_now(utc(2027, 1, 5, 12, 0))  # january's first year closes (one purchase: kept)
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)
    set_now(utc(2027, 3, 10, 12, 0))  # march's first year closes
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)
    await purchase(client, code, march["id"], "1.00")
    set_now(utc(2028, 1, 5, 12, 0))  # january's second year: no purchase, one step down
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 1)
    assert (await tier(client, code, january["id"]))["tier"] == "basic"
    assert (await tier(client, code, march["id"]))["tier"] == "plus"
    set_now(utc(2028, 3, 10, 12, 0))  # march bought once in its second year: kept
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)
    assert (await evaluate(client, code))["closed"] == 0
