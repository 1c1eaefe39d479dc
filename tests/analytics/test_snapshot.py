"""The snapshot reads the same Arrow tables through COPY (PostgreSQL, sync) and through rows."""

from __future__ import annotations

import httpx

from habitue.analytics import snapshot
from habitue.db import Database, make_sync_engine
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol, purchase


async def test_sync_and_async_snapshots_are_identical(
    client: httpx.AsyncClient, db: Database, db_url: str
) -> None:
    code = await create_program(client)
    plain = await enrol(client, code)
    rich = await enrol(
        client, code, attributes={"city": 'Paris, 1er "arr."'}, consents={"email": True}
    )
    line = {"sku": "latte", "category": "", "quantity": "2", "unit_price": "4.50"}
    bare = {"sku": "cookie", "quantity": "1", "unit_price": "3.00"}
    assert (
        await purchase(client, code, rich["id"], "12.00", lines=[line, bare])
    ).status_code == 201
    assert (await purchase(client, code, plain["id"], "0.50", external_id="b1")).status_code == 201
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={"type": "refund", "external_id": "r1", "refers_to": "b1", "total": "0.50"},
    )
    assert r.status_code == 201, r.text
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        readers = (
            snapshot.events,
            snapshot.lines,
            snapshot.members,
            snapshot.postings,
            snapshot.redemptions,
        )
        through_rows = [
            await session.run_sync(lambda s, f=f: f(s.connection(), program.id)) for f in readers
        ]
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            through_sync = [f(conn, program.id, stream=True) for f in readers]
    finally:
        engine.dispose()
    for rows, sync in zip(through_rows, through_sync, strict=True):
        assert rows.schema == sync.schema
        key = rows.schema.names[0]
        assert rows.sort_by(key).to_pylist() == sync.sort_by(key).to_pylist()
    events = through_rows[0].sort_by("total_minor").to_pylist()
    assert [e["total_minor"] for e in events] == [-50, 50, 1200]
    members = {m["public_id"]: m for m in through_rows[2].to_pylist()}
    assert members[plain["id"]]["tier"] is None
    assert '"arr.\\""' in members[rich["id"]]["attributes"]
