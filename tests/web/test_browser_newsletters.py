"""The console's newsletters page in Chromium (Playwright): an owner sends a
newsletter to a segment with a hold-out, reads its report, in English, French and Danish; every
page passes axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
import secrets
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


def test_owner_sends_a_newsletter_and_reads_its_report(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    for i in range(5):
        r = api.post(
            f"/v1/programs/{program}/members",
            json={"email": f"nl-{secrets.token_hex(3)}@example.com", "first_name": f"M{i}",
                  "consents": {"email": True}, "attributes": {"club": "books"}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
    r = api.post(
        f"/v1/programs/{program}/segments",
        json={"code": "readers", "condition": 'member.attributes.club == "books"'},
    )
    assert r.status_code == 201, r.text
    r = api.put(
        f"/v1/programs/{program}/message-templates/book_club/email/en",
        json={"subject": "Book club", "body": "<p>Hello {{ first_name }}</p>"},
    )
    assert r.status_code == 201, r.text
    page, pages = owner_on(browser, server, artifacts, db_url, program, "/newsletters")
    assert page.locator("#no-newsletters").is_visible()
    pages.check("admin-newsletters-empty")

    # A mistake first: kept, marked, explained.
    page.fill("#f-code", "Book Club!")
    page.select_option("#f-segment", "readers")
    page.select_option("#f-template", "book_club")
    page.fill("#f-holdout_share", "20")
    page.get_by_role("button", name="Send the newsletter", exact=True).click()
    page.locator(".error-summary").wait_for()
    assert page.locator("#f-code").get_attribute("aria-invalid") == "true"
    pages.check("admin-newsletters-error")

    page.fill("#f-code", "book_club_dec")
    page.get_by_role("button", name="Send the newsletter", exact=True).click()
    page.wait_for_url(re.compile(r".*/newsletters\?sent=book_club_dec$"))
    row = page.locator("#newsletter-book_club_dec")
    assert row.get_attribute("data-status") == "sent"
    targeted = int(row.locator('[data-figure="targeted"]').inner_text())
    holdout = int(row.locator('[data-figure="holdout"]').inner_text())
    assert targeted + holdout == 5
    pages.check("admin-newsletters-report")
    page.get_by_role("link", name="Newsletters", exact=True).wait_for()

    for locale, title in (("fr-FR", "Lettres d'information"), ("da-DK", "Nyhedsbreve")):
        other = browser.new_context(locale=locale, storage_state=page.context.storage_state())
        localized = other.new_page()
        localized.goto(f"{server}/admin/{program}/newsletters")
        assert localized.locator("h1").inner_text() == title
        assert localized.locator("#newsletter-book_club_dec").is_visible()
        Pages(localized, server, artifacts).check(f"admin-newsletters-{locale[:2]}")
        other.close()
    page.context.close()
