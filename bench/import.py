"""bench/import: `habitue import purchases` of 1,000,000 purchases on SQLite and PostgreSQL.

    .venv/bin/python bench/import.py [--rows 1000000] [--members 100000]

Generates a CSV (seeded), creates a fresh database of each kind, imports with
--enrol-missing through the same code as the CLI, then imports the same file again (it must
credit nothing), and prints rows/s for both runs and the ledger check. Beside them, a
reference measured in the same run shows how fast the machine bulk-loads at that moment
(runs on this VM differ by a fifth and more): `pgbench -i -s 10` on PostgreSQL (1,000,000 accounts
by COPY, then vacuum and primary keys), and on SQLite the same 1,000,000 rows inserted by one
`executemany` into a table with a primary key. It also prints the machine's busy CPU time
per imported purchase (all processes, from /proc/stat), steadier from run to run than rows/s
on a shared VM.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Probe, checkpoint, pgbench_init_rows_per_s, scratch_pg  # noqa: E402

from habitue.db import Database, make_sync_engine  # noqa: E402
from habitue.events.importer import CHUNK, ImportReport, import_purchases  # noqa: E402
from habitue.ledger.verify import verify  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.programs import service as programs_service  # noqa: E402
from habitue.programs.schemas import ProgramCreate  # noqa: E402


def make_csv(path: Path, rows: int, members: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=365)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        for i in range(rows):
            at = start + timedelta(seconds=i * 365 * 86400 // rows)
            cents = rng.randint(100, 9000)
            w.writerow([f"M{rng.randrange(members):07d}", f"R{i:08d}", at.isoformat(),
                        f"{cents // 100}.{cents % 100:02d}"])


async def _program(url: str) -> None:
    db = Database(url)
    try:
        await db.write(lambda s: programs_service.create_program(s, ProgramCreate(
            code="bench", name="Bench", currency="EUR", timezone="Europe/Paris",
            expiry={"policy": "days", "days": 365})))
    finally:
        await db.dispose()


async def _verify(url: str) -> bool:
    db = Database(url)
    try:
        async with db.read() as session:
            breaches = await verify(session)
        return all(not rows for rows in breaches.values())
    finally:
        await db.dispose()


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (user, system, interrupts), from
    `/proc/stat`: every process of the import counts (the workers, PostgreSQL's backends,
    the kernel's writeback), as does anything else running."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _import(url: str, path: Path, chunk: int) -> ImportReport:
    engine = make_sync_engine(url)
    try:
        return import_purchases(engine, "bench", path, enrol_missing=True, chunk=chunk)
    finally:
        engine.dispose()


def run(url: str, path: Path, rows: int, chunk: int) -> tuple[float, float, bool, float, Probe]:
    """rows/s of the import and of its re-run, whether the ledger verifies, the
    machine's busy CPU µs per purchase during the import, and the import's own memory and
    CPU (`Probe`: its processes, and on PostgreSQL its backends)."""
    upgrade(url)
    asyncio.run(_program(url))
    if url.startswith("postgresql"):
        checkpoint()  # the schema just created is written out before the clock starts
    engine = make_sync_engine(url)
    database = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
    cpu = busy_cpu_seconds()
    # The import runs in a fresh process, as `habitue import purchases` does: its memory is
    # then the import's, not what this process held before.
    spawn = multiprocessing.get_context("spawn")
    with Probe(pg_database=database, include_self=False) as probe, spawn.Pool(1) as pool:
        t = time.perf_counter()
        first = pool.apply(_import, (url, path, chunk))
        t1 = time.perf_counter() - t
    cpu = busy_cpu_seconds() - cpu
    assert first.imported == rows, first
    assert first.rejected == 0, first
    t = time.perf_counter()
    again = import_purchases(engine, "bench", path, enrol_missing=True, chunk=chunk)
    t2 = time.perf_counter() - t
    assert (again.imported, again.already, again.points) == (0, rows, 0), again
    engine.dispose()
    return rows / t1, rows / t2, asyncio.run(_verify(url)), cpu / rows * 1e6, probe


def sqlite_reference(path: Path, rows: int = 1_000_000) -> float:
    """Rows/s of pgbench's accounts table loaded into SQLite: one transaction, one
    `executemany`, the same journal settings as the import."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE accounts (aid INTEGER PRIMARY KEY, bid INTEGER, "
                 "abalance INTEGER, filler CHAR(84))")
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO accounts VALUES (?, ?, 0, ?)",
                     ((i, i // 100_000 + 1, " " * 84) for i in range(1, rows + 1)))
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return rows / elapsed


def settle() -> None:
    """Write out what earlier steps left in the page cache (the CSV, the other store's
    files), so that the kernel does not write it back during the next measurement."""
    os.sync()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--only", choices=["sqlite", "postgres"])
    ap.add_argument("--chunk", type=int, default=CHUNK, help="purchases per transaction")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "purchases.csv"
        make_csv(path, args.rows, args.members)
        results = {}
        # Each reference runs just before its import, so that neither pays for the
        # other's writes still being flushed.
        if args.only != "postgres":
            settle()
            ref = sqlite_reference(Path(tmp) / "reference.db")
            results["SQLite"] = (*run(f"sqlite:///{tmp}/bench.db", path, args.rows, args.chunk),
                                 ref)
            # The SQLite files are done with: removed, their pages still waiting to be
            # written are dropped instead of written while PostgreSQL is measured.
            for leftover in Path(tmp).glob("*.db*"):
                leftover.unlink()
        if args.only != "sqlite":
            settle()
            checkpoint()
            ref = pgbench_init_rows_per_s()
            with scratch_pg("bench_import") as url:
                results["PostgreSQL"] = (*run(url, path, args.rows, args.chunk), ref)
    print(f"{args.rows:,} purchases, {args.members:,} members enrolled on the way")
    print(f"{'store':<12}{'import rows/s':>15}{'re-run rows/s':>15}  ledger verify"
          f"{'reference rows/s':>18}{'import/ref':>12}{'CPU µs/row':>12}{'own µs/row':>12}"
          f"{'peak MB':>9}{'largest':>9}")
    for name, (first, again, ok, cpu, probe, ref) in results.items():
        print(f"{name:<12}{first:>15,.0f}{again:>15,.0f}  {'ok' if ok else 'BREACH':<13}"
              f"{ref:>18,.0f}{first / ref:>12.3f}{cpu:>12.1f}"
              f"{probe.cpu / args.rows * 1e6:>12.1f}{probe.peak_rss / 2**20:>9,.0f}"
              f"{probe.largest / 2**20:>9,.0f}")
    print("CPU µs/row: the machine's busy CPU time during the import, per purchase "
          f"({os.cpu_count()} cores); own µs/row: the import's processes and (PostgreSQL) "
          "its backends only")
    print("peak MB: the sum of the peak resident memory of the import's processes "
          f"(the importing process and its workers, chunk {args.chunk:,}); largest: the "
          "largest one")
    print("targets: >= 30,000 rows/s on both; peak memory of all processes <= 1,024 MB")


if __name__ == "__main__":
    main()
