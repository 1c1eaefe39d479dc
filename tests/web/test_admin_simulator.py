"""The console's simulator explains each step (issue 19, item 2): base points, the tier's and
the club's multipliers, each rule's contribution labelled by what the rule does, and future
dates accepted; through the page, on both databases. The total is the real event's."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from habitue import clock
from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import cell_texts, csrf_of, make_staff, staff_signin


def rows_of(page: str) -> list[tuple[str, str, str, str]]:
    """(kind, rule, what it does, points) per row of the explanation."""
    table = re.search(r'<table class="history" id="effects">(.*?)</table>', page, re.S)
    assert table, page
    out = []
    for kind, rule, cells in re.findall(
        r'<tr data-kind="([a-z_]+)"(?: data-rule="([^"]+)")?>(.*?)</tr>', table.group(1), re.S
    ):
        texts = cell_texts(cells)
        out.append((kind, rule, texts[1], texts[2]))
    return out


def next_wednesday_evening() -> str:
    now = clock.now().astimezone(ZoneInfo("Europe/Paris"))
    ahead = (2 - now.weekday()) % 7 or 7
    day = (now + timedelta(days=ahead)).date()
    return datetime(day.year, day.month, day.day, 21, 30).strftime("%Y-%m-%dT%H:%M")


async def test_simulator_explains_base_tier_club_and_each_rule(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    v1 = f"/v1/programs/{program}"
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [{"code": "gold", "name": "Gold", "threshold": "0.00", "multiplier": "1.5"}],
    }
    assert (await client.post(f"{v1}/tiers", json=ladder)).status_code == 201
    plan = {
        "code": "vip",
        "name": "VIP",
        "price": "9.90",
        "currency": "EUR",
        "period": "monthly",
        "multiplier": "2",
        "trial_days": 30,
    }
    assert (await client.post(f"{v1}/club/plans", json=plan)).status_code == 201
    rules = [
        {
            "code": "coffee-double",
            "name": "Double points on coffee",
            "event_type": "purchase",
            "line_condition": "line.category == 'coffee'",
            "effect": {"kind": "multiplier", "factor": "2"},
        },
        {
            "code": "wednesday-night",
            "name": "Wednesday night bonus",
            "event_type": "purchase",
            "schedule": {"days": ["wed"], "start": "21:00", "end": "23:59"},
            "effect": {"kind": "fixed", "points": 50},
        },
    ]
    for rule in rules:
        r = await client.post(f"{v1}/rules", json=rule)
        assert r.status_code == 201, r.text
    m = await enrol(client, program, external_id="sim-1")
    sub = await client.post(f"{v1}/members/{m['id']}/club/subscriptions", json={"plan": "vip"})
    assert sub.status_code == 201 and sub.json()["status"] == "trialing", sub.text
    await purchase(client, program, m["id"], "1.00")  # qualifies for Gold at once
    assert (await client.get(f"{v1}/members/{m['id']}/tier")).json()["tier"] == "gold"

    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/simulator")
    assert 'id="f-occurred_at"' in page.text
    basket = {
        "csrf_token": csrf_of(page.text),
        "member": m["card_number"],
        "type": "purchase",
        "lines": "espresso,coffee,5,2.00\nsandwich,food,1,10.00",
        "occurred_at": "",
    }
    # 20.00 paid: base 20, tier ×1.5 → +10, club ×2 → +30 (base 60); coffee 10.00 → 30 more.
    r = await client.post(f"/admin/{program}/simulator", data=basket)
    assert r.status_code == 200, r.text
    rows = rows_of(r.text)
    kinds = [(kind, rule, points) for kind, rule, _, points in rows]
    assert kinds[:3] == [("base", "", "20"), ("tier", "", "10"), ("club", "", "30")]
    assert ("multiplier", "coffee-double", "30") in kinds
    what = {kind: text for kind, _, text, _ in rows}
    assert what["tier"] == "Tier Gold: base × 1.5"
    assert what["club"] == "Club vip: base × 2"
    assert what["multiplier"] == "Extra points from a multiplier (× 2)"
    assert "Base points" not in what["multiplier"] and "earn" not in what["multiplier"].lower()
    if "wednesday-night" not in {rule for _, rule, _ in kinds}:
        assert 'id="sim-silent"' in r.text and "wednesday-night" in r.text
    sim = int(re.search(r'<span id="sim-points">(\d+)</span>', r.text).group(1))  # type: ignore[union-attr]
    assert sim == sum(int(p) for *_, p in rows if p.isdigit())

    # The real event earns what the simulator said (same decision).
    real = await purchase(
        client,
        program,
        m["id"],
        "20.00",
        lines=[
            {"sku": "espresso", "category": "coffee", "quantity": "5", "unit_price": "2.00"},
            {"sku": "sandwich", "category": "food", "quantity": "1", "unit_price": "10.00"},
        ],
    )
    if "wednesday-night" not in {rule for _, rule, _ in kinds}:
        assert real.json()["points"] == sim

    # A future Wednesday night: accepted, and the ritual's bonus shows as bonus points.
    later = await client.post(
        f"/admin/{program}/simulator", data={**basket, "occurred_at": next_wednesday_evening()}
    )
    assert later.status_code == 200, later.text
    future = rows_of(later.text)
    assert ("fixed", "wednesday-night", "Bonus points", "50") in future
    assert 'id="sim-when"' in later.text
    bad = await client.post(f"/admin/{program}/simulator", data={**basket, "occurred_at": "soon"})
    assert bad.status_code == 422 and 'id="e-occurred_at"' in bad.text


async def test_simulator_in_french_labels_each_step(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    rule = {
        "code": "tea-triple",
        "event_type": "purchase",
        "line_condition": "line.category == 'tea'",
        "effect": {"kind": "multiplier", "factor": "3"},
    }
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    m = await enrol(client, program)
    await staff_signin(client, await make_staff(db, "owner"))
    client.cookies.set("habitue_locale", "fr")
    page = await client.get(f"/admin/{program}/simulator")
    r = await client.post(
        f"/admin/{program}/simulator",
        data={
            "csrf_token": csrf_of(page.text),
            "member": m["card_number"],
            "lines": "sencha,tea,2,3.00",
        },
    )
    assert r.status_code == 200, r.text
    rows = rows_of(r.text)
    assert rows[0][0] == "base" and rows[0][3] == "6"
    assert (
        "multiplier",
        "tea-triple",
        "Points en plus grâce à un multiplicateur (× 3)",
        "12",
    ) in rows
    assert "Comment les points s’additionnent" in r.text
