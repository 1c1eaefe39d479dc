"""Idempotency-Key: claimed after authentication, per credential, leased, expiring."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from habitue import clock, jobs, middleware
from habitue.db import Database, _unit_hook, make_sync_engine, table_of
from habitue.events import api as events_api
from habitue.events import idempotency
from habitue.events.models import IdempotencyRecord
from tests.conftest import enrol, new_code

_records = table_of(IdempotencyRecord)
LEASE = timedelta(seconds=30)  # the default HABITUE_IDEMPOTENCY_LEASE_SECONDS


async def _new_key(client: httpx.AsyncClient, program: str, *scopes: str) -> dict[str, str]:
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": "till", "scopes": list(scopes)}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _available(client: httpx.AsyncClient, program: str, member: str) -> int:
    r = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


def _adjust_url(program: str, member: str) -> str:
    return f"/v1/programs/{program}/members/{member}/adjustments"


def _purchase(member: str, external_id: str, total: str = "10.00") -> dict[str, Any]:
    return {
        "type": "purchase",
        "member": {"id": member},
        "external_id": external_id,
        "total": total,
    }


async def _record_count(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(_records))).scalar_one())


class Gate:
    """Holds the next unit of work a request with an Idempotency-Key writes, until released:
    the request has claimed its key and not yet committed anything."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.write = db.write
        self.armed = True
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        monkeypatch.setattr(db, "write", self._write)

    async def _write(self, work: Any, **kw: Any) -> Any:
        if self.armed and _unit_hook.get() is not None:
            self.armed = False
            self.held.set()
            await self.release.wait()
        return await self.write(work, **kw)


