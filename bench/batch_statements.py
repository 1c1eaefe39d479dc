"""bench/batch_statements: statements and CPU per event of `POST /events/batch`, on PostgreSQL.

    PYTHONPATH=$PWD/src .venv/bin/python bench/batch_statements.py [--batches 3] [--profile]

A deterministic companion of bench/batch on a loaded machine: the app runs in this process
(httpx's ASGI transport, no HTTP server), posts `--batches` batches of 1,000 purchases in the
tills' shape (members by `external_id`, the till's `occurred_at`, no lines) for 200 members,
and prints the statements sent per event (by kind) and this process's CPU per event
(`time.process_time`: request parsing, validation, decide, the writes' Python; PostgreSQL's
work is not in it). With `--profile`, the functions with the most own time (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.settings import Settings  # noqa: E402

SIZE = 1000


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

            def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
                seen[statement.split(None, 1)[0].upper()] += 1

            def count_commit(_conn: Any) -> None:
                seen["COMMIT"] += 1

            engine = db.write_engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            event.listen(engine, "commit", count_commit)
            profiler = cProfile.Profile() if profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for n in range(batches):
                await batch(n)
            if profiler is not None:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            event.remove(engine, "before_cursor_execute", count)
            event.remove(engine, "commit", count_commit)
    await db.dispose()
    events = batches * SIZE
    per = {k: round(v / events, 4) for k, v in sorted(seen.items())}
    print(f"{events:,} events in {batches} batches: statements per event "
          f"{sum(v for k, v in seen.items() if k != 'COMMIT') / events:.4f} {per}")
    print(f"transactions: {seen['COMMIT']} ({events / max(seen['COMMIT'], 1):.0f} events each)")
    print(f"this process: {1e3 * cpu / events:.3f} ms CPU per event; wall {wall:.2f} s")
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
