"""The import's statements on PostgreSQL: plans that stay key lookups as the tables grow, and
statistics refreshed only for the tables an import changed a lot (issue 20, item 6)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql
from typer.testing import CliRunner

from habitue.cli import app
from habitue.db import make_sync_engine
from habitue.events.importer import import_purchases
from habitue.events.importer.preparing import _members_query
from habitue.events.importer.sql import _add_from_sql, _pg_array
from habitue.events.importer.writing import _key_lookups
from tests.conftest import fresh_database

MEMBERS = 4_000


@pytest.fixture(scope="module")
def grown(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    """A database of its own (its tables' sizes are the test's), with a program `big` whose
    4,000 members were enrolled by an import, one purchase each; and a work directory."""
    if db_kind != "postgres":
        pytest.skip("PostgreSQL's planner and statistics")
    directory = tmp_path_factory.mktemp("grown")
    with fresh_database(db_kind, directory) as url:
        from habitue.settings import get_settings

        get_settings.cache_clear()
        result = CliRunner().invoke(
            app,
            ["programs", "create", "big", "Big"],
            env={"HABITUE_DATABASE_URL": url, "HABITUE_HMAC_KEY": "test-hmac-key"},
        )
        get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        path = directory / "enrol.csv"
        _purchases(path, [(f"m{i:05d}", f"seed-{i}") for i in range(MEMBERS)])
        engine = make_sync_engine(url)
        try:
            report = import_purchases(engine, "big", path, enrol_missing=True,
                                      writer_process=False)  # fmt: skip
            assert report.enrolled == MEMBERS
            yield engine, directory
        finally:
            engine.dispose()


def _purchases(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        w.writerows([m, e, "2026-01-05T10:00:00Z", "10.00"] for m, e in rows)


def _plan(engine: Engine, statement: str, parameters: Any, *, by_key: bool = False) -> list[str]:
    """The plan's nodes (type, relation, index), of `statement` as the import sends it."""
    with engine.connect() as conn, conn.begin():
        if by_key:
            _key_lookups(conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            row = cur.fetchone()
        conn.rollback()
    assert row is not None

    def walk(node: dict[str, Any]) -> list[str]:
        name = " ".join(
            str(node[k]) for k in ("Node Type", "Relation Name", "Index Name") if k in node
        )
        return [name] + [n for child in node.get("Plans", []) for n in walk(child)]

    return walk(row[0][0]["Plan"])


def _scans_or_joins_whole_tables(nodes: list[str]) -> list[str]:
    return [n for n in nodes if n.startswith(("Seq Scan", "Hash Join", "Merge Join", "Gather"))]


def test_a_chunks_members_are_looked_up_by_key(grown: tuple[Engine, Path]) -> None:
    """A fifth of the members in one chunk: each is found through the unique index on
    (program, external_id) and its accounts through (member, kind), not by a scan of
    `members` and `accounts` (what the planner chose for the same lookup as one
    `= ANY(array)` join: at 1,000,000 members it read them whole at every chunk)."""
    engine, _ = grown
    wanted = sorted(f"m{i:05d}" for i in range(0, MEMBERS, 5))
    with engine.connect() as conn:
        program = conn.execute(text("SELECT id FROM programs WHERE code = 'big'")).scalar_one()
    query = _members_query(program, wanted, "postgresql").compile(dialect=postgresql.dialect())
    nodes = _plan(engine, str(query), query.params)
    assert not _scans_or_joins_whole_tables(nodes), nodes
    assert any("uq_members_program_id_external_id" in n for n in nodes), nodes
    with engine.connect() as conn:
        found = conn.execute(_members_query(program, wanted, "postgresql")).all()
    assert sorted(r.external_id for r in found) == wanted
    assert all(r.available and r.pending and r.available != r.pending for r in found)


def test_running_totals_are_updated_by_key(grown: tuple[Engine, Path]) -> None:
    """The balances of a tenth of the accounts: a nested loop over the primary key under the
    write transaction's settings, not a merge join that walks the whole key (nor a hash
    join over a scan), which the planner takes for the same statement left to itself."""
    engine, _ = grown
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM accounts ORDER BY id")).scalars())[::10]
    statement = _add_from_sql("accounts", "balance")
    params = (_pg_array(ids), _pg_array([0] * len(ids)))
    nodes = _plan(engine, statement, params, by_key=True)
    assert not _scans_or_joins_whole_tables(nodes), nodes
    assert "Index Scan accounts pk_accounts" in nodes, nodes


def test_an_import_analyzes_only_the_tables_it_changed_a_lot(grown: tuple[Engine, Path]) -> None:
    """The enrolling import grew every table from nothing: it analysed them (the planner
    knows 4,000 members). A later import of 100 purchases adds 2.5 % to `events`: it
    leaves the statistics alone (ANALYZE reads a sample of 30,000 rows of each table,
    1.8 s at 1,000,000 members, which every import paid); one that doubles `events` analyses
    it, and only it."""
    engine, directory = grown

    def reltuples() -> dict[str, float]:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relname IN ('members', 'accounts', 'cards', 'events')"
            )).all()  # fmt: skip
        return {name: float(n) for name, n in rows}

    before = reltuples()
    assert before["members"] >= MEMBERS and before["accounts"] >= 2 * MEMBERS, before
    assert before["events"] >= MEMBERS and before["cards"] >= MEMBERS, before
    path = directory / "few.csv"
    _purchases(path, [(f"m{i:05d}", f"few-{i}") for i in range(100)])
    report = import_purchases(engine, "big", path, writer_process=False)
    assert report.imported == 100
    assert reltuples() == before
    _purchases(path, [(f"m{i % MEMBERS:05d}", f"more-{i}") for i in range(MEMBERS + 200)])
    report = import_purchases(engine, "big", path, writer_process=False)
    assert report.imported == MEMBERS + 200
    after = reltuples()
    assert after["events"] == before["events"] + 100 + MEMBERS + 200, (before, after)
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }
