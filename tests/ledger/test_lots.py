"""Which lots a debit takes: the refunded purchase's first, then closest to expiry, oldest id.

On PostgreSQL the lots are consumed by one statement (a running sum over the open lots); on
SQLite lot by lot in Python. Both must leave the same lots.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, table_of
from habitue.ledger import service as ledger_service
from habitue.ledger.errors import InsufficientPoints
from habitue.ledger.models import Lot
from habitue.ledger.service import Leg, MemberAccounts
from habitue.ledger.verify import verify
from habitue.members import service as members_service
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol

_lots = table_of(Lot)


async def test_debits_take_the_preferred_event_then_the_closest_expiry(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client, expiry={"policy": "days", "days": 365})
    public_id = (await enrol(client, code))["id"]
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        accounts: MemberAccounts = (
            await members_service.resolve(session, program, member_id=public_id)
        ).accounts

    async def credit(points: int, event: str) -> None:
        async def work(session: AsyncSession) -> None:
            await ledger_service.credit(
                session, program, accounts, [Leg(points)], kind="earn", reference=f"test:{event}",
                event_id=event,
            )  # fmt: skip

        await db.write(work)

    async def debit(points: int, reference: str, prefer: str | None = None) -> int:
        async def work(session: AsyncSession) -> int:
            taken, _ = await ledger_service.debit(
                session, program, accounts, points, kind="spend", counter="redeemed",
                reference=reference, prefer_event=prefer, mode="partial",
            )  # fmt: skip
            return taken

        return await db.write(work)

    await credit(10, "e-a")  # expires first
    clock.advance(timedelta(days=10))
    await credit(20, "e-b")
    clock.advance(timedelta(days=10))
    await credit(5, "e-c")

    async def remaining() -> list[tuple[str | None, int]]:
        async with db.read() as session:
            rows = await session.execute(
                select(_lots.c.event_id, _lots.c.remaining)
                .where(_lots.c.account_id == accounts.available)
                .order_by(_lots.c.id)
            )
            return [(e, r) for e, r in rows.all()]

    assert await debit(25, "d1", prefer="e-b") == 25  # all of e-b, then 5 of the oldest
    assert await remaining() == [("e-a", 5), ("e-b", 0), ("e-c", 5)]
    assert await debit(7, "d2") == 7  # the rest of e-a, then 2 of e-c
    assert await remaining() == [("e-a", 0), ("e-b", 0), ("e-c", 3)]
    assert await debit(9, "d3") == 3  # partial: only what there is
    assert await remaining() == [("e-a", 0), ("e-b", 0), ("e-c", 0)]
    async with db.read() as session:
        assert (await ledger_service.balances(session, accounts))["available"] == 0


async def test_a_strict_debit_consumes_what_its_statement_missed_or_refuses(
    client: httpx.AsyncClient, db: Database
) -> None:
    """`finish_strict_debit`: lots committed while the one-statement debit waited for the
    account's row were not in its snapshot; they are consumed after it."""
    code = await create_program(client)
    public_id = (await enrol(client, code))["id"]
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        accounts = (await members_service.resolve(session, program, member_id=public_id)).accounts
    for points, event in ((10, "e-1"), (5, "e-2")):

        async def give(session: AsyncSession, points: int = points, event: str = event) -> None:
            await ledger_service.credit(
                session, program, accounts, [Leg(points)], kind="earn",
                reference=f"give:{event}", event_id=event,
            )  # fmt: skip

        await db.write(give)

    async def statement_saw_no_lot(session: AsyncSession) -> None:
        plan = await ledger_service.take_balance(
            session, program, accounts, 12, kind="redeem", counter="redeemed", reference="s:1"
        )
        assert plan is not None
        # Its transaction written, no lot consumed: as if none had been in its snapshot.
        await ledger_service.apply_debit(session, replace(plan, lot_amount=0))
        await ledger_service.finish_strict_debit(session, plan, taken=True, consumed=0)

    await db.write(statement_saw_no_lot)
    async with db.read() as session:
        rows = await session.execute(
            select(_lots.c.event_id, _lots.c.remaining)
            .where(_lots.c.account_id == accounts.available)
            .order_by(_lots.c.id)
        )
        assert [(e, r) for e, r in rows.all()] == [("e-1", 0), ("e-2", 3)]
        assert not any((await verify(session)).values())

    async def short(session: AsyncSession) -> None:
        plan = ledger_service.plan_strict_debit(
            program, accounts, 12, kind="redeem", counter="redeemed", reference="s:2"
        )
        await ledger_service.finish_strict_debit(session, plan, taken=False, consumed=0)

    with pytest.raises(InsufficientPoints, match="needs 12 points, 3 available"):
        await db.write(short)
