"""What the worker asks of the database: a batch costs the same statements whatever its size
(planning, claiming and recording are set-based), and the claim keeps each member's order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import event, select

from habitue.db import Database, table_of
from habitue.messaging import outbox, worker
from habitue.messaging.claims import claim
from habitue.messaging.models import Delivery
from habitue.messaging.planning import plan
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
