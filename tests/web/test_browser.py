"""The portal and the console in a real browser: Playwright driving Debian's Chromium.

One server (uvicorn in a thread, on the test database) and one browser for the module; every
page visited is checked with axe-core (no serious or critical violation) and screenshotted
under `test-artifacts/web/<db>/`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from habitue.api import create_app
from habitue.db import Database
from habitue.members.cards import qr_payload
from habitue.settings import Settings
from habitue.web import service as web_service
from tests.conftest import ADMIN_KEY, new_code

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
AXE = "/static/vendor/axe-core-4.14.1.min.js"
STAFF_PASSWORD = "console-password-1"

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[str]:
    """The application served on a free local port, against the test database."""
    settings = Settings(
        env="test",
        database_url=db_url,
        admin_key=ADMIN_KEY,
        scheduler=False,
        hmac_key="test-hmac-key",
        worker=False,
        smtp_url="smtp://127.0.0.1:9",  # email on: the links are read from the outbox
    )
    port = _free_port()
    settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture(scope="module")
def program(api: httpx.Client) -> str:
    code = new_code("web")
    r = api.post(
        "/v1/programs",
        json={"code": code, "name": "Café Habitué", "currency": "EUR", "timezone": "Europe/Paris"},
    )
    assert r.status_code == 201, r.text
    return code


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(db_kind: str) -> Path:
    path = ROOT / "test-artifacts" / "web" / db_kind
    path.mkdir(parents=True, exist_ok=True)
    return path


class Pages:
    """Checks and screenshots each page it is shown."""

    def __init__(self, page: Any, base: str, artifacts: Path) -> None:
        self.page = page
        self.base = base
        self.artifacts = artifacts
        self.audited: list[str] = []

    def check(self, name: str) -> None:
        self.page.wait_for_load_state("load")
        self.page.add_script_tag(url=self.base + AXE)
        violations = self.page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations
                  .filter(v => v.impact === "serious" || v.impact === "critical")
                  .map(v => ({id: v.id, impact: v.impact,
                              nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
            }"""
        )
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)
        assert violations == [], f"{name}: {violations}"
        self.audited.append(name)


def _decode(png: bytes, fmt: str) -> str:
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    results = zxingcpp.read_barcodes(image)
    texts = [r.text for r in results if fmt in str(r.format)]
    assert texts, f"no {fmt} in the screenshot: {[(str(r.format), r.text) for r in results]}"
    return str(texts[0])


def _emailed_link(server: str, program: str, email: str, db_url: str) -> str:
    """The sign-in link the message sender would email (`web_service.sign_in_link_url`)."""
    from sqlalchemy import select

    from habitue.db import table_of
    from habitue.messaging.models import OutboxEvent
    from habitue.programs import service as programs_service

    outbox = table_of(OutboxEvent)
    settings = Settings(env="test", hmac_key="test-hmac-key", public_url=server)
    found: list[str | None] = []

    async def find() -> None:
        db = Database(db_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)
                rows = await session.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.program_id == info.id, outbox.c.type == "member.sign_in_link")
                    .order_by(outbox.c.id.desc())
                )
                link_id = next(int(p["link_id"]) for (p,) in rows if p["email"] == email)
                found.append(
                    await web_service.sign_in_link_url(session, info, link_id, settings=settings)
                )
        finally:
            await db.dispose()

    # Playwright's sync API owns this thread's event loop: read from another one.
    reader = threading.Thread(target=lambda: asyncio.run(find()))
    reader.start()
    reader.join()
    assert found and found[0] is not None
    return found[0]


