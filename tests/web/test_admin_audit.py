"""The console's audit log (issue 23, item 5): owners only, filtered, paged, exported as CSV,
with the chain's verification — ok, or the first broken row after a row is altered."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from habitue.db import Database, table_of
from habitue.privacy.models import AuditEntry
from tests.conftest import enrol
from tests.web.conftest import make_staff, staff_signin

_log = table_of(AuditEntry)


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="audit-\d+" data-seq="(\d+)"', html)]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def _api(client: httpx.AsyncClient, program: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/programs/{program}/audit", params={**params, "limit": 1000})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_only_owners_reach_the_audit_log(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    page = f"/admin/{program}/audit"
    assert (await client.get(page)).status_code in (302, 303, 401)
    for role in ("marketer", "support", "analyst"):
        client.cookies.clear()
        await staff_signin(client, await make_staff(db, role))
        dashboard = await client.get(f"/admin/{program}")
        assert dashboard.status_code == 200
        assert f'href="{page}"' not in dashboard.text
        assert (await client.get(page)).status_code == 403
        r = await client.get(f"/admin/{program}/audit.csv")
        assert r.status_code == 403 and "text/csv" not in r.headers["content-type"]
    client.cookies.clear()
    await staff_signin(client, await make_staff(db, "owner"))
    dashboard = await client.get(f"/admin/{program}")
    assert f'href="{page}"' in dashboard.text
    assert (await client.get(page)).status_code == 200


async def test_the_owner_filters_pages_and_exports_the_log(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    base = f"/v1/programs/{program}"
    members = [(await enrol(client, program))["id"] for _ in range(3)]
    for _ in range(52):  # more reads than a page holds
        assert (await client.get(f"{base}/members/{members[0]}")).status_code == 200
    r = await client.patch(f"{base}/members/{members[1]}", json={"first_name": "Zoé"},
                           headers={"X-Request-ID": "req-audit-1"})  # fmt: skip
    assert r.status_code == 200, r.text
    owner = await make_staff(db, "owner")
    await staff_signin(client, owner)
    page = f"/admin/{program}/audit"

    whole = await client.get(page)
    assert whole.status_code == 200
    assert 'id="audit-ok"' in whole.text and 'id="audit-broken"' not in whole.text
    every = await _api(client, program)
    assert _seqs(whole.text) == [e["seq"] for e in every[:50]]
    assert 'id="next-page"' in whole.text and 'id="first-page"' not in whole.text

    # One member's reads, paged: 50, then the rest (the page's own reads are not about them).
    reads = await _api(client, program, resource="member", resource_id=members[0], action="read")
    assert len(reads) == 52
    first = await client.get(page, params={"resource": "member", "resource_id": members[0],
                                           "action": "read"})  # fmt: skip
    assert _seqs(first.text) == [e["seq"] for e in reads[:50]]
    next_url = re.search(r'<a href="([^"]+)" id="next-page"', first.text)
    assert next_url is not None
    second = await client.get(next_url.group(1).replace("&amp;", "&"))
    assert _seqs(second.text) == [e["seq"] for e in reads[50:]]
    assert 'id="next-page"' not in second.text and 'id="first-page"' in second.text

    # The change, by its request id and action; nothing of the member's new name.
    changed = await client.get(page, params={"action": "update", "resource": "member"})
    [row] = [e for e in every if e["action"] == "update" and e["resource"] == "member"]
    assert _seqs(changed.text) == [row["seq"]]
    assert "req-audit-1" in changed.text and "Zoé" not in changed.text

    # Who: the operator's requests, then the owner's own views of this page.
    operator = every[0]["actor"]
    by_operator = await client.get(page, params={"actor": operator})
    assert _seqs(by_operator.text) == [e["seq"] for e in every[:50]]
    audited = await _api(client, program, resource="audit")  # the API's reads of it too
    mine = [e for e in audited if e["actor_kind"] == "staff"]
    assert mine and {e["actor"] for e in mine} == {mine[0]["actor"]}
    assert mine[0]["actor"].startswith("staff#")
    own = await client.get(page, params={"actor": mine[0]["actor"], "resource": "audit"})
    assert _seqs(own.text) == [e["seq"] for e in mine]

    # Dates, whole days in the program's time zone: today holds every row, tomorrow none.
    today = datetime.now(UTC).date()
    days = {"since": (today - timedelta(days=1)).isoformat(),
            "until": (today + timedelta(days=1)).isoformat()}  # fmt: skip
    dated = await client.get(page, params={**days, "resource": "member", "action": "update"})
    assert _seqs(dated.text) == [row["seq"]]
    later = (today + timedelta(days=2)).isoformat()
    empty = await client.get(page, params={"since": later})
    assert _seqs(empty.text) == [] and 'id="no-audit-rows"' in empty.text
    earlier = (today - timedelta(days=2)).isoformat()
    assert _seqs((await client.get(page, params={"until": earlier})).text) == []
    # Nonsense filters are dropped, not errors.
    odd = await client.get(page, params={"since": "2026-13-45", "action": "steal", "after": "x"})
    assert odd.status_code == 200 and len(_seqs(odd.text)) == 50

    # The CSV: the filtered rows, all of them (not one page), with their hashes.
    link = re.search(r'<a href="([^"]+)" id="audit-csv"', first.text)
    assert link is not None
    exported = await client.get(link.group(1).replace("&amp;", "&"))
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert f'filename="audit-{program}.csv"' in exported.headers["content-disposition"]
    rows = _csv(exported.text)
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in reads]
    assert {(r["action"], r["resource"], r["resource_id"]) for r in rows} == {
        ("read", "member", members[0])}  # fmt: skip
    assert [r["hash"] for r in rows] == [e["hash"] for e in reads]
    # The export is recorded too.
    exports = await _api(client, program, resource="audit", action="export")
    assert [e["actor"] for e in exports] == [mine[0]["actor"]]


async def test_an_altered_row_shows_the_chain_broken(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    base = f"/v1/programs/{program}"
    member = (await enrol(client, program))["id"]
    for _ in range(3):
        assert (await client.get(f"{base}/members/{member}")).status_code == 200
    await staff_signin(client, await make_staff(db, "owner"))
    page = f"/admin/{program}/audit"
    assert 'id="audit-ok"' in (await client.get(page)).text
    [victim] = [e for e in await _api(client, program, resource="member")][2:3]

    async def work(s: Any) -> None:
        await s.execute(
            update(_log)
            .where(_log.c.hash == victim["hash"])
            .values(actor="key:innocent#1")
        )

    await db.write(work)
    broken = await client.get(page)
    assert broken.status_code == 200
    assert 'id="audit-ok"' not in broken.text
    found = re.search(r'id="audit-broken" data-seq="(\d+)"', broken.text)
    assert found is not None and int(found.group(1)) == victim["seq"]
    assert f"Row {victim['seq']} was altered" in broken.text
    french = await client.get(page, headers={"Accept-Language": "fr"})
    assert f"La ligne {victim['seq']} a été modifiée" in french.text
    assert (await client.get(f"{base}/audit/verify")).json()["ok"] is False
