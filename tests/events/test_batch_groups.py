"""`POST /events/batch` records its purchases in groups (`events.batch._record_group`): each
group one transaction, its members read in one query and its rows written one statement per
table. What a batch leaves must be what the same events sent one by one to `POST /events`
leave, slot for slot, whatever the mix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from habitue.db import Database
from habitue.events import batch as batch_module
from habitue.ledger.verify import verify
from tests.conftest import create_program, enrol
from tests.statements import count_statements
from tests.tiers.helpers import ladder

_FULL: list[list[str]] = []

_RULES = [
    # Reads the counters the group bumps: the third purchase in 30 days and later earn double.
    {"code": "third", "name": "Third purchase doubles", "event_type": "purchase",
     "condition": "member.counters.purchases_30d >= 3",
     "effect": {"kind": "multiplier", "factor": "2"}},
    {"code": "coffee", "name": "Coffee bonus", "event_type": "purchase",
     "line_condition": "line.category == 'coffee'",
     "effect": {"kind": "per_currency_unit", "rate": "1"}},
]  # fmt: skip


async def _program(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    code = await create_program(client)
    assert (await ladder(client, code)).status_code == 201
    for rule in _RULES:
        r = await client.post(f"/v1/programs/{code}/rules", json=rule)
        assert r.status_code == 201, r.text
    members = [await enrol(client, code, external_id=f"till-{n}") for n in range(5)]
    return code, members


def _events(members: list[dict[str, Any]]) -> list[Any]:
    """A till's day: members named every way, several purchases each, lines, a retry of an
    `external_id`, an unknown member, a bad amount, a refund, and a purchase paid with points."""
    m = members

    def buy(n: int, who: dict[str, str], total: str, **extra: Any) -> dict[str, Any]:
        return {"type": "purchase", "member": who, "external_id": f"o-{n}", "total": total,
                **extra}  # fmt: skip

    coffee = [{"sku": "ESP", "category": "coffee", "quantity": 2, "unit_price": "2.50"},
              {"sku": "CAKE", "category": "food", "unit_price": "5.00"}]  # fmt: skip
    return [
        buy(0, {"id": m[0]["id"]}, "10.00"),
        buy(1, {"external_id": m[1]["external_id"]}, "20.00"),
        buy(2, {"card_number": m[2]["card_number"]}, "30.00"),
        buy(3, {"id": m[0]["id"]}, "40.00"),
        buy(4, {"external_id": m[0]["external_id"]}, "50.00"),  # m0's third: doubled
        buy(5, {"id": m[3]["id"]}, "10.00", lines=coffee),
        buy(1, {"external_id": m[1]["external_id"]}, "20.00"),  # a retry of o-1
        buy(6, {"id": "mem_nobody"}, "10.00"),  # 404
        buy(7, {"id": m[4]["id"]}, "1.2.3"),  # 422
        buy(8, {"card_number": m[0]["card_number"]}, "60.00"),  # m0 named by card
        {"type": "refund", "external_id": "r-1", "refers_to": "o-3", "total": "40.00"},
        buy(9, {"id": m[1]["id"]}, "70.00"),  # silver from here: 1.5 x
        buy(10, {"id": m[1]["id"]}, "5.00", spend_points=3),
        buy(11, {"external_id": m[3]["external_id"]}, "5.00", lines=coffee[:1]),
        buy(12, {"id": m[2]["id"]}, "99.99"),
        buy(13, {"id": m[4]["id"]}, "12.00"),
    ]


_IDS = ("member_id", "purchase")
"""Details that name a member or an event: they differ between two programs."""


def _same(body: dict[str, Any]) -> dict[str, Any]:
    """What two programs' answers share: everything but ids."""
    if "points" not in body:
        return {"type": body.get("type"), "status": body.get("status")}
    return {
        "type": body["type"], "external_id": body["external_id"], "points": body["points"],
        "points_earned": body["points_earned"], "points_spent": body["points_spent"],
        "total": body["total"], "pending": body["pending"],
        "effects": [
            (e["kind"], e["rule"], e["points"],
             {k: v for k, v in (e.get("detail") or {}).items() if k not in _IDS})
            for e in body["effects"]
        ],
    }  # fmt: skip


async def _state(client: httpx.AsyncClient, code: str, members: list[dict[str, Any]]) -> Any:
    out = []
    for member in members:
        got = (await client.get(f"/v1/programs/{code}/members/{member['id']}")).json()
        balance = (await client.get(f"/v1/programs/{code}/members/{member['id']}/balance")).json()
        out.append((got.get("tier"), balance["available"], balance["pending"]))
    return out


def _count_statements(db: Database) -> tuple[list[str], Callable[[], None]]:
    full: list[str] = []
    _FULL.append(full)
    return count_statements(db, full)


