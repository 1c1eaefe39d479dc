"""A grouped batch's members, read in one statement (`members.refs._refs_named`): sent to
asyncpg straight on PostgreSQL, the same members as the session's query, every column read
with them (the event pipeline's reads included)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.members import refs
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol, purchase


def _count_straight(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Counts the batch reads sent straight (True) and through the session (False)."""
    taken: list[bool] = []
    driver = refs.driver_connection

    async def counted(session: AsyncSession) -> Any:
        raw = await driver(session)
        taken.append(raw is not None)
        return raw

    monkeypatch.setattr(refs, "driver_connection", counted)
    return taken


async def test_a_batch_read_straight_is_the_sessions(
    client: httpx.AsyncClient, db: Database, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await create_program(client)
    members = [
        await enrol(client, program, external_id=f"x{i}", attributes={"city": "Århus", "n": i})
        for i in range(3)
    ]
    r = await purchase(client, program, members[0]["id"], "12.50")
    assert r.status_code == 201, r.text
    info = programs_service.cached_info(program)
    assert info is not None
    app = client._transport.app  # type: ignore[attr-defined]
    reads = app.state.pipeline.member_reads
    names = {
        "public_id": [m["id"] for m in members],
        "external_id": [m["external_id"] for m in members],
        "card": [m["card_number"] for m in members],
    }
    taken = _count_straight(monkeypatch)
    async with db.write_engine.connect() as conn:
        async with AsyncSession(bind=conn) as session, session.begin():
            for kind, named in names.items():
                fast = await refs._refs_named(session, info, kind, named, reads)
                with monkeypatch.context() as m:

                    async def none(_session: AsyncSession) -> None:
                        return None

                    m.setattr(refs, "driver_connection", none)
                    slow = await refs._refs_named(session, info, kind, named, reads)
                assert fast == slow, kind
                assert sorted(name for name, _ in fast) == sorted(named)
    assert taken == ([True] * 3 if db_kind == "postgres" else [])
    [(_, first)] = [(n, ref) for n, ref in fast if ref.public_id == members[0]["id"]]
    assert first.attributes == {"city": "Århus", "n": 0}
    assert first.accounts.available + first.accounts.pending > 0


async def test_purchases_grouped_in_a_batch_read_their_members_straight(
    client: httpx.AsyncClient, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await create_program(client)
    members = [await enrol(client, program) for _ in range(6)]
    taken = _count_straight(monkeypatch)
    answers = await asyncio.gather(
        *(purchase(client, program, m["id"], f"{5 + i}.00") for i, m in enumerate(members))
    )
    assert {a.status_code for a in answers} == {201}
    if db_kind == "postgres":
        assert taken and all(taken), taken  # grouped batches' reads: all straight
    else:
        assert not any(taken)
