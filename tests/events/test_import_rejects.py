"""`habitue import purchases` with malformed rows: each is a rejected row with its reason,
never a crash; the other rows are imported; a re-run completes and credits nothing twice."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from habitue.cli import app
from habitue.db import Database, make_sync_engine
from habitue.events.importer import ImportFailed, import_purchases, member_share
from habitue.ledger.verify import verify
from tests.conftest import create_program

AT = "2026-02-01T10:00:00Z"
HEADER = "member_external_id,external_id,occurred_at,total,sku,category,quantity,unit_price"


def _cli(db_url: str, path: Path, code: str, rejects: Path) -> tuple[int, str]:
    from habitue.settings import get_settings

    get_settings.cache_clear()
    env = {"HABITUE_DATABASE_URL": db_url, "HABITUE_HMAC_KEY": "test-hmac-key"}
    args = ["import", "purchases", str(path), "--program", code, "--enrol-missing",
            "--rejects", str(rejects)]  # fmt: skip
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


async def _balance(client: httpx.AsyncClient, code: str, ext: str) -> int | None:
    found = (await client.get(f"/v1/programs/{code}/members", params={"external_id": ext})).json()
    if not found["items"]:
        return None
    mid = found["items"][0]["id"]
    bal = (await client.get(f"/v1/programs/{code}/members/{mid}/balance")).json()
    return int(bal["available"])


MALFORMED = [
    # (external id, the row's bytes after the member id, the reason's start)
    ("E1", b"E1,%s,1e999999999,,,," % AT.encode(), "total: not a decimal number"),
    ("E2", b"E2,%s,1.000000000000000000000000000001,,,," % AT.encode(),
     "total: more than 2 decimal places"),
    ("E3", b"E3,%s,NaN,,,," % AT.encode(), "total: not a decimal number"),
    ("E4", b"E4,%s,Infinity,,,," % AT.encode(), "total: not a decimal number"),
    ("E5", b"E5,%s,10000000000000.00,,,," % AT.encode(), "total: too large"),
    ("E6", b"E6,%s,10,00,,,," % AT.encode(), "the row has 9 fields, the header 8"),
    ("E7", b"E7,%s,10.00,,," % AT.encode(), "the row has 7 fields, the header 8"),
    ("E8", b"E8,%s,10.00,caf\xe9,,," % AT.encode(), "not valid UTF-8 (byte 0xE9)"),
    ("E9", b"E9,%s,10.00,a\x00b,,," % AT.encode(), "sku: control character"),
    ("E10", b"E10,%s,10.00,x,y,1e999999999,10.00" % AT.encode(), "quantity: not a decimal"),
    ("E11", b"E11,%s,10.00,x,y,1,1e999999999" % AT.encode(), "unit_price: not a decimal"),
    ("E12", b"E12,%s,10.00,x,y,NaN,10.00" % AT.encode(), "quantity: not a decimal"),
    ("E13", b"E13,%s,10.00,x,y,2000000,0.01" % AT.encode(), "quantity: too large"),
    # a unit price may carry 4 decimals beyond the cent (a price per gram), not 5 (7 places)
    ("E14", b"E14,%s,10.00,x,y,1,10.0000001" % AT.encode(), "unit_price: more than 6 decimal"),
    ("E15", b"E15,%s,-1e3,,,," % AT.encode(), "total: not a decimal number"),
    ("E16", b"E16,%s,%s,,,," % (AT.encode(), b"9" * 5000), "total: too large"),
    ("E17", b"%s,%s,10.00,,,," % (b"x" * 201, AT.encode()), "external_id: longer than 200"),
    ("E18", b"E18,0001-01-01T00:00:00+01:00,10.00,,,,", "occurred_at: out of range"),
    ("E19", b"E19,9999-12-31T23:59:59-01:00,10.00,,,,", "occurred_at: out of range"),
    ("E20", b"E20,1969-12-31T23:59:59Z,10.00,,,,", "occurred_at: before 1970"),
]


def _malformed_file(path: Path, member: bytes = b"M") -> None:
    """Good purchases of 10.00 around every malformed row; E8's basket line also names
    another line of the same purchase, which is rejected with it."""
    lines = [HEADER.encode()]
    for n, (_, tail, _) in enumerate(MALFORMED):
        lines.append(b"%s%d,G%d,%s,10.00,,,," % (member, n, n, AT.encode()))
        lines.append(b"%s%d," % (member, n) + tail)
        if tail.startswith(b"E8,"):
            lines.append(b"%s%d,E8,%s,10.00,ok,,," % (member, n, AT.encode()))
    lines.append(b"")  # a blank line at the end is no row
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")


async def test_malformed_rows_are_rejected_with_their_reason(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client)
    path = tmp_path / "bad.csv"
    _malformed_file(path)
    rejects = tmp_path / "rejects.csv"
    status, output = _cli(db_url, path, code, rejects)
    assert status == 1, output
    assert "Traceback" not in output
    found = list(csv.DictReader(rejects.open(encoding="utf-8")))
    by_id: dict[str, list[str]] = {}
    for row in found:
        by_id.setdefault(row["external_id"], []).append(row["reason"])
    for ext, _, reason in MALFORMED:
        key = "x" * 201 if ext == "E17" else ext
        if ext == "E6":
            assert by_id[key] == [MALFORMED[5][2]]
            continue
        assert by_id[key][0].startswith(reason), (ext, by_id.get(key))
    assert len(by_id["E8"]) == 2  # the purchase's good line goes with its bad one
    e6 = next(r for r in found if r["external_id"] == "E6")
    assert (e6["total"], e6["sku"], e6["extra 1"]) == ("10", "00", "")
    e8 = next(r for r in found if r["external_id"] == "E8" and r["sku"] != "ok")
    assert e8["sku"] == "caf\ufffd"
    # Every good purchase went in: 10 points each, and nothing for any malformed row.
    for n in range(len(MALFORMED)):
        assert await _balance(client, code, f"M{n}") == 10
    # A re-run completes: it credits nothing again and rejects the same rows.
    status, _ = _cli(db_url, path, code, rejects)
    assert status == 1
    assert len(list(csv.DictReader(rejects.open(encoding="utf-8")))) == len(found)
    for n in range(len(MALFORMED)):
        assert await _balance(client, code, f"M{n}") == 10
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


@pytest.mark.parametrize("workers", [1, 2])
async def test_malformed_rows_through_the_worker_processes(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path, workers: int
) -> None:
    """The same rows in a file written by other processes (one writer, or two workers
    each with its members' purchases)."""
    code = await create_program(client)
    path = tmp_path / "bad.csv"
    _malformed_file(path, member=b"W")
    engine = make_sync_engine(db_url)
    try:
        first = import_purchases(engine, code, path, enrol_missing=True, chunk=5,
                                 writer_process=True, workers=workers)
        again = import_purchases(engine, code, path, enrol_missing=True, chunk=5,
                                 writer_process=True, workers=workers)
    finally:
        engine.dispose()
    assert (first.imported, first.rejected) == (len(MALFORMED), len(MALFORMED))
    assert first.points == 10 * len(MALFORMED)
    assert (again.imported, again.already, again.points) == (0, len(MALFORMED), 0)
    assert sorted(r for _, r in first.rejects) == sorted(r for _, r in again.rejects)
    for n in range(len(MALFORMED)):
        assert await _balance(client, code, f"W{n}") == 10


async def test_a_huge_earn_rate_rejects_instead_of_overflowing(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Points beyond the import's maximum per purchase are a rejected row (a program's
    rate set before rates were bounded, here written straight to the table)."""
    code = await create_program(client)
    engine = make_sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE programs SET earn_rate = '1000000000000' WHERE code = :c"),
                         {"c": code})  # fmt: skip
        path = tmp_path / "p.csv"
        path.write_text(f"{HEADER}\nR1,P1,{AT},10.00,,,,\nR1,P2,{AT},1.00,,,,\n")
        report = import_purchases(engine, code, path, enrol_missing=True)
    finally:
        engine.dispose()
    assert (report.imported, report.rejected) == (0, 2)
    assert {r for _, r in report.rejects} == {"points: more than 1,000,000,000 for one purchase"}
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_a_missing_column_or_program_is_an_error_not_a_traceback(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client)
    path = tmp_path / "p.csv"
    path.write_text("member_external_id,external_id,total\nA,B,1.00\n")
    status, output = _cli(db_url, path, code, tmp_path / "r.csv")
    assert status == 2 and "lacks columns ['occurred_at']" in output
    path.write_text(f"{HEADER}\nA,B,{AT},1.00,,,,\n")
    status, output = _cli(db_url, path, "no-such-program", tmp_path / "r.csv")
    assert status == 2 and "no program" in output


def _refuse(engine: object, pid: int, external_id: str, name: str) -> tuple[str, str]:
    """SQL making the database refuse one purchase of a program: a check constraint on
    PostgreSQL (it holds where the import skips triggers), a trigger on SQLite."""
    dialect = engine.dialect.name  # type: ignore[attr-defined]
    if dialect == "postgresql":
        return (
            f"ALTER TABLE events ADD CONSTRAINT {name} "
            f"CHECK (program_id <> {pid} OR external_id <> '{external_id}') NOT VALID",
            f"ALTER TABLE events DROP CONSTRAINT {name}",
        )
    return (
        f"CREATE TRIGGER {name} BEFORE INSERT ON events WHEN NEW.program_id = {pid} "
        f"AND NEW.external_id = '{external_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        f"DROP TRIGGER {name}",
    )


async def test_a_failing_worker_takes_its_chunk_down_on_every_worker(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """Two workers, one of which the database refuses a purchase: the chunk holding it is
    committed by neither worker (earlier chunks by both), and a re-run completes with
    every purchase credited once."""
    code = await create_program(client)
    path = tmp_path / "p.csv"
    members = [f"P{i}" for i in range(40)]
    assert {member_share(m, 2) for m in members} == {0, 1}
    rows = [[members[i % 40], f"R{i:04d}", AT, "1.00", "", "", "", ""] for i in range(400)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER.split(","))
        w.writerows(rows)
    engine = make_sync_engine(db_url)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT id FROM programs WHERE code = :c"), {"c": code}).scalar()
    assert isinstance(pid, int)
    # Chunks of 24, 48, 96, then 100 purchases (12, 24, 48, then 50 per worker): R0250 is
    # in the fourth (R0168-R0267), whose two parts, and every chunk after it, stay out.
    add, drop = _refuse(engine, pid, "R0250", f"refuse_{code}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(add)
        try:
            with pytest.raises(ImportFailed):
                import_purchases(engine, code, path, enrol_missing=True, chunk=50,
                                 writer_process=True, workers=2)
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(drop)
        with engine.connect() as conn:
            got = sorted(
                int(e[1:])
                for e in conn.execute(
                    text("SELECT external_id FROM events WHERE program_id = :p"), {"p": pid}
                ).scalars()
            )
        again = import_purchases(engine, code, path, enrol_missing=True, chunk=50,
                                 writer_process=True, workers=2)
    finally:
        engine.dispose()
    # What was committed is a prefix of the file, whole chunks of it, on both workers:
    # every purchase before the first missing one is in, none after it, and R0250 is not.
    assert got == list(range(168))
    assert got and {member_share(members[i % 40], 2) for i in got} == {0, 1}
    assert (again.imported, again.already) == (400 - len(got), len(got))
    for m in members:
        assert await _balance(client, code, m) == 10
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_the_largest_amount_and_trailing_zeros_are_imported(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """The maxima themselves go in (the largest amount, earning the most points one
    purchase may), as do zeros beyond the currency's minor unit (exact, so nothing is
    rounded) and a byte-order mark before the header; one point more is rejected."""
    code = await create_program(client, earn_rate="0.0001")
    path = tmp_path / "p.csv"
    path.write_bytes(
        f"\ufeff{HEADER}\nB1,Q1,{AT},9999999999999.99,,,,\n"
        f"B2,Q2,{AT},10.000,x,y,2.000000,5.00\nB3,Q3,{AT},0.50,,,,\n".encode()
    )
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, code, path, enrol_missing=True)
        with engine.begin() as conn:
            conn.execute(text("UPDATE programs SET earn_rate = '0.0002' WHERE code = :c"),
                         {"c": code})  # fmt: skip
        path.write_text(f"{HEADER}\nB1,Q4,{AT},5000000005000.00,,,,\n")
        over = import_purchases(engine, code, path)
    finally:
        engine.dispose()
    assert (report.imported, report.rejected) == (3, 0), report.rejects
    assert await _balance(client, code, "B1") == 999_999_999  # rounded down
    assert (over.imported, over.rejected) == (0, 1)
    assert over.rejects[0][1] == "points: more than 1,000,000,000 for one purchase"
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())


async def test_a_database_failure_through_the_cli_exits_2_and_a_rerun_completes(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    """A purchase the database refuses stops the import with a message and exit status 2,
    not a traceback; once the cause is gone, the same command completes it."""
    code = await create_program(client)
    path = tmp_path / "p.csv"
    path.write_text(f"{HEADER}\nF1,S1,{AT},10.00,,,,\nF1,S2,{AT},5.00,,,,\n")
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT id FROM programs WHERE code = :c"),
                               {"c": code}).scalar()  # fmt: skip
        add, drop = _refuse(engine, int(pid or 0), "S2", f"refuse_{code}")
        with engine.begin() as conn:
            conn.exec_driver_sql(add)
        try:
            status, output = _cli(db_url, path, code, tmp_path / "r.csv")
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(drop)
    finally:
        engine.dispose()
    assert status == 2 and "import stopped" in output and "Traceback" not in output
    assert await _balance(client, code, "F1") in (None, 0)  # the chunk was rolled back
    status, output = _cli(db_url, path, code, tmp_path / "r.csv")
    assert status == 0, output
    assert await _balance(client, code, "F1") == 15
    async with db.read() as session:
        assert all(not rows for rows in (await verify(session)).values())
