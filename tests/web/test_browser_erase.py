"""The console's erasure of a member in Chromium (Playwright): the owner's member page refuses
without the confirmation ticked (nothing written), then erases; the API then shows the member
pseudonymised with no points; the page passes axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
import secrets
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


def test_owner_erases_a_member_after_confirming(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    base = f"/v1/programs/{program}"
    email = f"erase-{secrets.token_hex(4)}@example.com"
    member = api.post(
        f"{base}/members", json={"email": email, "first_name": "Oda", "last_name": "Brun"}
    ).json()
    buy = {"type": "purchase", "member": {"id": member["id"]}, "external_id": new_code("t"),
           "total": "12.00"}  # fmt: skip
    r = api.post(f"{base}/events", json=buy)
    assert r.status_code == 201, r.text
    url = f"/members/{member['id']}"
    page, pages = owner_on(browser, server, artifacts, db_url, program, url)
    pages.check("admin-member-erase")

    # Not confirmed: the page says so and the member is untouched.
    page.get_by_role("button", name="Erase the member").click()
    page.locator("#erase-error").wait_for()
    assert "cannot be undone" in page.locator("#erase-error").inner_text()
    assert page.locator("#erase-confirm").get_attribute("aria-invalid") == "true"
    kept = api.get(f"{base}/members/{member['id']}").json()
    assert (kept["status"], kept["email"], kept["first_name"]) == ("active", email, "Oda")
    assert api.get(f"{base}/members/{member['id']}/balance").json()["available"] == 12

    page.locator("#erase-confirm").check()
    page.get_by_role("button", name="Erase the member").click()
    page.wait_for_url(re.compile(r".*\?erased=1$"))
    page.locator("#erased").wait_for()
    assert page.locator("#member-status").get_attribute("data-code") == "erased"
    assert page.locator("#erase").count() == 0  # nothing left to erase
    pages.check("admin-member-erased")
    gone = api.get(f"{base}/members/{member['id']}").json()
    assert gone["status"] == "erased"
    assert (gone["email"], gone["first_name"], gone["last_name"]) == (None, None, None)
    assert api.get(f"{base}/members/{member['id']}/balance").json()["available"] == 0
    assert api.get(f"{base}/members", params={"email": email}).json()["items"] == []
    # The audit log names the staff user who erased (and who was refused before: a change
    # refused by the page is no change, so only the erasure is a `delete`).
    entries = api.get(f"{base}/audit", params={"limit": 200}).json()["items"]
    erased = [e for e in entries if e["action"] == "delete" and e["resource_id"] == member["id"]]
    assert len(erased) == 1 and erased[0]["actor_kind"] == "staff", erased
    page.context.close()
