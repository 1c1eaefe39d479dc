"""What `benefit` and `coupon` rules gave a member shows in the portal and the console."""

from __future__ import annotations

import re

import httpx

from habitue.db import Database
from tests.conftest import purchase
from tests.web.conftest import csrf_of, make_staff, signup, staff_signin


async def _rules(client: httpx.AsyncClient, program: str) -> None:
    reward = {"code": "pastry", "kind": "voucher", "cost_points": 60, "value": "2.00",
              "texts": {"en": {"name": "A pastry on us"}}}  # fmt: skip
    r = await client.post(f"/v1/programs/{program}/rewards", json=reward)
    assert r.status_code == 201, r.text
    for rule in (
        {"code": "lane", "event_type": "purchase",
         "effect": {"kind": "benefit", "benefit": "fast_lane", "days": 30}},
        {"code": "lottery", "event_type": "purchase",
         "effect": {"kind": "coupon", "reward_code": "pastry", "probability": "1"}},
    ):  # fmt: skip
        r = await client.post(f"/v1/programs/{program}/rules", json=rule)
        assert r.status_code == 201, r.text


async def test_the_portal_shows_privileges_and_won_coupons(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    member = str((await client.get(f"/app/{program}/export")).json()["member"]["id"])
    card = await client.get(f"/app/{program}/card")
    assert 'id="privileges"' not in card.text
    await _rules(client, program)
    answer = (await purchase(client, program, member, "6.00", external_id="won")).json()
    [code] = [e["coupon"] for e in answer["effects"] if e["kind"] == "coupon"]

    card = await client.get(f"/app/{program}/card")
    assert card.status_code == 200
    shown = r'<li data-code="fast_lane">Fast lane at the counter · until '
    assert re.search(shown, card.text), card.text
    page = await client.get(f"/app/{program}/coupons")
    assert f'data-code="{code}"' in page.text
    assert "A pastry on us" in page.text and "Ready to use" in page.text

    refund = {"type": "refund", "external_id": "back", "refers_to": "won", "total": "6.00"}
    assert (await client.post(f"/v1/programs/{program}/events", json=refund)).status_code == 201
    page = await client.get(f"/app/{program}/coupons")
    assert f'data-code="{code}"' in page.text and "Voided" in page.text
    assert "Ready to use" not in page.text


async def test_the_console_member_page_shows_privileges_and_won_coupons(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _rules(client, program)
    member = (await client.post(f"/v1/programs/{program}/members", json={})).json()["id"]
    answer = (await purchase(client, program, member, "6.00")).json()
    [code] = [e["coupon"] for e in answer["effects"] if e["kind"] == "coupon"]
    await staff_signin(client, await make_staff(db, "support"))
    page = await client.get(f"/admin/{program}/members/{member}")
    assert page.status_code == 200
    privileges = re.search(r'<dd id="privileges">([^<]*)</dd>', page.text)
    assert privileges is not None
    assert privileges.group(1).startswith("Fast lane at the counter (until ")
    assert 'id="coupons-won"' in page.text and f"<code>{code}</code>" in page.text


async def test_the_console_will_not_switch_off_a_reward_a_rule_gives(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _rules(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    edit = await client.get(f"/admin/{program}/rewards/pastry/edit")
    form = {"csrf_token": csrf_of(edit.text), "cost_points": "60", "name_en": "A pastry on us"}
    refused = await client.post(f"/admin/{program}/rewards/pastry/edit", data=form)  # no `active`
    assert refused.status_code == 422
    assert re.search(r'id="e-active">A rule gives coupons of this reward', refused.text)
    assert (await client.get(f"/v1/programs/{program}/rewards/pastry")).json()["active"] is True
    assert (await client.delete(f"/v1/programs/{program}/rules/lottery")).status_code == 204
    saved = await client.post(f"/admin/{program}/rewards/pastry/edit", data=form)
    assert saved.status_code == 303
    assert (await client.get(f"/v1/programs/{program}/rewards/pastry")).json()["active"] is False