async def test_a_batch_leaves_what_the_same_events_one_by_one_leave(
    client: httpx.AsyncClient, db: Database
) -> None:
    batch_code, batch_members = await _program(client)
    single_code, single_members = await _program(client)
    r = await client.post(
        f"/v1/programs/{batch_code}/events/batch", json={"events": _events(batch_members)}
    )
    assert r.status_code == 200, r.text
    slots = r.json()["results"]
    singles = []
    for body in _events(single_members):
        one = await client.post(f"/v1/programs/{single_code}/events", json=body)
        singles.append({"status": one.status_code, "body": one.json()})
    assert [s["status"] for s in slots] == [s["status"] for s in singles]
    assert [s["status"] for s in slots] == [201] * 7 + [404, 422] + [201] * 7
    assert [_same(s["body"]) for s in slots] == [_same(s["body"]) for s in singles]
    # The retry of o-1 is its first answer; m0's third purchase was doubled.
    assert slots[6]["body"] == slots[1]["body"]
    assert [e["rule"] for e in slots[4]["body"]["effects"] if e["kind"] == "multiplier"] == [
        "third"
    ]
    assert await _state(client, batch_code, batch_members) == await _state(
        client, single_code, single_members
    )
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_a_group_is_read_and_written_in_a_few_statements(
    client: httpx.AsyncClient, db: Database, db_kind: str
) -> None:
    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(40)]
    events = [
        {"type": "purchase", "member": {"id": m["id"]}, "external_id": f"g-{n}",
         "total": "10.00"}
        for n, m in enumerate(members)
    ]  # fmt: skip
    warm = {**events[0], "external_id": "warm-up"}  # the program's settings read and cached
    assert (await client.post(f"/v1/programs/{code}/events", json=warm)).status_code == 201
    seen, stop = _count_statements(db)
    try:
        r = await client.post(f"/v1/programs/{code}/events/batch", json={"events": events})
    finally:
        stop()
    assert [s["status"] for s in r.json()["results"]] == [201] * 40
    if db_kind == "postgres":
        # The members, the recorded ids, one WITH for every table (the counters too).
        assert seen.count("WITH") == 1, seen
        assert len(seen) <= 4, _FULL[-1]
    for n, m in enumerate(members):
        balance = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
        assert balance["available"] == (20 if n == 0 else 10)


async def test_a_failing_group_is_recorded_event_by_event(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group that fails after writing something is rolled back whole and its events go the
    per-event path: the answers and the balances are the same."""
    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(3)]
    original = batch_module.write_events
    failed: list[int] = []

    async def failing(session: Any, group: Any) -> None:
        if not failed:
            failed.append(len(group))
            await original(session, group)
            raise RuntimeError("the group fails after its writes")
        await original(session, group)

    monkeypatch.setattr(batch_module, "write_events", failing)
    events = [
        {"type": "purchase", "member": {"id": members[n % 3]["id"]}, "external_id": f"f-{n}",
         "total": f"{n + 1}.00"}
        for n in range(6)
    ]  # fmt: skip
    r = await client.post(f"/v1/programs/{code}/events/batch", json={"events": events})
    assert failed == [3]
    assert [s["body"]["points"] for s in r.json()["results"]] == [1, 2, 3, 4, 5, 6]
    for k, m in enumerate(members):
        balance = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
        assert balance["available"] == (k + 1) + (k + 4)
    async with db.read() as session:
        assert not any((await verify(session)).values())


async def test_concurrent_batches_with_the_same_external_ids_credit_each_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(20)]
    events = [
        {"type": "purchase", "member": {"id": members[n % 20]["id"]}, "external_id": f"c-{n}",
         "total": "3.00"}
        for n in range(60)
    ]  # fmt: skip
    answers = await asyncio.gather(
        *[client.post(f"/v1/programs/{code}/events/batch", json={"events": events})
          for _ in range(3)]
    )  # fmt: skip
    ids = [[s["body"]["id"] for s in a.json()["results"]] for a in answers]
    assert ids[0] == ids[1] == ids[2]  # every batch answers the first recording
    for m in members:
        balance = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
        assert balance["available"] == 9
    async with db.read() as session:
        assert not any((await verify(session)).values())


def test_groups_keep_each_members_events_in_order() -> None:
    from habitue.events.schemas import EventCreate

    def body(member: str, n: int) -> EventCreate:
        return EventCreate.model_validate(
            {"type": "purchase", "member": {"id": member}, "external_id": f"x{n}", "total": "1"}
        )

    segment = [(n, body(m, n)) for n, m in enumerate("aabacbbbd")]
    groups = batch_module._groups(segment, 3)
    for group in groups:
        names = [b.member.id for _, b in group if b.member is not None]
        assert len(names) == len(set(names)) and len(group) <= 3
    position = {i: g for g, group in enumerate(groups) for i, _ in group}
    for m in "abcd":
        mine = [n for n, x in enumerate("aabacbbbd") if x == m]
        assert [position[n] for n in mine] == sorted(position[n] for n in mine)
        assert len({position[n] for n in mine}) == len(mine)
