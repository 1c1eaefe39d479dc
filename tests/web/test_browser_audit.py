"""The console's audit log in Chromium (Playwright): an owner follows the navigation to the
log, filters it to one member's reads, downloads the filtered rows as CSV and checks them, in
English and in French; after a row is altered in the database the page shows the chain
broken at that row. Every page passes axe (serious and critical)."""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import asyncio
import csv
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from habitue.db import Database, table_of
from habitue.privacy.models import AuditEntry
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

_log = table_of(AuditEntry)


def _audit(api: httpx.Client, program: str, **params: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/programs/{program}/audit", params={**params, "limit": "1000"})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _download(page: Any) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.locator("#audit-csv").click()
    path = info.value.path()
    with open(path, newline="", encoding="utf-8") as fp:
        return list(csv.DictReader(fp))


def test_owner_filters_the_audit_log_and_downloads_it(
    server: str, api: httpx.Client, program: str, browser: Any, artifacts: Path, db_url: str
) -> None:
    base = f"/v1/programs/{program}"
    ada, bo = (api.post(f"{base}/members", json={}).json()["id"] for _ in range(2))
    for i in range(3):
        r = api.get(f"{base}/members/{ada}", headers={"X-Request-ID": f"req-ada-{i}"})
        assert r.status_code == 200
    assert api.patch(f"{base}/members/{bo}", json={"first_name": "Bo"}).status_code == 200
    reads = _audit(api, program, resource="member", resource_id=ada, action="read")
    assert [e["request_id"] for e in reads] == ["req-ada-0", "req-ada-1", "req-ada-2"]

    page, pages = owner_on(browser, server, artifacts, db_url, program)
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.wait_for_url(f"{server}/admin/{program}/audit")
    page.locator("#audit-ok").wait_for()
    pages.check("admin-audit")

    page.get_by_label("Resource", exact=True).select_option("member")
    page.get_by_label("Resource id", exact=True).fill(ada)
    page.get_by_label("Action", exact=True).select_option("read")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url(f"**/audit?*resource_id={ada}*")
    shown = page.locator("#audit-rows tbody tr")
    assert [int(s) for s in shown.evaluate_all("rows => rows.map(r => r.dataset.seq)")] == [
        e["seq"] for e in reads]  # fmt: skip
    assert "req-ada-1" in page.locator("#audit-rows").inner_text()
    pages.check("admin-audit-filtered")
    rows = _download(page)
    assert [(int(r["seq"]), r["action"], r["resource"], r["resource_id"], r["request_id"])
            for r in rows] == [(e["seq"], "read", "member", ada, e["request_id"])
                               for e in reads]  # fmt: skip

    other = browser.new_context(locale="fr-FR", storage_state=page.context.storage_state())
    localized = other.new_page()
    localized.goto(f"{server}/admin/{program}/audit?resource=member&action=update")
    assert localized.locator("h1").inner_text() == "Journal d'audit"
    assert localized.locator("#audit-ok").is_visible()
    [change] = _audit(api, program, resource="member", action="update")
    assert localized.locator("#audit-rows tbody tr").count() == 1
    assert localized.locator(f"#audit-{change['seq']}").inner_text().count("Modifié") == 1
    Pages(localized, server, artifacts).check("admin-audit-fr")
    rows = _download(localized)
    assert [(int(r["seq"]), r["actor"], r["resource_id"], r["hash"]) for r in rows] == [
        (change["seq"], change["actor"], bo, change["hash"])]  # fmt: skip
    other.close()
    page.context.close()


async def _alter(db_url: str, row_hash: str) -> None:
    db = Database(db_url)

    async def work(s: Any) -> None:
        await s.execute(update(_log).where(_log.c.hash == row_hash).values(actor="key:innocent#1"))

    try:
        await db.write(work)
    finally:
        await db.dispose()


def test_an_altered_row_shows_the_chain_broken(
    server: str, api: httpx.Client, browser: Any, artifacts: Path, db_url: str
) -> None:
    code = new_code("aud")
    r = api.post("/v1/programs", json={"code": code, "name": "Audit", "currency": "EUR",
                                       "timezone": "Europe/Paris"})  # fmt: skip
    assert r.status_code == 201, r.text
    member = api.post(f"/v1/programs/{code}/members", json={}).json()["id"]
    for _ in range(3):
        assert api.get(f"/v1/programs/{code}/members/{member}").status_code == 200
    page, pages = owner_on(browser, server, artifacts, db_url, code, "/audit")
    page.locator("#audit-ok").wait_for()
    victim = _audit(api, code, resource="member", action="read")[1]
    altering = threading.Thread(target=lambda: asyncio.run(_alter(db_url, victim["hash"])))
    altering.start()
    altering.join()
    page.reload()
    broken = page.locator("#audit-broken")
    broken.wait_for()
    assert broken.get_attribute("data-seq") == str(victim["seq"])
    assert f"Row {victim['seq']} was altered" in broken.inner_text()
    assert page.locator("#audit-ok").count() == 0
    pages.check("admin-audit-broken")
    page.context.close()
