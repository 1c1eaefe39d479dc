"""The live promotions' read: sent to asyncpg straight (`promotions.service._driver`), and
kept in the process under the promotions' stamp read with the member (`service.live`).

The answers of `POST /baskets/price` and `/baskets/confirm` with the read sent straight and
from the process's cache are the answers with it through the session, read every time (bytes
for a price); and a promotion created, changed, ended, deactivated or deleted through one app
is priced so at once by another app on the same database (two server workers), as a member's
use of a limited promotion is.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.api import create_app
from habitue.db import Database, pooled_driver
from habitue.members import service as members_service
from habitue.programs import service as programs_service
from habitue.promotions import service as promotions_service
from habitue.promotions import till
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol
from tests.promotions.helpers import confirm, food_rule_and_ten_code, offs, price, promo


def _count_straight(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[bool]:
    """Counts the reads `module.name` sends straight (True) and through the session (False)."""
    taken: list[bool] = []
    driver = getattr(module, name)

    async def counted(session: AsyncSession) -> Any:
        raw = await driver(session)
        taken.append(raw is not None)
        return raw

    monkeypatch.setattr(module, name, counted)
    return taken


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Counts the live reads sent straight (True) and through the session (False)."""
    return _count_straight(monkeypatch, promotions_service, "_driver")


async def _none(_session: AsyncSession) -> None:
    return None


@asynccontextmanager
async def _no_connection(_session: AsyncSession) -> AsyncIterator[None]:
    yield None


def _read_every_time(m: pytest.MonkeyPatch) -> None:
    """The reference: the member and the live promotions read through the session at every
    basket (no stamp read with the member, so no cache)."""
    m.setattr(promotions_service, "_driver", _none)
    m.setattr(promotions_service, "MEMBER_READS", ())
    m.setattr(till, "_member_driver", _none)
    m.setattr(till, "_member_connection", _no_connection)


def _member_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Counts the members read straight (True) and through the session (False)."""
    taken: list[bool] = []
    connection = till._member_connection

    @asynccontextmanager
    async def counted(session: AsyncSession) -> AsyncIterator[Any]:
        async with connection(session) as raw:
            taken.append(raw is not None)
            yield raw

    monkeypatch.setattr(till, "_member_connection", counted)
    return taken


def _basket(rng: random.Random, member: str | None) -> dict[str, Any]:
    lines = [
        {"sku": rng.choice(["MUG", "TEA", "CAB"]), "category": rng.choice(["food", "home"]),
         "quantity": rng.randint(1, 4), "unit_price": f"{rng.randint(1, 4000) / 100:.2f}"}
        for _ in range(rng.randint(1, 5))
    ]  # fmt: skip
    codes = rng.sample(["TEN", "SAVE2"], rng.randint(0, 2))
    body: dict[str, Any] = {"lines": lines, "codes": codes}
    if member is not None:
        body["member"] = {"id": member}
    return body


async def _setup(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    program = await create_program(client)
    await food_rule_and_ten_code(client, program)
    await promo(
        client, program, code="mugs", effect={"type": "lines_percent", "percent": "15"},
        line_condition="line.sku == 'MUG'", per_member_limit=2,
    )  # fmt: skip
    await promo(
        client, program, code="save2", trigger="code", promo_code="SAVE2",
        effect={"type": "order_amount", "amount": "2.00"}, per_member_limit=1,
    )  # fmt: skip
    await promo(client, program, code="off", effect={"type": "cheapest"}, active=False)
    members = [(await enrol(client, program))["id"] for _ in range(3)]
    return program, members


async def test_prices_and_confirms_with_the_read_sent_straight_are_the_sessions(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, db_kind: str
) -> None:
    program, members = await _setup(client)
    taken = _counting(monkeypatch)
    straight = _member_reads(monkeypatch)
    rng = random.Random(5)
    url = f"/v1/programs/{program}/baskets/price"
    for n in range(30):
        member = rng.choice([*members, None])
        body = _basket(rng, member)
        fast = await client.post(url, json=body)
        if member is not None:  # a price's member: straight on PostgreSQL
            assert straight.pop() is (db_kind == "postgres")
        with monkeypatch.context() as m:
            _read_every_time(m)
            reference = await client.post(url, json=body)
        assert (fast.status_code, fast.content) == (reference.status_code, reference.content), n
        if n % 3 == 0 and member is not None:  # uses of the limited promotions, both ways
            sent = await confirm(client, program, external_id=f"c{n}", **body)
            assert sent.status_code in (200, 422), sent.text
            assert straight.pop() is False  # a confirm's member: the session (locks)
    priced = list(taken)
    if db_kind == "postgres":
        assert priced and all(priced)  # every read the cache did not spare went straight
    else:
        assert not any(priced)  # SQLite: always the session


async def test_confirm_with_the_read_sent_straight_is_the_sessions(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, db_kind: str
) -> None:
    program, members = await _setup(client)
    taken = _counting(monkeypatch)
    body = {
        "lines": [{"sku": "MUG", "category": "home", "quantity": 2, "unit_price": "10.00"}],
        "codes": ["SAVE2"],
        "occurred_at": "2026-12-07T09:30:00+00:00",
    }
    answers = []
    for n, member in enumerate(members[:2]):
        with monkeypatch.context() as m:
            if n:
                _read_every_time(m)
            r = await confirm(client, program, external_id=f"x{n}", member={"id": member}, **body)
        assert r.status_code == 200, r.text
        a = r.json()
        for key in ("external_id", "event_id", "member_id"):
            a.pop(key, None)
        answers.append(a)
    assert answers[0] == answers[1]
    assert offs(answers[0]) == {"promotion:mugs": "3.00", "promotion:save2": "2.00"}
    assert taken == [db_kind == "postgres"]  # the first confirm read them; the second, the session
    # the second confirm of the first member: SAVE2 (once per member) is used up
    again = await confirm(client, program, member={"id": members[0]}, **body)
    assert again.status_code == 422 or "promotion:save2" not in offs(again.json()), again.text


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second app with its own `Database` on the same database (another server worker)."""
    database = Database(settings.database_url, group_commit=settings.group_commit)
    app = create_app(settings, db=database)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c:  # fmt: skip
            yield c
    await database.dispose()


