"""The outbox read by member: a member's latest domain events, newest first."""

from __future__ import annotations

import httpx

from habitue.db import Database
from habitue.messaging import outbox
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol, purchase


async def test_for_member_lists_only_that_members_events_newest_first(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program, email="outbox@example.com")
    other = await enrol(client, program, email="other@example.com")
    assert (await purchase(client, program, m["id"], "20.00")).status_code == 201
    assert (await purchase(client, program, other["id"], "5.00")).status_code == 201
    elsewhere = await create_program(client)
    await enrol(client, elsewhere, email="outbox@example.com")
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        other_info = await programs_service.get_info(session, elsewhere)
        events = await outbox.for_member(session, info.id, m["id"])
        latest = await outbox.for_member(session, info.id, m["id"], limit=1)
        none = await outbox.for_member(session, other_info.id, m["id"])
    assert [e.type for e in events] == ["event.recorded", "points.earned", "member.enrolled"]
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert all(e.payload["member_id"] == m["id"] for e in events)
    assert events[1].payload["points"] == 20
    assert all(e.created_at.tzinfo is not None for e in events)
    assert latest == events[:1]
    assert none == []
