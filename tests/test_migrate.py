"""The migrations give the schema the models declare: identifier collation, partial indexes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import String, create_engine, text

from habitue.db import sync_url
from habitue.migrate import alembic_config, upgrade
from habitue.models import Base
from tests.conftest import PG_ADMIN_URL


def _ident_columns() -> set[tuple[str, str]]:
    """(table, column) of every model column declared with `habitue.db.ident`."""
    out = set()
    for table in Base.metadata.tables.values():
        for column in table.columns:
            variant = getattr(column.type, "_variant_mapping", {}).get("postgresql")
            if isinstance(variant, String) and variant.collation == "C":
                out.add((table.name, column.name))
    return out


def test_identifiers_compare_bytes_on_postgresql(db_kind: str, db_url: str) -> None:
    if db_kind != "postgres":
        pytest.skip("SQLite compares text byte by byte already")
    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        collated = {
            (r.table_name, r.column_name)
            for r in conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND collation_name = 'C'"
                )
            )
        }
    engine.dispose()
    declared = _ident_columns()
    assert ("events", "external_id") in declared
    assert collated == declared


def _index_sql(url: str, name: str) -> str:
    engine = create_engine(sync_url(url))
    query = (
        "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
        if engine.dialect.name == "postgresql"
        else "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
    )
    with engine.connect() as conn:
        sql = conn.execute(text(query), {"n": name}).scalar_one()
    engine.dispose()
    return str(sql)


def test_the_feed_sequencer_index_holds_only_unsequenced_rows(db_url: str) -> None:
    assert "seq IS NULL" in _index_sql(db_url, "ix_outbox_program_unsequenced")


@pytest.fixture
def scratch_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of the run's kind, dropped afterwards."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('migrate') / 'scratch.db'}"
        return
    import psycopg

    name = f"habitue_migrate_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "revision",
    [
        "0012_ident_collation",
        "0013_outbox_unsequenced",
        "0014_rewards_ident_collation",
        "0019_api_keys",  # the first of wave 2: every later migration goes down and up again
        "0026_messaging",
        "0027_privacy_security",
        "0029_promotions",
        "0028_console",
        "0024_kinds",
        "0033_console2",
    ],
)
def test_a_migration_goes_down_and_up_again(scratch_url: str, revision: str) -> None:
    upgrade(scratch_url)
    config = alembic_config(scratch_url)
    command.downgrade(config, f"{revision}@-1")
    if revision == "0013_outbox_unsequenced":
        assert "seq IS NULL" not in _index_sql(scratch_url, "ix_outbox_program_unsequenced")
    upgrade(scratch_url)
    assert "seq IS NULL" in _index_sql(scratch_url, "ix_outbox_program_unsequenced")
