"""Rules guard the tiers they name; `tiers rebuild` counts imported history toward tiers."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from habitue.db import Database, make_sync_engine
from habitue.errors import HabitueError
from habitue.events.importer import import_purchases
from habitue.messaging.models import OutboxEvent
from habitue.tiers.jobs import run_rebuild
from habitue.tiers.models import TierHistory
from tests.conftest import create_program, enrol
from tests.tiers.helpers import ladder, set_now, tier

GOLD_ONLY = {"code": "gold-bonus", "event_type": "purchase", "audience": {"tiers": ["gold"]},
             "effect": {"kind": "fixed", "points": 5}}  # fmt: skip
NO_GOLD = [
    {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
    {"code": "silver", "name": "Silver", "threshold": "100.00"},
]


async def test_removing_a_tier_named_by_an_active_rule_is_refused(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    assert (await ladder(client, code)).status_code == 201
    r = await client.post(f"/v1/programs/{code}/rules", json=GOLD_ONLY)
    assert r.status_code == 201, r.text
    other = {**GOLD_ONLY, "code": "silver-bonus", "audience": {"tiers": ["silver"]}}
    assert (await client.post(f"/v1/programs/{code}/rules", json=other)).status_code == 201

    r = await ladder(client, code, tiers=NO_GOLD)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("tier-in-use")
    assert "gold-bonus" in body["detail"]
    assert "silver-bonus" not in body["detail"]
    assert body["errors"][0]["tier"] == "gold"
    assert body["errors"][0]["rules"] == ["gold-bonus"]
    got = (await client.get(f"/v1/programs/{code}/tiers")).json()
    assert [t["code"] for t in got["tiers"]] == ["bronze", "silver", "gold"]  # nothing changed

    # Renaming or re-pricing a tier is fine; so is dropping it once the rule is gone.
    assert (await client.delete(f"/v1/programs/{code}/rules/gold-bonus")).status_code == 204
    assert (await ladder(client, code, tiers=NO_GOLD)).status_code == 201


async def test_a_switched_off_rule_does_not_hold_a_tier(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    assert (await ladder(client, code)).status_code == 201
    off = {**GOLD_ONLY, "active": False}
    assert (await client.post(f"/v1/programs/{code}/rules", json=off)).status_code == 201
    assert (await ladder(client, code, tiers=NO_GOLD)).status_code == 201


def _csv(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        w.writerows(rows)


async def _count(db: Database, model: type[TierHistory]) -> int:
    async with db.read() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def test_rebuild_counts_imported_history_and_is_idempotent(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    set_now(datetime(2026, 6, 15, 10, 0, tzinfo=UTC))
    code = await create_program(client)
    assert (await ladder(client, code)).status_code == 201
    ids = {x: (await enrol(client, code, external_id=x))["id"] for x in ("C1", "C2", "C3")}
    path = tmp_path / "p.csv"
    _csv(path, [
        ("C1", "R1", "2026-02-01T09:00:00+01:00", "60.00"),
        ("C1", "R2", "2026-03-01T09:00:00+01:00", "60.00"),
        ("C1", "R0", "2025-12-31T23:30:00+01:00", "1000.00"),  # last year, locally
        ("C2", "R3", "2026-01-01T00:10:00+01:00", "600.00"),  # this year locally (UTC: 2025)
        ("C3", "R4", "2026-04-01T09:00:00+02:00", "20.00"),
    ])  # fmt: skip
    engine = make_sync_engine(db_url)
    try:
        assert import_purchases(engine, code, path).imported == 5
    finally:
        engine.dispose()
    assert (await tier(client, code, ids["C1"]))["value"] == "0.00"  # the import ran no hooks

    done = await run_rebuild(db, code)
    assert (done.members, done.upgraded) == (3, 2)
    got = {x: await tier(client, code, i) for x, i in ids.items()}
    assert {x: (g["tier"], g["value"]) for x, g in got.items()} == {
        "C1": ("silver", "120.00"),
        "C2": ("gold", "600.00"),
        "C3": ("bronze", "20.00"),
    }
    member = (await client.get(f"/v1/programs/{code}/members/{ids['C2']}")).json()
    assert member["tier"] == "gold"
    hist = (await client.get(f"/v1/programs/{code}/members/{ids['C2']}/tier/history")).json()
    assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in hist] == [
        ("bronze", "gold", "qualified")
    ]
    async with db.read() as s:
        changed = (
            (
                await s.execute(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.type == "tier.changed", OutboxEvent.member_id == ids["C1"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [(p["from"], p["to"], p["reason"]) for p in changed] == [
        ("bronze", "silver", "qualified")
    ]

    history_rows = await _count(db, TierHistory)
    again = await run_rebuild(db, code)
    assert (again.members, again.upgraded) == (3, 0)
    assert await _count(db, TierHistory) == history_rows
    assert (await tier(client, code, ids["C1"]))["value"] == "120.00"

    # Imported purchases can be refunded like live ones: the rebuild recorded contributions.
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "member": {"id": ids["C2"]}, "external_id": "rf1",
              "refers_to": "R3", "total": "250.00"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    got_c2 = await tier(client, code, ids["C2"])
    assert (got_c2["tier"], got_c2["value"]) == ("silver", "350.00")
    # A live purchase counts through the hook; rebuilding agrees with it.
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "purchase", "member": {"id": ids["C3"]}, "external_id": "L1",
              "total": "90.00"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert (await tier(client, code, ids["C3"]))["tier"] == "silver"
    history_rows = await _count(db, TierHistory)
    third = await run_rebuild(db, code)
    assert third.upgraded == 0
    assert await _count(db, TierHistory) == history_rows
    assert (await tier(client, code, ids["C2"]))["value"] == "350.00"
    assert (await tier(client, code, ids["C3"]))["value"] == "110.00"


async def test_rebuild_rolling_visits_and_refusals(client: httpx.AsyncClient, db: Database) -> None:
    set_now(datetime(2026, 6, 15, 10, 0, tzinfo=UTC))
    code = await create_program(client)
    r = await ladder(
        client, code, metric="visits", window={"kind": "rolling_months", "months": 3},
        tiers=[{"code": "regular", "name": "Regular", "threshold": 2}],
    )  # fmt: skip
    assert r.status_code == 201, r.text
    m = await enrol(client, code)
    for i, at in enumerate(["2026-03-31T23:00:00+00:00", "2026-04-10T10:00:00+00:00",
                            "2026-06-01T10:00:00+00:00"]):  # fmt: skip
        r = await client.post(
            f"/v1/programs/{code}/events",
            json={"type": "visit", "member": {"id": m["id"]}, "external_id": f"v{i}",
                  "occurred_at": at},
        )  # fmt: skip
        assert r.status_code == 201, r.text
    before = await tier(client, code, m["id"])
    assert before["value"] == 3  # 31 March 23:00 UTC is 1 April in Paris
    done = await run_rebuild(db, code)
    assert done.upgraded == 0
    after = await tier(client, code, m["id"])
    assert (after["tier"], after["value"]) == (before["tier"], 3)

    anniversary = await create_program(client)
    r = await ladder(client, anniversary, window={"kind": "anniversary_year"})
    assert r.status_code == 201
    with pytest.raises(HabitueError) as exc:
        await run_rebuild(db, anniversary)
    assert exc.value.status == 422
