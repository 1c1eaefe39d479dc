"""`habitue import purchases`: the same decide, rejects with reasons, idempotent re-runs."""

from __future__ import annotations

import csv
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from habitue.cli import app
from habitue.clock import as_utc
from habitue.db import Database, make_sync_engine, table_of
from habitue.events.importer import (
    ImportConflict,
    ImportFailed,
    _check_ids,
    _Ids,
    _share_top_id_sql,
    _Writes,
    import_purchases,
    member_share,
)
from habitue.ledger.models import LedgerTransaction
from habitue.ledger.verify import verify
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import create_program, enrol, purchase

HEADER = [
    "member_external_id",
    "external_id",
    "occurred_at",
    "total",
    "sku",
    "category",
    "quantity",
    "unit_price",
]


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)


async def test_import_rejects_and_rerun(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client, earn_rate="2")
    m = await enrol(client, code, external_id="C1")
    r = await client.post(
        f"/v1/programs/{code}/rules",
        json={
            "code": "coffee-bonus",
            "event_type": "purchase",
            "condition": "true",
            "line_condition": "line.category == 'coffee'",
            "effect": {"kind": "per_line", "points": 5},
        },
    )
    assert r.status_code == 201, r.text
    at = "2026-03-04T09:30:00+01:00"
    path = tmp_path / "p.csv"
    _write(
        path,
        [
            ["C1", "R1", at, "5.60", "latte", "coffee", "1", "3.80"],
            ["C1", "R1", at, "5.60", "croissant", "pastry", "1", "1.80"],
            ["C1", "R2", at, "10.00", "", "", "", ""],
            ["C2", "R3", at, "10.00", "", "", "", ""],  # unknown member
            ["C1", "R4", at, "-1.00", "", "", "", ""],  # negative
            ["C1", "R5", at, "9.00", "tea", "tea", "2", "3.00"],  # lines 6.00 != 9.00
            ["C1", "R6", "yesterday", "1.00", "", "", "", ""],  # bad time
        ],
    )
    engine = make_sync_engine(db_url)
    try:
        first = import_purchases(engine, code, path)
        again = import_purchases(engine, code, path)
    finally:
        engine.dispose()
    assert (first.imported, first.rejected, first.points) == (2, 4, 11 + 5 + 20)
    reasons = sorted(reason for _, reason in first.rejects)
    assert reasons[0].startswith("lines add up to 6.00")
    assert "unknown member_external_id" in reasons
    assert any(r.startswith("total:") for r in reasons)
    assert any(r.startswith("occurred_at:") for r in reasons)
    assert (again.imported, again.already, again.points) == (0, 2, 0)
    bal = (await client.get(f"/v1/programs/{code}/members/{m['id']}/balance")).json()
    assert bal["available"] == 36
    ledger = (await client.get(f"/v1/programs/{code}/members/{m['id']}/ledger")).json()
    assert len(ledger["items"]) == 2
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_cli_exit_status_and_rejects_file(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path, monkeypatch: object
) -> None:
    code = await create_program(client)
    path = tmp_path / "p.csv"
    _write(
        path,
        [
            ["N1", "R1", "2026-01-05T10:00:00Z", "12.00", "", "", "", ""],
            ["N2", "R2", "2026-01-05T11:00:00Z", "abc", "", "", "", ""],
        ],
    )
    rejects = tmp_path / "rejects.csv"
    runner = CliRunner()
    env = {"HABITUE_DATABASE_URL": db_url, "HABITUE_HMAC_KEY": "test-hmac-key"}
    from habitue.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(
        app,
        [
            "import",
            "purchases",
            str(path),
            "--program",
            code,
            "--enrol-missing",
            "--rejects",
            str(rejects),
        ],
        env=env,
    )
    get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(rejects.open()))
    assert [(r["external_id"], r["reason"].split(":")[0]) for r in rows] == [("R2", "total")]
    found = (await client.get(f"/v1/programs/{code}/members?external_id=N1")).json()["items"]
    assert len(found) == 1
    bal = (await client.get(f"/v1/programs/{code}/members/{found[0]['id']}/balance")).json()
    assert bal["available"] == 12


