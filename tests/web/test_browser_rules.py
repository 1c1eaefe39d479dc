"""The console's rule builder and drafts in Chromium (Playwright), issue 19 item 2: an owner
builds a rule with the form (a mistake first, shown on the page), reads the CEL it wrote, tests
the draft on a basket, backtests it on the last 30 days, and publishes it; the pages in French
and Danish too. axe finds no serious or critical violation on any of them."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import new_code
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    Pages,
    api,
    artifacts,
    browser,
    owner_on,
    program,
    server,
)

COFFEE = [{"sku": "esp", "category": "coffee", "quantity": "2", "unit_price": "2.00"},
          {"sku": "cro", "category": "pastry", "quantity": "1", "unit_price": "6.00"}]  # fmt: skip


def test_owner_builds_tests_backtests_and_publishes_a_rule(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    member = api.post(f"/v1/programs/{program}/members", json={"first_name": "Lou"}).json()["id"]
    when = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    r = api.post(f"/v1/programs/{program}/events",
                 json={"type": "purchase", "member": {"id": member}, "external_id": new_code("t"),
                       "total": "10.00", "lines": COFFEE, "occurred_at": when})  # fmt: skip
    assert r.status_code == 201, r.text
    code = new_code("coffee-")
    page, pages = owner_on(browser, server, artifacts, db_url, program, "/rules")
    page.click("#new-rule")
    page.wait_for_url(f"{server}/admin/{program}/rules/new")
    pages.check("admin-rule-templates")
    page.click("#template-category_multiplier")
    page.wait_for_url(re.compile(r".*template=category_multiplier"))
    pages.check("admin-rule-builder")

    # A mistake first: no category, a multiplier of 1.
    page.fill("#f-code", code)
    page.fill("#f-name", "Double coffee")
    page.fill("#f-factor", "1")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.locator(".error-summary").wait_for()
    assert page.locator("#f-category").get_attribute("aria-invalid") == "true"
    assert "above 1" in page.locator("#e-factor").inner_text()
    pages.check("admin-rule-builder-error")
    assert api.get(f"/v1/programs/{program}/rule-drafts").json() == []

    page.fill("#f-category", "coffee")
    page.fill("#f-factor", "2")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/rules/{code}/draft?saved=1")
    assert page.locator("#draft-saved").is_visible()
    assert page.locator("#cel-line").inner_text() == 'line.category == "coffee"'
    assert '"line_condition": "line.category == \\"coffee\\""' in page.input_value("#f-spec")
    pages.check("admin-rule-draft")
    assert api.get(f"/v1/programs/{program}/rules/{code}").status_code == 404

    # The sample basket: 2 espressos at 2.20 and a croissant at 1.60: base 6, coffee 4.40 × 1.
    page.fill("#f-member", member)
    page.get_by_role("button", name="Test", exact=True).click()
    page.locator("#tried").wait_for()
    assert page.locator("#tried-live").inner_text() == "6"
    assert page.locator("#tried-draft").inner_text() == "10"
    pages.check("admin-rule-draft-tested")

    # The last 30 days: one purchase of 10.00 with 4.00 of coffee: 10 live, 14 with the draft.
    page.get_by_role("button", name="Backtest", exact=True).click()
    page.locator("#backtest").wait_for()
    assert page.locator("#bt-before").inner_text() == "10"
    assert page.locator("#bt-after").inner_text() == "14"
    summary = page.locator("#bt-summary").inner_text()
    assert "members whose points, privileges or coupons change: 1" in summary
    pages.check("admin-rule-draft-backtest")

    page.click("#publish")
    page.wait_for_url(re.compile(rf".*/admin/{program}/rules\?published={code}.*"))
    assert page.locator("#rule-published").is_visible()
    assert page.locator(f"#rule-{code}").get_attribute("data-active") == "on"
    pages.check("admin-rules-published")
    rule = api.get(f"/v1/programs/{program}/rules/{code}").json()
    assert rule["version"] == 1 and rule["versions"][0]["actor"].startswith("staff:owner-")
    r = api.post(f"/v1/programs/{program}/events",
                 json={"type": "purchase", "member": {"id": member}, "external_id": new_code("t"),
                       "total": "10.00", "lines": COFFEE})  # fmt: skip
    assert r.json()["points"] == 14

    # A ritual drafted over the published rule, then the pages in French and Danish.
    page.goto(f"{server}/admin/{program}/rules/new?template=ritual")
    pages.check("admin-rule-builder-ritual")
    page.fill("#f-code", code)
    page.check("#f-day_wed")
    page.fill("#f-start", "21:00")
    page.fill("#f-end", "23:59")
    page.fill("#f-factor", "3")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/rules/{code}/draft?saved=1")
    state = page.locator("#draft-state").inner_text()
    assert "A new version of the live rule (version 1)." in state
    page.goto(f"{server}/admin/{program}/rules")
    assert page.locator(f"#draft-{code}").is_visible()
    pages.check("admin-rules-with-draft")
    titles = {"fr-FR": ("Nouvelle règle", "Brouillon de"), "da-DK": ("Ny regel", "Kladde til")}
    for locale, (new_rule, draft_of) in titles.items():
        other = browser.new_context(locale=locale, storage_state=page.context.storage_state())
        localized = other.new_page()
        checked = Pages(localized, server, artifacts)
        localized.goto(f"{server}/admin/{program}/rules")
        assert localized.locator("#new-rule").inner_text() == new_rule
        checked.check(f"admin-rules-{locale[:2]}")
        localized.goto(f"{server}/admin/{program}/rules/new")
        checked.check(f"admin-rule-templates-{locale[:2]}")
        localized.goto(f"{server}/admin/{program}/rules/new?template=after_n")
        checked.check(f"admin-rule-builder-{locale[:2]}")
        localized.goto(f"{server}/admin/{program}/rules/{code}/draft")
        assert localized.locator("h1").inner_text().startswith(draft_of)
        checked.check(f"admin-rule-draft-{locale[:2]}")
        other.close()
    page.context.close()


def test_owner_changes_a_published_rule_in_its_form_as_a_draft(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    """A rule built with the form and published opens in the form again, filled in; a change
    saved there is a draft (the live rule, read through the API, stays as it was) that is
    tested and published; the history then shows both versions and who made them. The same
    in French."""
    member = api.post(f"/v1/programs/{program}/members", json={"first_name": "Ana"}).json()["id"]
    code = new_code("tea-")
    page, pages = owner_on(browser, server, artifacts, db_url, program, "/rules/new")
    page.click("#template-category_multiplier")
    page.wait_for_url(re.compile(r".*template=category_multiplier"))
    page.fill("#f-code", code)
    page.fill("#f-name", "Double tea")
    page.fill("#f-category", "tea")
    page.fill("#f-factor", "2")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/rules/{code}/draft?saved=1")
    page.click("#publish")
    page.wait_for_url(re.compile(rf".*/admin/{program}/rules\?published={code}.*"))
    first = api.get(f"/v1/programs/{program}/rules/{code}").json()
    assert first["version"] == 1 and first["spec"]["effect"]["factor"] == "2"
    owner = first["versions"][0]["actor"]
    assert owner.startswith("staff:owner-")

    # Opened again from the list: the same form, filled in from the stored rule.
    page.click(f"#edit-{code}")
    page.wait_for_url(f"{server}/admin/{program}/rules/{code}/edit")
    assert page.locator("h1").inner_text() == f"Change the rule {code}"
    assert page.locator("#f-code").count() == 0
    assert code in page.locator("#f-code-fixed").inner_text()
    assert page.input_value("#f-name") == "Double tea"
    assert page.input_value("#f-category") == "tea"
    assert page.input_value("#f-factor") == "2"
    pages.check("admin-rule-edit")
    page.fill("#f-factor", "3")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/rules/{code}/draft?saved=1")
    state = page.locator("#draft-state").inner_text()
    assert "A new version of the live rule (version 1)." in state
    assert page.locator("#edit-in-form").is_visible()
    pages.check("admin-rule-edit-draft")
    draft = api.get(f"/v1/programs/{program}/rules/{code}/draft").json()
    assert draft["spec"]["effect"]["factor"] == "3" and draft["changed"] == ["effect"]
    live = api.get(f"/v1/programs/{program}/rules/{code}").json()
    assert live["version"] == 1 and live["spec"]["effect"]["factor"] == "2"

    # Tested on a basket: 3 teas at 2.00 earn 6 base; live ×2 adds 6, the draft ×3 adds 12.
    page.fill("#f-member", member)
    page.fill("#f-lines", "tea,tea,3,2.00")
    page.get_by_role("button", name="Test", exact=True).click()
    page.locator("#tried").wait_for()
    assert page.locator("#tried-live").inner_text() == "12"
    assert page.locator("#tried-draft").inner_text() == "18"
    pages.check("admin-rule-edit-tested")
    page.click("#publish")
    page.wait_for_url(re.compile(rf".*/admin/{program}/rules\?published={code}.*"))
    live = api.get(f"/v1/programs/{program}/rules/{code}").json()
    assert live["version"] == 2 and live["spec"]["effect"]["factor"] == "3"
    assert [(v["version"], v["actor"]) for v in live["versions"]] == [(1, owner), (2, owner)]
    page.goto(f"{server}/admin/{program}/rules/{code}/history")
    assert owner in page.locator("#version-1").inner_text()
    assert "Created" in page.locator("#version-1").inner_text()
    assert owner in page.locator("#version-2").inner_text()
    assert "Effect" in page.locator("#version-2").inner_text()
    pages.check("admin-rule-edit-history")

    # In French: the form comes back filled in with ×3; a change is a draft, the rule stays.
    other = browser.new_context(locale="fr-FR", storage_state=page.context.storage_state())
    french = other.new_page()
    checked = Pages(french, server, artifacts)
    french.goto(f"{server}/admin/{program}/rules")
    link = french.locator(f"#edit-{code}")
    assert link.inner_text().startswith("Modifier en brouillon")
    link.click()
    french.wait_for_url(f"{server}/admin/{program}/rules/{code}/edit")
    assert french.locator("h1").inner_text() == f"Modifier la règle {code}"
    assert "brouillon" in french.locator("#editing").inner_text()
    assert french.input_value("#f-factor") == "3"
    checked.check("admin-rule-edit-fr")
    french.fill("#f-factor", "1,5")  # the French decimal comma
    french.get_by_role("button", name="Enregistrer comme brouillon", exact=True).click()
    french.wait_for_url(f"{server}/admin/{program}/rules/{code}/draft?saved=1")
    assert french.locator("#draft-saved").inner_text().startswith("Brouillon enregistré.")
    checked.check("admin-rule-edit-draft-fr")
    assert api.get(f"/v1/programs/{program}/rules/{code}/draft").json()["spec"]["effect"][
        "factor"
    ] == "1.5"
    assert api.get(f"/v1/programs/{program}/rules/{code}").json()["spec"]["effect"]["factor"] == "3"
    other.close()
    page.context.close()
