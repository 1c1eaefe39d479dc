"""The console's tiers, rewards, offers and campaigns pages, and the card's wallet links."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from habitue import clock
from habitue.api import create_app
from habitue.db import Database
from habitue.settings import Settings
from habitue.web.wallet import fill
from tests.conftest import ADMIN_KEY, enrol, purchase
from tests.web.conftest import csrf_of, make_staff, signup, staff_signin

LADDER = {
    "metric": "qualifying_spend",
    "window": {"kind": "calendar_year"},
    "tiers": [
        {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
        {"code": "silver", "name": "Silver", "threshold": "150.00", "multiplier": "1.5"},
        {"code": "gold", "name": "Gold", "threshold": "400.00", "privileges": ["fast-lane"]},
    ],
}


def local(moment: Any) -> str:
    """A moment as a `datetime-local` value in the test programs' time zone."""
    return str(moment.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M"))


async def _ladder(client: httpx.AsyncClient, program: str) -> None:
    r = await client.post(f"/v1/programs/{program}/tiers", json=LADDER)
    assert r.status_code == 201, r.text


async def _reward(client: httpx.AsyncClient, program: str, **fields: Any) -> None:
    body = {
        "code": "coffee",
        "kind": "voucher",
        "value": "3.00",
        "cost_points": 100,
        "texts": {"en": {"name": "A free coffee"}, "fr": {"name": "Un café offert"}},
        **fields,
    }
    r = await client.post(f"/v1/programs/{program}/rewards", json=body)
    assert r.status_code == 201, r.text


async def _offer(client: httpx.AsyncClient, program: str, members: list[str]) -> None:
    now = clock.now()
    r = await client.post(
        f"/v1/programs/{program}/offers",
        json={
            "code": "latte",
            "texts": {"en": {"name": "Two euros off a latte"}},
            "value": "2.00",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
            "members": members,
        },
    )
    assert r.status_code == 201, r.text


async def _campaign(client: httpx.AsyncClient, program: str, code: str = "spring") -> None:
    now = clock.now()
    r = await client.post(
        f"/v1/programs/{program}/campaigns",
        json={
            "code": code,
            "kind": "offer",
            "holdout_share": 0.5,
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text


async def test_owner_sees_every_catalogue_page(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    empty = {
        "tiers": 'id="no-ladder"',
        "rewards": 'id="no-rewards"',
        "offers": 'id="no-offers"',
        "campaigns": 'id="no-campaigns"',
    }
    for page, marker in empty.items():
        r = await client.get(f"/admin/{program}/{page}")
        assert r.status_code == 200, page
        assert marker in r.text, page
        assert f'href="/admin/{program}/{page}" aria-current="page"' in r.text  # in the nav

    await _ladder(client, program)
    rich = await enrol(client, program, email="rich@example.com")
    await purchase(client, program, rich["id"], "420.00")
    mid = await enrol(client, program, email="mid@example.com")
    await purchase(client, program, mid["id"], "160.00")
    await enrol(client, program, email="new@example.com")
    await _reward(client, program, stock=12)
    await _offer(client, program, [rich["id"], mid["id"]])
    await _campaign(client, program)

    tiers = await client.get(f"/admin/{program}/tiers")
    assert "Qualifying spend" in tiers.text
    assert "Calendar year" in tiers.text
    silver = re.search(r'<tr id="tier-silver">(.*?)</tr>', tiers.text, re.S)
    assert silver is not None
    assert "€150.00" in silver.group(1)
    assert "×1.5" in silver.group(1)
    assert '<td class="num">1</td>' in silver.group(1)  # one member in Silver
    assert "Fast lane" in tiers.text  # the privilege read, not its code
    assert '<td class="num" id="tier-total">3</td>' in tiers.text
    assert f'href="/admin/{program}/tiers/silver/edit"' in tiers.text

    rewards = await client.get(f"/admin/{program}/rewards")
    row = re.search(r'<tr id="reward-coffee">(.*?)</tr>', rewards.text, re.S)
    assert row is not None
    assert "A free coffee" in row.group(1)
    assert "Voucher" in row.group(1)
    assert "100 points" in row.group(1)
    assert ">12<" in row.group(1)
    assert "Available" in row.group(1)

    offers = await client.get(f"/admin/{program}/offers")
    row = re.search(r'<tr id="offer-latte">(.*?)</tr>', offers.text, re.S)
    assert row is not None
    assert "€2.00 off" in row.group(1)
    assert '<td class="num targeted">2</td>' in row.group(1)
    assert "Open" in row.group(1)

    campaigns = await client.get(f"/admin/{program}/campaigns")
    assert f'href="/admin/{program}/campaigns/spring/report"' in campaigns.text
    assert "Running" in campaigns.text
    report = await client.get(f"/admin/{program}/campaigns/spring/report")
    assert report.status_code == 200
    assert 'id="groups"' in report.text
    assert "95% confidence interval" in report.text

    forms = ("tiers/silver/edit", "rewards/coffee/edit", "rewards/new", "offers/new")
    for form in (*forms, "campaigns/new"):
        r = await client.get(f"/admin/{program}/{form}")
        assert r.status_code == 200, form
        assert '<body class="admin"' in r.text, form  # the console's frame and navigation
        assert 'aria-current="page"' in r.text, form
    for missing in ("tiers/platinum/edit", "rewards/nope/edit", "campaigns/nope/report"):
        assert (await client.get(f"/admin/{program}/{missing}")).status_code == 404, missing

    french = await client.get(f"/admin/{program}/tiers", headers={"Accept-Language": "fr"})
    assert "150,00\u00a0€" in french.text


async def test_editing_a_tier_checks_the_ladder(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _ladder(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/tiers/silver/edit")
    assert 'value="150.00"' in page.text
    assert "The tier below, Bronze, starts at €0.00." in page.text
    token = csrf_of(page.text)
    url = f"/admin/{program}/tiers/silver/edit"
    form = {"csrf_token": token, "name": "Argent", "multiplier": "1.5", "privileges": ""}

    above_gold = await client.post(url, data={**form, "threshold": "450.00"})
    assert above_gold.status_code == 422
    assert re.search(r'<p class="error" id="e-threshold">Thresholds must rise', above_gold.text)
    assert 'value="450.00"' in above_gold.text  # what was typed is kept
    assert 'value="Argent"' in above_gold.text
    bad = await client.post(url, data={**form, "threshold": "cheap", "multiplier": "0.5"})
    assert bad.status_code == 422
    assert "Enter an amount such as 12.50." in bad.text
    assert 'id="e-multiplier"' in bad.text
    unchanged = await client.get(f"/v1/programs/{program}/tiers")
    assert unchanged.json()["tiers"][1]["threshold"] == "150.00"

    ok = await client.post(
        url, data={**form, "threshold": "120,00", "privileges": "free-delivery, lounge"}
    )
    assert ok.status_code == 303
    assert ok.headers["location"] == f"/admin/{program}/tiers?saved=silver"
    ladder = (await client.get(f"/v1/programs/{program}/tiers")).json()
    silver = ladder["tiers"][1]
    assert (silver["name"], silver["threshold"]) == ("Argent", "120.00")
    assert silver["privileges"] == ["free-delivery", "lounge"]
    assert [t["code"] for t in ladder["tiers"]] == ["bronze", "silver", "gold"]
    page = await client.get(ok.headers["location"])
    assert 'id="tier-saved"' in page.text
    assert "Argent" in page.text


async def test_marketer_creates_and_edits_a_reward(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _ladder(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/rewards/new")
    assert 'name="tier_gold"' in page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "code": "tote-bag",
        "kind": "voucher",
        "cost_points": "lots",
        "name_en": "A tote bag",
        "description_fr": "Un joli sac",
        "active": "on",
    }
    bad = await client.post(f"/admin/{program}/rewards/new", data=form)
    assert bad.status_code == 422
    assert re.search(r'id="e-cost_points">Enter a whole number of points', bad.text)
    assert re.search(r'id="e-value">A voucher needs a value.', bad.text)
    assert re.search(r'id="e-name_fr">Give a name in this language too', bad.text)
    assert 'value="tote-bag"' in bad.text
    assert 'value="A tote bag"' in bad.text
    assert "Un joli sac</textarea>" in bad.text

    product = {
        **form,
        "kind": "product",
        "cost_points": "500",
        "description_fr": "",
        "stock": "20",
        "tier_gold": "on",
        "valid_until": local(clock.now() + timedelta(days=30)),
    }
    made = await client.post(f"/admin/{program}/rewards/new", data=product)
    assert made.status_code == 303, made.text
    assert made.headers["location"] == f"/admin/{program}/rewards?saved=tote-bag"
    api = (await client.get(f"/v1/programs/{program}/rewards/tote-bag")).json()
    assert (api["kind"], api["cost_points"], api["stock"]) == ("product", 500, 20)
    assert api["tiers"] == ["gold"]
    assert api["valid_until"] is not None
    listed = await client.get(made.headers["location"])
    assert re.search(r'<tr id="reward-tote-bag">.*?A tote bag.*?Product', listed.text, re.S)
    again = await client.post(f"/admin/{program}/rewards/new", data=product)
    assert again.status_code == 422
    assert "A reward with this code exists already." in again.text

    image = {"en": {"name": "A tote bag", "image_url": "https://img.example.com/tote.png"}}
    r = await client.patch(f"/v1/programs/{program}/rewards/tote-bag", json={"texts": image})
    assert r.status_code == 200, r.text
    edit = await client.get(f"/admin/{program}/rewards/tote-bag/edit")
    assert 'value="20"' in edit.text
    assert 'name="tier_gold" checked' in edit.text
    changes = {
        "csrf_token": csrf_of(edit.text),
        "cost_points": "450",
        "stock": "",
        "name_en": "A canvas tote bag",
        "valid_from": local(clock.now() + timedelta(days=40)),
        "valid_until": local(clock.now() + timedelta(days=30)),
    }
    wrong = await client.post(f"/admin/{program}/rewards/tote-bag/edit", data=changes)
    assert wrong.status_code == 422
    assert re.search(r'id="e-valid_until">The end must be after the start.', wrong.text)
    changes["valid_from"] = ""
    saved = await client.post(f"/admin/{program}/rewards/tote-bag/edit", data=changes)
    assert saved.status_code == 303
    api = (await client.get(f"/v1/programs/{program}/rewards/tote-bag")).json()
    assert (api["cost_points"], api["stock"], api["active"]) == (450, None, False)
    assert api["texts"]["en"]["image_url"] == "https://img.example.com/tote.png"  # kept
    assert api["tiers"] is None
    assert api["texts"]["en"]["name"] == "A canvas tote bag"
    listed = await client.get(f"/admin/{program}/rewards")
    assert re.search(r'<tr id="reward-tote-bag">.*?Unlimited.*?Inactive', listed.text, re.S)


async def test_redemptions_move_along_their_fulfilment(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _reward(client, program, code="mug", kind="product", value=None, cost_points=50)
    await _reward(client, program)
    m = await enrol(client, program)
    await purchase(client, program, m["id"], "300.00")
    ids = {}
    for code in ("mug", "coffee"):
        r = await client.post(
            f"/v1/programs/{program}/members/{m['id']}/redemptions", json={"reward": code}
        )
        assert r.status_code == 201, r.text
        ids[code] = r.json()["id"]
    await staff_signin(client, await make_staff(db, "support"))
    page = await client.get(f"/admin/{program}/rewards")
    assert f'<tr id="redemption-{ids["mug"]}" data-status="ordered">' in page.text
    assert f'<tr id="redemption-{ids["coffee"]}" data-status="issued">' in page.text
    token = csrf_of(page.text)

    def url(code: str) -> str:
        return f"/admin/{program}/redemptions/{ids[code]}/status"

    shipped = await client.post(url("mug"), data={"csrf_token": token, "status": "shipped"})
    assert shipped.status_code == 303
    page = await client.get(shipped.headers["location"])
    assert "The redemption is marked as shipped." in page.text
    assert 'data-status="shipped">' in page.text
    twice = await client.post(url("mug"), data={"csrf_token": token, "status": "shipped"})
    assert twice.status_code == 409
    assert re.search(rf'id="e-{ids["mug"]}" role="alert">This step does not follow', twice.text)
    late = await client.post(url("mug"), data={"csrf_token": token, "status": "canceled"})
    assert late.status_code == 409
    assert "This redemption can no longer be canceled." in late.text
    done = await client.post(url("mug"), data={"csrf_token": token, "status": "delivered"})
    assert done.status_code == 303
    api = await client.get(f"/v1/programs/{program}/redemptions/{ids['mug']}")
    assert api.json()["status"] == "delivered"

    canceled = await client.post(url("coffee"), data={"csrf_token": token, "status": "canceled"})
    assert canceled.status_code == 303
    balance = (await client.get(f"/v1/programs/{program}/members/{m['id']}/balance")).json()
    assert balance["available"] == 300 - 50  # the coffee's 100 points came back
    only = await client.get(f"/admin/{program}/rewards?show=canceled")
    assert ids["coffee"] in only.text
    assert ids["mug"] not in only.text
    unknown = f"/admin/{program}/redemptions/nope/status"
    assert (
        await client.post(unknown, data={"csrf_token": token, "status": "shipped"})
    ).status_code == 404
    assert (await client.post(url("mug"), data={"status": "shipped"})).status_code == 403


async def test_marketer_creates_a_personal_offer(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    a = await enrol(client, program)
    b = await enrol(client, program)
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/offers/new")
    now = clock.now()
    form = {
        "csrf_token": csrf_of(page.text),
        "code": "croissant",
        "name_en": "A croissant for 1 euro less",
        "value": "1.00",
        "percent": "10",
        "starts_at": local(now + timedelta(days=2)),
        "ends_at": local(now + timedelta(days=1)),
        "members": "",
    }
    bad = await client.post(f"/admin/{program}/offers/new", data=form)
    assert bad.status_code == 422
    assert re.search(r'id="e-members">Give member ids, a segment, or both.', bad.text)
    assert re.search(r'id="e-ends_at">The end must be after the start.', bad.text)
    assert re.search(r'id="e-value">Give either an amount or a percentage off', bad.text)
    assert 'value="A croissant for 1 euro less"' in bad.text
    form.update(percent="", starts_at=local(now - timedelta(hours=1)), members="nobody-here")
    form["ends_at"] = local(now + timedelta(days=5))
    unknown = await client.post(f"/admin/{program}/offers/new", data=form)
    assert unknown.status_code == 422
    assert "One of these is not the id of a member of this program." in unknown.text

    form["members"] = f"{a['id']}\n{b['id']}"
    made = await client.post(f"/admin/{program}/offers/new", data=form)
    assert made.status_code == 303, made.text
    r = await client.post(f"/v1/programs/{program}/members/{a['id']}/offers/croissant/clip")
    assert r.status_code == 200, r.text
    listed = await client.get(made.headers["location"])
    row = re.search(r'<tr id="offer-croissant">(.*?)</tr>', listed.text, re.S)
    assert row is not None
    assert '<td class="num targeted">2</td>' in row.group(1)
    assert re.search(r'<td class="num clipped">1 <small>\(50%\)', row.group(1))
    offers = await client.get(f"/v1/programs/{program}/members/{b['id']}/offers")
    assert [o["code"] for o in offers.json()["items"]] == ["croissant"]


async def test_campaign_created_from_the_console_reports_its_uplift(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    members = [await enrol(client, program) for _ in range(12)]
    await _offer(client, program, [])
    await staff_signin(client, await make_staff(db, "marketer"))
    page = await client.get(f"/admin/{program}/campaigns/new")
    assert 'value="10"' in page.text
    assert '<option value="offer:latte"' in page.text
    now = clock.now()
    form = {
        "csrf_token": csrf_of(page.text),
        "code": "latte week",
        "subject": "",
        "holdout_share": "0",
        "starts_at": local(now - timedelta(days=1)),
        "ends_at": local(now - timedelta(days=2)),
    }
    bad = await client.post(f"/admin/{program}/campaigns/new", data=form)
    assert bad.status_code == 422
    assert 'id="e-holdout_share"' in bad.text
    assert 'id="e-ends_at"' in bad.text
    assert 'id="e-code"' in bad.text
    assert 'id="e-subject"' in bad.text  # a campaign names what it measures
    assert 'value="latte week"' in bad.text
    form.update(
        code="latte-week",
        subject="offer:latte",
        holdout_share="50",
        ends_at=local(now + timedelta(days=1)),
    )
    made = await client.post(f"/admin/{program}/campaigns/new", data=form)
    assert made.status_code == 303, made.text
    assert made.headers["location"] == f"/admin/{program}/campaigns/latte-week/report?created=1"
    for i, m in enumerate(members):
        await purchase(client, program, m["id"], f"{10 + 3 * i}.00")

    api = (await client.get(f"/v1/programs/{program}/campaigns/latte-week/report")).json()
    await staff_signin(client, await make_staff(db, "analyst"))
    report = await client.get(made.headers["location"])
    assert report.status_code == 200
    assert 'id="campaign-created"' in report.text
    groups = re.search(
        r'<th scope="row">Members</th><td class="num">(\d+)</td><td class="num">(\d+)<', report.text
    )
    assert groups is not None
    assert (int(groups.group(1)), int(groups.group(2))) == (
        api["treatment"]["members"],
        api["holdout"]["members"],
    )
    assert api["treatment"]["members"] + api["holdout"]["members"] == 12
    effect = re.search(r'id="effect-per-member">([^<]+)<', report.text)
    assert effect is not None
    expected = api["incremental_revenue_per_member"]
    if api["ci_low"] is None:  # no estimate without two members in each group
        assert effect.group(1) == "—"
    else:
        money = ("-" if expected.startswith("-") else "") + "€" + expected.lstrip("-")
        assert effect.group(1) == money
    if api["ci_low"] is not None:
        ci = re.search(r'id="effect-ci">([^<]+)<', report.text)
        assert ci is not None
        assert api["ci_low"].lstrip("-") in ci.group(1)
        assert api["ci_high"].lstrip("-") in ci.group(1)
    listed = await client.get(f"/admin/{program}/campaigns")
    assert re.search(r'<tr id="campaign-latte-week">.*?50%', listed.text, re.S)
    again = await client.post(f"/admin/{program}/campaigns/new", data=form)
    assert again.status_code == 403  # an analyst reads campaigns, does not make them


async def test_roles_limit_the_catalogue_pages(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await _ladder(client, program)
    await _reward(client, program)
    await _campaign(client, program)
    await staff_signin(client, await make_staff(db, "support"))
    tiers = await client.get(f"/admin/{program}/tiers")
    assert tiers.status_code == 200
    assert "/tiers/silver/edit" not in tiers.text
    rewards = await client.get(f"/admin/{program}/rewards")
    assert rewards.status_code == 200
    assert "/rewards/new" not in rewards.text
    assert (await client.get(f"/admin/{program}/offers")).status_code == 200
    for denied in ("tiers/silver/edit", "rewards/new", "rewards/coffee/edit", "offers/new"):
        r = await client.get(f"/admin/{program}/{denied}")
        assert r.status_code == 403, denied
        assert "Your role does not allow this." in r.text
    assert (await client.get(f"/admin/{program}/campaigns")).status_code == 403
    token = csrf_of(tiers.text)
    r = await client.post(
        f"/admin/{program}/tiers/silver/edit",
        data={"csrf_token": token, "name": "X", "threshold": "1.00", "multiplier": "1"},
    )
    assert r.status_code == 403
    r = await client.post(
        f"/admin/{program}/rewards/new",
        data={"csrf_token": token, "code": "x", "kind": "voucher", "cost_points": "1"},
    )
    assert r.status_code == 403

    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "analyst"))
    nav = await client.get(f"/admin/{program}/campaigns")
    assert nav.status_code == 200
    assert f'href="/admin/{program}/rewards"' not in nav.text
    assert "/campaigns/new" not in nav.text
    assert (await client.get(f"/admin/{program}/tiers")).status_code == 200
    for denied in ("rewards", "offers", "campaigns/new", "tiers/gold/edit"):
        assert (await client.get(f"/admin/{program}/{denied}")).status_code == 403, denied
    r = await client.post(
        f"/admin/{program}/redemptions/whatever/status",
        data={"csrf_token": csrf_of(nav.text), "status": "shipped"},
    )
    assert r.status_code == 403


# --- wallet links on the member's card ------------------------------------------------------

APPLE = "https://wallet.example.com/apple/{program}/{card_number}.pkpass?member={member_id}"
GOOGLE = "https://pay.example.com/save?p={program}&c={card_number}&keep={literal}"


@pytest.fixture
async def wallet_client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    configured = Settings(
        **{**settings.model_dump(), "wallet_apple_url": APPLE, "wallet_google_url": GOOGLE}
    )
    app = create_app(configured, db=db)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c:
            yield c


async def test_card_has_no_wallet_links_unless_configured(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    card = await client.get(f"/app/{program}/card")
    assert card.status_code == 200
    assert "wallet-" not in card.text
    assert "Apple Wallet" not in card.text


async def test_card_links_to_the_configured_wallets(
    wallet_client: httpx.AsyncClient, program: str
) -> None:
    await signup(wallet_client, program, locale="fr")
    member = (await wallet_client.get(f"/app/{program}/export")).json()["member"]
    card = await wallet_client.get(f"/app/{program}/card")
    apple = re.search(r'<a id="wallet-apple"[^>]* href="([^"]+)">([^<]+)</a>', card.text)
    google = re.search(r'<a id="wallet-google"[^>]* href="([^"]+)">([^<]+)</a>', card.text)
    assert apple is not None
    assert google is not None
    number = member["card_number"]
    assert html.unescape(apple.group(1)) == (
        f"https://wallet.example.com/apple/{program}/{number}.pkpass?member={member['id']}"
    )
    assert html.unescape(google.group(1)) == (
        f"https://pay.example.com/save?p={program}&c={number}&keep={{literal}}"
    )
    assert apple.group(2) == "Ajouter à Apple Wallet"
    assert google.group(2) == "Enregistrer dans Google Wallet"


def test_wallet_values_are_url_encoded_and_templates_checked() -> None:
    url = fill(
        "https://w.example/{program}?card={card_number}&m={member_id}",
        program="café club",
        card_number="8000 12/34",
        member_id="a&b=c?#",
    )
    assert url == "https://w.example/caf%C3%A9%20club?card=8000%2012%2F34&m=a%26b%3Dc%3F%23"
    with pytest.raises(ValueError, match="http"):
        Settings(wallet_apple_url="javascript:alert(1)")
    assert Settings(wallet_google_url="  ").wallet_google_url is None
