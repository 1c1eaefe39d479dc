"""What the worker asks of the database: a batch costs the same statements whatever its size
(planning, claiming and recording are set-based), and the claim keeps each member's order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from habitue import clock
from habitue.db import Database, table_of
from habitue.messaging import outbox, worker
from habitue.messaging.claims import claim, refresh_statistics
from habitue.messaging.models import Delivery
from habitue.messaging.planning import insert_deliveries, plan
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import enrol
from tests.messaging.test_webhooks import Receiver, _endpoint

_d = table_of(Delivery)


async def _emit(db: Database, program: str, members: list[str]) -> None:
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
    rows = [
        outbox.outbox_row(info.id, "points.earned", member, {"points": i})
        for i, member in enumerate(members)
    ]
    await db.write(lambda s: outbox.emit_many(s, rows))


async def _delivered_with(db: Database, settings: Settings) -> tuple[int, int]:
    """Run the worker until idle: (round trips to the database, statements the database ran
    — an executemany counts each of its rows)."""
    counts = [0, 0]

    def count(*args: Any) -> None:
        params, many = args[3], args[5]
        counts[0] += 1
        counts[1] += len(params) if many and isinstance(params, list | tuple) else 1

    engines = {db.read_engine.sync_engine, db.write_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        await worker.run_until_idle(db, settings)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    return counts[0], counts[1]


async def test_a_batch_costs_the_same_statements_whatever_its_size(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    settings: Settings,
    receiver: Receiver,
    db_kind: str,
) -> None:
    receiver.server.socket.listen(128)  # 64 connections at once: none left waiting for a SYN
    hook = await _endpoint(client, program, receiver.url, ["points.earned"])
    settings = settings.model_copy(update={"worker_batch": 500})
    await worker.run_until_idle(db, settings)  # what other tests left, and the enrolments
    costs = {}
    for n in (3, 300):
        before = len(receiver.calls)
        await _emit(db, program, [str(uuid.uuid4()) for _ in range(n)])
        costs[n] = await _delivered_with(db, settings)
        assert len(receiver.calls) - before == n
    assert len(receiver.verified(hook["secret"])) == 303
    # the same round trips for 300 deliveries as for 3 (one plan, one claim, one record)
    assert costs[300][0] == costs[3][0] <= 40
    if db_kind == "postgres":  # and no executemany behind them: the server runs as many
        assert costs[300][1] == costs[3][1] == costs[3][0]


async def test_the_claim_takes_the_oldest_pending_delivery_of_each_member(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    await _endpoint(client, program, "https://example.com/hook", ["points.earned"])
    await worker.run_until_idle(db, settings.model_copy(update={"webhook_timeout_seconds": 0.1}))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await _emit(db, program, [first, second, first, first, second])
    await plan(db)
    claimed = await db.write(lambda s: claim(s, limit=100, lease_seconds=60))
    mine = [r for r in claimed if r.member_id in (first, second)]
    assert [r.member_id for r in mine] == [first, second]  # their first events only
    again = await db.write(lambda s: claim(s, limit=100, lease_seconds=60))
    assert [r for r in again if r.member_id in (first, second)] == []  # leased, and waiting
    async with db.read() as s:
        pending = (
            await s.execute(
                select(_d.c.member_id, _d.c.outbox_id)
                .where(_d.c.member_id.in_((first, second)), _d.c.status == "pending")
                .order_by(_d.c.id)
            )
        ).all()
    assert [m for m, _ in pending] == [first, second, first, first, second]
    assert [r.outbox_id for r in mine] == [pending[0].outbox_id, pending[1].outbox_id]


async def test_a_batch_of_messages_reads_its_members_in_one_query(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings
) -> None:
    """Each member's welcome message is decided on that member's own row (consent, address),
    and the batch reads its members together: 60 messages cost the round trips of 3 (they
    were one member query each: most of the worker's time after an import of 100,000)."""
    settings = settings.model_copy(update={"worker_batch": 500, "smtp_url": None})
    await worker.run_until_idle(db, settings)  # what other tests left
    costs, reasons = {}, {}
    for n in (3, 60):
        members = [
            await enrol(client, program, email=f"w{i}-{uuid.uuid4().hex[:8]}@example.com",
                        consents={"email": True})
            if i % 2 else await enrol(client, program)
            for i in range(n)
        ]  # fmt: skip
        costs[n] = await _delivered_with(db, settings)
        async with db.read() as s:
            rows = await s.execute(
                select(_d.c.member_id, _d.c.reason).where(
                    _d.c.member_id.in_([m["id"] for m in members]), _d.c.template == "welcome"
                )
            )
            found = {member_id: reason for member_id, reason in rows}
        reasons[n] = [found.get(m["id"]) for m in members]
    for n, got in reasons.items():
        # no email channel here: a consenting member's welcome gets that far, the others not
        assert got == ["no-consent" if i % 2 == 0 else "channel-not-configured"
                       for i in range(n)]  # fmt: skip
    assert costs[60][0] == costs[3][0]


async def _claim_plan(db: Database) -> str:
    """The plan PostgreSQL chooses for the claim's statement as the worker sends it."""
    sent: list[tuple[str, Any]] = []

    def keep(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engines = {db.read_engine.sync_engine, db.write_engine.sync_engine}
    async with db.read() as session:
        for engine in engines:
            event.listen(engine, "before_cursor_execute", keep)
        try:
            await claim(session, limit=200, lease_seconds=60)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", keep)
        statement, parameters = sent[-1]
        conn = await session.connection()
        rows = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
        plan = "\n".join(r[0] for r in rows)
        await session.rollback()
    return plan


async def test_the_claim_reads_a_large_backlog_through_the_due_index(
    program: str, db: Database, db_kind: str
) -> None:
    """With 5,000 deliveries pending and the statistics the worker refreshes during a backlog,
    the claim walks `ix_deliveries_due` in its order and stops at its limit: no sort of the
    whole backlog (in id order it read every due row, 0.4 s a claim at 100,000 pending)."""
    if db_kind != "postgres":
        pytest.skip("PostgreSQL's planner")
    async with db.read() as s:
        info = await programs_service.get_info(s, program)
    now = clock.now()  # due: a backlog (deleted at the end, before any worker runs)
    rows = [
        (str(uuid.uuid4()), 0, "points.earned", f"m{i}", "email", "points_earned", None,
         f"email:m{i}", None)
        for i in range(5000)
    ]  # fmt: skip
    await db.write(lambda s: insert_deliveries(s, info.id, rows, now))
    try:
        await db.write(refresh_statistics)
        plan = await _claim_plan(db)
        assert "ix_deliveries_due" in plan, plan
        assert "Sort" not in plan, plan
    finally:
        await db.write(
            lambda s: s.execute(_d.delete().where(_d.c.public_id.in_([r[0] for r in rows])))
        )


async def _table_stat(db: Database, table: str, column: str) -> Any:
    """`column` of `table`'s row in `pg_stat_user_tables`, as of now."""
    async with db.read() as s:
        await s.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = (
            await s.execute(
                text("SELECT * FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
            )
        ).mappings().first()
        return None if row is None else row[column]


async def _run_worker_until(
    db: Database, settings: Settings, done: Callable[[], Awaitable[bool]]
) -> None:
    """Run the worker's loop until `done()` (at most about 10 s)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(db, settings, stop))
    try:
        for _ in range(200):
            if await done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def _backlog_settings(settings: Settings) -> Settings:
    """Batches of 5: a dozen welcome messages are a backlog."""
    return settings.model_copy(
        update={"worker_batch": 5, "smtp_url": None, "worker_idle_seconds": 0.05}
    )


async def test_a_worker_in_a_backlog_refreshes_the_deliveries_statistics(
    client: httpx.AsyncClient, program: str, db: Database, settings: Settings, db_kind: str
) -> None:
    if db_kind != "postgres":
        pytest.skip("ANALYZE is PostgreSQL's")
    settings = _backlog_settings(settings)
    await worker.run_until_idle(db, settings)
    before = await _table_stat(db, "deliveries", "last_analyze")
    members = [await enrol(client, program) for _ in range(12)]  # 12 welcomes, 5 a batch

    async def done() -> bool:
        async with db.read() as s:
            left = (
                await s.execute(
                    select(func.count()).where(
                        _d.c.member_id.in_([m["id"] for m in members]),
                        _d.c.status == "pending",
                    )
                )
            ).scalar_one()
        return bool(left == 0 and (await _table_stat(db, "deliveries", "last_analyze")) != before)

    await _run_worker_until(db, settings, done)
    after = await _table_stat(db, "deliveries", "last_analyze")
    assert after is not None
    assert before is None or after > before


async def test_a_worker_in_a_backlog_vacuums_the_outbox(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    settings: Settings,
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Numbering walks the dead entries numbered events leave in the partial index of
    unnumbered ones until the outbox is vacuumed: a worker in a backlog vacuums it
    (`outbox.vacuum`, at most every `VACUUM_EVERY_SECONDS`), outside a transaction."""
    if db_kind != "postgres":
        pytest.skip("VACUUM is PostgreSQL's (outbox.vacuum does nothing on SQLite)")
    monkeypatch.setattr(worker, "VACUUM_EVERY_SECONDS", 0.0)
    settings = _backlog_settings(settings)
    await worker.run_until_idle(db, settings)
    before = await _table_stat(db, "outbox", "vacuum_count")
    for _ in range(12):  # 12 welcomes, 5 a batch: a backlog
        await enrol(client, program)

    async def done() -> bool:
        return bool(await _table_stat(db, "outbox", "vacuum_count") != before)

    await _run_worker_until(db, settings, done)
    assert await _table_stat(db, "outbox", "vacuum_count") > before
