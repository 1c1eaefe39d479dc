"""The group committer: grouped units commit together; a failing unit is rolled back alone."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database, GroupCommitter, Part, Prefetch, bind, compose, write_late


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


def test_composed_parts_cannot_read_each_others_parameters() -> None:
    """Two rooms may name a parameter alike: each part's are renamed under its namespace."""
    first = Part("one", "INSERT INTO t (id) VALUES (:id) RETURNING id", {"id": 1}, cte="a")
    last = Part("two", "SELECT CAST(:id AS int)::text FROM a", {"id": 2})
    sql = str(compose([first, last]))
    assert "a AS (INSERT INTO t (id) VALUES (:one__id)" in sql
    assert "CAST(:two__id AS int)::text" in sql  # a cast's `::` is not a parameter
    assert bind([first, last]) == {"one__id": 1, "two__id": 2}
    assert compose([first, last]) is compose([first, last])  # built once
    with pytest.raises(AssertionError, match="share a namespace"):
        compose([first, Part("one", "SELECT 1", {})])


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


async def test_a_unit_that_asks_to_run_alone_gets_a_transaction_of_its_own(
    probe: tuple[Database, str, list[str]],
) -> None:
    """A batch's group (`alone=True`) is never joined to other units, nor they to it; the
    units queued around it are still grouped, and every unit runs once, in queue order."""
    db, table, _ = probe
    committer = GroupCommitter(db.writer)
    ran: list[int] = []

    def unit(key: int) -> Any:
        async def work(session: AsyncSession) -> AsyncSession:
            await _insert(table, key)(session)
            ran.append(key)
            return session

        return work

    jobs = [
        committer.run(unit(k), key=f"{k:03d}", alone=k in (2, 3)) for k in range(6)
    ]
    sessions = await asyncio.gather(*jobs)
    await committer.close()
    assert sorted(ran) == list(range(6))
    assert ran.index(2) < ran.index(3)  # the queue's order
    for k in (2, 3):
        assert all(sessions[k] is not sessions[j] for j in range(6) if j != k)
    assert sessions[0] is sessions[1] and sessions[4] is sessions[5]
    assert await _rows(db, table) == list(range(6))