async def test_an_unauthenticated_request_takes_no_key(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    body = _purchase(m["id"], new_code("r"))
    url = f"/v1/programs/{program}/events"
    for auth in ("Bearer not-a-key", "Basic abc", ""):
        r = await client.post(
            url, json=body, headers={"Idempotency-Key": "K", "Authorization": auth}
        )
        assert r.status_code == 401, r.text
    # Another program's key is told the program does not exist, and takes nothing either.
    other = await client.post(
        "/v1/programs", json={"code": new_code(), "name": "Other", "currency": "EUR"}
    )
    foreign = await _new_key(client, other.json()["code"], "events:write")
    r = await client.post(url, json=body, headers={"Idempotency-Key": "K", **foreign})
    assert r.status_code == 404
    assert await _record_count_for(db, "K") == 0
    r = await client.post(url, json=body, headers={"Idempotency-Key": "K"})
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert await _available(client, program, m["id"]) == r.json()["points"] > 0


async def _record_count_for(db: Database, key: str) -> int:
    async with db.read() as session:
        q = select(func.count()).select_from(_records).where(_records.c.key == key)
        return int((await session.execute(q)).scalar_one())


async def test_two_credentials_never_share_a_key(client: httpx.AsyncClient, program: str) -> None:
    m = await enrol(client, program)
    till = await _new_key(client, program, "points:write")
    url = _adjust_url(program, m["id"])
    h = {"Idempotency-Key": "shared"}
    first = await client.post(url, json={"points": 10, "reason": "admin"}, headers=h)
    second = await client.post(url, json={"points": 7, "reason": "till"}, headers={**h, **till})
    assert first.status_code == second.status_code == 201, second.text
    assert "idempotent-replayed" not in second.headers
    assert await _available(client, program, m["id"]) == 17
    # Each credential replays its own answer.
    again = await client.post(url, json={"points": 7, "reason": "till"}, headers={**h, **till})
    assert again.json() == second.json() and again.headers["idempotent-replayed"] == "true"
    again = await client.post(url, json={"points": 10, "reason": "admin"}, headers=h)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    # Within one credential, another request under the key is still refused.
    r = await client.post(url, json={"points": 8, "reason": "till"}, headers={**h, **till})
    assert r.status_code == 422 and r.json()["type"].endswith("/idempotency-key-reused")
    assert await _available(client, program, m["id"]) == 17


async def test_a_request_in_progress_holds_its_key_for_its_lease(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "slow"}
    body = {"points": 10, "reason": "goodwill"}
    gate = Gate(db, monkeypatch)
    first = asyncio.create_task(client.post(url, json=body, headers=h))
    await asyncio.wait_for(gate.held.wait(), 10)
    busy = await client.post(url, json=body, headers=h)
    assert busy.status_code == 409 and busy.json()["type"].endswith("/request-in-progress")
    assert busy.headers["content-type"] == "application/problem+json"
    assert 1 <= int(busy.headers["retry-after"]) <= 30
    gate.release.set()
    done = await first
    assert done.status_code == 201, done.text
    again = await client.post(url, json=body, headers=h)
    assert again.status_code == 201 and again.json() == done.json()
    assert await _available(client, program, m["id"]) == 10


async def test_a_crash_before_the_commit_frees_the_key_after_its_lease(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies (kill -9) after claiming the key, before its work commits: the record
    stays in progress; a retry after the lease runs the request, once."""
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "till-7"}
    body = {"points": 25, "reason": "goodwill"}
    gate = Gate(db, monkeypatch)

    async def dead(*_: Any) -> None:  # a killed process answers nothing and cleans nothing
        return None

    monkeypatch.setattr(idempotency.RequestClaim, "settle", dead)
    first = asyncio.create_task(client.post(url, json=body, headers=h))
    await asyncio.wait_for(gate.held.wait(), 10)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    monkeypatch.undo()
    r = await client.post(url, json=body, headers=h)
    assert r.status_code == 409 and r.json()["type"].endswith("/request-in-progress")
    clock.advance(LEASE + timedelta(seconds=1))
    r = await client.post(url, json=body, headers=h)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    again = await client.post(url, json=body, headers=h)
    assert again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    assert await _available(client, program, m["id"]) == 25


async def test_a_crash_after_the_commit_replays_the_committed_result(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purchase commits and the server dies before it answers: the answer was stored in
    the purchase's own transaction, so the till's retry gets it and nothing is credited twice.
    """
    m = await enrol(client, program)
    url = f"/v1/programs/{program}/events"
    events = [_purchase(m["id"], new_code("r"), total) for total in ("10.00", "20.00")]
    write = db.write

    async def dies_after_commit(work: Any, **kw: Any) -> Any:
        value = await write(work, **kw)
        if _unit_hook.get() is not None:
            raise asyncio.CancelledError  # committed; the process is gone
        return value

    async def dead(*_: Any) -> None:
        return None

    monkeypatch.setattr(db, "write", dies_after_commit)
    monkeypatch.setattr(idempotency.RequestClaim, "settle", dead)
    for i, event in enumerate(events):
        with contextlib.suppress(asyncio.CancelledError):
            await client.post(url, json=event, headers={"Idempotency-Key": f"sale-{i}"})
    monkeypatch.undo()
    credited = await _available(client, program, m["id"])
    assert credited > 0
    answers = []
    for i, event in enumerate(events):
        r = await client.post(url, json=event, headers={"Idempotency-Key": f"sale-{i}"})
        assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true", r.text
        answers.append(r.json())
    assert sum(a["points"] for a in answers) == credited
    clock.advance(LEASE * 10)  # long after the lease: still the committed answer
    for i, event in enumerate(events):
        r = await client.post(url, json=event, headers={"Idempotency-Key": f"sale-{i}"})
        assert r.json() == answers[i]
        found = await client.get(f"/v1/programs/{program}/events/{answers[i]['id']}")
        assert found.status_code == 200 and found.json()["points"] == answers[i]["points"]
    assert await _available(client, program, m["id"]) == credited
    # Without its key, the purchase is still recorded once: by its external id.
    r = await client.post(url, json=events[0])
    assert r.json()["id"] == answers[0]["id"]
    assert await _available(client, program, m["id"]) == credited


async def test_twenty_simultaneous_retries_credit_once(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "burst"}
    body = {"points": 10, "reason": "goodwill"}
    answers = await asyncio.gather(*(client.post(url, json=body, headers=h) for _ in range(20)))
    assert {r.status_code for r in answers} <= {201, 409}
    firsts = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(firsts) == 1
    assert all(r.json() == firsts[0].json() for r in answers if r.status_code == 201)
    assert await _available(client, program, m["id"]) == 10


async def test_a_retry_that_took_the_key_over_wins_and_the_late_first_one_is_undone(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request outlives its lease (a database outage); the retry takes the key over
    and commits; the first one's work then finds the key gone and is rolled back."""
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "outage"}
    body = {"points": 40, "reason": "goodwill"}
    gate = Gate(db, monkeypatch)
    first = asyncio.create_task(client.post(url, json=body, headers=h))
    await asyncio.wait_for(gate.held.wait(), 10)
    clock.advance(LEASE + timedelta(seconds=1))
    retry = await client.post(url, json=body, headers=h)
    assert retry.status_code == 201, retry.text
    gate.release.set()
    late = await first
    assert late.status_code == 409 and late.json()["type"].endswith("/request-in-progress")
    assert await _available(client, program, m["id"]) == 40
    again = await client.post(url, json=body, headers=h)
    assert again.status_code == 201 and again.json() == retry.json()


async def test_a_key_expires_after_its_time(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "daily"}
    r = await client.post(url, json={"points": 10, "reason": "goodwill"}, headers=h)
    assert r.status_code == 201
    clock.advance(timedelta(hours=23))
    r = await client.post(url, json={"points": 5, "reason": "goodwill"}, headers=h)
    assert r.status_code == 422 and r.json()["type"].endswith("/idempotency-key-reused")
    clock.advance(timedelta(hours=1, seconds=1))  # 24 h: HABITUE_IDEMPOTENCY_TTL_HOURS
    r = await client.post(url, json={"points": 5, "reason": "goodwill"}, headers=h)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers, r.text
    assert await _available(client, program, m["id"]) == 15
    again = await client.post(url, json={"points": 5, "reason": "goodwill"}, headers=h)
    assert again.headers["idempotent-replayed"] == "true"
    assert await _available(client, program, m["id"]) == 15


async def test_the_scheduled_purge_deletes_expired_records(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    url = _adjust_url(program, m["id"])
    await client.post(url, json={"points": 1, "reason": "x"}, headers={"Idempotency-Key": "old"})
    clock.advance(timedelta(hours=20))
    await client.post(url, json={"points": 1, "reason": "x"}, headers={"Idempotency-Key": "new"})
    clock.advance(timedelta(hours=5))
    assert await _record_count_for(db, "old") == await _record_count_for(db, "new") == 1
    assert await jobs.purge_idempotency(db, 24) >= 1
    assert await _record_count_for(db, "old") == 0
    assert await _record_count_for(db, "new") == 1


def test_the_cli_purges_expired_records(db_url: str) -> None:
    from habitue.cli import app
    from habitue.settings import get_settings

    engine = make_sync_engine(db_url)
    now = clock.now()
    marker = new_code("cli")
    rows = [{"key": f"{marker}-{age}", "created_at": now - timedelta(hours=age)} for age in (30, 1)]
    with engine.begin() as conn:
        for row in rows:
            conn.execute(
                insert(_records).values(
                    program_id=0, credential="admin", request_hash="h", token="t",
                    lease_until=now, status_code=201, content_type="application/json",
                    body={}, **row,
                )
            )  # fmt: skip
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["idempotency", "purge"], env={"HABITUE_DATABASE_URL": db_url})
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "purged" in result.output
    with engine.connect() as conn:
        left = (
            conn.execute(select(_records.c.key).where(_records.c.key.startswith(marker)))
            .scalars()
            .all()
        )
    engine.dispose()
    assert left == [f"{marker}-1"]


async def test_a_malformed_key_is_refused_and_nothing_written(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    m = await enrol(client, program)
    url = _adjust_url(program, m["id"])
    before = await _record_count(db)
    for key in ("x" * 201, "a\tb"):
        r = await client.post(
            url, json={"points": 5, "reason": "x"}, headers={"Idempotency-Key": key}
        )
        assert r.status_code == 422 and r.json()["type"].endswith("/validation"), r.text
    assert await _record_count(db) == before
    assert await _available(client, program, m["id"]) == 0


async def test_a_refused_request_is_replayed_and_a_csv_answer_keeps_its_type(
    client: httpx.AsyncClient, program: str
) -> None:
    m = await enrol(client, program)
    url, h = _adjust_url(program, m["id"]), {"Idempotency-Key": "too-much"}
    r = await client.post(url, json={"points": -5, "reason": "correction"}, headers=h)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    again = await client.post(url, json={"points": -5, "reason": "correction"}, headers=h)
    assert again.status_code == 409 and again.json() == r.json()
    assert again.headers["content-type"] == "application/problem+json"
    reward = await client.post(
        f"/v1/programs/{program}/rewards",
        json={
            "code": "coffee",
            "kind": "experience",
            "cost_points": 100,
            "texts": {"en": {"name": "Coffee"}},
        },  # fmt: skip
    )
    assert reward.status_code == 201, reward.text
    url, h = f"/v1/programs/{program}/coupons/batches", {"Idempotency-Key": "batch-1"}
    body = {"reward": "coffee", "count": 3, "campaign": "spring"}
    first = await client.post(url, json=body, headers=h)
    assert first.status_code == 201 and first.headers["content-type"].startswith("text/csv")
    again = await client.post(url, json=body, headers=h)
    assert again.status_code == 201 and again.text == first.text
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"


async def test_the_answer_is_stored_with_the_work_and_nothing_after_it(
    client: httpx.AsyncClient, program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adjustment costs the claim and one statement in its own transaction, an event only
    its record's insert in its own transaction: no write after the answer."""
    settled: list[Any] = []
    settle = idempotency.RequestClaim.settle

    async def spy(self: idempotency.RequestClaim, session: Any, answer: Any) -> None:
        settled.append(answer)
        await settle(self, session, answer)

    monkeypatch.setattr(idempotency.RequestClaim, "settle", spy)
    monkeypatch.setattr(idempotency.InlineClaim, "settle", spy)
    m = await enrol(client, program)
    r = await client.post(
        f"/v1/programs/{program}/events",
        json=_purchase(m["id"], new_code("r")),
        headers={"Idempotency-Key": "e1"},
    )
    assert r.status_code == 201
    r = await client.post(
        _adjust_url(program, m["id"]),
        json={"points": 3, "reason": "goodwill"},
        headers={"Idempotency-Key": "a1"},
    )
    assert r.status_code == 201
    assert settled == []
    r = await client.post(  # a refusal commits nothing: it is stored after the answer
        _adjust_url(program, m["id"]),
        json={"points": -(10**6), "reason": "correction"},
        headers={"Idempotency-Key": "a2"},
    )
    assert r.status_code == 409 and len(settled) == 1 and settled[0].status == 409


# POST /events: the key is taken by the event's own unit of work (idempotency.InlineClaim).


async def _stored(db: Database, key: str) -> list[dict[str, Any]]:
    async with db.read() as session:
        rows = await session.execute(select(_records).where(_records.c.key == key))
        return [dict(row) for row in rows.mappings()]


async def test_an_event_s_key_is_taken_with_its_work_and_replays_its_answer(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No claim before the event: its record is written in the event's transaction, with
    the answer sent, and a retry replays it without running the event again."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    claims: list[Any] = []
    claim = idempotency.claim

    async def spy(*args: Any, **kw: Any) -> Any:
        claims.append(kw)
        return await claim(*args, **kw)

    monkeypatch.setattr(idempotency, "claim", spy)
    parsed: list[bytes] = []
    answer_of = middleware._answer

    def parsing(status: int, content_type: str, payload: bytes) -> Any:
        parsed.append(payload)
        return answer_of(status, content_type, payload)

    monkeypatch.setattr(middleware, "_answer", parsing)
    body = _purchase(m["id"], new_code("r"))
    first = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers, first.text
    assert claims == []
    assert parsed == []  # the answer sent is the one stored, byte for byte: not parsed back
    [record] = await _stored(db, key)
    assert record["committed_at"] is not None
    assert (record["status_code"], record["body"]) == (201, first.json())
    again = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.status_code, again.json()) == (201, first.json())
    assert await _available(client, program, m["id"]) == first.json()["points"] > 0


async def test_an_event_s_answer_shaped_after_its_work_is_the_one_replayed(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the answer sent is not the one the event's unit stored with its key (a route that
    shapes its answer after the work), the answer sent is stored after it, and replayed."""
    record_event = events_api.record_event

    async def shaped(*args: Any) -> Any:
        answer = await record_event(*args)
        answer.body = answer.body[:-1] + b',"shaped":true}'
        answer.init_headers()
        return answer

    monkeypatch.setattr(events_api, "record_event", shaped)  # as the lean route calls it
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    body = _purchase(m["id"], new_code("r"))
    first = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and first.json().get("shaped") is True, first.text
    [record] = await _stored(db, key)
    assert record["body"] == first.json()
    again = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


async def test_simultaneous_events_with_one_key_credit_once_and_answer_alike(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Twenty copies of one purchase under one key at once (grouped in the committer's
    batches, so one batch's statement fails and runs again unit by unit): one credits, every
    other one gets its answer, replayed."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    body = _purchase(m["id"], new_code("r"), "30.00")
    h = {"Idempotency-Key": key}
    answers = await asyncio.gather(*(client.post(url, json=body, headers=h) for _ in range(20)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    firsts = [r for r in answers if "idempotent-replayed" not in r.headers]
    assert len(firsts) == 1
    assert all(r.json() == firsts[0].json() for r in answers)
    assert await _available(client, program, m["id"]) == firsts[0].json()["points"] > 0
    [record] = await _stored(db, key)
    assert record["body"] == firsts[0].json()


async def test_simultaneous_events_reusing_a_key_with_other_bodies_credit_one(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Twenty different purchases under one key at once: the one whose key commits is the
    only one recorded; every other one is refused `idempotency-key-reused`, its work rolled
    back, and a retry of the first is replayed."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    bodies = [_purchase(m["id"], new_code("r"), f"{10 + i}.00") for i in range(20)]
    h = {"Idempotency-Key": key}
    answers = await asyncio.gather(*(client.post(url, json=b, headers=h) for b in bodies))
    assert sorted(r.status_code for r in answers) == [201] + [422] * 19, [r.text for r in answers]
    for r in answers:
        if r.status_code == 422:
            assert r.json()["type"].endswith("/idempotency-key-reused")
            assert r.headers["content-type"] == "application/problem+json"
    [won] = [i for i, r in enumerate(answers) if r.status_code == 201]
    assert await _available(client, program, m["id"]) == answers[won].json()["points"] > 0
    found = await client.get(f"/v1/programs/{program}/members/{m['id']}/ledger")
    assert found.status_code == 200 and len(found.json()["items"]) == 1, found.text
    again = await client.post(url, json=bodies[won], headers=h)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == answers[won].json()
    other = await client.post(url, json=bodies[(won + 1) % 20], headers=h)
    assert other.status_code == 422 and "idempotent-replayed" not in other.headers
    assert await _available(client, program, m["id"]) == answers[won].json()["points"]


async def test_simultaneous_events_with_their_own_keys_each_keep_their_answer(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Many purchases at once, each with its own key: their records are written at their
    batch's end, each with its own answer."""
    members = [await enrol(client, program) for _ in range(6)]
    url = f"/v1/programs/{program}/events"
    sent = [
        (new_code("k"), _purchase(members[i % 6]["id"], new_code("r"), f"{5 + i}.00"))
        for i in range(24)
    ]
    answers = await asyncio.gather(
        *(client.post(url, json=body, headers={"Idempotency-Key": k}) for k, body in sent)
    )
    assert {r.status_code for r in answers} == {201}
    for (k, body), first in zip(sent, answers, strict=True):
        [record] = await _stored(db, k)
        assert (record["status_code"], record["body"]) == (201, first.json())
        again = await client.post(url, json=body, headers={"Idempotency-Key": k})
        assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    total = sum(r.json()["points"] for r in answers)
    assert sum([await _available(client, program, m["id"]) for m in members]) == total


async def test_a_grouped_batch_writes_its_keys_records_in_one_execution(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The records of a grouped batch's events are written at its end, several in one
    statement, never as an executemany (one execution per record): on PostgreSQL inside the
    statement that writes the batch's last events (a CTE of parallel arrays: no statement of
    their own); on SQLite by one statement after them. Each record keeps its own answer."""
    members = [await enrol(client, program) for _ in range(8)]
    url = f"/v1/programs/{program}/events"
    sent = [
        (new_code("k"), _purchase(members[i % 8]["id"], new_code("r"), f"{3 + i}.00"))
        for i in range(16)
    ]
    flushes: list[int] = []
    carried: list[int] = []
    write_records, records_part = idempotency._write_records, idempotency._records_part

    async def writing(session: Any, rows: list[dict[str, Any]]) -> None:
        flushes.append(len(rows))
        await write_records(session, rows)

    def part(rows: list[dict[str, Any]]) -> Any:
        carried.append(len(rows))
        return records_part(rows)

    monkeypatch.setattr(idempotency, "_write_records", writing)
    monkeypatch.setattr(idempotency, "_records_part", part)
    seen: list[tuple[str, bool]] = []

    def count(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, executemany: bool) -> None:
        if "INSERT INTO IDEMPOTENCY_RECORDS" in statement.upper():
            seen.append((statement.lstrip()[:4].upper(), executemany))

    engine = db.write_engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(
            *(client.post(url, json=body, headers={"Idempotency-Key": k}) for k, body in sent)
        )
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    if db_kind == "postgres":
        assert carried and max(carried) > 1, carried  # grouped, in the events' statement
        assert not flushes, flushes  # no statement of their own
        assert seen and all(kind == "WITH" and not many for kind, many in seen), seen
    else:
        assert flushes and max(flushes) > 1  # grouped: several records in one statement
        assert not carried
    for (k, _), first in zip(sent, answers, strict=True):
        [record] = await _stored(db, k)
        assert (record["status_code"], record["body"]) == (201, first.json())
        assert record["committed_at"] is not None and record["token"]


async def test_a_key_taken_in_a_grouped_batch_fails_the_events_statement_and_only_that_unit(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Two purchases under one key in one grouped batch, among others with keys of their own:
    the records ride in the events' statement, whose unique key fails it; the batch runs again
    unit by unit, and only one of the two keeps the key (the other gets 409 or the replay):
    every other event is recorded once, with its record."""
    members = [await enrol(client, program) for _ in range(6)]
    url = f"/v1/programs/{program}/events"
    shared = new_code("k")
    body = _purchase(members[0]["id"], new_code("r"), "5.00")
    sent = [(shared, body), (shared, body)] + [
        (new_code("k"), _purchase(members[i]["id"], new_code("r"), f"{4 + i}.00"))
        for i in range(1, 6)
    ]
    answers = await asyncio.gather(
        *(client.post(url, json=b, headers={"Idempotency-Key": k}) for k, b in sent)
    )
    first, second = answers[0], answers[1]
    assert {first.status_code, second.status_code} <= {201, 409}, (first.text, second.text)
    assert 201 in {first.status_code, second.status_code}
    for (k, _), answer in zip(sent[2:], answers[2:], strict=True):
        assert answer.status_code == 201, answer.text
        [record] = await _stored(db, k)
        assert (record["status_code"], record["body"]) == (201, answer.json())
    [record] = await _stored(db, shared)
    assert record["status_code"] == 201
    total = sum(a.json()["points"] for a in answers[2:]) + record["body"]["points"]
    assert sum([await _available(client, program, m["id"]) for m in members]) == total


async def test_a_refused_event_is_replayed_and_its_key_refuses_another_body(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """An event that commits nothing (an unknown member: 404) takes its key after it answers,
    with that answer: a retry replays the refusal even once the member exists, and another
    body under the key is refused."""
    url, key = f"/v1/programs/{program}/events", new_code("k")
    h = {"Idempotency-Key": key}
    body = {"type": "purchase", "member": {"external_id": "later"}, "external_id": "r1",
            "total": "10.00"}  # fmt: skip
    first = await client.post(url, json=body, headers=h)
    assert first.status_code == 404 and first.json()["type"].endswith("/member-not-found")
    [record] = await _stored(db, key)
    assert record["status_code"] == 404 and record["committed_at"] is None
    m = await enrol(client, program, external_id="later")
    again = await client.post(url, json=body, headers=h)
    assert (again.status_code, again.json()) == (404, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(url, json={**body, "external_id": "r2"}, headers=h)
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
    assert await _available(client, program, m["id"]) == 0
    # A body the route refuses before any work (422) is kept the same way.
    key2 = new_code("k")
    bad = await client.post(url, json={"type": "purchase"}, headers={"Idempotency-Key": key2})
    assert bad.status_code == 422
    again = await client.post(url, json={"type": "purchase"}, headers={"Idempotency-Key": key2})
    assert again.json() == bad.json() and again.headers["idempotent-replayed"] == "true"


async def test_an_event_s_expired_key_is_taken_over_and_the_event_recorded_once(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """The key's record is older than its time: the event's own insert finds it taken, its
    work is rolled back, the claim takes the expired key over and the event runs again, once."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    h = {"Idempotency-Key": key}
    first = await client.post(url, json=_purchase(m["id"], new_code("r"), "10.00"), headers=h)
    assert first.status_code == 201
    clock.advance(timedelta(hours=24, seconds=1))
    body = _purchase(m["id"], new_code("r"), "20.00")
    second = await client.post(url, json=body, headers=h)
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    points = first.json()["points"] + second.json()["points"]
    assert await _available(client, program, m["id"]) == points
    again = await client.post(url, json=body, headers=h)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == second.json()
    assert await _available(client, program, m["id"]) == points


async def test_an_event_s_key_held_by_a_request_in_progress_is_busy(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adjustment holds the key (claimed, not committed): an event under the same key runs,
    finds the key taken, is rolled back and refused; nothing is credited twice."""
    m = await enrol(client, program)
    key = new_code("k")
    h = {"Idempotency-Key": key}
    gate = Gate(db, monkeypatch)
    first = asyncio.create_task(
        client.post(
            _adjust_url(program, m["id"]), json={"points": 10, "reason": "goodwill"}, headers=h
        )
    )
    await asyncio.wait_for(gate.held.wait(), 10)
    url = f"/v1/programs/{program}/events"
    r = await client.post(url, json=_purchase(m["id"], new_code("r")), headers=h)
    assert r.status_code == 422 and r.json()["type"].endswith("/idempotency-key-reused")
    gate.release.set()
    assert (await first).status_code == 201
    assert await _available(client, program, m["id"]) == 10


async def test_an_inline_key_s_later_units_keep_its_answer_and_a_taken_key_rolls_back(
    db: Database,
) -> None:
    """`InlineClaim` over several units (none in `POST /events` today): the first inserts the
    record, the later ones update it, and one whose value is not the answer keeps the answer
    stored. Another request's unit under the key is rolled back, its work with it."""
    from habitue.db import unit_hook
    from habitue.events.errors import RequestInProgress

    key = new_code("k")
    answer = idempotency.Response(201, "application/json", {"id": "e1"})

    def claim_for(request_hash: str) -> idempotency.InlineClaim:
        return idempotency.InlineClaim(
            program_id=0,
            credential="admin",
            key=key,
            request_hash=request_hash,
            lease=LEASE,
            describe=lambda value: answer if value == "answer" else None,
        )

    def unit(value: str) -> Any:
        async def work(_session: Any) -> str:
            return value

        return work

    first = claim_for("h1")
    with unit_hook(first):
        await db.write(unit("other"))
        [record] = await _stored(db, key)
        assert record["status_code"] is None and record["committed_at"] is not None
        await db.write(unit("answer"))
        await db.write(unit("other"))
    [record] = await _stored(db, key)
    assert (record["status_code"], record["body"]) == (201, {"id": "e1"})
    assert first.recorded and first.stored == answer and not first.taken

    second = claim_for("h2")
    marker = new_code("cli")

    async def writes(session: Any) -> str:
        await session.execute(
            insert(_records).values(
                program_id=0, credential="admin", key=marker, request_hash="h", token="t",
                lease_until=clock.now(), created_at=clock.now(),
            )
        )  # fmt: skip
        return "answer"

    with unit_hook(second), pytest.raises(RequestInProgress):
        await db.write(writes)
    assert second.taken and not second.recorded
    assert await _stored(db, marker) == []  # the unit's own work was rolled back
    [record] = await _stored(db, key)
    assert record["request_hash"] == "h1"


async def test_an_event_that_dies_before_its_commit_leaves_its_key_free(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before its unit of work ran: nothing was written, not even its key, so the
    retry runs at once (no lease to wait out) and the purchase is credited once."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    body = _purchase(m["id"], new_code("r"))
    gate = Gate(db, monkeypatch)
    first = asyncio.create_task(client.post(url, json=body, headers={"Idempotency-Key": key}))
    await asyncio.wait_for(gate.held.wait(), 10)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    monkeypatch.undo()
    assert await _stored(db, key) == []
    r = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers, r.text
    again = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    assert await _available(client, program, m["id"]) == r.json()["points"] > 0


async def test_a_held_event_overtaken_by_its_duplicate_answers_the_duplicate_s_answer(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request's unit of work is held; a duplicate under the same key runs and
    commits; the first, released, finds the purchase recorded and replays that answer."""
    m = await enrol(client, program)
    url, key = f"/v1/programs/{program}/events", new_code("k")
    body = _purchase(m["id"], new_code("r"), "40.00")
    h = {"Idempotency-Key": key}
    gate = Gate(db, monkeypatch)
    first = asyncio.create_task(client.post(url, json=body, headers=h))
    await asyncio.wait_for(gate.held.wait(), 10)
    second = await client.post(url, json=body, headers=h)
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    gate.release.set()
    late = await first
    assert late.status_code == 201 and late.headers["idempotent-replayed"] == "true", late.text
    assert late.json() == second.json()
    assert await _available(client, program, m["id"]) == second.json()["points"] > 0


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "claimed-first"])
async def test_an_event_s_key_answers_alike_taken_inline_or_claimed_first(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    inline: bool,
) -> None:
    """The reference for the inline key: the same requests with the key claimed first (the
    path every other POST takes) give the same answers, replays, refusals and records."""
    from habitue import middleware

    monkeypatch.setattr(middleware, "inline_claimed", lambda _path: inline)
    m = await enrol(client, program)
    url = f"/v1/programs/{program}/events"
    k1, k2 = new_code("k"), new_code("k")
    body = _purchase(m["id"], "same-sale", "25.00")
    first = await client.post(url, json=body, headers={"Idempotency-Key": k1})
    again = await client.post(url, json=body, headers={"Idempotency-Key": k1})
    other = await client.post(url, json={**body, "total": "26.00"}, headers={"Idempotency-Key": k1})
    # The same sale under another key: the event's own idempotency answers, kept under k2.
    by_id = await client.post(url, json=body, headers={"Idempotency-Key": k2})
    missing = {**body, "member": {"external_id": "nobody"}, "external_id": "s2"}
    refused = await client.post(url, json=missing, headers={"Idempotency-Key": new_code("k")})
    seen = [
        (r.status_code, r.headers.get("idempotent-replayed"), r.headers["content-type"])
        for r in (first, again, other, by_id, refused)
    ]
    assert seen == [
        (201, None, "application/json"),
        (201, "true", "application/json"),
        (422, None, "application/problem+json"),
        (201, None, "application/json"),
        (404, None, "application/problem+json"),
    ]
    assert again.json() == by_id.json() == first.json()
    assert other.json()["type"].endswith("/idempotency-key-reused")
    for key, committed in ((k1, True), (k2, False)):  # k2's request committed nothing
        [record] = await _stored(db, key)
        assert (record["status_code"], record["content_type"]) == (201, "application/json")
        assert record["body"] == first.json()
        assert (record["committed_at"] is not None) == committed
    assert await _available(client, program, m["id"]) == first.json()["points"] > 0
