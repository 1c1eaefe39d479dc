"""The portal's rewards pages and the simulator's rule editor, through HTTP."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx

from habitue import clock
from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, signup, staff_signin


async def _member_id(client: httpx.AsyncClient, program: str) -> str:
    return str((await client.get(f"/app/{program}/export")).json()["member"]["id"])


async def _voucher(client: httpx.AsyncClient, program: str, code: str, cost: int) -> None:
    r = await client.post(
        f"/v1/programs/{program}/rewards",
        json={
            "code": code,
            "kind": "voucher",
            "value": "5.00",
            "cost_points": cost,
            "texts": {"en": {"name": "Five euros off"}, "fr": {"name": "Cinq euros offerts"}},
        },
    )
    assert r.status_code == 201, r.text


async def test_redeem_a_reward_and_see_the_coupon(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program, locale="fr")
    member_id = await _member_id(client, program)
    await _voucher(client, program, "five", 300)
    page = await client.get(f"/app/{program}/rewards")
    assert page.status_code == 200
    assert "Cinq euros offerts" in page.text  # the reward's text in the member's language
    assert f'href="/app/{program}/coupons"' in page.text  # in the navigation
    token = csrf_of(page.text)

    # Not enough points: the button is disabled with what is missing; a post anyway is
    # refused at the top of the reward's page, in French; nothing is spent.
    assert 'id="choose-five" aria-describedby="short-five"' in page.text
    assert "300 points de plus nécessaires." in page.text
    r = await client.post(
        f"/app/{program}/rewards/five/redeem", data={"csrf_token": token, "confirm": "yes"}
    )
    assert r.status_code == 409
    assert 'id="e-reward"' in r.text
    assert "Vous n'avez pas assez de points pour cette récompense." in r.text
    # Without the form's token: 403.
    r = await client.post(f"/app/{program}/rewards/five/redeem", data={})
    assert r.status_code == 403

    assert (await purchase(client, program, member_id, "400.00")).status_code == 201
    page = await client.get(f"/app/{program}/rewards")
    assert f'href="/app/{program}/rewards/five"' in page.text  # affordable: to its page
    confirm = await client.get(f"/app/{program}/rewards/five")
    assert confirm.status_code == 200
    assert 'id="after">100<' in confirm.text  # what is left after spending
    # Spending asks for the confirmation: a post without it spends nothing.
    r = await client.post(f"/app/{program}/rewards/five/redeem", data={"csrf_token": token})
    assert r.status_code == 422
    assert (await client.get(f"/app/{program}/export")).json()["member"]["balance"][
        "available"
    ] == 400
    r = await client.post(
        f"/app/{program}/rewards/five/redeem", data={"csrf_token": token, "confirm": "yes"}
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/app/{program}/coupons?redeemed=five"
    coupons = await client.get(r.headers["location"])
    assert coupons.status_code == 200
    code = re.search(r'data-code="([^"]+)"', coupons.text)
    assert code is not None
    assert re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{2}", code.group(1))
    assert 'class="segno"' in coupons.text  # its QR code
    assert "Prêt à utiliser" in coupons.text
    api = await client.get(f"/v1/programs/{program}/members/{member_id}/redemptions")
    assert api.json()["items"][0]["coupon"]["code"] == code.group(1)
    export = (await client.get(f"/app/{program}/export")).json()
    assert export["member"]["balance"]["available"] == 100


async def test_unknown_reward_is_refused_next_to_nothing_but_kept_calm(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    page = await client.get(f"/app/{program}/rewards")
    assert "There are no rewards to redeem right now." in page.text
    r = await client.post(
        f"/app/{program}/rewards/nope/redeem", data={"csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 409
    assert "This reward no longer exists." in r.text
    assert (await client.get(f"/app/{program}/coupons")).status_code == 200


async def test_activate_a_personal_offer(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program)
    member_id = await _member_id(client, program)
    now = clock.now()
    r = await client.post(
        f"/v1/programs/{program}/offers",
        json={
            "code": "latte",
            "texts": {"en": {"name": "Two euros off a latte"}},
            "value": "2.00",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
            "members": [member_id],
        },
    )
    assert r.status_code == 201, r.text
    page = await client.get(f"/app/{program}/offers")
    assert "Two euros off a latte" in page.text
    assert "Activate" in page.text
    r = await client.post(
        f"/app/{program}/offers/latte/clip", data={"csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303
    page = await client.get(f"/app/{program}/offers")
    assert "Activated: it applies at the till" in page.text
    api = await client.get(f"/v1/programs/{program}/members/{member_id}/offers?clipped=true")
    assert [o["code"] for o in api.json()["items"]] == ["latte"]
    r = await client.post(
        f"/app/{program}/offers/other/clip", data={"csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 409
    assert "This offer is not available to you." in r.text


async def test_referral_code_to_share(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program)
    member_id = await _member_id(client, program)
    first = await client.get(f"/app/{program}/invite")
    assert first.status_code == 200
    code = re.search(r'id="referral-code" data-code="([^"]+)"', first.text)
    assert code is not None
    again = await client.get(f"/app/{program}/invite")
    assert code.group(0) in again.text  # made once
    assert f"/app/{program}/signup?ref={code.group(1)}" in first.text  # the link to share
    assert 'id="copy-button"' in first.text and 'id="share-button"' in first.text
    api = await client.get(f"/v1/programs/{program}/members/{member_id}/referral-code")
    assert api.json()["code"] == code.group(1)
    client.cookies.clear()
    r = await client.get(f"/app/{program}/invite")
    assert r.status_code == 303  # signed out: to sign-in


RULE = {
    "code": "coffee-double",
    "name": "Double points on coffee",
    "event_type": "purchase",
    "line_condition": "line.category == 'coffee'",
    "effect": {"kind": "multiplier", "factor": "2"},
}


async def test_simulator_saves_a_rule_as_a_draft_and_simulates_with_it(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/simulator")
    assert 'id="f-rule_json"' in page.text
    basket = {
        "csrf_token": csrf_of(page.text),
        "member": m["card_number"],
        "type": "purchase",
        "lines": "espresso,coffee,10,2.00\nsandwich,food,1,6.00",
    }
    before = await client.post(f"/admin/{program}/simulator", data=basket)
    assert '<span id="sim-points">26</span>' in before.text

    bad_json = await client.post(
        f"/admin/{program}/simulator",
        data={**basket, "action": "save_rule", "rule_json": "{not json"},
    )
    assert bad_json.status_code == 422
    assert 'id="e-rule_json"' in bad_json.text
    invalid = {**RULE, "line_condition": "line.category ==="}
    r = await client.post(
        f"/admin/{program}/simulator",
        data={**basket, "action": "save_rule", "rule_json": json.dumps(invalid)},
    )
    assert r.status_code == 422
    assert re.search(r'id="e-rule_json">line_condition: ', r.text)
    assert "line.category ===" in r.text  # what was typed is kept

    created = await client.post(
        f"/admin/{program}/simulator",
        data={**basket, "action": "save_rule", "rule_json": json.dumps(RULE)},
    )
    assert created.status_code == 200, created.text
    # Saved as a draft of a new rule, simulated with it; nothing live changed.
    assert 'id="rule-saved"' in created.text
    assert f'href="/admin/{program}/rules/coffee-double/draft" id="draft-link"' in created.text
    assert '<span id="sim-points">46</span>' in created.text
    assert "With the live rules: 26." in created.text
    assert (await client.get(f"/v1/programs/{program}/rules/coffee-double")).status_code == 404
    draft = (await client.get(f"/v1/programs/{program}/rules/coffee-double/draft")).json()
    assert draft["base_version"] is None and draft["actor"].startswith("staff:")
    again = await client.post(
        f"/admin/{program}/simulator", data={**basket, "with_draft": "coffee-double"}
    )
    assert '<span id="sim-points">46</span>' in again.text  # the draft stays in place
    live = await client.post(f"/admin/{program}/simulator", data=basket)
    assert '<span id="sim-points">26</span>' in live.text and "sim-with-draft" not in live.text

    published = await client.post(
        f"/admin/{program}/rules/coffee-double/draft/publish",
        data={"csrf_token": basket["csrf_token"]},
    )
    assert published.status_code == 303
    loaded = await client.get(f"/admin/{program}/simulator?rule=coffee-double")
    assert "Double points on coffee" in loaded.text and 'id="draft-loaded"' not in loaded.text
    updated = await client.post(
        f"/admin/{program}/simulator",
        data={
            **basket,
            "action": "save_rule",
            "rule_json": json.dumps({**RULE, "effect": {"kind": "multiplier", "factor": "3"}}),
        },
    )
    assert updated.status_code == 200
    assert '<span id="sim-points">66</span>' in updated.text
    assert "With the live rules: 46." in updated.text
    rule = (await client.get(f"/v1/programs/{program}/rules/coffee-double")).json()
    assert rule["version"] == 1 and rule["spec"]["effect"]["factor"] == "2"
    draft = (await client.get(f"/v1/programs/{program}/rules/coffee-double/draft")).json()
    assert draft["base_version"] == 1 and draft["changed"] == ["effect"]
    reloaded = await client.get(f"/admin/{program}/simulator?rule=coffee-double")
    assert 'id="draft-loaded"' in reloaded.text  # the draft is what is being worked on
    assert "&#34;factor&#34;: &#34;3&#34;" in reloaded.text


async def test_an_analyst_cannot_save_rules(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "analyst"))
    page = await client.get(f"/admin/{program}/simulator")
    assert 'id="f-rule_json"' not in page.text
    r = await client.post(
        f"/admin/{program}/simulator",
        data={
            "csrf_token": csrf_of(page.text),
            "action": "save_rule",
            "rule_json": json.dumps(RULE),
        },
    )
    assert r.status_code == 403
    assert (await client.get(f"/v1/programs/{program}/rule-drafts")).json() == []