def test_member_signs_up_sees_the_card_earns_and_switches_language(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    context = browser.new_context(viewport={"width": 412, "height": 915}, locale="en-GB")
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    base = f"{server}/app/{program}"

    page.goto(f"{base}/signin")
    pages.check("portal-signin")
    page.get_by_role("link", name="Join the program", exact=True).click()
    pages.check("portal-signup")
    # A bad form first: errors next to the fields, in English, with what was typed kept.
    page.fill("#f-first_name", "Freja")
    page.fill("#f-email", "not-an-email")
    page.fill("#f-password", "short")
    page.get_by_role("button", name="Create my card", exact=True).click()
    assert page.locator("#e-email").inner_text() == "Enter a valid email address."
    assert page.input_value("#f-first_name") == "Freja"
    pages.check("portal-signup-errors")
    email = f"freja-{secrets.token_hex(3)}@example.com"
    page.fill("#f-email", email)
    page.fill("#f-password", "a-long-password")
    page.fill("#f-last_name", "Sørensen")
    page.fill("#f-birth_date", "1991-03-14")
    page.check("#c-sms")
    page.get_by_role("button", name="Create my card", exact=True).click()
    page.locator("#signup-sent").wait_for()
    pages.check("portal-signup-sent")
    # The emailed link finishes joining (the message sender's URL, made from the outbox).
    page.goto(_emailed_link(server, program, email, db_url))
    page.wait_for_url(f"{base}/card")
    pages.check("portal-card")

    member = page.request.get(f"{base}/export").json()["member"]
    number = member["card_number"]
    assert page.locator("#card-number").get_attribute("data-number") == number
    qr_text = _decode(page.locator("#qr svg").screenshot(), "QR")  # "QR Code"
    assert qr_text == qr_payload(program, number)
    bars = page.locator("#barcode svg").screenshot(path=str(artifacts / "portal-barcode.png"))
    assert _decode(bars, "Code 128") == number
    assert page.locator("#balance-available").inner_text() == "0"

    r = api.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"id": member["id"]},
            "external_id": new_code("till"),
            "total": "1250.00",
        },
    )
    assert r.status_code == 201, r.text
    page.reload()
    assert page.locator("#balance-available").inner_text() == "1,250"

    page.get_by_role("link", name="My points", exact=True).click()
    assert page.locator("#available").inner_text() == "1,250"
    assert "Points earned" in page.locator("table.history").inner_text()
    pages.check("portal-points")
    page.get_by_role("link", name="My profile", exact=True).click()
    assert page.is_checked("#c-sms")
    pages.check("portal-profile")

    # Rewards: a voucher made through the API, redeemed in the portal, shown as a coupon.
    r = api.post(
        f"/v1/programs/{program}/rewards",
        json={
            "code": "coffee-voucher",
            "kind": "voucher",
            "value": "3.00",
            "cost_points": 250,
            "texts": {"en": {"name": "A free coffee", "description": "Any size."}},
        },
    )
    assert r.status_code == 201, r.text
    now = datetime.now(UTC)
    r = api.post(
        f"/v1/programs/{program}/offers",
        json={
            "code": "latte-2",
            "texts": {"en": {"name": "Two euros off a latte"}},
            "value": "2.00",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
            "members": [member["id"]],
        },
    )
    assert r.status_code == 201, r.text
    page.get_by_role("link", name="Rewards", exact=True).click()
    pages.check("portal-rewards")
    page.get_by_role("link", name="Redeem A free coffee", exact=True).click()
    page.wait_for_url(f"{base}/rewards/coffee-voucher")
    assert page.locator("#after").inner_text() == "1,000"
    pages.check("portal-redeem-confirm")
    page.get_by_role("button", name="Spend 250 points", exact=True).click()
    page.wait_for_url(re.compile(r".*/coupons\?redeemed=coffee-voucher$"))
    code = page.locator(".coupon-code").first.get_attribute("data-code")
    assert code and re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{2}", code)
    assert "A free coffee" in page.locator("#coupons").inner_text()
    coupon_qr = _decode(page.locator("#coupons .qr svg").first.screenshot(), "QR")
    assert coupon_qr == code.replace("-", "")
    pages.check("portal-coupons")
    page.get_by_role("link", name="My offers", exact=True).click()
    page.get_by_role("button", name="Activate Two euros off a latte", exact=True).click()
    page.wait_for_url(f"{base}/offers")
    assert "Activated" in page.locator("#offers").inner_text()
    pages.check("portal-offers")
    page.get_by_role("link", name="Invite a friend", exact=True).click()
    assert page.locator("#referral-code").inner_text().strip()
    pages.check("portal-invite")
    plan = {
        "code": "vip",
        "name": "VIP Club",
        "price": "9.90",
        "currency": "EUR",
        "period": "monthly",
        "trial_days": 14,
        "multiplier": "2",
    }
    assert api.post(f"/v1/programs/{program}/club/plans", json=plan).status_code == 201
    page.get_by_role("link", name="My club", exact=True).click()
    page.get_by_role("button", name="Join VIP Club", exact=True).click()
    page.wait_for_url(f"{base}/club?done=joined")
    assert page.locator("#club-status").inner_text() == "Free trial"
    pages.check("portal-club")
    page.get_by_role("link", name="My profile", exact=True).click()

    page.get_by_role("button", name="Français", exact=True).click()
    page.wait_for_load_state("load")
    # The click's navigation may not have started when "load" is read: wait for its page.
    page.wait_for_function("t => document.querySelector('h1')?.innerText === t", arg="Mon profil")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("h1").inner_text() == "Mon profil"
    page.get_by_role("link", name="Mes points", exact=True).click()
    page.wait_for_url(re.compile(r".*/points$"))
    assert page.locator("#available").inner_text().replace("\u202f", " ") == "1 000"
    pages.check("portal-points-fr")
    page.get_by_role("button", name="Dansk", exact=True).click()
    page.wait_for_load_state("load")
    # The click's navigation may not have started when "load" is read: wait for its page.
    page.wait_for_function("t => document.querySelector('h1')?.innerText === t", arg="Mine point")
    assert page.locator("h1").inner_text() == "Mine point"
    assert page.locator("#available").inner_text() == "1.000"
    page.get_by_role("link", name="Mit kort", exact=True).click()
    page.get_by_text("Vis dette ved kassen").wait_for()
    assert page.get_by_text("Vis dette ved kassen").is_visible()
    pages.check("portal-card-da")

    # The card stays available offline once the service worker has cached it.
    page.evaluate("async () => { await navigator.serviceWorker.ready; }")
    page.reload()
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    page.reload()
    context.set_offline(True)
    try:
        page.reload()
        assert page.locator("#card-number").get_attribute("data-number") == number
        # Any other page of the portal: the portal's own offline page, not the browser's.
        page.goto(f"{base}/points")
        assert page.locator("#offline-message").is_visible()
        page.screenshot(path=str(artifacts / "portal-offline-da.png"), full_page=True)
    finally:
        context.set_offline(False)
    context.close()
    assert len(pages.audited) == 15


