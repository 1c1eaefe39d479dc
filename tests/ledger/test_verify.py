"""`habitue ledger verify` names a row whose parent is missing (migration 0038).

On PostgreSQL the purchase path's references are not foreign keys (SQLite keeps them, turned
off here for the connection): a row written by hand that names a missing program, member,
event, transaction or account is accepted by the database and reported by verify.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from habitue.db import async_url, table_of
from habitue.events.models import Event, EventLine
from habitue.ledger.models import LedgerTransaction, Lot, Posting
from habitue.ledger.verify import REFERENCES, verify
from tests.conftest import create_program, enrol, new_code, purchase

TABLES: dict[str, Table] = {
    t.name: t for t in map(table_of, (Event, EventLine, LedgerTransaction, Posting, Lot))
}
MISSING: dict[str, Any] = {
    "programs": 2**40,
    "members": 2**40 + 1,
    "events": "no-such-event",
    "ledger_transactions": 2**40 + 2,
    "accounts": 2**40 + 3,
}
"""A value of each parent's `id` that no row has."""


async def _written_by(conn: AsyncConnection, table: Table, event: Any) -> dict[str, Any]:
    """A row of `table` that the purchase `event` wrote."""
    if table.name == "events":
        where = table.c.id == event.id
    elif table.name == "postings":
        txns = TABLES["ledger_transactions"]
        earn = select(txns.c.id).where(txns.c.event_id == event.id).scalar_subquery()
        where = table.c.transaction_id == earn
    else:
        where = table.c.event_id == event.id
    row = (await conn.execute(select(table).where(where).limit(1))).mappings().one()
    return dict(row)


@pytest.mark.parametrize("check", list(REFERENCES))
async def test_verify_names_a_row_whose_parent_is_missing(
    client: httpx.AsyncClient, db_url: str, db_kind: str, check: str
) -> None:
    program = await create_program(client)
    member = await enrol(client, program)
    external_id = new_code("t")
    line = {"sku": "C1", "category": "coffee", "quantity": 1, "unit_price": "12.50"}
    r = await purchase(client, program, member["id"], "12.50", external_id=external_id,
                       lines=[line])  # fmt: skip
    assert r.status_code == 201, r.text
    child, column, parent = REFERENCES[check]
    table = TABLES[child]
    engine = create_async_engine(async_url(db_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            if db_kind == "sqlite":  # SQLite keeps the foreign keys: off for this connection
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            events = TABLES["events"]
            event = (
                await conn.execute(select(events).where(events.c.external_id == external_id))
            ).one()
            # A copy of a row the purchase wrote, naming a missing parent.
            copy = await _written_by(conn, table, event)
            copy[column] = MISSING[parent]
            if child == "events":
                copy.update(id=new_code("orphan"), external_id=new_code("orphan"))
            else:
                del copy["id"]
            if child == "ledger_transactions":
                copy["reference"] = new_code("orphan")
            await conn.execute(table.insert().values(copy))
            orphan = (
                copy["id"]
                if child == "events"
                else (await conn.execute(select(func.max(table.c.id)))).scalar_one()
            )
            breaches = await verify(AsyncSession(bind=conn))
            await conn.rollback()
    finally:
        await engine.dispose()
    assert breaches[check] == [(orphan, MISSING[parent])]
    for other in REFERENCES:
        if other != check:
            assert breaches[other] == [], other


async def test_a_purchase_names_its_parents(client: httpx.AsyncClient, db_url: str) -> None:
    """The references verify checks hold for what the API writes (the checks can pass)."""
    program = await create_program(client)
    member = await enrol(client, program)
    line = {"sku": "C1", "category": "coffee", "quantity": 1, "unit_price": "12.50"}
    r = await purchase(client, program, member["id"], "12.50", lines=[line])
    assert r.status_code == 201, r.text
    engine = create_async_engine(async_url(db_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            breaches = await verify(AsyncSession(bind=conn))
    finally:
        await engine.dispose()
    for name in REFERENCES:
        assert breaches[name] == [], name