async def test_import_repays_a_debt_like_the_api(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """A member at -30 who imports purchases worth 20 then 15 points: the first repays
    debt only, the second leaves 5 open, exactly as two purchases through the API would."""
    code = await create_program(client, allow_negative=True)
    m = await enrol(client, code, external_id="D1")
    base = f"/v1/programs/{code}"
    r = await client.post(f"{base}/events", json={
        "type": "purchase", "member": {"id": m["id"]}, "external_id": "buy", "total": "40.00"})
    assert r.status_code == 201, r.text
    await client.post(f"{base}/members/{m['id']}/spends", json={"points": 30})
    await client.post(f"{base}/events", json={
        "type": "refund", "external_id": "ref", "refers_to": "buy", "total": "40.00"})
    assert (await client.get(f"{base}/members/{m['id']}/balance")).json()["available"] == -30
    path = tmp_path / "p.csv"
    at = "2026-03-04T09:30:00+01:00"
    _write(path, [["D1", "I1", at, "20.00"] + [""] * 4, ["D1", "I2", at, "15.00"] + [""] * 4])
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path)
    finally:
        engine.dispose()
    assert (report.imported, report.points) == (2, 35)
    assert (await client.get(f"{base}/members/{m['id']}/balance")).json()["available"] == 5
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_workers_repay_debts_like_the_api(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Members at -30 in each worker's share of a partitioned import, over several chunks:
    each member's first purchase (20) repays debt only, the second (15) leaves 5 open, as
    the inline import and the API do. On SQLite the second worker's part reaches the first
    one table by table, its lots repaying under the transaction that writes them."""
    code = await create_program(client, allow_negative=True)
    base = f"/v1/programs/{code}"
    debtors = [f"D{i}" for i in range(6)]
    assert {member_share(d, 2) for d in debtors} == {0, 1}
    ids = {}
    for d in debtors:
        m = await enrol(client, code, external_id=d)
        ids[d] = m["id"]
        r = await client.post(f"{base}/events", json={
            "type": "purchase", "member": {"id": m["id"]}, "external_id": f"buy-{d}",
            "total": "40.00"})
        assert r.status_code == 201, r.text
        await client.post(f"{base}/members/{m['id']}/spends", json={"points": 30})
        await client.post(f"{base}/events", json={
            "type": "refund", "external_id": f"ref-{d}", "refers_to": f"buy-{d}",
            "total": "40.00"})
        assert (await client.get(f"{base}/members/{m['id']}/balance")).json()["available"] == -30
    path = tmp_path / "p.csv"
    at = "2026-03-04T09:30:00+01:00"
    rows = [[f"N{i}", f"X{i}", at, "1.00"] + [""] * 4 for i in range(150)]
    for n, d in enumerate(debtors):  # the debtors' purchases spread over the chunks
        rows.insert(20 * n, [d, f"I1-{d}", at, "20.00"] + [""] * 4)
        rows.insert(20 * n + 100, [d, f"I2-{d}", at, "15.00"] + [""] * 4)
    _write(path, rows)
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path, enrol_missing=True, chunk=40,
                                  writer_process=True, workers=2)
    finally:
        engine.dispose()
    assert (report.imported, report.rejected) == (162, 0)
    for d in debtors:
        assert (await client.get(f"{base}/members/{ids[d]}/balance")).json()["available"] == 5
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


def _purchases(path: Path, n: int, members: int) -> None:
    rows = []
    for i in range(n):
        rows.append([f"P{i % members}", f"R{i}", f"2026-02-{1 + i % 28:02d}T10:00:00Z",
                     f"{1 + i % 50}.{i % 100:02d}", "", "", "", ""])
    _write(path, rows)


@pytest.mark.parametrize("workers", [1, 2])
async def test_writer_process_gives_the_same_ledger(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path, workers: int
) -> None:
    """Large files are written by other processes: one writer while the next chunks are
    prepared (chunks in flight must count as written: members they enrol, purchases they
    hold), or two workers each preparing and writing its members' purchases. The outcome
    must be the inline one, to the point."""
    inline, piped = await create_program(client), await create_program(client)
    path = tmp_path / "p.csv"
    # Small chunks, so that a member enrolled by one chunk buys again in the next chunks,
    # and a duplicate external id sits in a later chunk than its first occurrence.
    _purchases(path, 1200, 150)
    with path.open("a", newline="") as fh:
        csv.writer(fh).writerow(["P3", "R7", "2026-02-08T10:00:00Z", "9.99", "", "", "", ""])
    seen: list[int] = []
    engine = make_sync_engine(db_url)
    try:
        a = import_purchases(engine, inline, path, enrol_missing=True, chunk=100,
                             writer_process=False)
        b = import_purchases(engine, piped, path, enrol_missing=True, chunk=100,
                             writer_process=True, progress=seen.append, workers=workers)
        again = import_purchases(engine, piped, path, enrol_missing=True, chunk=100,
                                 writer_process=True, workers=workers)
    finally:
        engine.dispose()
    summary = (a.rows, a.imported, a.already, a.enrolled, a.points, a.rejected)
    assert summary == (1201, 1200, 1, 150, b.points, 0)
    assert (b.rows, b.imported, b.already, b.enrolled, b.points, b.rejected) == summary
    assert sum(seen) == 1201
    if workers == 1:
        assert len(seen) == 13 and max(seen) <= 100
    else:  # chunks of 50, 100, then 200 purchases (100 per worker), each worker's part
        assert len(seen) == 2 * 8 and max(seen) < 150
    assert (again.imported, again.already, again.enrolled, again.points) == (0, 1201, 0, 0)

    async def balances(code: str) -> dict[str, int]:
        out = {}
        for i in range(150):
            found = (await client.get(f"/v1/programs/{code}/members?external_id=P{i}")).json()
            mid = found["items"][0]["id"]
            bal = (await client.get(f"/v1/programs/{code}/members/{mid}/balance")).json()
            out[f"P{i}"] = bal["available"]
        return out

    assert await balances(inline) == await balances(piped)
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_a_chunk_the_writer_process_cannot_write_stops_the_import(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """The chunks committed before a failing one stay; the writer reads the chunks queued
    after it to the end and the import raises; a re-run writes the rest, exactly once.

    Two workers each import their members' purchases (`_import_partitioned`): the chunk
    holding R250 is committed by neither, nor any after it (tests/events/
    test_import_rejects.py checks which)."""
    code = await create_program(client)
    path = tmp_path / "p.csv"
    _purchases(path, 650, 40)
    refused = f"refuse_{code}"
    engine = make_sync_engine(db_url)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT id FROM programs WHERE code = :c"), {"c": code}).scalar()
    # The program's event R250, in the third chunk (rows 200-299), is refused by the
    # database: by a check constraint on PostgreSQL, which holds even where the import may
    # skip triggers (NOT VALID: other programs' rows are not checked), by a trigger on SQLite.
    add = (
        f"ALTER TABLE events ADD CONSTRAINT {refused} "
        f"CHECK (program_id <> {pid} OR external_id <> 'R250') NOT VALID"
        if engine.dialect.name == "postgresql"
        else f"CREATE TRIGGER {refused} BEFORE INSERT ON events "
        f"WHEN NEW.program_id = {pid} AND NEW.external_id = 'R250' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    drop = (
        f"ALTER TABLE events DROP CONSTRAINT {refused}"
        if engine.dialect.name == "postgresql"
        else f"DROP TRIGGER {refused}"
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(add)
        try:
            with pytest.raises(ImportFailed):
                import_purchases(engine, code, path, enrol_missing=True, chunk=100,
                                 writer_process=True)
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(drop)
        again = import_purchases(engine, code, path, enrol_missing=True, chunk=100,
                                 writer_process=True)
        again_twice = import_purchases(engine, code, path, enrol_missing=True, chunk=100,
                                       writer_process=True)
    finally:
        engine.dispose()
    assert 0 < again.already <= 250 and again.imported > 0
    assert again.imported + again.already == 650
    assert (again_twice.imported, again_twice.already) == (0, 650)
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_imported_times_are_exact(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Times reach the database to the microsecond, whichever way the store takes them (as
    microseconds since 2000 in PostgreSQL's binary COPY, as text on SQLite): the purchase's
    time, its lot's earning and expiry times, the pending period's end."""
    code = await create_program(client, expiry={"policy": "days", "days": 30}, pending_days=14)
    await enrol(client, code, external_id="T1")
    path = tmp_path / "p.csv"
    _write(path, [["T1", "R1", "2026-03-04T09:30:00.123456+01:00", "10.00", "", "", "", ""]])
    engine = make_sync_engine(db_url)
    try:
        assert import_purchases(engine, code, path).imported == 1
    finally:
        engine.dispose()
    occurred = datetime(2026, 3, 4, 8, 30, 0, 123456, tzinfo=UTC)
    async with db.read() as session:
        row = (
            await session.execute(
                text(
                    "SELECT e.occurred_at, e.created_at, l.earned_at, l.expires_at, "
                    "l.pending_until FROM events e JOIN programs p ON p.id = e.program_id "
                    "JOIN lots l ON l.event_id = e.id WHERE p.code = :c AND e.external_id = 'R1'"
                ),
                {"c": code},
            )
        ).one()
    at, created, earned, expires, pending_until = (
        None if v is None else as_utc(v if isinstance(v, datetime) else datetime.fromisoformat(v))
        for v in row
    )
    assert at == earned == occurred
    # Pending ended long ago (14 days after 4 March): the lot is available, expiring 30 days on.
    assert pending_until is None and expires == occurred + timedelta(days=30)
    assert created is not None and abs(created - datetime.now(UTC)) < timedelta(minutes=5)


async def test_workers_share_members_and_card_numbers(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Two workers import a large file, each its members' purchases. Each member is enrolled
    once with a card number of its worker's share; a repeated external id goes to the
    worker of its first row, which rejects it as a repeat even when the first row was itself
    rejected and the repeat names another worker's member."""
    code = await create_program(client)
    ours, theirs = "W0", next(f"W{i}" for i in range(1, 50) if member_share(f"W{i}", 2) == 1)
    assert member_share(ours, 2) == 0
    path = tmp_path / "p.csv"
    _purchases(path, 400, 60)
    with path.open("a", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([ours, "X1", "2026-02-08T10:00:00Z", "-1.00", "", "", "", ""])  # rejected
        w.writerow([ours, "X2", "2026-02-08T10:00:00Z", "3.00", "", "", "", ""])
        w.writerow([theirs, "X1", "2026-02-08T10:00:00Z", "9.99", "", "", "", ""])
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path, enrol_missing=True, chunk=50,
                                  writer_process=True, workers=2)
    finally:
        engine.dispose()
    assert (report.imported, report.enrolled, report.rejected) == (401, 61, 2)
    assert sorted(reason for _, reason in report.rejects)[0] == "duplicate external_id in the file"
    async with db.read() as session:
        cards = (
            await session.execute(
                text(
                    "SELECT m.external_id, c.number FROM cards c JOIN members m ON m.id = "
                    "c.member_id JOIN programs p ON p.id = m.program_id WHERE p.code = :c"
                ),
                {"c": code},
            )
        ).all()
        assert all(not rows for rows in (await verify(session)).values())
    assert len(cards) == 61 and len({n for _, n in cards}) == 61
    assert all(int(number) % 2 == member_share(ext, 2) for ext, number in cards)


async def test_repeats_far_from_their_first_row_go_to_any_worker(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """The importing process remembers where the ids of its last chunks went, not every id
    of the file: a repeat that names another worker's member goes to the worker of its first
    row while that row may be in flight (the next chunks), and later to its own member's
    worker, which finds the first row committed. Either way it credits nothing and nothing
    conflicts."""
    code = await create_program(client)
    ours = "P0"
    theirs = next(
        f"P{i}" for i in range(1, 20) if member_share(f"P{i}", 2) != member_share(ours, 2)
    )
    path = tmp_path / "p.csv"
    rows = [[f"P{i % 20}", f"R{i}", "2026-02-08T10:00:00Z", "2.00", "", "", "", ""]
            for i in range(1500)]
    # R0's first row names `ours`; its repeats name `theirs`: one chunk later (in flight),
    # then at the end of the file (chunks of 50, 100, then 200 purchases: 10 chunks later).
    rows[0][0] = ours
    rows.insert(260, [theirs, "R0", "2026-02-08T10:00:00Z", "9.99", "", "", "", ""])
    rows.append([theirs, "R0", "2026-02-08T10:00:00Z", "7.77", "", "", "", ""])
    _write(path, rows)
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path, enrol_missing=True, chunk=100,
                                  writer_process=True, workers=2)
        again = import_purchases(engine, code, path, enrol_missing=True, chunk=100,
                                 writer_process=True, workers=2)
    finally:
        engine.dispose()
    assert (report.rows, report.imported, report.already, report.rejected) == (1502, 1500, 2, 0)
    assert report.points == 1500 * 2
    assert (again.imported, again.already, again.points) == (0, 1502, 0)
    found = (await client.get(f"/v1/programs/{code}/members?external_id={theirs}")).json()
    balance = (await client.get(f"/v1/programs/{code}/members/{found['items'][0]['id']}/balance"))
    assert balance.json()["available"] == 1500 // 20 * 2
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_sqlite_workers_number_ids_of_their_share(
    client: httpx.AsyncClient, db: Database, db_kind: str, db_url: str
) -> None:
    """SQLite: worker k of n numbers the ids that are k modulo n, above the largest; a row
    someone else numbered in its share since the chunk drew its ids is a conflict (the
    writer's check, run here through `sqlite3`: APSW's own SQLite must not open the file in
    a process where another SQLite library has it open)."""
    if db_kind != "sqlite":
        pytest.skip("PostgreSQL numbers rows by its sequences")
    code = await create_program(client)
    member = await enrol(client, code)
    await purchase(client, code, member["id"], "10.00")
    engine = make_sync_engine(db_url, immediate=False)
    try:
        with engine.connect() as conn:
            with conn.begin():
                top = conn.execute(text("SELECT MAX(id) FROM ledger_transactions")).scalar_one()
            ids = _Ids(conn, (1, 2)).take(table_of(LedgerTransaction), 3)
    finally:
        engine.dispose()
    first = top + 1 + (top + 1 + 1) % 2  # the first odd id above the largest
    assert ids == [first, first + 2, first + 4]
    with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)) as other:

        def top_id(table: str, since: int) -> int:
            return int(other.execute(_share_top_id_sql(table), (since, 2, 1)).fetchone()[0])

        _check_ids(_Writes(1, first_ids={"ledger_transactions": first}), top_id)
        copy = (
            "INSERT INTO ledger_transactions (id, program_id, member_id, kind, reference, "
            "event_id, actor, reason, created_at) SELECT ?, program_id, member_id, kind, "
            "reference || ':copy' || ?, event_id, actor, reason, created_at "
            "FROM ledger_transactions WHERE id = ?"
        )
        other.execute(copy, (first + 1, first + 1, top))  # the other share: no conflict
        _check_ids(_Writes(2, first_ids={"ledger_transactions": first}), top_id)
        other.execute(copy, (first + 2, first + 2, top))
        try:
            with pytest.raises(ImportConflict):
                _check_ids(_Writes(3, first_ids={"ledger_transactions": first + 2}), top_id)
            _check_ids(_Writes(4, first_ids={"ledger_transactions": first + 6}), top_id)
        finally:  # the copies have no postings: later tests verify the whole ledger
            copies = (first + 1, first + 2)
            other.execute("DELETE FROM ledger_transactions WHERE id IN (?, ?)", copies)
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_awkward_ids_are_found_again(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Ids are looked up a chunk at a time (on PostgreSQL sent as an array's text): ids
    with quotes, backslashes, commas, braces, spaces or other scripts are found as
    themselves, so that a re-run credits none of them again and enrols no one twice."""
    code = await create_program(client)
    awkward = ['a"b', "c\\d", "e,f", "{g}", "h i", "NULL", "é😀", 'x\\"y', "it's"]
    path = tmp_path / "p.csv"
    _write(path, [[m, f"R-{m}", "2026-02-01T10:00:00Z", "10.00", "", "", "", ""]
                  for m in awkward])  # fmt: skip
    engine = make_sync_engine(db_url)
    try:
        first = import_purchases(engine, code, path, enrol_missing=True)
        again = import_purchases(engine, code, path, enrol_missing=True)
    finally:
        engine.dispose()
    assert (first.imported, first.enrolled, first.rejected) == (len(awkward), len(awkward), 0)
    assert (again.imported, again.already, again.enrolled, again.points) == (0, len(awkward), 0, 0)
    for ext in awkward:
        r = await client.get(f"/v1/programs/{code}/members", params={"external_id": ext})
        assert r.status_code == 200, r.text
        assert [m["external_id"] for m in r.json()["items"]] == [ext]
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_imported_members_get_no_welcome_message(
    client: httpx.AsyncClient, db: Database, db_url: str, settings: Settings, tmp_path: Path
) -> None:
    """An import enrols existing customers brought over from a file: their `member.enrolled`
    says `source: import` (webhooks still get it) and calls for no welcome message, where a
    member enrolled through the API gets one (here skipped: no consent)."""
    code = await create_program(client)
    base = f"/v1/programs/{code}"
    path = tmp_path / "p.csv"
    _write(path, [[f"W{i}", f"WR{i}", "2026-02-01T10:00:00Z", "5.00", "", "", "", ""]
                  for i in range(3)])
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path, enrol_missing=True)
    finally:
        engine.dispose()
    assert report.imported == 3
    joined = await enrol(client, code)
    await worker.run_until_idle(db, settings.model_copy(update={"smtp_url": None}))
    feed = (await client.get(f"{base}/events-feed", params={"limit": 100})).json()["items"]
    enrolled = {e["data"]["member_id"]: e["data"] for e in feed if e["type"] == "member.enrolled"}
    assert len(enrolled) == 4
    imported = [m for m, data in enrolled.items() if data.get("source") == "import"]
    assert len(imported) == 3 and joined["id"] not in imported
    for member in imported:
        r = await client.get(f"{base}/members/{member}/messages")
        assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get(f"{base}/members/{joined['id']}/messages")
    assert [(m["template"], m["status"], m["reason"]) for m in r.json()["items"]] == [
        ("welcome", "skipped", "no-consent")
    ]
