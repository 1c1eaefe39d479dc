"""Erasure against events in flight: an event recorded while the member is being erased
neither credits points to the erased member nor leaves their data behind.

The erasure locks the member's row first; the event path reads the member's status under the
same lock (`members_service.LOCKED_STATUS`), so an event that arrives during an erasure waits
and is then refused (409 `member-not-active`), and one that got there first is committed before
the erasure, which then expires its points and scrubs it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from habitue.db import Database, table_of
from habitue.events.models import Event
from habitue.ledger.verify import verify
from habitue.members.models import Member
from habitue.privacy import erasure
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import create_program, enrol, new_code, purchase
from tests.privacy.test_erasure import dump

_events = table_of(Event)
_members = table_of(Member)


def _person(tag: str) -> dict[str, Any]:
    return {"email": f"racer-{tag}@example.org", "first_name": f"Racerine{tag}"}


async def _event_count(db: Database, public_id: str) -> int:
    async with db.read() as session:
        rows = await session.execute(
            select(_events.c.id)
            .join(_members, _members.c.id == _events.c.member_id)
            .where(_members.c.public_id == public_id)
        )
        return len(rows.all())


async def _assert_gone(client: httpx.AsyncClient, db: Database, program: str, m: str) -> None:
    base = f"/v1/programs/{program}"
    balance = (await client.get(f"{base}/members/{m}/balance")).json()
    assert (balance["available"], balance["pending"]) == (0, 0), balance
    assert (await client.get(f"{base}/members/{m}")).json()["status"] == "erased"
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_an_event_during_an_erasure_waits_and_is_refused(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two transactions at once on PostgreSQL: half-way through an erasure (the points
    expired, the member's row not yet updated), a purchase for the member comes in through
    the API; it waits for the member's row, then is refused."""
    if db_kind != "postgres":
        pytest.skip("SQLite has one writer: an erasure and an event cannot overlap there")
    program = await create_program(client)
    person = _person(new_code("p"))
    m = (await enrol(client, program, **person))["id"]
    assert (await purchase(client, program, m, "10.00")).status_code == 201
    racing: list[asyncio.Task[httpx.Response]] = []
    scrub_events = erasure._scrub_events

    async def meanwhile(*args: Any) -> None:
        # The erasure holds the member's row from its start (so an event, which takes that row
        # first too, never holds it while waiting for the member's points: no deadlock).
        async with db.writer() as probe, probe.begin():
            with pytest.raises(DBAPIError, match="could not obtain lock"):
                await probe.execute(
                    select(_members.c.id)
                    .where(_members.c.public_id == m)
                    .with_for_update(nowait=True)
                )
        racing.append(
            asyncio.create_task(
                purchase(client, program, m, "20.00", attributes={"note": person["email"]})
            )
        )
        await asyncio.sleep(0.5)
        assert not racing[0].done()  # waiting for the member's row
        await scrub_events(*args)

    monkeypatch.setattr(erasure, "_scrub_events", meanwhile)
    eraser = Database(settings.database_url)
    try:
        async with eraser.read() as session:
            info = await programs_service.get_info(session, program)
        async with eraser.writer() as session, session.begin():
            done = await erasure.erase(session, info, m, actor="test")
        r = await asyncio.wait_for(racing[0], 30)
    finally:
        await eraser.dispose()
    assert done.points_expired == 10
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/member-not-active")
    await _assert_gone(client, db, program, m)
    assert await _event_count(db, m) == 1  # the purchase before the erasure only
    text = await dump(db)
    assert person["email"] not in text and person["first_name"] not in text


async def test_erasures_and_purchases_sent_together_leave_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Each member's erasure and a purchase sent at once, in whatever order they run: the
    purchase is refused (after) or its points are expired and its data scrubbed (before)."""
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    people = [_person(new_code("q")) for _ in range(6)]
    ids = [(await enrol(client, program, **p))["id"] for p in people]
    for m in ids:
        assert (await purchase(client, program, m, "5.00")).status_code == 201

    async def race(m: str, person: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
        erase, event = await asyncio.gather(
            client.delete(f"{base}/members/{m}"),
            purchase(client, program, m, "7.00", attributes={"note": person["email"]}),
        )
        return erase, event

    results = await asyncio.gather(*[race(m, p) for m, p in zip(ids, people, strict=True)])
    for m, (erase, event) in zip(ids, results, strict=True):
        assert erase.status_code == 200, erase.text
        assert event.status_code in (201, 409), event.text
        await _assert_gone(client, db, program, m)
        assert await _event_count(db, m) == (2 if event.status_code == 201 else 1)
    text = await dump(db)
    for person in people:
        assert person["email"] not in text and person["first_name"] not in text


async def test_events_after_an_erasure_are_refused_by_id_card_and_external_id(
    client: httpx.AsyncClient, db: Database
) -> None:
    """In sequence (both databases): an erased member is refused whatever names them, and a
    refund of their earlier purchase writes nothing."""
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    person = {**_person(new_code("s")), "external_id": new_code("crm")}
    member = await enrol(client, program, **person)
    m = member["id"]
    bought = new_code("t")
    assert (await purchase(client, program, m, "10.00", external_id=bought)).status_code == 201
    assert (await client.delete(f"{base}/members/{m}")).status_code == 200
    r = await purchase(client, program, m, "10.00")
    assert r.status_code == 409 and r.json()["type"].endswith("/member-not-active"), r.text
    card, external = member["card_number"], person["external_id"]
    for selector in ({"card_number": card}, {"external_id": external}):
        body = {"type": "purchase", "member": selector, "external_id": new_code("t"),
                "total": "10.00"}  # fmt: skip
        r = await client.post(f"{base}/events", json=body)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    refund = {"type": "refund", "refers_to": bought, "external_id": new_code("r"), "total": "10.00"}
    r = await client.post(f"{base}/events", json=refund)
    assert r.status_code == 409 and r.json()["type"].endswith("/member-not-active"), r.text
    late = {"type": "purchase", "member": {"id": m}, "external_id": new_code("t"), "total": "1.00"}
    r = await client.post(f"{base}/events/batch", json={"events": [late]})
    assert r.json()["results"][0]["status"] == 409
    await _assert_gone(client, db, program, m)
    assert await _event_count(db, m) == 1