def _catalogue(api: httpx.Client, program: str, member_id: str) -> None:
    """A ladder, a reward redeemed once, an offer and a campaign, made through the API."""
    now = datetime.now(UTC)
    made = [
        api.post(
            f"/v1/programs/{program}/tiers",
            json={
                "metric": "qualifying_spend",
                "window": {"kind": "calendar_year"},
                "tiers": [
                    {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
                    {"code": "silver", "name": "Silver", "threshold": "150.00"},
                ],
            },
        ),
        api.post(
            f"/v1/programs/{program}/rewards",
            json={
                "code": "admin-coffee",
                "kind": "voucher",
                "value": "3.00",
                "cost_points": 10,
                "texts": {"en": {"name": "A free coffee"}},
            },
        ),
        api.post(
            f"/v1/programs/{program}/members/{member_id}/redemptions",
            json={"reward": "admin-coffee"},
        ),
        api.post(
            f"/v1/programs/{program}/offers",
            json={
                "code": "admin-latte",
                "texts": {"en": {"name": "Two euros off a latte"}},
                "value": "2.00",
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=7)).isoformat(),
                "members": [member_id],
            },
        ),
        api.post(
            f"/v1/programs/{program}/campaigns",
            json={
                "code": "autumn",
                "kind": "offer",
                "holdout_share": 0.2,
                "starts_at": (now - timedelta(days=7)).isoformat(),
                "ends_at": (now + timedelta(days=7)).isoformat(),
            },
        ),
    ]
    for r in made:
        assert r.status_code == 201, r.text


async def _staff(db_url: str, email: str) -> None:
    db = Database(db_url)
    try:
        await db.write(
            lambda s: web_service.create_staff(
                s, email=email, role="owner", password=STAFF_PASSWORD
            )
        )
    finally:
        await db.dispose()


