"""Apply the Alembic migrations programmatically (`habitue migrate`, `serve` on SQLite)."""

from __future__ import annotations

from pathlib import Path

from alembic import command, op
from alembic.config import Config
from sqlalchemy import text

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (every head)."""
    command.upgrade(alembic_config(url), "heads")


def revision(url: str, message: str) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=True)


def rebuild_index(
    name: str, table: str, columns: list[str], *, unique: bool, where: str | None
) -> None:
    """In a migration: replace index `name` by one with condition `where` (None: the
    whole table).

    On PostgreSQL without blocking writes: built CONCURRENTLY under a temporary name, then
    swapped. Should the build fail, PostgreSQL keeps an INVALID `<name>_next`: drop it and
    upgrade again.
    """
    condition = text(where) if where else None
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(
                f"{name}_next",
                table,
                columns,
                unique=unique,
                postgresql_where=condition,
                postgresql_concurrently=True,
            )
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
            op.execute(f"ALTER INDEX {name}_next RENAME TO {name}")
        return
    op.drop_index(name, table_name=table)
    op.create_index(name, table, columns, unique=unique, sqlite_where=condition)


def set_collation(columns: dict[str, list[tuple[str, int]]], collation: str) -> None:
    """In a migration: give `varchar` columns ({table: [(column, length)]}) a collation on
    PostgreSQL, one `ALTER TABLE` per table (its indexes are rebuilt under its lock).

    For identifiers (`habitue.db.ident`): `"C"`, or `"default"` to go back. SQLite has
    nothing to change: it compares bytes.
    """
    if op.get_context().dialect.name != "postgresql":
        return
    for table, cols in columns.items():
        changes = ", ".join(
            f'ALTER COLUMN {name} TYPE varchar({length}) COLLATE "{collation}"'
            for name, length in cols
        )
        op.execute(f"ALTER TABLE {table} {changes}")
