"""The statements a `Database` sends, counted by their first word: those SQLAlchemy executes
and those sent to asyncpg straight (`db.driver_connection`, `db.execute_composed`), which
SQLAlchemy never sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import event

from habitue.db import Database

_STRAIGHT_CALLS = ("execute", "fetch", "fetchrow", "fetchval")


def count_statements(
    database: Database, full: list[str] | None = None
) -> tuple[list[str], Callable[[], None]]:
    """The statements `database` sends from now until `stop()`: each one's first word, with
    ` x<n>` for a pipelined executemany of n parameter sets (and, into `full`, their first 200
    characters). Statements sent straight are counted on every asyncpg connection of the
    process meanwhile, except the adapter's own BEGIN, COMMIT and ROLLBACK (no parameters)."""
    seen: list[str] = []

    def note(statement: str, suffix: str = "") -> None:
        seen.append(statement.split(None, 1)[0].upper() + suffix)
        if full is not None:
            full.append(statement[:200])

    def count(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        note(statement, f" x{len(params)}" if many else "")

    engine = database.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    originals = {name: getattr(asyncpg.Connection, name) for name in _STRAIGHT_CALLS}

    def counted(original: Any) -> Any:
        async def call(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if args:
                note(query)
            return await original(self, query, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(asyncpg.Connection, name, counted(original))

    def stop() -> None:
        event.remove(engine, "before_cursor_execute", count)
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)

    return seen, stop
