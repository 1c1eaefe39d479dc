"""The console's fraud queue in Chromium (Playwright): an owner follows the navigation to the
held members, releases one and suspends the other, in English and French; every page passes
axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import new_code
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


def test_owner_releases_and_suspends_held_members(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    base = f"/v1/programs/{program}"
    assert api.put(f"{base}/fraud/settings", json={"purchases_per_hour": 1}).status_code == 200
    ids = []
    for _ in range(2):
        member = api.post(f"{base}/members", json={}).json()
        for _ in range(2):
            r = api.post(
                f"{base}/events",
                json={"type": "purchase", "member": {"id": member["id"]},
                      "external_id": new_code("t"), "total": "5.00"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
        ids.append(member["id"])
    holds = {h["member_id"]: h["id"] for h in api.get(f"{base}/fraud/holds").json()["items"]}
    page, pages = owner_on(browser, server, artifacts, db_url, program)
    page.get_by_role("link", name="Fraud review", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/fraud")
    assert page.locator(f"#hold-{holds[ids[0]]}").is_visible()
    assert page.locator(f"#hold-{holds[ids[1]]}").is_visible()
    pages.check("admin-fraud")

    page.locator(f"#hold-{holds[ids[0]]}").get_by_role("button", name="Release").click()
    page.wait_for_url(re.compile(r".*/fraud\?done=released$"))
    assert page.locator(f"#hold-{holds[ids[0]]}").count() == 0
    page.locator(f"#hold-{holds[ids[1]]}").get_by_role("button", name="Suspend").click()
    page.wait_for_url(re.compile(r".*/fraud\?done=suspended$"))
    page.locator("#no-holds").wait_for()
    pages.check("admin-fraud-done")
    assert api.get(f"{base}/members/{ids[0]}").json()["status"] == "active"
    assert api.get(f"{base}/members/{ids[1]}").json()["status"] == "suspended"

    other = browser.new_context(locale="fr-FR", storage_state=page.context.storage_state())
    localized = other.new_page()
    localized.goto(f"{server}/admin/{program}/fraud?status=suspended")
    assert localized.locator("h1").inner_text() == "Contrôle des fraudes"
    assert localized.locator(f"#hold-{holds[ids[1]]}").is_visible()
    Pages(localized, server, artifacts).check("admin-fraud-fr")
    other.close()
    page.context.close()
