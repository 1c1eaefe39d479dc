"""The analytics CLI commands and the scheduled recomputation of scores and segments."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from habitue.analytics import segments as segments_service
from habitue.analytics import service as analytics_service
from habitue.db import Database
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol, purchase


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from habitue.settings import get_settings

    monkeypatch.setenv("HABITUE_DATABASE_URL", db_url)
    monkeypatch.setenv("HABITUE_HMAC_KEY", "test-hmac-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _invoke(*args: str) -> str:
    from habitue.cli import app

    done = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert done.exit_code == 0, done.output
    return done.output


async def _shop(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    code = await create_program(client)
    # consenting to profiling: their per-member scores are shown (docs/privacy.md#consent)
    members = [(await enrol(client, code, consents={"profiling": True}))["id"] for _ in range(4)]
    start = datetime.now(UTC) - timedelta(days=120)
    items = ["latte", "cookie", "tea", "bagel"]
    n = 0
    for day in range(0, 120, 6):
        for i, member in enumerate(members[:3]):
            sku = items[(day // 6 + i) % 4]
            r = await purchase(
                client,
                code,
                member,
                "4.00",
                occurred_at=(start + timedelta(days=day + i)).isoformat(),
                lines=[{"sku": sku, "category": "shop", "quantity": "1", "unit_price": "4.00"}],
            )
            assert r.status_code == 201, r.text
            n += 1
    return code, members


async def test_cli_rfm_backtest_report_and_recommend(
    client: httpx.AsyncClient, cli_env: None, tmp_path: Path
) -> None:
    code, members = await _shop(client)
    out = await _invoke("rfm", "--program", code)
    assert "3 members scored (3 in the window)" in out
    r = await client.get(f"/v1/programs/{code}/members/{members[0]}/scores")
    assert r.json()["frequency"] == 20

    out = await _invoke("backtest", "--program", code, "--from", "store", "--json")
    summary = orjson.loads(out)
    assert summary["transactions"] == 60
    assert summary["points_issued"] == 240
    assert summary["tier_mix"] is None
    csv_file = tmp_path / "purchases.csv"
    csv_file.write_text(
        "member_external_id,external_id,occurred_at,total\n"
        "a,x1,2026-01-05T10:00:00Z,10.00\n"
        "b,x2,2026-02-05T10:00:00Z,5.50\n"
    )
    rules = tmp_path / "rules.json"
    rules.write_text(
        '[{"code": "hello", "event_type": "purchase", "effect": {"kind": "fixed", "points": 5}}]'
    )
    out = await _invoke(
        "backtest", "--program", code, "--from", str(csv_file), "--rules", str(rules)
    )
    assert "2026-01" in out
    assert "2026-02" in out
    assert "points issued 25" in out
    assert "tier mix: no ladder" in out
    ladder = tmp_path / "ladder.json"
    ladder.write_text(
        '{"metric": "purchases", "window": {"kind": "calendar_year"}, "tiers": ['
        '{"code": "base", "name": "Base", "threshold": 0},'
        '{"code": "fan", "name": "Fan", "threshold": 1}]}'
    )
    out = await _invoke(
        "backtest", "--program", code, "--from", str(csv_file), "--ladder", str(ladder), "--json"
    )
    assert orjson.loads(out)["tier_mix"] == {
        "2026-01": {"base": 0, "fan": 1},
        "2026-02": {"base": 0, "fan": 2},
    }

    target = tmp_path / "report.parquet"
    out = await _invoke(
        "report", "monthly", "--program", code, "--format", "parquet", "--out", str(target)
    )
    table = pq.read_table(target)
    assert sum(table.column("points_issued").to_pylist()) == 240

    out = await _invoke("recommend", "evaluate", "--program", code)
    assert "precision@10" in out
    assert "popularity" in out
    assert "members evaluated" in out


async def test_scheduled_run_rescores_and_recomputes_stale_segments(
    client: httpx.AsyncClient, db: Database
) -> None:
    code, members = await _shop(client)
    r = await client.post(
        f"/v1/programs/{code}/segments", json={"code": "buyers", "condition": "member.f > 0"}
    )
    assert r.status_code == 201
    assert r.json()["members"] == 0
    done = await analytics_service.run_scheduled(db, code)
    assert done == {"buyers": 3}
    assert await analytics_service.run_scheduled(db, code) == {}  # nothing stale
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        ids = await segments_service.members_in_segment(session, program, "buyers")
        assert len(ids) == 3
        names = await segments_service.segments_of_member(session, ids[0])
        assert names == frozenset({"buyers"})
    empty = await create_program(client)
    assert await analytics_service.run_scheduled(db, empty) == {}
    del members