def owner_on(
    browser: Any, server: str, artifacts: Path, db_url: str, program: str, path: str = ""
) -> tuple[Any, Pages]:
    """A new owner signed in to the console (desktop, English), on `/admin/{program}{path}`:
    the page asked for it first, was sent to the sign-in form and came back."""
    email = f"owner-{secrets.token_hex(4)}@example.com"
    maker = threading.Thread(target=lambda: asyncio.run(_staff(db_url, email)))
    maker.start()
    maker.join()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    page.goto(f"{server}/admin/{program}{path}")
    page.wait_for_url(re.compile(r".*/admin/signin\?next=.*"))
    page.fill("#f-email", email)
    page.fill("#f-password", STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}{path}")
    return page, pages


def test_admin_finds_a_member_adjusts_points_and_simulates(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    m = api.post(
        f"/v1/programs/{program}/members",
        json={
            "email": f"ida-{secrets.token_hex(3)}@example.com",
            "first_name": "Ida",
            "last_name": "Lefebvre",
        },
    ).json()
    api.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"id": m["id"]},
            "external_id": new_code("t"),
            "total": "40.00",
        },
    )
    rule = {
        "code": "hot-drinks",
        "name": "Double points on hot drinks",
        "event_type": "purchase",
        "line_condition": "line.category == 'tea'",
        "effect": {"kind": "multiplier", "factor": "2"},
    }
    assert api.post(f"/v1/programs/{program}/rules", json=rule).status_code == 201
    email = f"owner-{secrets.token_hex(3)}@example.com"
    # Playwright's sync API owns this thread's event loop: create the user from another one.
    maker = threading.Thread(target=lambda: asyncio.run(_staff(db_url, email)))
    maker.start()
    maker.join()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    pages = Pages(page, server, artifacts)

    page.goto(f"{server}/admin/{program}")
    page.wait_for_url(re.compile(r".*/admin/signin\?next=.*"))
    pages.check("admin-signin")
    page.fill("#f-email", email)
    page.fill("#f-password", STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}")
    page.wait_for_function("window.Chart && Chart.getChart('chart-points') !== undefined")
    pages.check("admin-dashboard")

    page.get_by_role("link", name="Members", exact=True).click()
    page.fill("#q", "lefeb")
    page.get_by_role("button", name="Search", exact=True).click()
    pages.check("admin-members")
    page.locator("#results").get_by_role("link", name="Ida Lefebvre", exact=True).click()
    assert page.locator("#available").inner_text() == "40"
    pages.check("admin-member")
    page.fill("#f-points", "-15")
    page.get_by_role("button", name="Record the adjustment", exact=True).click()
    assert "Give a reason" in page.locator("#e-reason").inner_text()
    assert page.input_value("#f-points") == "-15"
    page.fill("#f-reason", "double scan at the till")
    page.get_by_role("button", name="Record the adjustment", exact=True).click()
    page.wait_for_url(re.compile(r".*adjusted=-15"))
    assert page.locator("#available").inner_text() == "25"
    assert "double scan at the till" in page.locator("#ledger").inner_text()
    pages.check("admin-member-adjusted")

    page.get_by_role("link", name="Simulate a basket for this member", exact=True).click()
    assert page.input_value("#f-member") == m["card_number"]
    page.fill("#f-lines", "latte,coffee,3,3.80\nbeans-250g,retail,1,9.90")
    page.get_by_role("button", name="Simulate", exact=True).click()  # htmx swaps the result in
    page.wait_for_selector("#sim-points")
    assert page.locator("#sim-points").inner_text() == "21"
    assert page.locator("#effects tbody tr").count() >= 1
    pages.check("admin-simulator")

    # The same basket with a promo code, priced as the till prices it (issue 21, item 7):
    # 3 × 3.80 + 9.90 = 21.30, 10 % off = −2.13, 19.17 to pay, 19 points (1 per euro paid).
    ten = {"code": "ten", "trigger": "code", "promo_code": "TEN",
           "effect": {"type": "order_percent", "percent": "10"}}  # fmt: skip
    assert api.post(f"/v1/programs/{program}/promotions", json=ten).status_code == 201
    page.fill("#f-codes", "ten")
    page.get_by_role("button", name="Simulate", exact=True).click()
    page.wait_for_selector("#basket")
    assert page.locator('#basket tr[data-code="ten"] td').nth(2).inner_text() == "−€2.13"
    assert page.locator("#b-to-pay td").get_attribute("data-amount") == "19.17"
    assert page.locator("#sim-points").inner_text() == "19"
    pages.check("admin-simulator-basket")
    page.fill("#f-codes", "")

    # Edit the rule in the simulator: coffee instead of tea, saved as a draft; the simulated
    # points change with the draft in place while the live rule stays; published from the
    # draft's page, it is live.
    page.get_by_role("link", name="hot-drinks", exact=True).click()
    assert "\"line.category == 'tea'\"" in page.input_value("#f-rule_json")
    page.fill("#f-lines", "latte,coffee,3,3.80\nbeans-250g,retail,1,9.90")
    page.fill("#f-rule_json", "{not json")
    page.get_by_role("button", name="Save as a draft and simulate", exact=True).click()
    page.wait_for_selector("#e-rule_json")
    assert "not a JSON object" in page.locator("#e-rule_json").inner_text()
    edited = json.dumps({**rule, "line_condition": "line.category == 'coffee'"}, indent=2)
    page.fill("#f-rule_json", edited)
    page.get_by_role("button", name="Save as a draft and simulate", exact=True).click()
    page.wait_for_selector("#rule-saved")
    assert int(page.locator("#sim-points").inner_text()) > 21
    assert "With the live rules: 21." in page.locator("#sim-with-draft").inner_text()
    assert "hot-drinks" in page.locator("#effects").inner_text()
    pages.check("admin-simulator-rule")
    live = api.get(f"/v1/programs/{program}/rules/hot-drinks").json()
    assert live["spec"]["line_condition"] == "line.category == 'tea'"
    page.click("#draft-link")
    page.wait_for_url(f"{server}/admin/{program}/rules/hot-drinks/draft")
    pages.check("admin-simulator-rule-draft")
    page.click("#publish")
    page.wait_for_url(re.compile(rf".*/admin/{program}/rules\?published=hot-drinks.*"))
    live = api.get(f"/v1/programs/{program}/rules/hot-drinks").json()
    assert live["spec"]["line_condition"] == "line.category == 'coffee'"
    assert live["versions"][-1]["actor"].startswith("staff:owner-")

    # Partners and a statement; a message template previewed for the member while typed.
    noe = api.post(f"/v1/programs/{program}/members", json={"first_name": "Noé"}).json()
    air = {
        "code": "air",
        "name": "Air Habitué",
        "funding_rate": "1.00",
        "reimbursement_rate": "0.50",
    }
    assert api.post(f"/v1/programs/{program}/partners", json=air).status_code == 201
    r = api.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"id": noe["id"]},
            "external_id": new_code("air"),
            "source": "air",
            "total": "120.00",
        },
    )
    assert r.status_code == 201, r.text
    page.get_by_role("link", name="Partners", exact=True).click()
    pages.check("admin-partners")
    page.get_by_role("link", name="Air Habitué", exact=True).click()
    assert page.locator("#points-issued").inner_text() == "120"
    assert page.locator("#funding").inner_text() == "€1.20"
    pages.check("admin-partner-statement")
    page.get_by_role("link", name="Messages", exact=True).click()
    pages.check("admin-messages")
    page.get_by_role("link", name="Welcome (welcome)", exact=True).click()
    page.fill("#f-subject", "Welcome, {{ first_name }}")
    page.fill("#f-body", "<p>Hello {{ first_name }}, you have {{ points }} {{ points_name }}.</p>")
    page.fill("#f-member", m["card_number"])
    page.get_by_role("button", name="Preview", exact=True).click()  # htmx swaps the preview in
    page.locator("#preview-subject", has_text="Welcome, Ida").wait_for()
    assert page.locator("#preview-body").text_content() == "<p>Hello Ida, you have 25 points.</p>"
    assert page.frame_locator("#preview-frame").locator("p").inner_text() == (
        "Hello Ida, you have 25 points."
    )
    pages.check("admin-message-preview")
    page.get_by_role("button", name="Save the template", exact=True).click()
    page.wait_for_url(re.compile(r".*/messages\?saved=welcome/email/en$"))

    # The catalogue pages: tiers, rewards, offers, campaigns and an uplift report.
    _catalogue(api, program, m["id"])
    page.get_by_role("link", name="Tiers", exact=True).click()
    assert "Silver" in page.locator("#ladder").inner_text()
    pages.check("admin-tiers")
    page.get_by_role("link", name="Edit Silver", exact=True).click()
    assert page.input_value("#f-threshold") == "150.00"
    pages.check("admin-tier-edit")
    page.get_by_role("link", name="Rewards", exact=True).click()
    assert "Available" in page.locator("#reward-admin-coffee").inner_text()
    assert page.locator("#redemptions-table tbody tr").count() >= 1
    pages.check("admin-rewards")
    page.get_by_role("link", name="New reward", exact=True).click()
    pages.check("admin-reward-new")
    page.get_by_role("link", name="Offers", exact=True).click()
    assert "Two euros off a latte" in page.locator("#offers").inner_text()
    pages.check("admin-offers")
    page.get_by_role("link", name="New offer", exact=True).click()
    pages.check("admin-offer-new")
    page.get_by_role("link", name="Campaigns", exact=True).click()
    pages.check("admin-campaigns")
    page.get_by_role("link", name="autumn", exact=True).click()
    assert page.locator("#groups").is_visible()
    pages.check("admin-campaign-report")
    page.get_by_role("button", name="Français", exact=True).click()
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text() == "Campagne autumn"
    assert "Groupe témoin" in page.locator("#groups").inner_text()
    page.get_by_role("link", name="Simulateur de règles", exact=True).click()
    assert page.locator("h1").inner_text() == "Simulateur de règles"
    context.close()


