"""bench/batch_statements: statements and CPU per event of `POST /events/batch`, on PostgreSQL.

    PYTHONPATH=$PWD/src .venv/bin/python bench/batch_statements.py [--batches 3] [--profile]

A deterministic companion of bench/batch on a loaded machine: the app runs in this process
(httpx's ASGI transport, no HTTP server), posts `--batches` batches of 1,000 purchases in the
tills' shape (members by `external_id`, the till's `occurred_at`, no lines) for 200 members,
and prints the statements sent per event (by kind) and this process's CPU per event
(`time.process_time`: request parsing, validation, decide, the writes' Python; PostgreSQL's
work is not in it), the CPU of the PostgreSQL backends serving its scratch database, the rows
each table got per event (pg_stat_user_tables) and the WAL written per event (the whole
server's). The process collects garbage as the server does in production (`gc.freeze()`, a
larger first generation). With `--profile`, the functions with the most own time (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402
from request_cpu import backend_seconds  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.settings import Settings  # noqa: E402

SIZE = 1000

_TABLES = """
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables
"""


def _pg_state(url: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """The scratch database's tables' row counters (written, updated, of which HOT, deleted)
    and the server's WAL position (the whole server's: other databases' writes count too)."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute(_TABLES).fetchall()
        lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert lsn is not None
    return {r[0]: tuple(r[1:]) for r in rows}, int(lsn[0])


def _indexes(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute(
            "SELECT tablename, count(*) FROM pg_indexes WHERE tablename = ANY(%s) "
            "GROUP BY tablename", (tables,)
        ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


async def run(url: str, batches: int, profile: bool, profile_out: str | None = None) -> None:
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    seen: Counter[str] = Counter()
    when = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        h = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=h,
                                     timeout=300) as c:
            program = {"code": "bbench", "name": "B", "currency": "EUR", "timezone": "Europe/Paris"}
            (await c.post("/v1/programs", json=program)).raise_for_status()
            for i in range(200):
                r = await c.post("/v1/programs/bbench/members", json={"external_id": f"m{i}"})
                r.raise_for_status()

            async def batch(n: int) -> None:
                events = [{"type": "purchase", "member": {"external_id": f"m{i % 200}"},
                           "external_id": f"b{n}-{i}", "occurred_at": when, "total": "12.50"}
                          for i in range(SIZE)]  # fmt: skip
                r = await c.post("/v1/programs/bbench/events/batch", json={"events": events})
                r.raise_for_status()
                assert all(s["status"] == 201 for s in r.json()["results"]), r.text[:500]

            await batch(-1)  # warm up
            # As `habitue serve` and `habitue consume` collect in production (`api.create_app`'s
            # lifespan): without it the collector's full passes over the start-up's objects
            # took 0.1-0.15 ms an event here, which the server does not pay.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
            # Backends report their tables' counters when they end: a new pool from here on.
            await db.read_engine.dispose()
            await asyncio.sleep(0.5)
            tables0, wal0 = _pg_state(url)
            dbname = url.rsplit("/", 1)[1]
            backends0 = backend_seconds(dbname)

            def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
                seen[statement.split(None, 1)[0].upper()] += 1

            def count_commit(_conn: Any) -> None:
                seen["COMMIT"] += 1

            engine = db.write_engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            event.listen(engine, "commit", count_commit)
            # The statements sent to asyncpg straight (`db.driver_connection`, where a tree
            # does): SQLAlchemy sees none. Those with parameters (not the adapter's BEGIN).
            straight_calls = {n: getattr(asyncpg.Connection, n) for n in ("execute", "fetch")}

            def counting(original: Any) -> Any:
                async def counted(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                    if args:
                        count(None, None, query)
                    return await original(self, query, *args, **kw)

                return counted

            for name, original in straight_calls.items():
                setattr(asyncpg.Connection, name, counting(original))
            profiler = cProfile.Profile() if profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for n in range(batches):
                await batch(n)
            if profiler is not None:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            backends = backend_seconds(dbname)
            pg_cpu = sum(t - backends0.get(pid, 0.0) for pid, t in backends.items())
            event.remove(engine, "before_cursor_execute", count)
            event.remove(engine, "commit", count_commit)
            for name, original in straight_calls.items():
                setattr(asyncpg.Connection, name, original)
    await db.dispose()
    await asyncio.sleep(0.5)
    tables1, wal1 = _pg_state(url)
    events = batches * SIZE
    per = {k: round(v / events, 4) for k, v in sorted(seen.items())}
    print(f"{events:,} events in {batches} batches: statements per event "
          f"{sum(v for k, v in seen.items() if k != 'COMMIT') / events:.4f} {per}")
    print(f"transactions: {seen['COMMIT']} ({events / max(seen['COMMIT'], 1):.0f} events each)")
    print(f"this process: {1e3 * cpu / events:.3f} ms CPU per event; wall {wall:.2f} s")
    print(f"PostgreSQL backends: {1e3 * pg_cpu / events:.3f} ms CPU per event; "
          f"WAL {(wal1 - wal0) / events:,.0f} bytes per event (the whole server's)")
    written = {
        name: tuple(a - b for a, b in zip(row, tables0.get(name, (0, 0, 0, 0)), strict=True))
        for name, row in tables1.items()
    }
    written = {k: v for k, v in written.items() if any(v)}
    indexes = _indexes(url, list(written))
    print("rows per event (inserted, updated, of which HOT, deleted; indexes of the table):")
    for name, (ins, upd, hot, dele) in sorted(written.items()):
        print(f"  {name:24} {ins / events:6.3f} {upd / events:6.3f} {hot / events:6.3f} "
              f"{dele / events:6.3f}  {indexes.get(name, 0)} indexes")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        if profile_out:
            profiler.dump_stats(profile_out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-out", help="also write the cProfile stats to this file")
    args = ap.parse_args()
    with scratch_pg("bench_batch_statements") as url:
        upgrade(url)
        asyncio.run(run(url, args.batches, args.profile or bool(args.profile_out),
                        args.profile_out))


if __name__ == "__main__":
    main()
