"""The built-in texts in Chromium (Playwright): an owner opens the built-in Danish birthday SMS
from the Messages page, reads its preview, saves their own; the pages in English, French and
Danish pass axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.web.test_browser import (  # noqa: F401 (fixtures)
    STAFF_PASSWORD,
    Pages,
    _staff,
    api,
    artifacts,
    browser,
    owner_on,
    program,
    server,
)


def test_owner_opens_a_built_in_sms_and_replaces_it(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    page, pages = owner_on(browser, server, artifacts, db_url, program, "/messages")
    pages.check("admin-messages-built-in")

    page.locator("#built-in-birthday-sms a[lang=da]").click()
    page.wait_for_url(re.compile(r".*/messages/edit\?code=birthday&channel=sms&locale=da$"))
    assert page.locator("#built-in-text").is_visible()
    assert page.input_value("#f-body").startswith("Tillykke med fødselsdagen, {{ first_name }}")
    assert page.locator("#preview-body").inner_text().startswith("Tillykke med fødselsdagen, Alex")
    pages.check("admin-message-built-in-sms")
    page.fill("#f-body", "Tillykke, {{ first_name }}!")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.locator("#preview-body", has_text="Tillykke, Alex!").wait_for()
    page.get_by_role("button", name="Save the template", exact=True).click()
    page.wait_for_url(re.compile(r".*/messages\?saved=birthday/sms/da$"))
    assert page.locator("#built-in-birthday-sms a[lang=da]").get_attribute("data-saved") == "yes"
    r = api.get(f"/v1/programs/{program}/message-templates/birthday/sms/da")
    assert r.status_code == 200 and r.json()["body"] == "Tillykke, {{ first_name }}!"

    for locale, title in (("fr-FR", "Textes intégrés"), ("da-DK", "Indbyggede tekster")):
        other = browser.new_context(locale=locale, storage_state=page.context.storage_state())
        localized = other.new_page()
        localized.goto(f"{server}/admin/{program}/messages")
        assert localized.locator("#built-in-title").inner_text() == title
        Pages(localized, server, artifacts).check(f"admin-messages-built-in-{locale[:2]}")
        localized.goto(
            f"{server}/admin/{program}/messages/edit?code=tier_up&channel=push&locale=fr"
        )
        assert localized.locator("#preview-subject").inner_text() == "Vous êtes maintenant Gold"
        Pages(localized, server, artifacts).check(f"admin-message-built-in-push-{locale[:2]}")
        other.close()
    page.context.close()