@pytest.mark.parametrize("locale", ["en", "fr", "da"])
def test_the_portal_keeps_its_word_on_a_phone(
    server: str,
    api: httpx.Client,
    program: str,
    browser: Any,
    artifacts: Path,
    db_url: str,
    locale: str,
) -> None:
    """Issue 19, item 6, at 390×844 in each language: consents unticked, a friend's code at
    sign-up, the card above the fold, redeem disabled below the cost and confirmed, a product
    with its address and its order, a coupon code whole in each group, the invite's copy
    button, a password change, and the offline page."""
    from habitue.web.i18n import translations

    _ = translations(locale).gettext
    terms = {"referrer_points": 50, "referee_points": 25}
    assert api.put(f"/v1/programs/{program}/referrals/settings", json=terms).status_code == 200
    friend = api.post(f"/v1/programs/{program}/members", json={"first_name": "Leo"}).json()
    ref = api.get(f"/v1/programs/{program}/members/{friend['id']}/referral-code").json()["code"]
    for code, kind, cost in ((f"mug-{locale}", "product", 400), (f"tea-{locale}", "voucher", 100)):
        body: dict[str, Any] = {"code": code, "kind": kind, "cost_points": cost}
        body["texts"] = {locale: {"name": f"{kind}-{locale}"}}
        if kind == "voucher":
            body["value"] = "2.00"
        assert api.post(f"/v1/programs/{program}/rewards", json=body).status_code == 201

    context = browser.new_context(viewport={"width": 390, "height": 844}, locale=locale)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    base = f"{server}/app/{program}"
    page.goto(f"{base}/signup?ref={ref}")
    assert page.locator("html").get_attribute("lang") == locale
    assert page.input_value("#f-referral_code") == ref
    boxes = page.locator("input[type=checkbox][name^=consent_]")
    assert boxes.count() == 6  # email, SMS, push, analytics, profiling, partners
    assert not any(boxes.nth(i).is_checked() for i in range(6))  # nothing ticked for them
    pages.check(f"word-signup-{locale}")
    email = f"word-{locale}-{secrets.token_hex(3)}@example.com"
    page.fill("#f-email", email)
    page.fill("#f-password", "a-long-password")
    page.click("button.primary[type=submit]")
    page.locator("#signup-sent").wait_for()
    page.goto(_emailed_link(server, program, email, db_url))
    page.wait_for_url(f"{base}/card")

    # The card is first on a phone: its QR code is whole above the fold.
    qr = page.locator("#qr svg").bounding_box()
    assert qr is not None and qr["y"] >= 0 and qr["y"] + qr["height"] <= 844, qr
    pages.check(f"word-card-{locale}")
    member = page.request.get(f"{base}/export").json()["member"]
    refs = api.get(f"/v1/programs/{program}/members/{member['id']}/referrals").json()
    assert [r["status"] for r in refs] == ["pending"]  # the friend's code counted
    r = api.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"id": member["id"]},
            "external_id": new_code("till"),
            "total": "250.00",
        },
    )
    assert r.status_code == 201, r.text

    # Redeem: disabled below the cost, with what is missing; confirmed before spending.
    page.goto(f"{base}/rewards")
    assert page.locator(f"#choose-mug-{locale}").is_disabled()
    assert page.locator(f"#short-mug-{locale}").is_visible()
    pages.check(f"word-rewards-{locale}")
    page.click(f"#choose-tea-{locale}")
    page.wait_for_url(f"{base}/rewards/tea-{locale}")
    pages.check(f"word-redeem-confirm-{locale}")
    page.click("#confirm-redeem")
    page.wait_for_url(re.compile(r".*/coupons\?redeemed="))
    groups = page.locator(".coupon-code .code-group")
    assert groups.count() == 4
    for i in range(4):  # no group broken across lines on a phone
        assert groups.nth(i).evaluate("e => e.getClientRects().length") == 1
        box = groups.nth(i).bounding_box()
        assert box is not None and box["height"] < 60, box
    pages.check(f"word-coupons-{locale}")

    # A product asks for its address, refuses where the person looks, then shows its order.
    r = api.post(
        f"/v1/programs/{program}/events",
        json={
            "type": "purchase",
            "member": {"id": member["id"]},
            "external_id": new_code("till"),
            "total": "400.00",
        },
    )
    assert r.status_code == 201, r.text
    page.goto(f"{base}/rewards/mug-{locale}")
    page.fill("#f-address_name", "Ana Martin")
    page.click("#confirm-redeem")
    alert = page.locator("#e-reward")
    assert alert.is_visible()
    box = alert.bounding_box()
    assert box is not None and 0 <= box["y"] < 844  # in view, not below the fold
    assert page.locator("#e-address_city").inner_text() == _(
        "Fill in this part of the delivery address."
    )
    pages.check(f"word-redeem-address-{locale}")
    page.fill("#f-address_street", "3 rue des Lilas")
    page.fill("#f-address_postcode", "75011")
    page.fill("#f-address_city", "Paris")
    page.fill("#f-address_country", "France")
    page.click("#confirm-redeem")
    page.wait_for_url(re.compile(r".*/rewards\?redeemed=mug-.*#orders$"))
    assert _("Ordered: we are preparing it") in page.locator("#orders").inner_text()
    pages.check(f"word-orders-{locale}")

    # Invite: a link with the code, a copy button (and Share where the device has it).
    page.goto(f"{base}/invite")
    assert page.input_value("#invite-link").endswith(
        f"/signup?ref={page.locator('#referral-code').get_attribute('data-code')}"
    )
    has_share = page.evaluate("() => typeof navigator.share === 'function'")
    assert page.locator("#share-button").is_visible() == has_share
    page.click("#copy-button")
    # The status is written once the clipboard's promise settles: wait for it, then read it.
    page.wait_for_function(
        "t => document.querySelector('#share-status').textContent === t", arg=_("Copied.")
    )
    assert page.locator("#share-status").inner_text() == _("Copied.")
    pages.check(f"word-invite-{locale}")

    # Password change, where the profile says so.
    page.goto(f"{base}/profile")
    page.fill("#f-current_password", "a-long-password")
    page.fill("#f-new_password", "another-long-password")
    page.click("#password button[type=submit]")
    page.locator("#password-saved").wait_for()
    pages.check(f"word-profile-{locale}")

    # Offline: the card still opens, and another page shows the portal's offline page.
    page.goto(f"{base}/card")
    page.evaluate("async () => { await navigator.serviceWorker.ready; }")
    page.reload()
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    context.set_offline(True)
    try:
        page.goto(f"{base}/points")
        assert page.locator("#offline-message").inner_text() == _(
            "This page needs a connection. Your card still works: it opens without one."
        )
        page.screenshot(path=str(artifacts / f"word-offline-{locale}.png"), full_page=True)
    finally:
        context.set_offline(False)
    context.close()


