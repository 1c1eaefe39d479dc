"""The group committer: grouped units commit together; a failing unit is rolled back alone."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database, DeferredWrite, GroupCommitter, Prefetch, defer_write, write_late


@pytest.fixture
async def probe(db: Database) -> AsyncIterator[tuple[Database, str, list[str]]]:
    """A scratch table, and the statements the write engine runs."""
    name = f"gc_probe_{secrets.token_hex(3)}"
    async with db.write_engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, tag TEXT)"))
    seen: list[str] = []

    def log(*args: Any) -> None:
        seen.append(str(args[2]).split()[0].upper())

    event.listen(db.write_engine.sync_engine, "before_cursor_execute", log)
    yield db, name, seen
    event.remove(db.write_engine.sync_engine, "before_cursor_execute", log)
    async with db.write_engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE {name}"))


def _insert(table: str, key: int, *, fail: bool = False) -> Any:
    async def work(session: AsyncSession) -> int:
        await session.execute(text(f"INSERT INTO {table} (id, tag) VALUES ({key}, 'x')"))  # noqa: S608
        if fail:
            raise LookupError(f"unit {key} fails after writing")
        return key

    return work


async def _batch(committer: GroupCommitter, table: str, fail: set[int]) -> list[Any]:
    """Five units queued before the committer runs, so that they form one batch."""
    jobs = [committer.run(_insert(table, k, fail=k in fail), key=f"{k:03d}") for k in range(5)]
    return await asyncio.gather(*jobs, return_exceptions=True)


async def _rows(db: Database, table: str) -> list[int]:
    async with db.read() as session:
        return list((await session.execute(text(f"SELECT id FROM {table} ORDER BY id"))).scalars())  # noqa: S608


async def test_a_clean_batch_commits_once_without_savepoints(
    probe: tuple[Database, str, list[str]],
) -> None:
    db, table, seen = probe
    committer = GroupCommitter(db.writer)
    try:
        assert await _batch(committer, table, fail=set()) == [0, 1, 2, 3, 4]
    finally:
        await committer.close()
    assert await _rows(db, table) == [0, 1, 2, 3, 4]
    assert seen.count("INSERT") == 5
    assert "SAVEPOINT" not in seen


async def test_a_failing_unit_is_rolled_back_alone(
    probe: tuple[Database, str, list[str]],
) -> None:
    db, table, seen = probe
    committer = GroupCommitter(db.writer)
    try:
        results = await _batch(committer, table, fail={2})
    finally:
        await committer.close()
    assert [r for i, r in enumerate(results) if i != 2] == [0, 1, 3, 4]
    assert isinstance(results[2], LookupError)
    # Its write is gone, its neighbours' are committed, each exactly once.
    assert await _rows(db, table) == [0, 1, 3, 4]
    assert "SAVEPOINT" in seen  # the second run isolates each unit


def _deferring(table: str, key: int, *, fail: bool = False, twice: bool = False) -> Any:
    """A unit that leaves its insert to the unit's end (no statement of its own takes it)."""

    async def work(session: AsyncSession) -> int:
        sql = f"INSERT INTO {table} (id, tag) VALUES (:d_id, :d_tag)"  # noqa: S608
        await defer_write(session, DeferredWrite("probe", sql, {"d_id": key, "d_tag": "a"}, key))
        if twice:  # another key of the same name: the first write runs at once
            other = DeferredWrite("probe", sql, {"d_id": key + 100, "d_tag": "b"}, key + 100)
            await defer_write(session, other)
        if fail:
            raise LookupError(f"unit {key} fails after deferring")
        return key

    return work


async def test_deferred_writes_run_at_the_end_of_their_unit_or_not_at_all(
    probe: tuple[Database, str, list[str]],
) -> None:
    db, table, _ = probe
    committer = GroupCommitter(db.writer)
    try:
        jobs = [
            committer.run(_deferring(table, k, fail=k == 2, twice=k == 3), key=f"{k:03d}")
            for k in range(5)
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        await committer.close()
    assert isinstance(results[2], LookupError)
    # The failing unit's deferred write went with it; the others ran once, both of unit 3's.
    assert await _rows(db, table) == [0, 1, 3, 4, 103]
    assert await db.write(_deferring(table, 7)) == 7  # alone in its batch, too
    assert (await _rows(db, table))[-2:] == [7, 103]


async def test_a_batch_reads_once_for_its_units_and_forgets_before_another_unit(
    db: Database,
) -> None:
    calls: list[list[int]] = []

    async def read(session: AsyncSession, args: list[int]) -> None:
        calls.append(list(args))
        session.info["probe"] = set(args)

    def unit(k: int) -> Any:
        async def work(session: AsyncSession) -> bool:
            return k in session.info.get("probe", set())  # found what the batch read

        return work

    async def other(session: AsyncSession) -> str:
        return "other"

    committer = GroupCommitter(db.writer)
    try:
        jobs = [
            committer.run(unit(k), key=f"{k:03d}", prefetch=Prefetch(read, k, "probe"))
            for k in (2, 0, 1)
        ]
        jobs.append(committer.run(other, key="001-another"))  # runs between 1 and 2
        results = await asyncio.gather(*jobs)
        alone = await committer.run(unit(5), key="005", prefetch=Prefetch(read, 5, "probe"))
    finally:
        await committer.close()
    assert calls == [[0, 1, 2]]  # once, in the units' order
    assert results == [False, True, True, "other"]  # unit 2 ran after the other unit
    assert alone is False  # a batch of one reads nothing ahead


async def test_late_writes_wait_for_the_batch_end_but_not_past_another_unit(
    probe: tuple[Database, str, list[str]],
) -> None:
    db, table, seen = probe
    insert_row = text(f"INSERT INTO {table} (id, tag) VALUES (:id, :tag)")  # noqa: S608

    def late(k: int) -> Any:
        async def work(session: AsyncSession) -> int:
            await write_late(session, insert_row, {"id": k, "tag": "late"})
            return k

        return work

    async def reader(session: AsyncSession) -> list[int]:
        rows = await session.execute(text(f"SELECT id FROM {table} ORDER BY id"))  # noqa: S608
        return list(rows.scalars())

    committer = GroupCommitter(db.writer)
    try:
        jobs = [committer.run(late(k), key=f"{k:03d}", late=True) for k in (0, 1, 3, 4)]
        jobs.append(committer.run(reader, key="002"))  # runs between 1 and 3
        results = await asyncio.gather(*jobs)
    finally:
        await committer.close()
    assert results[-1] == [0, 1]  # what the late units before it wrote, and nothing after
    assert await _rows(db, table) == [0, 1, 3, 4]
    assert seen.count("INSERT") == 2  # two pipelined writes of two rows each
