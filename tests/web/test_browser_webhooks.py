"""The console's webhooks pages in Chromium (Playwright): an owner adds an endpoint (a mistake
first, shown on the page), reads its secret once, changes its subscriptions, rotates its secret
and deletes it, in English, French and Danish; every page passes axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

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


def test_owner_manages_a_webhook_endpoint(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    page, pages = owner_on(browser, server, artifacts, db_url, program, "/webhooks")
    pages.check("admin-webhooks-empty")

    # A mistake first: an address that is not http(s), no event chosen.
    page.fill("#f-url", "ftp://shop.example.com/hooks")
    page.get_by_role("button", name="Add the endpoint", exact=True).click()
    page.locator(".error-summary").wait_for()
    assert page.locator("#f-url").get_attribute("aria-invalid") == "true"
    assert page.locator("#e-events").is_visible()
    pages.check("admin-webhooks-error")
    assert api.get(f"/v1/programs/{program}/webhooks").json()["items"] == []

    page.fill("#f-url", "https://shop.example.com/hooks")
    page.get_by_label("points.earned", exact=True).check()
    page.get_by_role("button", name="Add the endpoint", exact=True).click()
    page.locator("#new-secret").wait_for()
    secret = page.locator("#new-secret code").inner_text()
    assert secret.startswith("whsec_")
    pages.check("admin-webhooks-made")
    [hook] = api.get(f"/v1/programs/{program}/webhooks").json()["items"]
    assert hook["events"] == ["points.earned"]

    page.get_by_role("link", name="Change, rotate the secret, or see every delivery").click()
    page.wait_for_url(f"{server}/admin/{program}/webhooks/{hook['id']}")
    assert secret not in page.content()
    page.get_by_label("tier.changed", exact=True).check()
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#webhook-saved").wait_for()
    pages.check("admin-webhook")
    [hook] = api.get(f"/v1/programs/{program}/webhooks").json()["items"]
    assert hook["events"] == ["points.earned", "tier.changed"]

    page.get_by_role("button", name="Rotate the secret", exact=True).click()
    page.locator("#new-secret").wait_for()
    assert page.locator("#new-secret code").inner_text() not in ("", secret)

    for locale, title in (("fr-FR", "Nouveau point de réception"), ("da-DK", "Nyt modtagepunkt")):
        other = browser.new_context(locale=locale, storage_state=page.context.storage_state())
        localized = other.new_page()
        localized.goto(f"{server}/admin/{program}/webhooks")
        assert localized.locator("#new-webhook").inner_text() == title
        Pages(localized, server, artifacts).check(f"admin-webhooks-{locale[:2]}")
        localized.goto(f"{server}/admin/{program}/webhooks/{hook['id']}")
        Pages(localized, server, artifacts).check(f"admin-webhook-{locale[:2]}")
        other.close()

    page.goto(f"{server}/admin/{program}/webhooks/{hook['id']}")
    page.get_by_role("button", name="Delete", exact=True).click()
    page.locator("#webhook-deleted").wait_for()
    assert api.get(f"/v1/programs/{program}/webhooks").json()["items"] == []
    page.context.close()
