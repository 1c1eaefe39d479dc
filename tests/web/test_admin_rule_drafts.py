"""The console's rule builder and drafts (issue 19, item 2) through HTTP: a form writes the
rule's CEL as a draft that earns nothing, the draft page tests it on a basket and backtests it
on real events, publishing makes it a version with the staff member as its actor; bad input
shows errors on the page and writes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx

from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin

COFFEE = [{"sku": "esp", "category": "coffee", "quantity": "2", "unit_price": "2.00"},
          {"sku": "cro", "category": "pastry", "quantity": "1", "unit_price": "6.00"}]  # fmt: skip


async def test_build_test_backtest_and_publish_a_rule(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    member = (await enrol(client, program, email="drafts@example.com"))["id"]
    when = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    r = await purchase(client, program, member, "10.00", lines=COFFEE, occurred_at=when)
    assert r.json()["points"] == 10
    email = await make_staff(db, "marketer")
    await staff_signin(client, email)
    rules = f"/admin/{program}/rules"
    choices = await client.get(f"{rules}/new")
    assert choices.status_code == 200 and 'id="template-ritual"' in choices.text
    form = await client.get(f"{rules}/new?template=category_multiplier")
    assert form.status_code == 200
    csrf = csrf_of(form.text)

    bad = {"csrf_token": csrf, "template": "category_multiplier", "code": "Coffee!",
           "category": "", "factor": "1"}  # fmt: skip
    r = await client.post(f"{rules}/new", data=bad)
    assert r.status_code == 422
    assert 'id="e-code"' in r.text and 'id="e-category"' in r.text and 'id="e-factor"' in r.text
    assert "Enter a multiplier above 1" in r.text
    assert (await client.get(f"/v1/programs/{program}/rule-drafts")).json() == []
    r = await client.post(f"{rules}/new", data={**bad, "csrf_token": "forged"})
    assert r.status_code == 403

    good = {**bad, "code": "coffee-x2", "name": "Double coffee", "category": "coffee",
            "factor": "2"}  # fmt: skip
    r = await client.post(f"{rules}/new", data=good)
    assert r.status_code == 303
    assert r.headers["location"] == f"{rules}/coffee-x2/draft?saved=1"
    page = await client.get(r.headers["location"])
    assert page.status_code == 200
    assert 'id="draft-saved"' in page.text
    assert "line.category == &#34;coffee&#34;" in page.text  # the CEL the form wrote
    draft = (await client.get(f"/v1/programs/{program}/rules/coffee-x2/draft")).json()
    assert draft["actor"] == f"staff:{email}"
    assert draft["spec"]["effect"] == {"kind": "multiplier", "factor": "2", "points": None,
                                       "rate": None, "benefit": None, "days": None,
                                       "reward_code": None, "probability": None}  # fmt: skip
    # The draft earns nothing yet.
    r = await purchase(client, program, member, "10.00", lines=COFFEE)
    assert r.json()["points"] == 10

    csrf = csrf_of(page.text)
    test = {"csrf_token": csrf, "member": member, "type": "purchase",
            "lines": "esp,coffee,2,2.00\ncro,pastry,1,6.00", "occurred_at": ""}  # fmt: skip
    r = await client.post(f"{rules}/coffee-x2/draft/test", data=test)
    assert r.status_code == 200, r.text
    assert 'id="tried-live">10<' in r.text and 'id="tried-draft">14<' in r.text
    r = await client.post(f"{rules}/coffee-x2/draft/test", data={**test, "member": "nobody"})
    assert r.status_code == 422 and "No member with this card number or id." in r.text

    r = await client.post(f"{rules}/coffee-x2/draft/backtest", data={"csrf_token": csrf})
    assert r.status_code == 200, r.text
    # Two purchases in the last 30 days, 10 € each with 4 € of coffee: 20 live, 28 drafted.
    assert 'id="bt-before">20<' in r.text and 'id="bt-after">28<' in r.text
    r = await client.post(f"{rules}/coffee-x2/draft/backtest",
                          data={"csrf_token": csrf, "since": "yesterday"})  # fmt: skip
    assert r.status_code == 422 and 'id="e-since"' in r.text

    r = await client.post(f"{rules}/coffee-x2/draft", data={"csrf_token": csrf, "spec": "[1]"})
    assert r.status_code == 422 and "This is not a JSON object." in r.text
    raw = '{"event_type": "purchase", "condition": "event.totl > 1.0", "effect": {"kind": "fixed", "points": 5}}'  # noqa: E501
    r = await client.post(f"{rules}/coffee-x2/draft", data={"csrf_token": csrf, "spec": raw})
    assert r.status_code == 422 and "unknown field" in r.text
    still = (await client.get(f"/v1/programs/{program}/rules/coffee-x2/draft")).json()
    assert still["spec"]["effect"]["kind"] == "multiplier"

    r = await client.post(f"{rules}/coffee-x2/draft/publish", data={"csrf_token": csrf})
    assert r.status_code == 303
    listed = await client.get(r.headers["location"])
    assert 'id="rule-published"' in listed.text and 'id="rule-coffee-x2"' in listed.text
    rule = (await client.get(f"/v1/programs/{program}/rules/coffee-x2")).json()
    assert [(v["version"], v["actor"]) for v in rule["versions"]] == [(1, f"staff:{email}")]
    r = await purchase(client, program, member, "10.00", lines=COFFEE)
    assert r.json()["points"] == 14


async def test_a_live_rule_changes_through_a_draft(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    rule = {"code": "visit-5", "event_type": "visit", "effect": {"kind": "fixed", "points": 5}}
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    email = await make_staff(db, "owner")
    await staff_signin(client, email)
    page = await client.get(f"/admin/{program}/rules")
    assert f'href="/admin/{program}/rules/visit-5/edit"' in page.text
    page = await client.get(f"/admin/{program}/rules/visit-5/draft")
    assert page.status_code == 200 and "No draft yet" in page.text
    spec = json.dumps({**rule, "effect": {"kind": "fixed", "points": 7}})
    form = {"csrf_token": csrf_of(page.text), "spec": spec}
    r = await client.post(f"/admin/{program}/rules/visit-5/draft", data=form)
    assert r.status_code == 303
    page = await client.get(f"/admin/{program}/rules")
    assert 'id="draft-visit-5"' in page.text
    r = await client.patch(f"/v1/programs/{program}/rules/visit-5", json={"name": "Visit"})
    assert r.json()["version"] == 2
    page = await client.get(f"/admin/{program}/rules/visit-5/draft")
    assert 'id="draft-outdated"' in page.text
    r = await client.post(f"/admin/{program}/rules/visit-5/draft/publish",
                          data={"csrf_token": csrf_of(page.text)})  # fmt: skip
    assert r.status_code == 409 and 'id="publish-error"' in r.text
    assert (await client.get(f"/v1/programs/{program}/rules/visit-5")).json()["version"] == 2
    r = await client.post(f"/admin/{program}/rules/visit-5/draft/discard",
                          data={"csrf_token": csrf_of(page.text)})  # fmt: skip
    assert r.status_code == 303
    assert (await client.get(f"/v1/programs/{program}/rules/visit-5/draft")).status_code == 404
    assert (await client.get(f"/admin/{program}/rules/nope/draft")).status_code == 404


async def test_roles_without_rules_cannot_draft(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    email = await make_staff(db, "support")
    await staff_signin(client, email)
    assert (await client.get(f"/admin/{program}/rules/new")).status_code == 403


async def test_a_privilege_after_n_visits_is_built_tested_and_backtested(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    member = (await enrol(client, program, email="lane@example.com"))["id"]
    now = datetime.now(UTC)
    for days in (3, 2):
        body = {"type": "visit", "member": {"id": member}, "external_id": f"v{days}",
                "occurred_at": (now - timedelta(days=days)).isoformat()}  # fmt: skip
        assert (await client.post(f"/v1/programs/{program}/events", json=body)).status_code == 201
    await staff_signin(client, await make_staff(db, "marketer"))
    form = await client.get(f"/admin/{program}/rules/new?template=after_n")
    data = {"csrf_token": csrf_of(form.text), "template": "after_n", "code": "lane",
            "event_type": "visit", "count": "2", "window": "30d", "benefit": "fast_lane",
            "benefit_days": "30"}  # fmt: skip
    r = await client.post(f"/admin/{program}/rules/new", data=data)
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    assert 'id="cel-condition">member.counters.visits_30d &gt;= 2<' in page.text
    csrf = csrf_of(page.text)
    test = {"csrf_token": csrf, "member": member, "type": "visit", "lines": ""}
    r = await client.post(f"/admin/{program}/rules/lane/draft/test", data=test)
    assert r.status_code == 200, r.text
    # A third visit is past 2: the draft grants the fast lane, the live rules nothing.
    assert '<p class="grant" data-side="draft" data-rule="lane">' in r.text
    assert "Fast lane at the counter" in r.text
    assert 'data-side="live"' not in r.text
    r = await client.post(f"/admin/{program}/rules/lane/draft/backtest", data={"csrf_token": csrf})
    assert r.status_code == 200
    # Replayed: the second visit reaches 2 and grants it, once.
    row = r.text.split('<tr data-grants="lane">')[1].split("</tr>")[0]
    assert '<td class="num">0</td><td class="num">1</td>' in row
    summary = "Difference: 0 points; members whose points, privileges or coupons change: 1."
    assert f'id="bt-summary">{summary}' in r.text


async def test_a_rule_from_the_form_is_changed_in_the_form_as_a_draft(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    email = await make_staff(db, "marketer")
    await staff_signin(client, email)
    rules = f"/admin/{program}/rules"
    csrf = csrf_of((await client.get(f"{rules}/new?template=ritual")).text)
    ritual = {"csrf_token": csrf, "template": "ritual", "code": "late", "name": "Late",
              "day_wed": "on", "day_fri": "on", "start": "21:00", "end": "23:30",
              "factor": "2", "category": "coffee"}  # fmt: skip
    assert (await client.post(f"{rules}/new", data=ritual)).status_code == 303
    r = await client.post(f"{rules}/late/draft/publish", data={"csrf_token": csrf})
    assert r.status_code == 303
    # Switched off after publishing: the form keeps the switch where it is.
    r = await client.post(f"{rules}/late/switch", data={"csrf_token": csrf, "active": "off"})
    assert r.status_code == 303

    form = await client.get(f"{rules}/late/edit")
    assert form.status_code == 200
    assert f'action="{rules}/late/edit"' in form.text
    assert '<input type="hidden" name="template" value="ritual">' in form.text
    assert 'name="day_wed" checked' in form.text and 'name="day_fri" checked' in form.text
    assert re.search(r'name="day_mon"\s*>', form.text)
    for name, value in (("start", "21:00"), ("end", "23:30"), ("factor", "2"),
                        ("category", "coffee"), ("name", "Late")):  # fmt: skip
        assert re.search(rf'id="f-{name}" name="{name}" type="\w+"\s+value="{value}"', form.text)
    assert 'id="f-code"' not in form.text  # the code is the rule's

    changed = {**ritual, "factor": "3", "code": "another"}  # a code posted is ignored
    bad = await client.post(f"{rules}/late/edit", data={**changed, "factor": "1"})
    assert bad.status_code == 422 and 'id="e-factor"' in bad.text
    r = await client.post(f"{rules}/late/edit", data=changed)
    assert r.status_code == 303 and r.headers["location"] == f"{rules}/late/draft?saved=1"
    live = (await client.get(f"/v1/programs/{program}/rules/late")).json()
    assert live["version"] == 2 and live["spec"]["effect"]["factor"] == "2"
    draft = (await client.get(f"/v1/programs/{program}/rules/late/draft")).json()
    assert draft["changed"] == ["effect"] and draft["spec"]["active"] is False
    assert draft["actor"] == f"staff:{email}"
    assert (await client.get(f"/v1/programs/{program}/rules/another/draft")).status_code == 404
    # Opened again, the form shows the draft (what is being worked on).
    form = await client.get(f"{rules}/late/edit")
    assert re.search(r'id="f-factor" name="factor" type="text"\s+value="3"', form.text)
    page = await client.get(f"{rules}/late/draft")
    assert 'id="edit-in-form"' in page.text


async def test_a_rule_written_by_hand_opens_in_the_raw_editor(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    rule = {"code": "gold-x2", "event_type": "purchase", "condition": "member.tier == 'gold'",
            "effect": {"kind": "multiplier", "factor": "2"}}  # fmt: skip
    assert (await client.post(f"/v1/programs/{program}/rules", json=rule)).status_code == 201
    await staff_signin(client, await make_staff(db, "owner"))
    r = await client.get(f"/admin/{program}/rules/gold-x2/edit")
    assert r.status_code == 303
    assert r.headers["location"] == f"/admin/{program}/rules/gold-x2/draft?raw=1"
    page = await client.get(r.headers["location"])
    assert 'id="raw-only"' in page.text and "not written by the form" in page.text
    assert 'id="edit-in-form"' not in page.text
    assert (await client.get(f"/admin/{program}/rules/nope/edit")).status_code == 404
    csrf = csrf_of(page.text)
    form = {"csrf_token": csrf, "template": "per_visit", "points": "5"}
    r = await client.post(f"/admin/{program}/rules/nope/edit", data=form)
    assert r.status_code == 404
