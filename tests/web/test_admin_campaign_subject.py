"""Campaigns with a subject (issue 19, item 3): a campaign names the rule, offer or newsletter it
measures, shows no figures before it starts, and states its significance before any return;
through the API and the console's pages, on both databases."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from habitue import clock
from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import make_staff, staff_signin

RULE = {
    "code": "latte-bonus",
    "name": "Latte bonus",
    "event_type": "purchase",
    "effect": {"kind": "fixed", "points": 5},
}


def campaign(code: str, *, days_from_now: int, **fields: object) -> dict[str, object]:
    start = clock.now() + timedelta(days=days_from_now)
    return {
        "code": code,
        "kind": "rule",
        "holdout_share": 0.5,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=7)).isoformat(),
        **fields,
    }


async def test_a_campaign_names_what_it_measures(client: httpx.AsyncClient, program: str) -> None:
    v1 = f"/v1/programs/{program}"
    assert (await client.post(f"{v1}/rules", json=RULE)).status_code == 201
    missing = await client.post(
        f"{v1}/campaigns", json=campaign("c1", days_from_now=-1, subject="nope")
    )
    assert missing.status_code == 422
    assert missing.json()["type"].endswith("/unknown-campaign-subject")
    wrong_kind = await client.post(
        f"{v1}/campaigns",
        json=campaign("c1", days_from_now=-1, kind="offer", subject="latte-bonus"),
    )
    assert wrong_kind.status_code == 422
    made = await client.post(
        f"{v1}/campaigns", json=campaign("c1", days_from_now=-1, subject="latte-bonus")
    )
    assert made.status_code == 201, made.text
    assert made.json()["subject"] == "latte-bonus"
    report = (await client.get(f"{v1}/campaigns/c1/report")).json()
    assert (report["subject"], report["started"]) == ("latte-bonus", True)


async def test_no_figures_before_the_start_and_significance_before_return(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    v1 = f"/v1/programs/{program}"
    assert (await client.post(f"{v1}/rules", json=RULE)).status_code == 201
    members = [await enrol(client, program) for _ in range(12)]
    for code, days in (("soon", 2), ("now", -1)):
        r = await client.post(
            f"{v1}/campaigns", json=campaign(code, days_from_now=days, subject="latte-bonus")
        )
        assert r.status_code == 201, r.text
    for i, m in enumerate(members):
        await purchase(client, program, m["id"], f"{10 + 7 * (i % 3)}.00")

    await staff_signin(client, await make_staff(db, "analyst"))
    listed = await client.get(f"/admin/{program}/campaigns")
    assert re.search(r'<tr id="campaign-soon">.*?<code>latte-bonus</code>', listed.text, re.S)

    soon = await client.get(f"/admin/{program}/campaigns/soon/report")
    assert soon.status_code == 200
    assert 'id="not-started"' in soon.text
    assert 'id="effect"' not in soon.text and 'id="groups"' not in soon.text
    assert f'href="/admin/{program}/rules/latte-bonus/history"' in soon.text

    now = await client.get(f"/admin/{program}/campaigns/now/report")
    assert 'id="not-started"' not in now.text and 'id="groups"' in now.text
    text = now.text
    assert text.index('id="verdict"') < text.index('id="effect-return"')
    assert text.index('id="effect-significant"') < text.index('id="effect-return"')
    api = (await client.get(f"{v1}/campaigns/now/report")).json()
    shown = re.search(r'id="effect-return">([^<]*)<', text)
    total = re.search(r'id="effect-total">([^<]*)<', text)
    assert shown is not None and total is not None
    if not api["significant"]:
        assert "%" not in shown.group(1)
        assert total.group(1) == "—"
        if api["return_on_points"] is not None and api["ci_low"] is not None:
            assert "not significant" in shown.group(1)
    else:
        assert api["return_on_points"] is None or "%" in shown.group(1)
