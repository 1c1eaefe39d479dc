"""Campaigns with a subject in Chromium (Playwright), issue 19 item 3, in English, French and
Danish: the new-campaign form refuses a campaign that names nothing, then one measuring a bonus
rule is made; before its start the report shows when it starts and no figures; a campaign that
has started shows its verdict and significance before any return. axe on every page, a
screenshot of each."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from habitue.web.i18n import translations
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    Pages,
    api,
    artifacts,
    browser,
    owner_on,
    program,
    server,
)


def _local(moment: datetime) -> str:
    """A moment as a `datetime-local` value in the test program's zone (Europe/Paris)."""
    return moment.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("locale", ["en", "fr", "da"])
def test_a_campaign_names_its_subject_and_shows_no_figures_before_it_starts(
    server: str,
    api: httpx.Client,
    program: str,
    browser: Any,
    artifacts: Path,
    db_url: str,
    locale: str,
) -> None:
    _ = translations(locale).gettext
    v1 = f"/v1/programs/{program}"
    rule = {"code": f"latte-{locale}", "name": f"Latte {locale}", "event_type": "purchase",
            "effect": {"kind": "fixed", "points": 5}}  # fmt: skip
    assert api.post(f"{v1}/rules", json=rule).status_code == 201
    now = datetime.now(UTC)
    started = {"code": f"running-{locale}", "kind": "rule", "subject": rule["code"],
               "holdout_share": 0.5, "starts_at": (now - timedelta(days=1)).isoformat(),
               "ends_at": (now + timedelta(days=6)).isoformat()}  # fmt: skip
    assert api.post(f"{v1}/campaigns", json=started).status_code == 201
    for i in range(6):
        m = api.post(f"{v1}/members", json={"first_name": f"M{i}"}).json()
        body = {"type": "purchase", "member": {"id": m["id"]}, "external_id": f"{locale}-{i}",
                "total": f"{10 + 4 * i}.00"}  # fmt: skip
        assert api.post(f"{v1}/events", json=body).status_code == 201

    english, _pages = owner_on(browser, server, artifacts, db_url, program, "/campaigns")
    context = browser.new_context(
        locale={"en": "en-GB", "fr": "fr-FR", "da": "da-DK"}[locale],
        storage_state=english.context.storage_state(),
    )
    english.context.close()
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    page.goto(f"{server}/admin/{program}/campaigns/new")
    assert page.locator("html").get_attribute("lang") == locale
    assert page.locator("label[for=f-subject]").inner_text().startswith(_("What it measures"))
    pages.check(f"campaign-new-{locale}")

    # Nothing measured: refused on the field, nothing made.
    code = f"spring-{locale}"
    page.fill("#f-code", code)
    page.fill("#f-holdout_share", "50")
    page.fill("#f-starts_at", _local(now + timedelta(days=2)))
    page.fill("#f-ends_at", _local(now + timedelta(days=9)))
    page.get_by_role("button", name=_("Create the campaign"), exact=True).click()
    page.locator("#e-subject").wait_for()
    assert page.locator(".error-summary").inner_text() == _(
        "Please correct the fields marked below."
    )
    assert page.locator("#f-subject").get_attribute("aria-invalid") == "true"
    pages.check(f"campaign-new-error-{locale}")
    assert api.get(f"{v1}/campaigns/{code}/report").status_code == 404

    page.select_option("#f-subject", f"rule:{rule['code']}")
    page.get_by_role("button", name=_("Create the campaign"), exact=True).click()
    page.wait_for_url(re.compile(rf".*/campaigns/{code}/report\?created=1"))
    assert api.get(f"{v1}/campaigns/{code}/report").json()["subject"] == rule["code"]
    assert page.locator("#not-started").is_visible()
    assert page.locator("#effect").count() == 0 and page.locator("#groups").count() == 0
    assert rule["code"] in page.locator("#subject").inner_text()
    pages.check(f"campaign-not-started-{locale}")

    page.goto(f"{server}/admin/{program}/campaigns/{started['code']}/report")
    assert page.locator("#not-started").count() == 0
    text = page.content()
    assert text.index('id="verdict"') < text.index('id="effect-significant"') < text.index(
        'id="effect-return"'
    )
    report = api.get(f"{v1}/campaigns/{started['code']}/report").json()
    if not report["significant"]:
        assert "%" not in page.locator("#effect-return").inner_text()
    pages.check(f"campaign-started-{locale}")
    context.close()
