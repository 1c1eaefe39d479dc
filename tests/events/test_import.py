"""`habitue import purchases`: the same decide, rejects with reasons, idempotent re-runs."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
from typer.testing import CliRunner

from habitue.cli import app
from habitue.db import Database, make_sync_engine
from habitue.events.importer import import_purchases
from habitue.ledger.verify import verify
from tests.conftest import create_program, enrol

HEADER = [
    "member_external_id",
    "external_id",
    "occurred_at",
    "total",
    "sku",
    "category",
    "quantity",
    "unit_price",
]


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)


async def test_import_rejects_and_rerun(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client, earn_rate="2")
    m = await enrol(client, code, external_id="C1")
    r = await client.post(
        f"/v1/programs/{code}/rules",
        json={
            "code": "coffee-bonus",
            "event_type": "purchase",
            "condition": "true",
            "line_condition": "line.category == 'coffee'",
            "effect": {"kind": "per_line", "points": 5},
        },
    )
    assert r.status_code == 201, r.text
    at = "2026-03-04T09:30:00+01:00"
    path = tmp_path / "p.csv"
    _write(
        path,
        [
            ["C1", "R1", at, "5.60", "latte", "coffee", "1", "3.80"],
            ["C1", "R1", at, "5.60", "croissant", "pastry", "1", "1.80"],
            ["C1", "R2", at, "10.00", "", "", "", ""],
            ["C2", "R3", at, "10.00", "", "", "", ""],  # unknown member
            ["C1", "R4", at, "-1.00", "", "", "", ""],  # negative
            ["C1", "R5", at, "9.00", "tea", "tea", "2", "3.00"],  # lines 6.00 != 9.00
            ["C1", "R6", "yesterday", "1.00", "", "", "", ""],  # bad time
        ],
    )
    engine = make_sync_engine(db_url)
    try:
        first = import_purchases(engine, code, path)
        again = import_purchases(engine, code, path)
    finally:
        engine.dispose()
    assert (first.imported, first.rejected, first.points) == (2, 4, 11 + 5 + 20)
    reasons = sorted(reason for _, reason in first.rejects)
    assert reasons[0].startswith("lines add up to 6.00")
    assert "unknown member_external_id" in reasons
    assert any(r.startswith("total:") for r in reasons)
    assert any(r.startswith("occurred_at:") for r in reasons)
    assert (again.imported, again.already, again.points) == (0, 2, 0)
    bal = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 36
    ledger = (await client.get(f"/v1/programs/{code}/members/{m['id']}/ledger")).json()
    assert len(ledger["items"]) == 2
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_cli_exit_status_and_rejects_file(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path, monkeypatch: object
) -> None:
    code = await create_program(client)
    path = tmp_path / "p.csv"
    _write(
        path,
        [
            ["N1", "R1", "2026-01-05T10:00:00Z", "12.00", "", "", "", ""],
            ["N2", "R2", "2026-01-05T11:00:00Z", "abc", "", "", "", ""],
        ],
    )
    rejects = tmp_path / "rejects.csv"
    runner = CliRunner()
    env = {"HABITUE_DATABASE_URL": db_url, "HABITUE_HMAC_KEY": "test-hmac-key"}
    from habitue.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(
        app,
        [
            "import",
            "purchases",
            str(path),
            "--program",
            code,
            "--enrol-missing",
            "--rejects",
            str(rejects),
        ],
        env=env,
    )
    get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(rejects.open()))
    assert [(r["external_id"], r["reason"].split(":")[0]) for r in rows] == [("R2", "total")]
    found = (await client.get(f"/v1/programs/{code}/members?external_id=N1")).json()["items"]
    assert len(found) == 1
    bal = (await client.get(f"/v1/programs/{code}/members/{found[0]['id']}/balance")).json()
    assert bal["available"] == 12
