"""Aggregate-only release: an analytics key gets groups of at least k members, never a
member's own figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from habitue import clock
from tests.conftest import create_program, enrol, purchase
from tests.privacy.test_erasure import _key


async def _program_with_members(client: httpx.AsyncClient, n: int) -> tuple[str, list[str]]:
    program = await create_program(client)
    now = datetime.now(UTC)
    r = await client.post(f"/v1/programs/{program}/campaigns", json={
        "code": "news", "kind": "newsletter", "holdout_share": 0.5,
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat()})  # fmt: skip
    assert r.status_code == 201, r.text
    ids = []
    for i in range(n):
        m = (await enrol(client, program, consents={"profiling": True}))["id"]
        assert (await purchase(client, program, m, f"{10 + i}.00")).status_code == 201
        ids.append(m)
    assert (await client.post(f"/v1/programs/{program}/analytics/scores")).status_code == 200
    r = await client.post(
        f"/v1/programs/{program}/segments",
        json={"code": "everyone", "condition": 'member.status == "active"'},
    )
    assert r.status_code == 201, r.text
    return program, ids


async def test_an_analytics_key_reads_aggregates_of_at_least_k(
    client: httpx.AsyncClient,
) -> None:
    program, ids = await _program_with_members(client, 4)
    base = f"/v1/programs/{program}"
    analyst = await _key(client, program, "analytics:read")

    # per-member figures: refused to the analytics key, served to the owner
    for path in (f"{base}/segments/everyone/members", f"{base}/members/{ids[0]}/scores"):
        r = await client.get(path, headers=analyst)
        assert r.status_code == 403, r.text
        assert r.json()["type"].endswith("/aggregate-only")
        assert ids[0] not in r.text
        assert (await client.get(path)).status_code == 200
    both = await _key(client, program, "analytics:read", "members:read")
    listed = await client.get(f"{base}/segments/everyone/members", headers=both)
    assert sorted(listed.json()["members"]) == sorted(ids)

    # a group of 4 < k = 10: suppressed for the analytics key, not for the owner
    assert (await client.get(f"{base}/privacy")).json() == {"min_group_size": 10}
    seg = (await client.get(f"{base}/segments/everyone", headers=analyst)).json()
    assert seg["members"] is None
    assert [
        s["members"] for s in (await client.get(f"{base}/segments", headers=analyst)).json()
    ] == [None]
    assert (await client.get(f"{base}/segments/everyone")).json()["members"] == 4
    # segment sizes over time: month starts only, and every purchase is of this month
    assert (await client.get(f"{base}/analytics/segments")).json()["items"]
    sizes = (await client.get(f"{base}/analytics/segments", headers=analyst)).json()["items"]
    assert sizes == []
    report = (await client.get(f"{base}/campaigns/news/report", headers=analyst)).json()
    owner = (await client.get(f"{base}/campaigns/news/report")).json()
    assert owner["treatment"]["members"] + owner["holdout"]["members"] == 4
    assert owner["treatment"]["suppressed"] is owner["holdout"]["suppressed"] is False
    for group in ("treatment", "holdout"):  # the campaign runs: nothing is released
        assert report[group]["suppressed"] is True
        assert report[group]["members"] is None and report[group]["revenue"] is None
        assert report[group]["revenue_per_member"] is None
    assert report["incremental_revenue"] is None and report["verdict"] == "suppressed"

    # k lowered to 2 by the owner: groups of 4 are released
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 1})).status_code == 422
    r = await client.put(f"{base}/privacy", json={"min_group_size": 2}, headers=analyst)
    assert r.status_code == 403
    r = await client.put(f"{base}/privacy", json={"min_group_size": 2})
    assert r.json() == {"min_group_size": 2}
    seg = (await client.get(f"{base}/segments/everyone", headers=analyst)).json()
    assert seg["members"] == 4


async def test_a_differencing_attack_between_two_segments_is_suppressed(
    client: httpx.AsyncClient,
) -> None:
    program, ids = await _program_with_members(client, 5)
    base = f"/v1/programs/{program}"
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 3})).status_code == 200
    target = ids[2]
    for code, condition in (
        ("all-but-one", f'member.status == "active" && member.id != "{target}"'),
        ("nobody", 'member.status == "gone"'),
        ("two", f'member.id == "{ids[0]}" || member.id == "{ids[1]}"'),
    ):
        r = await client.post(f"{base}/segments", json={"code": code, "condition": condition})
        assert r.status_code == 201, r.text
    owner = {s["code"]: s["members"] for s in (await client.get(f"{base}/segments")).json()}
    assert owner == {"everyone": 5, "all-but-one": 4, "nobody": 0, "two": 2}

    analyst = await _key(client, program, "analytics:read")
    seen = {
        s["code"]: s["members"]
        for s in (await client.get(f"{base}/segments", headers=analyst)).json()
    }
    # 5 − 4 would tell that the target is in "everyone": neither size is released;
    # "two" is below k; an empty segment singles no one out
    assert seen == {"everyone": None, "all-but-one": None, "nobody": 0, "two": None}
    for code in ("everyone", "all-but-one"):
        r = await client.get(f"{base}/segments/{code}", headers=analyst)
        assert r.json()["members"] is None


async def test_the_monthly_report_suppresses_months_of_fewer_than_k_active_members(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 3})).status_code == 200
    members = [(await enrol(client, program))["id"] for _ in range(3)]
    for month, buyers in (("2026-01", 2), ("2026-02", 3), ("2026-03", 3)):
        for m in members[:buyers]:
            r = await purchase(client, program, m, "20.00", occurred_at=f"{month}-15T12:00:00Z")
            assert r.status_code == 201, r.text
    # One member spends points in a month without purchases: a group of one.
    mug = {"code": "mug", "kind": "product", "cost_points": 20, "texts": {"en": {"name": "Mug"}}}
    r = await client.post(f"{base}/rewards", json=mug)
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/members/{members[0]}/redemptions", json={"reward": "mug"})
    assert r.status_code == 201, r.text
    report = (await client.get(f"{base}/reports/monthly")).json()
    owner = report["months"]
    assert [(m["month"], m["active_members"], m["members_with_points"], m["points_issued"])
            for m in owner[:3]] == [
        ("2026-01", 2, 2, 40), ("2026-02", 3, 3, 60), ("2026-03", 3, 3, 60)]  # fmt: skip
    spent = owner[3]
    assert (spent["active_members"], spent["members_with_points"], spent["points_redeemed"]) == (
        0, 1, 20)  # fmt: skip
    assert [t["reward"] for t in report["top_rewards"]] == ["mug"]
    assert all("suppressed" not in m for m in owner)

    analyst = await _key(client, program, "analytics:read")
    # The current month is not released: it grows with each purchase (and redemption).
    now = clock.now()
    open_month = f"{now.year:04d}-{now.month:02d}"
    assert spent["month"] == open_month
    released = (await client.get(f"{base}/reports/monthly", headers=analyst)).json()
    assert [m["month"] for m in released["months"]] == ["2026-01", "2026-02", "2026-03"]
    assert released["top_rewards"] == []
    clock.advance(timedelta(days=32))  # the redemption's month has ended
    released = (await client.get(f"{base}/reports/monthly", headers=analyst)).json()
    january, february, march, spending = released["months"]
    assert spending["month"] == open_month
    assert spending["suppressed"] is True and spending["points_redeemed"] is None
    assert released["top_rewards"] == []
    # Two members: nothing of January, not even the running liability.
    assert january["suppressed"] is True
    assert {k: v for k, v in january.items() if v is not None} == {
        "month": "2026-01", "suppressed": True}  # fmt: skip
    # Later months are released, but no running total: two of them would give January back.
    assert [m["suppressed"] for m in (february, march)] == [False, False]
    running = ("outstanding_liability", "breakage_to_date")
    for month, whole in ((february, owner[1]), (march, owner[2])):
        assert {k: v for k, v in month.items() if k != "suppressed" and k not in running} == {
            k: v for k, v in whole.items() if k not in running}  # fmt: skip
        assert [month[k] for k in running] == [None, None]
    csv = (await client.get(f"{base}/reports/monthly?format=csv", headers=analyst)).text
    assert csv.splitlines()[1] == "2026-01" + "," * 12
    # With k = 2 the same key sees January.
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 2})).status_code == 200
    got = (await client.get(f"{base}/reports/monthly", headers=analyst)).json()["months"]
    assert [m["suppressed"] for m in got] == [False, False, False, True]
    assert got[0]["points_issued"] == 40 and got[2]["outstanding_liability"] == 160
    # In the next month two members redeem the mug; one member alone redeems a pen three times
    # (3 >= k redemptions, but one member): once that month has ended, the pen stays out, and
    # December's mug (one member) too.
    now = clock.now()
    later = f"{now.year:04d}-{now.month:02d}"
    for m in members[1:]:
        r = await client.post(f"{base}/members/{m}/redemptions", json={"reward": "mug"})
        assert r.status_code == 201, r.text
    pen = {**mug, "code": "pen", "cost_points": 10, "texts": {"en": {"name": "Pen"}}}
    assert (await client.post(f"{base}/rewards", json=pen)).status_code == 201
    for _ in range(3):
        r = await client.post(f"{base}/members/{members[0]}/redemptions", json={"reward": "pen"})
        assert r.status_code == 201, r.text
    whole = (await client.get(f"{base}/reports/monthly")).json()["top_rewards"]
    assert [(t["reward"], t["redemptions"], t["members"]) for t in whole
            if t["month"] == later] == [("pen", 3, 1), ("mug", 2, 2)]  # fmt: skip
    released = (await client.get(f"{base}/reports/monthly", headers=analyst)).json()
    assert later not in [m["month"] for m in released["months"]]
    clock.advance(timedelta(days=32))
    released = (await client.get(f"{base}/reports/monthly", headers=analyst)).json()
    assert released["months"][-1]["month"] == later
    assert released["months"][-1]["suppressed"] is False
    assert [(t["month"], t["reward"]) for t in released["top_rewards"]] == [(later, "mug")]


async def test_a_running_campaign_is_released_only_once_it_has_ended(
    client: httpx.AsyncClient,
) -> None:
    """Two reads of a running campaign either side of one member's purchase would differ by
    that purchase alone: a key without `admin` gets no figure until the campaign ends."""
    # Members fall to the holdout by a hash of their random ids (half of them): with 8, one
    # run in 14 had fewer than 2 in a group (7 and 1 seen); with 20, one in 25,000.
    program, _ = await _program_with_members(client, 20)
    base = f"/v1/programs/{program}"
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 2})).status_code == 200
    analyst = await _key(client, program, "analytics:read")
    owner = (await client.get(f"{base}/campaigns/news/report")).json()
    assert owner["treatment"]["members"] >= 2 and owner["holdout"]["members"] >= 2, owner
    running = (await client.get(f"{base}/campaigns/news/report", headers=analyst)).json()
    for group in ("treatment", "holdout"):
        assert running[group]["suppressed"] is True
        assert running[group]["buyers"] is running[group]["revenue"] is None
    assert running["verdict"] == "suppressed" and running["incremental_revenue"] is None

    clock.advance(timedelta(days=2))  # the campaign has ended
    ended = (await client.get(f"{base}/campaigns/news/report", headers=analyst)).json()
    owner = (await client.get(f"{base}/campaigns/news/report")).json()
    for group in ("treatment", "holdout"):
        assert ended[group]["suppressed"] is False
        assert ended[group] == owner[group]
    assert ended["verdict"] == owner["verdict"] != "suppressed"
