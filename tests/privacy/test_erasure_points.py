"""Erasure against points moved by hand: an adjustment, spend or redemption for a member being
erased neither credits nor debits the erased member.

Like events (`test_erasure_events.py`), these read the member's status under the member's row
lock (`members_service.with_locked_status`), which the erasure holds while it runs: one sent
during an erasure waits and is then refused (409 `member-not-active`)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from habitue.db import Database
from habitue.ledger import service as ledger_service
from habitue.ledger.verify import verify
from habitue.privacy import erasure
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import create_program, enrol, new_code, purchase

NOT_ACTIVE = "https://habitue.dev/errors/member-not-active"


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == NOT_ACTIVE


async def _setup(client: httpx.AsyncClient) -> tuple[str, str]:
    """A program with a 50-point voucher, and a member with 10 + 100 points."""
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    body = {"code": "fifty", "kind": "voucher", "value": "5.00", "cost_points": 50,
            "coupon_days": 30, "texts": {"en": {"name": "Five off"}}}  # fmt: skip
    assert (await client.post(f"{base}/rewards", json=body)).status_code == 201
    m = (await enrol(client, program, email=f"adj-{new_code('e')}@example.org"))["id"]
    assert (await purchase(client, program, m, "10.00")).status_code == 201
    r = await client.post(f"{base}/members/{m}/adjustments", json={"points": 100, "reason": "gift"})
    assert r.status_code == 201, r.text
    return program, m


def _moves(client: httpx.AsyncClient, program: str, m: str) -> list[Any]:
    """Every way of moving the member's points by hand, not yet sent."""
    base = f"/v1/programs/{program}/members/{m}"
    return [
        client.post(f"{base}/adjustments", json={"points": 50, "reason": "late credit"}),
        client.post(f"{base}/adjustments", json={"points": -5, "reason": "late debit"}),
        client.post(f"{base}/spends", json={"points": 5, "reason": "late spend"}),
        client.post(f"{base}/redemptions", json={"reward": "fifty"}),
    ]


async def _assert_gone(
    client: httpx.AsyncClient, db: Database, program: str, m: str
) -> list[str]:
    """The member is erased with nothing left on their accounts and the ledger balanced;
    returns the kinds of the movements in their ledger."""
    base = f"/v1/programs/{program}/members/{m}"
    balance = (await client.get(f"{base}/balance")).json()
    assert (balance["available"], balance["pending"]) == (0, 0), balance
    assert (await client.get(base)).json()["status"] == "erased"
    async with db.read() as session:
        assert not any((await verify(session)).values())
    r = await client.get(f"{base}/ledger", params={"limit": 200})
    assert r.status_code == 200, r.text
    return sorted(str(item["kind"]) for item in r.json()["items"])


async def test_adjustments_spends_and_redemptions_after_an_erasure_are_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    """In sequence (both databases): after the erasure each is refused, nothing is written."""
    program, m = await _setup(client)
    erased = await client.delete(f"/v1/programs/{program}/members/{m}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["points_expired"] == 110
    movements = await _assert_gone(client, db, program, m)
    for move in _moves(client, program, m):
        _refused(await move)
    # A replayed reference is refused too, not answered from before.
    r = await client.post(
        f"/v1/programs/{program}/members/{m}/adjustments",
        json={"points": 1, "reason": "again", "reference": new_code("ref")},
    )
    _refused(r)
    assert await _assert_gone(client, db, program, m) == movements


async def test_moves_during_an_erasure_wait_and_are_refused(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two transactions at once on PostgreSQL: half-way through an erasure (the points
    expired, the member's row not yet updated), an adjustment, a spend and a redemption come
    in through the API; each waits for the member's row, then is refused."""
    if db_kind != "postgres":
        pytest.skip("SQLite has one writer: an erasure and an adjustment cannot overlap there")
    program, m = await _setup(client)
    racing: list[asyncio.Task[httpx.Response]] = []
    scrub_events = erasure._scrub_events

    async def meanwhile(*args: Any) -> None:
        racing.extend(asyncio.create_task(move) for move in _moves(client, program, m))
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in racing)  # waiting for the member's row
        await scrub_events(*args)

    monkeypatch.setattr(erasure, "_scrub_events", meanwhile)
    eraser = Database(settings.database_url)
    try:
        async with eraser.read() as session:
            info = await programs_service.get_info(session, program)
        async with eraser.writer() as session, session.begin():
            done = await erasure.erase(session, info, m, actor="test")
        answers = await asyncio.wait_for(asyncio.gather(*racing), 30)
    finally:
        await eraser.dispose()
    assert done.points_expired == 110
    for r in answers:
        _refused(r)
    kinds = await _assert_gone(client, db, program, m)
    assert [k for k in kinds if k != "expire"] == ["adjust", "earn"], kinds


async def test_an_erasure_waits_for_an_adjustment_that_read_the_member_first(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL: a credit adjustment has read the member (active) and is about to write
    its points when an erasure starts. The adjustment holds the member's row, so the erasure
    waits for it and then expires its points too; without the row lock the erasure would
    finish first and the credit land on the erased member."""
    if db_kind != "postgres":
        pytest.skip("SQLite has one writer: an erasure and an adjustment cannot overlap there")
    program, m = await _setup(client)
    entered, erased = asyncio.Event(), asyncio.Event()
    credit = ledger_service.credit

    async def slow_credit(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        try:  # the erasure's turn: long enough for it to finish, were it not waiting
            await asyncio.wait_for(erased.wait(), 1.5)
        except TimeoutError:
            pass
        return await credit(*args, **kwargs)

    monkeypatch.setattr(ledger_service, "credit", slow_credit)
    base = f"/v1/programs/{program}/members/{m}"
    adjusting = asyncio.create_task(
        client.post(f"{base}/adjustments", json={"points": 70, "reason": "racing"})
    )
    await asyncio.wait_for(entered.wait(), 10)
    eraser = Database(settings.database_url)
    try:
        async with eraser.read() as session:
            info = await programs_service.get_info(session, program)
        async with eraser.writer() as session, session.begin():
            done = await erasure.erase(session, info, m, actor="test")
        erased.set()
        adjusted = await asyncio.wait_for(adjusting, 30)
    finally:
        await eraser.dispose()
    assert adjusted.status_code == 201, adjusted.text
    assert done.points_expired == 180  # 10 + 100 + the adjustment's 70
    await _assert_gone(client, db, program, m)


async def test_erasures_and_adjustments_sent_together_leave_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    """An erasure and a credit adjustment sent at once (both databases), whatever the order:
    the adjustment is refused (after) or its points are expired by the erasure (before)."""
    program, m = await _setup(client)
    base = f"/v1/programs/{program}/members/{m}"
    erase, adjust = await asyncio.gather(
        client.delete(base),
        client.post(f"{base}/adjustments", json={"points": 70, "reason": "racing"}),
    )
    assert erase.status_code == 200, erase.text
    if adjust.status_code == 201:
        assert erase.json()["points_expired"] == 180
    else:
        _refused(adjust)
        assert erase.json()["points_expired"] == 110
    await _assert_gone(client, db, program, m)
