"""Each metric × window, with exact dates across a year boundary and the program's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.messaging.models import OutboxEvent
from habitue.rules.compile import compile_rule
from habitue.rules.model import EffectSpec, RuleSpec
from tests.conftest import change_pipeline, create_program, enrol, purchase
from tests.tiers.helpers import evaluate, event, ladder, set_now, tier


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "now", "last_day_of_2025", "first_minute_of_2026", "closes_at"),
    [
        # Paris is UTC+1 in winter: local midnight is 23:00 UTC the day before.
        ("Europe/Paris", utc(2026, 1, 1, 0, 10), utc(2025, 12, 31, 22, 59),
         utc(2025, 12, 31, 23, 0), "2027-01-01T00:00:00+01:00"),
        # New York is UTC-5: 2026 starts there at 05:00 UTC.
        ("America/New_York", utc(2026, 1, 1, 6, 0), utc(2026, 1, 1, 4, 59),
         utc(2026, 1, 1, 5, 0), "2027-01-01T00:00:00-05:00"),
    ],
)  # fmt: skip
async def test_spend_over_calendar_year_counts_local_dates(
    client: httpx.AsyncClient,
    tz: str,
    now: datetime,
    last_day_of_2025: datetime,
    first_minute_of_2026: datetime,
    closes_at: str,
) -> None:
    set_now(now)
    code = await create_program(client, timezone=tz)
    assert (await ladder(client, code)).status_code == 201
    m = await enrol(client, code)
    await event(client, code, m["id"], "purchase", at=last_day_of_2025, total="80.00")
    got = await tier(client, code, m["id"])
    assert got["tier"] == "bronze"
    assert got["value"] == "0.00"
    await event(client, code, m["id"], "purchase", at=first_minute_of_2026, total="30.00")
    got = await tier(client, code, m["id"])
    assert got["value"] == "30.00"
    assert got["to_next"] == "70.00"
    assert got["next_tier"] == "silver"
    assert got["to_keep"] == "0.00"
    assert got["period_start"] == "2026-01-01"
    assert got["period_end"] == "2026-12-31"
    assert datetime.fromisoformat(got["closes_at"]) == datetime.fromisoformat(closes_at)
    body = await event(client, code, m["id"], "purchase", total="70.00")
    assert body["points"] == 70  # the upgrade comes after this purchase's decision
    assert body["effects"][-1]["kind"] == "tier_upgrade"
    assert body["effects"][-1]["detail"]["from"] == "bronze"
    assert body["effects"][-1]["detail"]["to"] == "silver"
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_next"]) == ("silver", "100.00", "400.00")
    member = (await client.get(f"/v1/programs/{code}/members/{m['id']}")).json()
    assert member["tier"] == "silver"


async def test_visits_over_rolling_months(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 2, 15, 12, 0))
    code = await create_program(client, timezone="Europe/Paris")
    tiers = [
        {"code": "member", "name": "Member", "threshold": 0},
        {"code": "regular", "name": "Regular", "threshold": 3},
        {"code": "habitue", "name": "Habitué", "threshold": 10},
    ]
    r = await ladder(
        client, code, metric="visits", window={"kind": "rolling_months", "months": 3}, tiers=tiers
    )
    assert r.status_code == 201, r.text
    m = await enrol(client, code)
    await event(client, code, m["id"], "visit", at=utc(2025, 11, 30, 22, 30))  # 30 Nov local
    await event(client, code, m["id"], "visit", at=utc(2025, 11, 30, 23, 30))  # 1 Dec local
    await event(client, code, m["id"], "visit", at=utc(2026, 1, 10, 9, 0))
    await event(client, code, m["id"], "purchase", total="5.00")  # not a visit
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_next"]) == ("member", 2, 1)
    assert (got["period_start"], got["period_end"]) == ("2025-12-01", "2026-02-28")
    body = await event(client, code, m["id"], "visit")
    assert [e["kind"] for e in body["effects"]] == ["tier_upgrade"]
    assert (await tier(client, code, m["id"]))["tier"] == "regular"

    # 1 March local: the window Dec–Feb closes with 3 visits, so the tier is kept.
    set_now(utc(2026, 3, 1, 0, 30))
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_keep"]) == ("regular", 2, 1)
    assert (got["period_start"], got["period_end"]) == ("2026-01-01", "2026-03-31")
    assert (await evaluate(client, code))["closed"] == 0  # idempotent

    # 1 April local (02:30 CEST): Jan–Mar holds only 2 visits: one step down.
    set_now(utc(2026, 4, 1, 0, 30))
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 1)
    assert (await tier(client, code, m["id"]))["tier"] == "member"


async def test_purchases_over_anniversary_year(client: httpx.AsyncClient) -> None:
    # Enrolled at 00:30 on 11 June, Paris time (22:30 UTC on the 10th).
    set_now(utc(2025, 6, 10, 22, 30))
    code = await create_program(client, timezone="Europe/Paris")
    tiers = [
        {"code": "basic", "name": "Basic", "threshold": 0},
        {"code": "plus", "name": "Plus", "threshold": 2},
        {"code": "max", "name": "Max", "threshold": 5},
    ]
    r = await ladder(
        client, code, metric="purchases", window={"kind": "anniversary_year"}, tiers=tiers
    )
    assert r.status_code == 201, r.text
    m = await enrol(client, code)
    set_now(utc(2026, 6, 10, 21, 0))  # 23:00 on 10 June local: the last day of year one
    await purchase(client, code, m["id"], "4.00")
    await event(client, code, m["id"], "visit")  # not a purchase
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"]) == ("basic", 1)
    assert (got["period_start"], got["period_end"]) == ("2025-06-11", "2026-06-10")
    await purchase(client, code, m["id"], "4.00")
    assert (await tier(client, code, m["id"]))["tier"] == "plus"

    set_now(utc(2026, 6, 10, 22, 30))  # 00:30 on 11 June local: year two
    done = await evaluate(client, code)
    assert (done["closed"], done["downgraded"]) == (1, 0)
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_keep"]) == ("plus", 0, 2)
    assert (got["period_start"], got["period_end"]) == ("2026-06-11", "2027-06-10")


async def test_bookings_count_only_bookings(client: httpx.AsyncClient) -> None:
    set_now(utc(2026, 5, 5, 10, 0))
    code = await create_program(client)
    tiers = [
        {"code": "guest", "name": "Guest", "threshold": 1},
        {"code": "vip", "name": "VIP", "threshold": 3},
    ]
    r = await ladder(client, code, metric="bookings", tiers=tiers)
    assert r.status_code == 201, r.text
    m = await enrol(client, code)
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["rank"], got["to_next"], got["next_tier"]) == (None, None, 1, "guest")
    await event(client, code, m["id"], "booking")
    await purchase(client, code, m["id"], "9.00")
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_next"]) == ("guest", 1, 2)


async def test_tier_credits_from_rules_over_calendar_year(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, session: AsyncSession
) -> None:
    rule = compile_rule(
        RuleSpec(
            code="credits",
            event_type="purchase",
            effect=EffectSpec(kind="tier_credits", rate=Decimal(2)),
        )
    )

    async def load(_session: Any, _program: Any) -> list[Any]:
        return [rule]

    change_pipeline(client, monkeypatch, rule_loaders=(load,))
    set_now(utc(2027, 1, 1, 8, 0))
    code = await create_program(client, timezone="Europe/Paris")
    tiers = [
        {"code": "blue", "name": "Blue", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 50},
        {"code": "gold", "name": "Gold", "threshold": 200},
    ]
    assert (await ladder(client, code, metric="tier_credits", tiers=tiers)).status_code == 201
    m = await enrol(client, code)
    # 23:30 on 31 December 2026 local: 2 credits per euro, but in last year's bucket.
    await event(client, code, m["id"], "purchase", at=utc(2026, 12, 31, 22, 30), total="40.00")
    assert (await tier(client, code, m["id"]))["value"] == 0
    body = await event(client, code, m["id"], "purchase", total="30.00")
    kinds = [e["kind"] for e in body["effects"]]
    assert kinds == ["earn", "tier_credits", "tier_upgrade"]
    assert body["points"] == 30  # tier credits are not spendable points
    got = await tier(client, code, m["id"])
    assert (got["tier"], got["value"], got["to_next"]) == ("silver", 60, 140)
    events = (
        await session.execute(
            select(OutboxEvent.payload).where(
                OutboxEvent.type == "tier.changed", OutboxEvent.member_id == m["id"]
            )
        )
    ).scalars()
    assert [p["to"] for p in events] == ["silver"]
