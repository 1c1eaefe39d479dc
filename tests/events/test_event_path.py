"""The event path's round trips: what other rooms read comes with the member's query."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event, text

from habitue.db import Database
from habitue.events import service as events_service
from habitue.events.schemas import EventCreate
from habitue.ledger.verify import verify
from habitue.members import service as members_service
from habitue.members.service import LOCKED_STATUS, MemberColumn
from habitue.programs import service as programs_service
from habitue.rewards.referrals import PENDING
from habitue.rooms import build_pipeline
from habitue.rules.hooks import COUNTERS
from habitue.settings import Settings
from habitue.tiers.granted import EXTRA as GRANTED
from tests.conftest import create_program, enrol, purchase
from tests.statements import count_statements

PIPELINE = build_pipeline()


async def _extras(db: Database, program: str, member: str) -> dict[MemberColumn, Any]:
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        reads = PIPELINE.member_reads
        ref = await members_service.resolve(session, info, member_id=member, reads=reads)
        assert (await members_service.resolve(session, info, member_id=member)).extras == {}
    return dict(ref.extras)


async def test_the_member_of_an_event_comes_with_its_counters_and_pending_referral(
    client: httpx.AsyncClient, db: Database
) -> None:
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    r = await client.put(base + "/referrals/settings", json={
        "referrer_points": 50, "referee_points": 20, "min_purchase": "5.00"})  # fmt: skip
    assert r.status_code == 200, r.text
    referrer, referee = (await enrol(client, program))["id"], (await enrol(client, program))["id"]
    code = (await client.get(f"{base}/members/{referrer}/referral-code")).json()["code"]
    r = await client.post(base + "/referrals", json={"referee": referee, "code": code})
    assert r.status_code == 201, r.text

    # The counters' row is made with the member, nothing counted yet.
    nothing = {"days": {}, "years": {}, "lifetime": {}}
    assert await _extras(db, program, referrer) == {
        LOCKED_STATUS: "active", COUNTERS: nothing, PENDING: False, GRANTED: False}  # fmt: skip
    assert (await _extras(db, program, referee))[PENDING] is True

    await purchase(client, program, referrer, "12.00")
    counted = (await _extras(db, program, referrer))[COUNTERS]
    assert counted is not None and sum(counted["lifetime"].values()) > 0
    # The referee's first purchase qualifies the referral: nothing is pending any more.
    bought = await purchase(client, program, referee, "12.00")
    assert [e["detail"]["status"] for e in bought.json()["effects"] if e["kind"] == "referral"] == [
        "qualified"
    ]
    assert (await _extras(db, program, referee))[PENDING] is False
    again = await purchase(client, program, referee, "12.00")
    assert not [e for e in again.json()["effects"] if e["kind"] == "referral"]


async def test_a_purchase_is_two_statements_on_postgresql(
    client: httpx.AsyncClient, db: Database, db_kind: str
) -> None:
    """The member (with counters and referral), then the credit, the counters, the event, its
    lines, the lifetime total and the domain events together: one round trip each."""
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    await purchase(client, program, member, "3.00")  # the counters' row exists from here on
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    engine = db.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        line = {"sku": "latte", "category": "coffee", "quantity": 2, "unit_price": "20.00"}
        r = await purchase(client, program, member, "40.00", lines=[line])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.json()["points_earned"] == 40
    writes = [s for s in seen if s not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]
    if db_kind == "postgres":
        assert writes == ["SELECT", "WITH"], seen
    else:
        assert len(writes) > 2  # statement by statement
    balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert (balance["available"], balance["lifetime_earned"]) == (43, 43)


async def test_grouped_purchases_read_their_members_in_one_query(
    client: httpx.AsyncClient, db: Database, settings: Settings, db_kind: str
) -> None:
    program = await create_program(client)
    a, b, c = [(await enrol(client, program))["id"] for _ in range(3)]
    for m in (a, b, c):
        await purchase(client, program, m, "1.00")  # counters' rows exist from here on
    one_lane = Database(settings.database_url, lanes=1)
    seen, stop = count_statements(one_lane)
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)

        def body(member: str, n: int) -> EventCreate:
            return EventCreate.model_validate({
                "type": "purchase", "member": {"id": member}, "external_id": f"g{n}",
                "total": "10.00"})  # fmt: skip

        # Queued before the committer runs: one batch, in member order (a's twice).
        answers = await asyncio.gather(*[
            events_service.record_event(one_lane, PIPELINE, info, body(m, n))
            for n, m in enumerate([a, b, a, c])
        ])  # fmt: skip
    finally:
        stop()
        await one_lane.dispose()
    assert [r.points_earned for r in answers] == [10, 10, 10, 10]
    if db_kind == "postgres":
        # One read for the batch (a's second purchase reads again), and the four purchases'
        # writes at the batch's end in two statements: a's second starts the second run.
        assert sorted(s for s in seen if s.startswith(("SELECT", "WITH"))) == [
            "SELECT",
            "SELECT",
            "WITH",
            "WITH",
        ], seen
    for member, points, purchases in ((a, 21, 3), (b, 11, 2), (c, 11, 2)):
        balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
        assert balance["available"] == points
        counted = (await _extras(db, program, member))[COUNTERS]
        assert counted["lifetime"]["purchases"] == purchases


async def test_grouped_purchases_with_lines_are_written_in_one_statement(
    client: httpx.AsyncClient, db: Database, settings: Settings, db_kind: str
) -> None:
    """A batch's purchases of different members, with basket lines or none, are written by
    one statement at its end on PostgreSQL (each table once): every event, line, credit,
    lifetime total and domain event is there, as when written one by one."""
    program = await create_program(client)
    members = [(await enrol(client, program))["id"] for _ in range(4)]
    for m in members:
        await purchase(client, program, m, "1.00")  # counters' rows exist from here on
    one_lane = Database(settings.database_url, lanes=1)
    seen, stop = count_statements(one_lane)
    line = {"sku": "latte", "category": "coffee", "unit_price": "2.50"}
    baskets = [[line, {**line, "sku": "bun", "quantity": 2}], [line], [], [line] * 3]
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)
        bodies = [
            EventCreate.model_validate({
                "type": "purchase", "member": {"id": m}, "external_id": f"w{n}",
                "total": f"{2.5 * (len(lines) + (n == 0)) or 4:.2f}", "lines": lines})
            for n, (m, lines) in enumerate(zip(members, baskets, strict=True))
        ]  # fmt: skip
        answers = await asyncio.gather(
            *[events_service.record_event(one_lane, PIPELINE, info, body) for body in bodies]
        )
    finally:
        stop()
        await one_lane.dispose()
    assert [r.points_earned for r in answers] == [7, 2, 4, 7]
    if db_kind == "postgres":
        assert [s for s in seen if s.startswith("WITH")] == ["WITH"], seen
    async with db.read() as session:
        stored = (
            await session.execute(
                text(
                    "SELECT e.external_id, l.line_no, l.sku, l.quantity, l.amount_minor"
                    " FROM event_lines l JOIN events e ON e.id = l.event_id"
                    " WHERE e.external_id LIKE 'w%' ORDER BY e.external_id, l.line_no"
                )
            )
        ).all()
        assert not any((await verify(session)).values())
    assert [(x, n, sku, float(q), a) for x, n, sku, q, a in stored] == [
        ("w0", 0, "latte", 1.0, 250), ("w0", 1, "bun", 2.0, 500), ("w1", 0, "latte", 1.0, 250),
        ("w3", 0, "latte", 1.0, 250), ("w3", 1, "latte", 1.0, 250), ("w3", 2, "latte", 1.0, 250),
    ]  # fmt: skip
    for member, points in zip(members, [8, 3, 5, 8], strict=True):
        balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
        assert (balance["available"], balance["lifetime_earned"]) == (points, points)
    feed = (await client.get(f"/v1/programs/{program}/events-feed")).json()["items"]
    recorded = sorted(e["data"]["external_id"] for e in feed if e["type"] == "event.recorded")
    assert [x for x in recorded if x.startswith("w")] == ["w0", "w1", "w2", "w3"]


async def test_a_batch_reads_its_members_by_one_statement_whatever_its_size(
    client: httpx.AsyncClient, db: Database, settings: Settings, db_kind: str
) -> None:
    """On PostgreSQL the batch's members are named by one array parameter: batches of 1, 2
    and 3 members send the same statement (one prepared statement and plan per connection)."""
    program = await create_program(client)
    members = [(await enrol(client, program))["id"] for _ in range(6)]
    one_lane = Database(settings.database_url, lanes=1)
    texts: list[str] = []

    def keep(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and "anon_1" in statement:
            texts.append(statement)

    engine = one_lane.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", keep)
    fetch = asyncpg.Connection.fetch

    async def fetching(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        keep(None, None, query)  # a batch's members read straight (`db.driver_connection`)
        return await fetch(self, query, *args, **kwargs)

    asyncpg.Connection.fetch = fetching  # type: ignore[method-assign]
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)
        sent = 0
        for size in (1, 2, 3):
            bodies = []
            for m in members[sent : sent + size]:
                bodies.append(EventCreate.model_validate({
                    "type": "purchase", "member": {"id": m}, "external_id": f"s{sent}",
                    "total": "3.00"}))  # fmt: skip
                sent += 1
            answers = await asyncio.gather(
                *[events_service.record_event(one_lane, PIPELINE, info, b) for b in bodies]
            )
            assert [r.points_earned for r in answers] == [3] * size
    finally:
        asyncpg.Connection.fetch = fetch  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", keep)
        await one_lane.dispose()
    if db_kind == "postgres":
        assert len(texts) == 2 and len(set(texts)) == 1, texts  # the batches of 2 and 3
    for m in members:
        balance = (await client.get(f"/v1/programs/{program}/members/{m}/balance")).json()
        assert balance["available"] == 3


async def test_grouped_purchases_by_external_id_or_card_read_their_members_in_one_query(
    client: httpx.AsyncClient, db: Database, settings: Settings, db_kind: str
) -> None:
    """Tills name members by external id or card: such a batch is read and written as one
    named by id is, and one member named two ways, or a blocked card, change nothing else."""
    program = await create_program(client)
    a, b, c, d = [await enrol(client, program, external_id=f"till-{n}") for n in range(4)]
    for m in (a, b, c, d):
        await purchase(client, program, m["id"], "1.00")  # counters' rows exist from here on
    blocked = (await client.post(f"/v1/programs/{program}/cards/{d['card_number']}/block")).json()
    assert blocked["status"] == "blocked"
    one_lane = Database(settings.database_url, lanes=1)
    seen, stop = count_statements(one_lane)
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)
        named = [
            {"external_id": a["external_id"]},
            {"card_number": b["card_number"]},
            {"external_id": c["external_id"]},
            {"card_number": a["card_number"]},  # a again, named by card
        ]
        bodies = [
            EventCreate.model_validate({
                "type": "purchase", "member": sel, "external_id": f"t{n}", "total": "10.00"})
            for n, sel in enumerate(named)
        ]  # fmt: skip
        answers = await asyncio.gather(
            *[events_service.record_event(one_lane, PIPELINE, info, body) for body in bodies]
        )
        stop()
        # A blocked card in a batch is refused alone, the others recorded.
        mixed = [
            EventCreate.model_validate({
                "type": "purchase", "member": sel, "external_id": f"u{n}", "total": "10.00"})
            for n, sel in enumerate([{"card_number": d["card_number"]},
                                     {"card_number": c["card_number"]}])
        ]  # fmt: skip
        refused, accepted = await asyncio.gather(
            *[events_service.record_event(one_lane, PIPELINE, info, body) for body in mixed],
            return_exceptions=True,
        )
    finally:
        await one_lane.dispose()
    assert [r.points_earned for r in answers] == [10, 10, 10, 10]
    assert getattr(refused, "status", None) == 409, refused
    assert getattr(accepted, "points_earned", None) == 10, accepted
    if db_kind == "postgres":
        # One read per way of naming (external id, card: its members in one query); a,
        # named again by card, reads alone; the four writes in two statements (a twice).
        assert sorted(s for s in seen if s.startswith(("SELECT", "WITH"))) == [
            "SELECT",
            "SELECT",
            "SELECT",
            "WITH",
            "WITH",
        ], seen
    for member, points in ((a, 21), (b, 11), (c, 21), (d, 1)):
        balance = (await client.get(f"/v1/programs/{program}/members/{member['id']}/balance"))
        assert balance.json()["available"] == points, member
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_grouped_purchases_that_earn_pending_points_or_none(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """Late writes of other shapes: pending points, no points at all, a member twice."""
    program = await create_program(client, pending_days=14)
    a, b = [(await enrol(client, program))["id"] for _ in range(2)]
    one_lane = Database(settings.database_url, lanes=1)
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)
        bodies = [
            EventCreate.model_validate({
                "type": "purchase", "member": {"id": m}, "external_id": f"p{n}", "total": total})
            for n, (m, total) in enumerate([(a, "20.00"), (b, "0.50"), (a, "5.00"), (b, "7.00")])
        ]  # fmt: skip
        answers = await asyncio.gather(
            *[events_service.record_event(one_lane, PIPELINE, info, body) for body in bodies]
        )
    finally:
        await one_lane.dispose()
    assert [(r.points_earned, r.pending) for r in answers] == [
        (20, True), (0, False), (5, True), (7, True)]  # fmt: skip
    for member, pending in ((a, 25), (b, 7)):
        balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
        assert (balance["available"], balance["pending"], balance["lifetime_earned"]) == (
            0, pending, pending)  # fmt: skip
    feed = (await client.get(f"/v1/programs/{program}/events-feed")).json()["items"]
    assert sorted(e["data"]["external_id"] for e in feed if e["type"] == "event.recorded") == [
        "p0", "p1", "p2", "p3"]  # fmt: skip
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_first_purchases_of_a_member_from_two_servers_are_each_counted(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """A member's counters row is made by their first counted event: two servers recording
    first purchases of one member at once count every one of them (neither overwrites)."""
    program = await create_program(client)
    member = (await enrol(client, program))["id"]
    servers = [Database(settings.database_url, lanes=1) for _ in range(2)]
    try:
        async with db.read() as session:
            info = await programs_service.get_info(session, program)
        bodies = [
            EventCreate.model_validate({
                "type": "purchase", "member": {"id": member}, "external_id": f"f{n}",
                "total": "2.00"})
            for n in range(8)
        ]  # fmt: skip
        answers = await asyncio.gather(*[
            events_service.record_event(servers[n % 2], PIPELINE, info, body)
            for n, body in enumerate(bodies)
        ])  # fmt: skip
    finally:
        for server in servers:
            await server.dispose()
    assert [r.points_earned for r in answers] == [2] * 8
    counted = (await _extras(db, program, member))[COUNTERS]
    assert counted["lifetime"]["purchases"] == 8
    balance = (await client.get(f"/v1/programs/{program}/members/{member}/balance")).json()
    assert balance["available"] == 16
