"""Issue 22, item 2: a backdated history lands in its own months in the monthly report AND in
the tier windows. History loaded in June, some of it older than a rolling three-month window:
the report shows each month's points, the window counts only what occurred inside it, and the
window moves on with the months in which the purchases occurred, not the month of loading.
The same history imported (then `tiers rebuild`) gives the same tier and value."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import httpx

from habitue.db import Database
from tests.analytics.test_backtest_lines import _cli
from tests.conftest import create_program, enrol, purchase
from tests.ledger.test_effective import report, sound
from tests.tiers.helpers import evaluate, ladder, set_now, tier

HISTORY = [  # occurred_at, total: loaded on 15 June 2026
    ("2026-01-10T12:00:00+00:00", "200.00"),
    ("2026-02-10T12:00:00+00:00", "150.00"),  # January and February alone: gold
    ("2026-04-20T12:00:00+00:00", "60.00"),
    ("2026-05-20T12:00:00+00:00", "50.00"),
]
TIERS = [
    {"code": "member", "name": "Member", "threshold": "0.00"},
    {"code": "silver", "name": "Silver", "threshold": "100.00"},
    {"code": "gold", "name": "Gold", "threshold": "300.00"},
]


async def test_a_backdated_history_counts_in_its_own_months_for_report_and_tiers(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    set_now(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))
    code = await create_program(client, timezone="UTC")
    window = {"kind": "rolling_months", "months": 3}
    r = await ladder(client, code, window=window, tiers=TIERS)
    assert r.status_code == 201, r.text

    posted = (await enrol(client, code, external_id="posted"))["id"]
    for n, (at, total) in enumerate(HISTORY):
        r = await purchase(client, code, posted, total, occurred_at=at, external_id=f"h{n}")
        assert r.status_code == 201, r.text

    # the report: each month its own points, nothing in June, the month of loading
    rows = await report(client, code)
    assert {m: row["points_issued"] for m, row in rows.items() if row["points_issued"]} == {
        "2026-01": 200, "2026-02": 150, "2026-04": 60, "2026-05": 50,
    }  # fmt: skip
    assert rows.get("2026-06", {"points_issued": 0})["points_issued"] == 0

    # the window April–June counts April and May only: silver, not gold (460 all told)
    got = await tier(client, code, posted)
    assert (got["tier"], got["value"]) == ("silver", "110.00")
    assert (got["period_start"], got["period_end"]) == ("2026-04-01", "2026-06-30")

    # the same history imported, then counted by `tiers rebuild`: the same months
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        w.writerows(["imported", f"i{n}", at, total] for n, (at, total) in enumerate(HISTORY))
    imported = (await enrol(client, code, external_id="imported"))["id"]
    done = await _cli(db_url, "import", "purchases", str(path), "--program", code)
    assert done.exit_code == 0, done.output
    assert (await tier(client, code, imported))["value"] == "0.00"  # the import runs no hooks
    done = await _cli(db_url, "tiers", "rebuild", "--program", code)
    assert done.exit_code == 0, done.output
    got = await tier(client, code, imported)
    assert (got["tier"], got["value"]) == ("silver", "110.00")
    rows = await report(client, code)
    assert {m: row["points_issued"] for m, row in rows.items() if row["points_issued"]} == {
        "2026-01": 400, "2026-02": 300, "2026-04": 120, "2026-05": 100,
    }  # fmt: skip

    # 1 July closes April–June (110): both keep silver; May–July now holds May only
    set_now(datetime(2026, 7, 1, 0, 30, tzinfo=UTC))
    closed = await evaluate(client, code)
    assert (closed["closed"], closed["downgraded"]) == (2, 0)
    for member in (posted, imported):
        got = await tier(client, code, member)
        assert (got["tier"], got["value"]) == ("silver", "50.00")
    # 1 August closes May–July (50): April's purchase has left the window, one step down
    set_now(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    closed = await evaluate(client, code)
    assert (closed["closed"], closed["downgraded"]) == (2, 2)
    for member in (posted, imported):
        assert (await tier(client, code, member))["tier"] == "member"
    await sound(db)
