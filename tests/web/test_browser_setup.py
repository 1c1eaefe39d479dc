"""The setup wizard in Chromium (Playwright): an owner sets a new program up from the console,
step by step with a mistake, Back and a logo, in English, French and Danish; every step passes
axe (serious and critical) and is screenshotted; the portal then wears the program's look."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import asyncio
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import new_code
from tests.web.test_admin_setup import tiny_png
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    STAFF_PASSWORD,
    Pages,
    _staff,
    api,
    artifacts,
    browser,
    program,
    server,
)

WORDS = {
    "en": ("Next", "Back", "Create the program", "Step 1 of 6: The program", "en-GB"),
    "fr": ("Suivant", "Retour", "Créer le programme", "Étape 1 sur 6 : Le programme", "fr-FR"),
    "da": ("Næste", "Tilbage", "Opret programmet", "Trin 1 af 6: Programmet", "da-DK"),
}


@pytest.mark.parametrize("lang", ["en", "fr", "da"])
def test_owner_sets_up_a_program_step_by_step(
    lang: str,
    server: str,
    api: httpx.Client,
    program: str,
    browser: Any,
    artifacts: Path,
    db_url: str,
    tmp_path: Path,
) -> None:
    next_, back, create, first_title, accept = WORDS[lang]
    email = f"setup-{secrets.token_hex(3)}@example.com"
    maker = threading.Thread(target=lambda: asyncio.run(_staff(db_url, email)))
    maker.start()
    maker.join()
    logo = tmp_path / "logo.png"
    logo.write_bytes(tiny_png())

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=accept)
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    page.goto(f"{server}/admin/")
    page.wait_for_url(re.compile(r".*/admin/signin\?next=.*"))
    page.fill("#f-email", email)
    page.fill("#f-password", STAFF_PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r".*/admin/.*"))
    page.locator('nav a[href="/admin/new"]').click()
    page.wait_for_url(f"{server}/admin/new")
    assert page.locator("#step-title").inner_text() == first_title
    pages.check(f"admin-setup-program-{lang}")

    def go(name: str) -> None:
        page.get_by_role("button", name=name, exact=True).click()
        page.wait_for_load_state("load")

    # A mistake first: the step stays, the field is marked and explained, what was typed kept.
    code = new_code("wiz")
    page.fill("#f-name", "")
    page.fill("#f-code", "Not A Code")
    go(next_)
    page.locator(".error-summary").wait_for()
    assert page.locator("#f-code").get_attribute("aria-invalid") == "true"
    assert page.locator("#f-name").get_attribute("aria-invalid") == "true"
    assert page.input_value("#f-code") == "Not A Code"
    pages.check(f"admin-setup-program-errors-{lang}")
    page.fill("#f-name", "Café du Nord")
    page.fill("#f-code", code)
    page.select_option("#f-currency", "DKK")
    page.select_option("#f-timezone", "Europe/Copenhagen")
    go(next_)

    page.locator("#f-earn_rate").wait_for()
    pages.check(f"admin-setup-earning-{lang}")
    page.fill("#f-earn_rate", "2")
    page.select_option("#f-earn_on", "tax_excluded")
    go(next_)

    page.locator("#f-primary_color").wait_for()
    pages.check(f"admin-setup-look-{lang}")
    page.fill("#f-primary_color", "#7a1f3d")
    page.set_input_files("#f-logo_file", str(logo))
    go(next_)

    page.locator("#f-tier1_name").wait_for()
    pages.check(f"admin-setup-tiers-{lang}")
    # Back shows the look again, with the logo kept.
    go(back)
    page.locator(".logo-preview").wait_for()
    assert page.input_value("#f-primary_color") == "#7a1f3d"
    go(next_)
    page.fill("#f-tier1_name", "Bronze")
    page.fill("#f-tier1_threshold", "0")
    page.fill("#f-tier2_name", "Gold")
    page.fill("#f-tier2_threshold", "1500")
    page.fill("#f-tier2_multiplier", "1.5")
    go(next_)

    page.locator("#f-welcome_body").wait_for()
    assert page.locator("#f-welcome_locale").input_value() == lang
    pages.check(f"admin-setup-welcome-{lang}")
    go(next_)

    page.locator("dl.review").wait_for()
    assert "Gold" in page.locator("dl.review").inner_text()
    pages.check(f"admin-setup-review-{lang}")
    assert api.get(f"/v1/programs/{code}").status_code == 404
    go(create)
    page.wait_for_url(f"{server}/admin/{code}?created=1")
    page.locator("#created").wait_for()
    pages.check(f"admin-setup-created-{lang}")

    made = api.get(f"/v1/programs/{code}").json()
    assert made["earn_on"] == "tax_excluded"
    assert (made["currency"], made["timezone"], made["earn_rate"]) == (
        "DKK",
        "Europe/Copenhagen",
        "2",
    )
    assert len(api.get(f"/v1/programs/{code}/tiers").json()["tiers"]) == 2
    welcome = api.get(f"/v1/programs/{code}/message-templates/welcome/email/{lang}")
    assert welcome.status_code == 200, welcome.text

    # The portal wears the look: the header in the main colour, the logo beside the name.
    page.goto(f"{server}/app/{code}/signup")
    header = page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor")
    assert header == "rgb(122, 31, 61)"
    assert page.locator("header.top img.logo").evaluate("e => e.naturalWidth") == 1
    pages.check(f"portal-signup-branded-{lang}")
    context.close()
