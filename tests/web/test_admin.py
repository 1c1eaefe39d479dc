"""The admin console through HTTP: staff sign-in, roles, search, adjustments, simulator."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from typer.testing import CliRunner

from habitue.db import Database
from habitue.programs import service as programs_service
from tests.conftest import enrol, purchase
from tests.web.conftest import PASSWORD, csrf_of, make_staff, staff_signin


async def test_staff_sign_in_is_required(client: httpx.AsyncClient, program: str) -> None:
    r = await client.get(f"/admin/{program}")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/admin/signin?next=")
    page = await client.get("/admin/signin")
    bad = await client.post(
        "/admin/signin",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "nobody@example.com",
            "password": "x" * 12,
        },
    )
    assert bad.status_code == 422
    assert 'value="nobody@example.com"' in bad.text


async def test_owner_sees_dashboard_and_liability(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    empty = await client.get(f"/admin/{program}")  # no member, no scores: friendly empty states
    assert empty.status_code == 200
    assert 'id="segments-empty"' in empty.text
    assert 'id="tiers-empty"' in empty.text
    assert 'id="chart-segments"' not in empty.text
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "tiers": [
            {"code": "base", "name": "Base", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00"},
        ],
    }
    r = await client.post(f"/v1/programs/{program}/tiers", json=ladder)
    assert r.status_code == 201, r.text
    m = await enrol(client, program, email="dash@example.com")
    await purchase(client, program, m["id"], "150.00")
    await enrol(client, program, email="dash2@example.com")
    r = await client.post(f"/v1/programs/{program}/analytics/scores")
    assert r.status_code == 200, r.text
    r = await client.get(f"/admin/{program}")
    assert r.status_code == 200
    assert 'id="chart-members"' in r.text
    assert "chart-4.6.1.umd.min.js" in r.text
    assert '<dd id="liability">150</dd>' in r.text
    # What is owed month by month ends with what is owed now; the expiry forecast has a year.
    owed = re.search(r'id="owed-table">.*?<tbody>(.*?)</tbody>', r.text, re.S)
    assert owed is not None
    assert owed.group(1).count("<tr>") == 12
    assert owed.group(1).rstrip().endswith('<td class="num">150</td></tr>')
    expiry = re.search(r'id="expiry-table">.*?<tbody>(.*?)</tbody>', r.text, re.S)
    assert expiry is not None and expiry.group(1).count("<tr>") == 12
    assert '"Issued"' in r.text
    data = re.search(r'id="chart-data">(.*?)</script>', r.text, re.S)
    assert data is not None
    charts = json.loads(data.group(1))
    assert 'id="chart-segments"' in r.text
    assert 'id="chart-tiers"' in r.text
    assert sum(charts["segments"]["datasets"][0]["data"]) == 1  # the one buyer is scored
    assert charts["tiers"] == {
        "labels": ["No tier", "Silver"],
        "datasets": [{"label": "Members", "data": [1, 1]}],
    }


async def test_support_finds_a_member_and_adjusts_points(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(
        client, program, email="find@example.com", first_name="Maja", last_name="Nielsen"
    )
    await staff_signin(client, await make_staff(db, "support"))
    for q in ("maja", "NIELSEN", "find@example.com", m["card_number"]):
        r = await client.get(f"/admin/{program}/members", params={"q": q})
        assert f"/admin/{program}/members/{m['id']}" in r.text, q
    page = await client.get(f"/admin/{program}/members/{m['id']}")
    token = csrf_of(page.text)
    url = f"/admin/{program}/members/{m['id']}/adjust"
    missing = await client.post(url, data={"csrf_token": token, "points": "25", "reason": ""})
    assert missing.status_code == 422
    assert "Give a reason" in missing.text
    assert 'value="25"' in missing.text
    overdraw = await client.post(url, data={"csrf_token": token, "points": "-5", "reason": "oops"})
    assert overdraw.status_code == 422
    assert "does not have that many points" in overdraw.text
    ok = await client.post(url, data={"csrf_token": token, "points": "25", "reason": "broken cup"})
    assert ok.status_code == 303
    page = await client.get(ok.headers["location"])
    assert '<dd id="available">25</dd>' in page.text
    assert "broken cup" in page.text
    assert "staff:support-" in page.text
    ledger = await client.get(f"/v1/programs/{program}/members/{m['id']}/ledger")
    assert ledger.status_code == 200


async def test_member_page_lists_rewards_taken_and_their_coupons(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program, email="coupons@example.com")
    r = await client.post(
        f"/v1/programs/{program}/rewards",
        json={
            "code": "latte",
            "kind": "voucher",
            "value": "3.00",
            "cost_points": 40,
            "coupon_days": 30,
            "texts": {"en": {"name": "A latte"}},
        },
    )
    assert r.status_code == 201, r.text
    await staff_signin(client, await make_staff(db, "support"))
    empty = await client.get(f"/admin/{program}/members/{m['id']}")
    assert "No rewards taken yet." in empty.text
    await purchase(client, program, m["id"], "50.00")
    taken = await client.post(
        f"/v1/programs/{program}/members/{m['id']}/redemptions", json={"reward": "latte"}
    )
    assert taken.status_code == 201, taken.text
    code = taken.json()["coupon"]["code"]
    page = await client.get(f"/admin/{program}/members/{m['id']}")
    assert page.status_code == 200
    table = page.text[page.text.index('id="coupons"') :]
    assert f"<code>{code}</code>" in table
    assert "Ready to use" in table
    r = await client.post(f"/v1/programs/{program}/coupons/{code}/redeem", json={"total": "10.00"})
    assert r.status_code == 200, r.text
    page = await client.get(f"/admin/{program}/members/{m['id']}")
    assert "Used" in page.text[page.text.index('id="coupons"') :]


async def test_roles_limit_what_staff_may_do(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    await staff_signin(client, await make_staff(db, "analyst"))
    page = await client.get(f"/admin/{program}/members/{m['id']}")
    assert page.status_code == 200
    assert "Adjust points" not in page.text
    r = await client.post(
        f"/admin/{program}/members/{m['id']}/adjust",
        data={"csrf_token": csrf_of(page.text), "points": "10", "reason": "nice"},
    )
    assert r.status_code == 403
    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "marketer"))
    assert (await client.get(f"/admin/{program}/members")).status_code == 403
    assert (await client.get(f"/admin/{program}/simulator")).status_code == 200


async def test_staff_of_one_program_do_not_see_another(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    from tests.conftest import create_program

    other = await create_program(client)
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
    await staff_signin(client, await make_staff(db, "owner", program_id=info.id))
    assert (await client.get(f"/admin/{program}")).status_code == 200
    assert (await client.get(f"/admin/{other}")).status_code == 404
    r = await client.get("/admin/")
    assert r.status_code == 303
    assert r.headers["location"] == f"/admin/{program}"


async def test_simulator_shows_what_each_rule_gives(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/simulator")
    token = csrf_of(page.text)
    r = await client.post(
        f"/admin/{program}/simulator",
        data={
            "csrf_token": token,
            "member": m["card_number"],
            "type": "purchase",
            "total": "",
            "lines": "espresso,coffee,2,2.20\nsandwich,food,1,6.90",
        },
    )
    assert r.status_code == 200, r.text
    assert '<span id="sim-points">11</span>' in r.text
    assert 'id="effects"' in r.text
    bad = await client.post(
        f"/admin/{program}/simulator",
        data={"csrf_token": token, "member": "4242", "lines": "one,two"},
    )
    assert bad.status_code == 422
    assert 'value="4242"' in bad.text
    assert "one line per item" in bad.text
    pasted = await client.post(
        f"/admin/{program}/simulator",
        data={
            "csrf_token": token,
            "json": '{"type": "purchase", "total": "9.99", '
            f'"member": {{"id": "{m["id"]}"}}, "external_id": "x"}}',
        },
    )
    assert pasted.status_code == 200
    assert '<span id="sim-points">9</span>' in pasted.text
    junk = await client.post(
        f"/admin/{program}/simulator", data={"csrf_token": token, "json": "[1, 2"}
    )
    assert junk.status_code == 422


def test_cli_creates_a_console_user(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from habitue.cli import app
    from habitue.settings import get_settings

    mp = monkeypatch
    mp.setenv("HABITUE_DATABASE_URL", db_url)
    mp.setenv("HABITUE_HMAC_KEY", "test-hmac-key")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        args = ["admin", "create-user", "--email", "Cli@Example.com", "--role", "support"]
        done = runner.invoke(app, [*args, "--password", PASSWORD])
        assert done.exit_code == 0, done.output
        assert "created support cli@example.com" in done.output
        again = runner.invoke(app, [*args, "--password", PASSWORD])
        assert again.exit_code == 1
        weak = runner.invoke(
            app,
            [
                "admin",
                "create-user",
                "--email",
                "w@example.com",
                "--role",
                "boss",
                "--password",
                PASSWORD,
            ],
        )
        assert weak.exit_code == 1
    finally:
        get_settings.cache_clear()


def test_owed_over_time_runs_back_from_now() -> None:
    from habitue.web.queries import owed_over_time

    assert owed_over_time(100, [50, 0, 30, 20]) == [50, 50, 80, 100]


async def test_the_dashboard_charts_history_in_its_own_months(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Issue 22, item 2: points issued by backdated purchases count in the months they were
    earned (the transactions' effective time), not in the month they were booked."""
    from datetime import UTC, datetime

    from habitue import clock

    now = clock.now()
    backdated = []
    for back in (3, 2, 1):
        index = now.year * 12 + now.month - 1 - back
        backdated.append(datetime(index // 12, index % 12 + 1, 10, 12, tzinfo=UTC))
    await staff_signin(client, await make_staff(db, "owner"))
    m = await enrol(client, program, email="history@example.com")
    for at, total in zip(backdated, ("10.00", "20.00", "30.00"), strict=True):
        r = await purchase(client, program, m["id"], total, occurred_at=at.isoformat())
        assert r.status_code == 201, r.text
    await purchase(client, program, m["id"], "5.00")
    r = await client.get(f"/admin/{program}")
    assert r.status_code == 200
    data = re.search(r'id="chart-data">(.*?)</script>', r.text, re.S)
    assert data is not None
    issued = json.loads(data.group(1))["points"]["datasets"][0]["data"]
    assert issued[-4:] == [10, 20, 30, 5]
    owed = re.search(r'id="owed-table">.*?<tbody>(.*?)</tbody>', r.text, re.S)
    assert owed is not None
    cells = re.findall(r'<td class="num">(\d+)</td></tr>', owed.group(1))
    assert [int(c) for c in cells[-4:]] == [10, 30, 60, 65]