async def test_a_promotion_changed_through_one_worker_is_priced_so_by_the_other(
    client: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    program, members = await _setup(client)
    member = {"id": members[0]}
    mugs = [{"sku": "MUG", "category": "home", "quantity": 2, "unit_price": "10.00"}]
    path = f"/v1/programs/{program}/promotions"

    async def seen(**kw: Any) -> dict[str, str]:
        return offs(await price(other, program, lines=mugs, member=member, **kw))

    assert await seen() == {"promotion:mugs": "3.00"}
    half = {"effect": {"type": "lines_percent", "percent": "50"}}
    r = await client.patch(f"{path}/mugs", json=half)
    assert r.status_code == 200, r.text
    assert await seen() == {"promotion:mugs": "10.00"}
    r = await client.patch(f"{path}/off", json={"active": True})
    assert r.status_code == 200, r.text
    assert await seen() == {"promotion:mugs": "10.00", "promotion:off": "5.00"}
    r = await client.patch(f"{path}/off", json={"valid_until": "2020-01-02T00:00:00Z",
                                                "valid_from": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert await seen() == {"promotion:mugs": "10.00"}
    assert (await client.delete(f"{path}/off")).status_code == 204  # never used: deleted
    assert await seen(codes=["SAVE2"]) == {"promotion:mugs": "10.00", "promotion:save2": "2.00"}
    sent = await confirm(client, program, member=member, lines=mugs, codes=["SAVE2"])
    assert sent.status_code == 200, sent.text
    assert await seen(codes=["SAVE2"]) == {"promotion:mugs": "10.00"}  # SAVE2: once a member
    assert (await client.delete(f"{path}/mugs")).status_code == 204  # used: deactivated
    assert await seen() == {}
    r = await client.patch(f"{path}/save2", json={"active": False})
    assert r.status_code == 200, r.text
    assert await seen(codes=["SAVE2"]) == {}


async def test_the_cache_spares_the_read_until_any_worker_changes_a_promotion(
    client: httpx.AsyncClient, other: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    program, members = await _setup(client)
    taken = _counting(monkeypatch)  # one entry per live promotions' query sent
    mugs = [{"sku": "MUG", "category": "home", "quantity": 2, "unit_price": "10.00"}]
    path = f"/v1/programs/{program}/promotions"

    async def seen(member: str | None = members[0], **kw: Any) -> dict[str, str]:
        who = {"member": {"id": member}} if member is not None else {}
        return offs(await price(other, program, lines=mugs, **who, **kw))

    assert await seen() == {"promotion:mugs": "3.00"}
    assert len(taken) == 1
    assert await seen(members[1]) == {"promotion:mugs": "3.00"}
    assert await seen(codes=["SAVE2"]) == {"promotion:mugs": "3.00", "promotion:save2": "2.00"}
    assert len(taken) == 1  # another member, a code: from the cache
    assert await seen(None) == {"promotion:mugs": "3.00"}
    assert len(taken) == 2  # a guest brings no stamp: read
    r = await client.patch(
        f"{path}/mugs", json={"effect": {"type": "lines_amount", "amount": "1.00"}}
    )
    assert r.status_code == 200, r.text
    assert await seen() == {"promotion:mugs": "2.00"}
    assert len(taken) == 3  # the other worker's change: read at once
    assert await seen(members[2]) == {"promotion:mugs": "2.00"}
    assert len(taken) == 3
    await promo(client, program, code="new", effect={"type": "order_amount", "amount": "0.50"})
    assert await seen() == {"promotion:mugs": "2.00", "promotion:new": "0.50"}
    r = await client.patch(f"{path}/new", json={"effect": {"type": "nonsense"}})
    assert r.status_code == 422, r.text  # refused, rolled back: nothing changed
    assert await seen() == {"promotion:mugs": "2.00", "promotion:new": "0.50"}
    assert (await client.delete(f"{path}/new")).status_code == 204
    assert await seen() == {"promotion:mugs": "2.00"}
    # uses counted with the member, not kept: each member's own
    for n in range(2):
        sent = await confirm(client, program, member={"id": members[1]}, lines=mugs)
        assert sent.status_code == 200, sent.text
        assert offs(sent.json()) == {"promotion:mugs": "2.00"}, n
    before = len(taken)
    assert await seen(members[1]) == {}  # mugs: twice a member, used up
    assert await seen(members[0]) == {"promotion:mugs": "2.00"}
    assert len(taken) == before


async def test_the_uses_read_with_the_member_are_the_querys(
    client: httpx.AsyncClient, db: Database
) -> None:
    program, members = await _setup(client)
    mugs = [{"sku": "MUG", "category": "home", "quantity": 1, "unit_price": "10.00"}]
    for n, codes in enumerate([["SAVE2"], [], ["TEN"]]):
        sent = await confirm(client, program, member={"id": members[0]}, lines=mugs, codes=codes)
        assert sent.status_code == 200, (n, sent.text)
    info = programs_service.cached_info(program)
    assert info is not None
    reads = promotions_service.MEMBER_READS
    async with db.read() as session:
        for member in members:
            ref = await members_service.resolve(session, info, member_id=member, reads=reads)
            cached = await promotions_service.live(session, info, ref)  # kept after a confirm
            bare = await members_service.resolve(session, info, member_id=member)
            read = await promotions_service.live(session, info, bare)
            assert cached.uses == read.uses
            assert [r["code"] for r in cached.automatic] == [r["code"] for r in read.automatic]
    assert read.uses == {}
    assert ref.extras[promotions_service.STAMP] is not None


async def test_a_member_read_straight_is_the_sessions(
    client: httpx.AsyncClient, db: Database, db_kind: str
) -> None:
    """`members.resolve(..., raw=...)` (a price's member on PostgreSQL) gives the member the
    session's query gives, with every column read with them."""
    program, members = await _setup(client)
    rich = await enrol(client, program, external_id="rich", attributes={"city": "Århus", "n": 3})
    mugs = [{"sku": "MUG", "category": "home", "quantity": 1, "unit_price": "10.00"}]
    sent = await confirm(client, program, member={"id": rich["id"]}, lines=mugs, codes=["SAVE2"])
    assert sent.status_code == 200, sent.text
    info = programs_service.cached_info(program)
    assert info is not None
    app = client._transport.app  # type: ignore[attr-defined]
    reads = (*app.state.pipeline.member_reads, *promotions_service.MEMBER_READS)
    async with db.read_statements() as session:
        for named in [{"member_id": m} for m in [*members, rich["id"]]] + [
            {"external_id": "rich"}, {"card_number": rich["card_number"]}
        ]:  # fmt: skip
            async with db.read_statements() as fresh, pooled_driver(fresh) as pooled:
                # a price's member: on a connection of the pool, checked out for it alone
                assert (pooled is not None) is (db_kind == "postgres")
                alone = await members_service.resolve(fresh, info, reads=reads, raw=pooled, **named)
            raw = await till._member_driver(session)
            assert (raw is not None) is (db_kind == "postgres")
            fast = await members_service.resolve(session, info, reads=reads, raw=raw, **named)
            slow = await members_service.resolve(session, info, reads=reads, **named)
            assert fast == slow == alone, named
    assert fast.attributes == {"city": "Århus", "n": 3}
    assert promotions_service._parse_uses(fast.extras[promotions_service.USES])
