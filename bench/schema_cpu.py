"""bench/schema_cpu: what a schema change saves PostgreSQL per request, measured in pairs.

    PYTHONPATH=$PWD/src .venv/bin/python bench/schema_cpu.py --drop NAME[,NAME…]
        [--rounds 100] [--shapes id,nolines,lines3] [--at-once 20] [--pool 22]

Two scratch PostgreSQL databases migrated alike, the second with the named constraints or
indexes removed (`bench/request_cpu.drop`); one app per database in this process, called as
bench/request_cpu calls it (`--at-once` concurrent requests of a shape, a scoped till key).
Each round goes to one database and then the other (the order swapped every round), so both see
the same minutes of a shared machine's load; per database it sums the CPU its PostgreSQL
backends used over its rounds (the scheduler's nanoseconds, from /proc) and the MultiXacts
the server created during them (server-wide: other databases' work counts too). Prints, per
shape, both figures per request for each database and the change, and the per-round ratio's
median (each round's figure is noisy; the sums are what to quote).

Each app's pool holds `--pool` connections (default 22, above the 20 requests of a round),
so that no connection is opened or closed mid-run and the figures are the steady state's.
With 32 requests on the server's default pool of 20 (as bench/request_cpu runs), the
requests past 20 open connections that are closed after use: a new backend loads its caches
and plans its statements again, foreign-key checks included, and PostgreSQL's figures were
up to 3.5 times the steady ones. (Two pools of 40 exceed a shared server's 100 connections.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PG_ADMIN, scratch_pg  # noqa: E402
from request_cpu import backend_seconds, drop, seed_till  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.settings import Settings  # noqa: E402

SHAPES = {"id": ("id", 1), "nolines": ("id", 0), "lines3": ("id", 3), "external_id": (
    "external_id", 1), "card": ("card_number", 1)}  # fmt: skip


async def run(urls: list[str], rounds: int, shapes: list[str], pool: int, at_once: int) -> None:
    admin = await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True)

    async def next_multixact() -> int:
        """The server's next MultiXact id (`mxid_age` reads it from shared memory)."""
        row = await (await admin.execute("SELECT mxid_age('1'::xid)")).fetchone()
        assert row is not None
        return int(row[0])

    async with AsyncExitStack() as stack:
        stack.push_async_callback(admin.close)
        targets: list[dict[str, Any]] = []
        for url in urls:
            settings = Settings(
                env="test", database_url=url, admin_key="k", scheduler=False, worker=False
            )
            db = Database(url, pool_size=pool)
            stack.push_async_callback(db.dispose)
            app = create_app(settings, db=db)
            await stack.enter_async_context(app.router.lifespan_context(app))
            members, till = await seed_till(app, "rc", at_once)
            targets.append({"db": url.rsplit("/", 1)[1], "members": members, "till": till})
        sent = 0

        async def one(target: dict[str, Any], member: dict[str, Any], by: str, lines: int) -> None:
            nonlocal sent
            sent += 1
            body: dict[str, Any] = {
                "type": "purchase", "member": {by: member[by]}, "external_id": f"e{sent}",
                "total": f"{12.5 * max(lines, 1):.2f}",
                "lines": [{"sku": f"C{n}", "category": "coffee", "quantity": 1,
                           "unit_price": "12.50"} for n in range(lines)],
            }  # fmt: skip
            if not lines:
                del body["lines"]
            status, answer = await target["till"].post("/v1/programs/rc/events", body)
            assert status == 201, answer

        async def round_of(target: dict[str, Any], by: str, lines: int) -> None:
            await asyncio.gather(*(one(target, m, by, lines) for m in target["members"]))

        for shape in shapes:
            by, lines = SHAPES[shape]
            for _ in range(4):  # warm up
                for target in targets:
                    await round_of(target, by, lines)
            pg = [0.0] * len(targets)
            mx = [0] * len(targets)
            per_round: list[list[float]] = [[] for _ in targets]
            seen: list[set[int]] = [set() for _ in targets]
            wall = time.perf_counter()
            for r in range(rounds):
                order = range(len(targets)) if r % 2 == 0 else reversed(range(len(targets)))
                for i in order:
                    target = targets[i]
                    before, m0 = backend_seconds(target["db"]), await next_multixact()
                    await round_of(target, by, lines)
                    after, m1 = backend_seconds(target["db"]), await next_multixact()
                    cpu = sum(t - before.get(pid, 0.0) for pid, t in after.items())
                    pg[i] += cpu
                    seen[i].update(after)
                    mx[i] += m1 - m0
                    per_round[i].append(cpu)
            n = rounds * at_once
            ratios = [b / a for a, b in zip(per_round[0], per_round[1], strict=True) if a > 0]
            print(
                f"{shape:<12} PostgreSQL ms/request: as is {1000 * pg[0] / n:6.3f}"
                f"  changed {1000 * pg[1] / n:6.3f} ({100 * (pg[1] / pg[0] - 1):+.1f} %,"
                f" median of rounds {100 * (statistics.median(ratios) - 1):+.1f} %)"
                f"  MultiXacts/request: as is {mx[0] / n:.3f}  changed {mx[1] / n:.3f}"
                f"  ({n} requests each, {time.perf_counter() - wall:.0f} s,"
                f" backends seen {len(seen[0])} and {len(seen[1])})"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--shapes", default="id,nolines,lines3")
    ap.add_argument("--drop", required=True, help="constraints or indexes the second lacks")
    ap.add_argument("--at-once", type=int, default=20, help="concurrent requests of a round")
    ap.add_argument("--pool", type=int, default=22, help="connections in each app's pool")
    args = ap.parse_args()
    with scratch_pg("bench_schema_cpu") as base, scratch_pg("bench_schema_cpu") as changed:
        upgrade(base)
        upgrade(changed)
        drop(changed, args.drop.split(","))
        asyncio.run(
            run([base, changed], args.rounds, args.shapes.split(","), args.pool, args.at_once)
        )


if __name__ == "__main__":
    main()
