"""Alembic environment: migrations run on the synchronous driver of the configured URL."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import pool

from habitue.db import make_sync_engine
from habitue.models import Base
from habitue.settings import get_settings

config = context.config
target_metadata = Base.metadata


def run() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_sync_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (new table, copy, drop, rename): with foreign
            # keys on, dropping a table that other rows reference fails once it holds data.
            # SQLite only switches them outside a transaction, so before ours begins; the
            # references are checked once, at the end, before the migration commits (unless
            # the caller sets the config attribute `check_references` to False: a test's
            # rows that stand for a whole program without one).
            raw: Any = connection.connection.driver_connection
            raw.execute("PRAGMA foreign_keys=OFF")
        dialect = connection.dialect.name

        def include_object(obj: Any, *_: Any) -> bool:
            # A constraint the models create on some dialects only (`db.sqlite_foreign_key`).
            dialects = getattr(obj, "info", {}).get("dialects")
            return dialects is None or dialect in dialects

        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and config.attributes.get("check_references", True):
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke references: {broken[:5]}")
    engine.dispose()


run()
