"""The console's fraud queue: members held by the velocity limits, released or suspended from
the page (CSRF-checked), in the staff's language, for owners and support agents only."""

from __future__ import annotations

import httpx

from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin


async def _held(client: httpx.AsyncClient, program: str) -> tuple[str, str]:
    base = f"/v1/programs/{program}"
    r = await client.put(f"{base}/fraud/settings", json={"purchases_per_hour": 1})
    assert r.status_code == 200, r.text
    ids = []
    for _ in range(2):
        member = await enrol(client, program)
        for _ in range(2):  # the second purchase within the hour holds the member
            assert (await purchase(client, program, member["id"], "5.00")).status_code == 201
        ids.append(member["id"])
    return ids[0], ids[1]


async def test_support_releases_one_member_and_suspends_another_from_the_queue(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    base = f"/v1/programs/{program}"
    assert (await client.get(f"/admin/{program}/fraud")).status_code in (302, 303, 401)
    first, second = await _held(client, program)
    holds = {h["member_id"]: h for h in (await client.get(f"{base}/fraud/holds")).json()["items"]}
    assert set(holds) == {first, second}
    email = await make_staff(db, "support")
    await staff_signin(client, email)
    dashboard = await client.get(f"/admin/{program}")
    assert f'href="/admin/{program}/fraud"' in dashboard.text
    page = await client.get(f"/admin/{program}/fraud")
    assert page.status_code == 200
    assert "Too many purchases within an hour" in page.text
    for member_id in (first, second):
        assert f'href="/admin/{program}/members/{member_id}"' in page.text
    release = f"/admin/{program}/fraud/{holds[first]['id']}/release"
    suspend = f"/admin/{program}/fraud/{holds[second]['id']}/suspend"
    assert f'action="{release}"' in page.text and f'action="{suspend}"' in page.text
    # Without the form's token nothing is decided.
    assert (await client.post(release, data={"csrf_token": "forged-token-xxxx"})).status_code == 403
    assert (await client.post(release)).status_code == 403
    assert (await client.get(f"{base}/members/{first}")).json()["status"] == "held"

    r = await client.post(release, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    after = await client.get(r.headers["location"])
    assert "The member was released: they earn and spend again." in after.text
    assert (await client.get(f"{base}/members/{first}")).json()["status"] == "active"
    r = await client.post(suspend, data={"csrf_token": csrf_of(after.text)})
    assert r.status_code == 303
    assert (await client.get(f"{base}/members/{second}")).json()["status"] == "suspended"
    assert (await purchase(client, program, second, "5.00")).status_code == 409
    empty = await client.get(f"/admin/{program}/fraud")
    assert "No member is waiting for review." in empty.text
    # Deciding again is refused without changing anything; unknown holds are not found.
    r = await client.post(release, data={"csrf_token": csrf_of(empty.text)})
    assert r.status_code == 303 and r.headers["location"].endswith("failed=1")
    assert (await client.get(f"{base}/members/{first}")).json()["status"] == "active"
    gone = f"/admin/{program}/fraud/999999999/release"
    assert (await client.post(gone, data={"csrf_token": csrf_of(empty.text)})).status_code == 404
    bad = f"/admin/{program}/fraud/{'9' * 40}/release"
    assert (await client.post(bad, data={"csrf_token": csrf_of(empty.text)})).status_code == 404
    # The decided holds, with who decided them.
    done = await client.get(f"/admin/{program}/fraud?status=suspended")
    assert second in done.text and first not in done.text
    assert f"staff:{email}" in done.text
    [api_view] = (await client.get(f"{base}/fraud/holds?status=released")).json()["items"]
    assert api_view["decided_by"] == f"staff:{email}"
    # Both decisions are in the audit log, as the staff user's.
    audit = (await client.get(f"{base}/audit", params={"limit": 500})).json()["items"]
    decided = {
        (e["resource_id"], e["detail"].get("sub"))
        for e in audit
        if e["actor_kind"] == "staff" and e["resource"] == "setting"
    }
    assert {(str(holds[first]["id"]), "release"), (str(holds[second]["id"]), "suspend")} <= decided
    # In French.
    client.headers["Accept-Language"] = "fr"
    r = await client.post("/admin/locale", data={"csrf_token": csrf_of(done.text), "locale": "fr"})
    french = await client.get(f"/admin/{program}/fraud?status=released")
    assert "Contrôle des fraudes" in french.text
    assert "Trop d'achats en une heure" in french.text or "Trop d&#39;achats" in french.text


async def test_a_marketer_cannot_see_or_decide_holds(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    first, _second = await _held(client, program)
    [hold, _] = (await client.get(f"/v1/programs/{program}/fraud/holds")).json()["items"]
    await staff_signin(client, await make_staff(db, "marketer"))
    dashboard = await client.get(f"/admin/{program}")
    assert f'href="/admin/{program}/fraud"' not in dashboard.text
    assert (await client.get(f"/admin/{program}/fraud")).status_code == 403
    action = f"/admin/{program}/fraud/{hold['id']}/release"
    r = await client.post(action, data={"csrf_token": csrf_of(dashboard.text)})
    assert r.status_code == 403
    r = await client.get(f"/v1/programs/{program}/members/{hold['member_id']}")
    assert r.json()["status"] == "held"
