"""Issue 22, item 2: every ledger transaction is effective when what it records happened.

A backdated event (through `POST /events` or the import) books its ledger entries now but
places them at its `occurred_at`: the monthly report and the member's history show history in
its own months; a refund's take-back is effective when the refund occurred; an expiry when
the lot expired, however late the job writes it down.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from habitue import clock, jobs
from habitue.db import Database, make_sync_engine
from habitue.events.importer import import_purchases
from habitue.ledger.verify import verify
from tests.conftest import create_program, enrol, new_code, purchase

P = "/v1/programs"


def month_of(back: int, day: int = 10) -> datetime:
    """Noon UTC on `day` of the month `back` months before the clock's."""
    now = clock.now()
    index = now.year * 12 + now.month - 1 - back
    return datetime(index // 12, index % 12 + 1, day, 12, tzinfo=UTC)


def label(at: datetime) -> str:
    return at.strftime("%Y-%m")


async def report(client: httpx.AsyncClient, code: str) -> dict[str, dict[str, Any]]:
    r = await client.get(f"{P}/{code}/reports/monthly")
    assert r.status_code == 200, r.text
    return {row["month"]: row for row in orjson.loads(r.content)["months"]}


async def history(client: httpx.AsyncClient, code: str, member: str) -> list[dict[str, Any]]:
    r = await client.get(f"{P}/{code}/members/{member}/ledger")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def sound(db: Database) -> None:
    async with db.read() as session:
        breaches = await verify(session)
    assert all(not rows for rows in breaches.values()), breaches


async def test_backdated_events_land_in_their_own_months(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client)
    member = (await enrol(client, code))["id"]
    months = [month_of(3), month_of(2), month_of(1)]
    for at, total in zip(months, ("10.00", "20.00", "30.00"), strict=True):
        r = await purchase(client, code, member, total, occurred_at=at.isoformat())
        assert r.status_code == 201, r.text
    r = await purchase(client, code, member, "5.00")  # today
    assert r.status_code == 201, r.text
    rows = await report(client, code)
    now = label(clock.now())
    assert {m: rows[m]["points_issued"] for m in rows} == {
        label(months[0]): 10,
        label(months[1]): 20,
        label(months[2]): 30,
        now: 5,
    }
    assert [rows[m]["outstanding_liability"] for m in sorted(rows)] == [10, 30, 60, 65]
    assert [rows[m]["purchases"] for m in sorted(rows)] == [1, 1, 1, 1]

    # The history: newest in effect first, each entry effective when its purchase occurred,
    # all booked today.
    items = await history(client, code, member)
    assert [m["points"] for m in items] == [5, 30, 20, 10]
    assert [instant(m["effective_at"]) for m in items[1:]] == months[::-1]
    booked = {instant(m["created_at"]).date() for m in items}
    assert booked == {clock.now().date()}
    await sound(db)


async def test_a_late_entry_takes_its_place_in_the_history_and_pages_follow_it(
    client: httpx.AsyncClient,
) -> None:
    code = await create_program(client)
    member = (await enrol(client, code))["id"]
    for back, total in ((1, "1.00"), (3, "3.00"), (2, "2.00"), (4, "4.00")):
        r = await purchase(client, code, member, total, occurred_at=month_of(back).isoformat())
        assert r.status_code == 201, r.text
    r = await client.get(f"{P}/{code}/members/{member}/ledger", params={"limit": 2})
    first = r.json()
    assert [m["points"] for m in first["items"]] == [1, 2]
    r = await client.get(
        f"{P}/{code}/members/{member}/ledger",
        params={"limit": 2, "before": first["next_cursor"]},
    )
    assert [m["points"] for m in r.json()["items"]] == [3, 4]


async def test_a_refund_is_effective_when_it_occurred(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client)
    member = (await enrol(client, code))["id"]
    bought, refunded = month_of(3), month_of(1, day=5)
    r = await purchase(client, code, member, "40.00", external_id="buy",
                       occurred_at=bought.isoformat())  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{P}/{code}/events",
        json={"type": "refund", "external_id": "back", "refers_to": "buy", "total": "10.00",
              "occurred_at": refunded.isoformat()},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["points"] == -10
    items = await history(client, code, member)
    assert [(m["kind"], m["points"]) for m in items] == [("takeback", -10), ("earn", 40)]
    assert instant(items[0]["effective_at"]) == refunded
    assert instant(items[1]["effective_at"]) == bought
    rows = await report(client, code)
    assert rows[label(bought)]["points_issued"] == 40
    assert rows[label(refunded)]["points_issued"] == -10  # issued net of take-backs
    assert rows[label(refunded)]["refunds"] == "10.00"
    assert rows[label(refunded)]["outstanding_liability"] == 30
    # A refund without a time is effective when it is recorded.
    r = await client.post(
        f"{P}/{code}/events",
        json={"type": "refund", "external_id": "again", "refers_to": "buy", "total": "10.00"},
    )
    assert r.status_code == 201, r.text
    latest = (await history(client, code, member))[0]
    assert latest["kind"] == "takeback"
    assert abs(instant(latest["effective_at"]) - clock.now()) < timedelta(minutes=1)
    await sound(db)


async def test_points_expire_in_the_month_their_lots_expired(
    client: httpx.AsyncClient, db: Database
) -> None:
    code = await create_program(client, expiry={"policy": "days", "days": 30})
    member = (await enrol(client, code))["id"]
    first, second = month_of(5), month_of(4, day=20)
    for at, total in ((first, "10.00"), (second, "7.00")):
        r = await purchase(client, code, member, total, occurred_at=at.isoformat())
        assert r.status_code == 201, r.text
    # One run writes both lots down: two transactions, each effective when its lot expired.
    assert await jobs.run_expiry(db, code) == (1, 17)
    items = await history(client, code, member)
    expired = [m for m in items if m["kind"] == "expire"]
    assert [m["points"] for m in expired] == [-7, -10]
    when = [instant(m["effective_at"]) for m in expired]
    assert [w.date() for w in when] == [(second + timedelta(days=30)).date(),
                                        (first + timedelta(days=30)).date()]  # fmt: skip
    rows = await report(client, code)
    by_month: dict[str, int] = {}
    for at, points in zip(when, (7, 10), strict=True):
        by_month[label(at)] = by_month.get(label(at), 0) + points
    assert {m: r["points_expired"] for m, r in rows.items() if r["points_expired"]} == by_month
    assert rows[max(rows)]["outstanding_liability"] == 0
    feed = (await client.get(f"{P}/{code}/events-feed")).json()["items"]
    assert sorted(e["data"]["points"] for e in feed if e["type"] == "points.expired") == [7, 10]
    await sound(db)


async def test_an_imported_history_lands_in_its_own_months(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client)
    member = (await enrol(client, code, external_id="C1"))["id"]
    months = [month_of(4), month_of(3), month_of(2)]
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        for at, total in zip(months, ("11.00", "22.00", "33.00"), strict=True):
            w.writerow(["C1", new_code("h"), at.isoformat(), total])
    engine = make_sync_engine(db_url)
    try:
        done = import_purchases(engine, code, path)
    finally:
        engine.dispose()
    assert (done.imported, done.rejected, done.points) == (3, 0, 66)
    rows = await report(client, code)
    assert {m: r["points_issued"] for m, r in rows.items()} == {
        label(months[0]): 11,
        label(months[1]): 22,
        label(months[2]): 33,
    }
    items = await history(client, code, member)
    assert [m["points"] for m in items] == [33, 22, 11]
    assert [instant(m["effective_at"]) for m in items] == months[::-1]
    assert {instant(m["created_at"]).date() for m in items} == {clock.now().date()}
    # A purchase through the API afterwards, backdated between two imported ones, too.
    r = await purchase(client, code, member, "5.00", occurred_at=month_of(3, day=20).isoformat())
    assert r.status_code == 201, r.text
    assert [m["points"] for m in await history(client, code, member)] == [33, 5, 22, 11]
    assert (await report(client, code))[label(months[1])]["points_issued"] == 27
    await sound(db)