@pytest.mark.parametrize("locale", ["en", "fr", "da"])
def test_console_member_list_club_and_words(
    server: str,
    api: httpx.Client,
    program: str,
    browser: Any,
    artifacts: Path,
    db_url: str,
    locale: str,
) -> None:
    """Issue 19, items 4 and 5, in each language: the member list with its filters and CSV
    export, the club page with a payment at the counter, the Words page that names the
    points; axe on each page, a screenshot of each."""
    from habitue.web.i18n import translations

    _ = translations(locale).gettext
    plan: dict[str, Any] = {"code": f"club-{locale}", "name": f"Club {locale}", "price": "4.50"}
    plan |= {"currency": "EUR", "period": "monthly", "privileges": ["free_refill"]}
    assert api.post(f"/v1/programs/{program}/club/plans", json=plan).status_code == 201
    m = api.post(
        f"/v1/programs/{program}/members",
        json={
            "first_name": "Maja",
            "email": f"maja-{locale}@example.com",
            "consents": {"sms": True},
        },
    ).json()
    r = api.post(
        f"/v1/programs/{program}/members/{m['id']}/club/subscriptions",
        json={"plan": f"club-{locale}"},
    )
    assert r.status_code == 201, r.text
    sub = r.json()["id"]
    email = f"owner-{locale}-{secrets.token_hex(3)}@example.com"
    maker = threading.Thread(target=lambda: asyncio.run(_staff(db_url, email)))
    maker.start()
    maker.join()
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale=locale)
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    page.goto(f"{server}/admin/signin")
    page.fill("#f-email", email)
    page.fill("#f-password", STAFF_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_function("!location.pathname.endsWith('/signin')")
    page.goto(f"{server}/admin/{program}/members")
    page.locator(f"footer button[lang={locale}]").click()
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == locale

    page.goto(f"{server}/admin/{program}/members")
    page.select_option("#f-consent", "sms")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*consent=sms.*"))
    assert page.locator(f'tr[data-id="{m["id"]}"]').is_visible()
    assert "/members.csv?consent=sms" in (page.locator("#csv-export").get_attribute("href") or "")
    pages.check(f"console-members-{locale}")
    href = page.locator("#csv-export").get_attribute("href") or ""
    csv_text = page.request.get(server + href).text()
    assert m["id"] in csv_text

    page.goto(f"{server}/admin/{program}/club")
    row = page.locator(f"#sub-{sub}")
    assert _("Waiting for the first payment") in row.inner_text()
    pages.check(f"console-club-{locale}")
    row.locator("button", has_text=_("Record a payment")).click()
    page.wait_for_url(re.compile(r".*done=paid.*"))
    assert page.locator(f"#sub-{sub}").get_attribute("data-status") == "active"
    assert page.locator("#club-done").inner_text() == _(
        "The payment is recorded: the membership is active."
    )

    rule = {
        "code": f"tea-{locale}",
        "name": f"Tea {locale}",
        "event_type": "purchase",
        "line_condition": "line.category == 'tea'",
        "effect": {"kind": "multiplier", "factor": "2"},
    }
    assert api.post(f"/v1/programs/{program}/rules", json=rule).status_code == 201
    page.goto(f"{server}/admin/{program}/rules")
    switch = page.locator(f"#rule-tea-{locale} button[role=switch]")
    assert switch.get_attribute("aria-checked") == "true"
    pages.check(f"console-rules-{locale}")
    switch.click()
    page.wait_for_load_state("load")
    assert page.locator(f"#rule-tea-{locale}").get_attribute("data-active") == "off"
    page.goto(f"{server}/admin/{program}/rules/tea-{locale}/history")
    assert page.locator("#version-2").is_visible()
    pages.check(f"console-rule-history-{locale}")

    page.goto(f"{server}/admin/{program}")
    assert page.locator("#owed-table").is_visible()
    assert page.locator("#expiry-table").is_visible()

    page.goto(f"{server}/admin/{program}/words")
    pages.check(f"console-words-{locale}")
    page.fill(f"#w-{locale}-points-", f"grains-{locale}")
    page.click("form button.primary[type=submit]")
    page.locator("#words-saved").wait_for()
    assert page.input_value(f"#w-{locale}-points-") == f"grains-{locale}"
    context.close()
