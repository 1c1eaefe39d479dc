"""bench/price_statements: statements and CPU per priced and per confirmed basket, in-process.

    PYTHONPATH=$PWD/src .venv/bin/python bench/price_statements.py [--baskets 200] [--profile]

The deterministic companion of bench/price on a loaded machine: the same 10 automatic
promotions and 2 promo codes (`bench/price.PROMOTIONS`), the same 5-line baskets with both
codes for random members, sent one after the other through the app in this process (httpx's
ASGI transport, no server, no network) on a scratch PostgreSQL database. Prints, for
`baskets/price` and `baskets/confirm`: SQL statements per request (by their first word) and
this process's CPU milliseconds per request (`time.process_time`: the app's Python work, not
PostgreSQL's); a statement sent to asyncpg straight, not through SQLAlchemy, is counted
with a star (`SELECT*`). `--profile` also prints the cProfile top functions; `--show` the first
statements measured; `--explain` runs EXPLAIN ANALYZE on each distinct read measured.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402
from price import PROMOTIONS  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.settings import Settings  # noqa: E402

SKUS = [("CAB", "furniture"), ("MUG", "kitchen"), ("TEA", "food"), ("DESK", "furniture"),
        ("LAMP", "home"), ("BREAD", "food"), ("SOAP", "home")]  # fmt: skip


def basket(rng: random.Random, member: str) -> dict[str, Any]:
    """A basket as bench/price.lua sends it."""
    lines = []
    for _ in range(5):
        sku, cat = rng.choice(SKUS)
        cents = rng.randint(100, 9000)
        unit = f"{cents // 100}.{cents % 100:02d}"
        lines.append({"sku": sku, "category": cat, "quantity": rng.randint(1, 4),
                      "unit_price": unit, "tax_rate": "0.2"})  # fmt: skip
    return {"member": {"id": member}, "codes": ["SAVE5", "TENOFF"], "lines": lines}


async def run(  # noqa: PLR0915
    url: str, baskets: int, members: int, profile: bool, show: bool, explain: bool
) -> None:
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        h = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=h) as c:
            program = {"code": "bench", "name": "B", "currency": "EUR", "timezone": "Europe/Paris"}
            (await c.post("/v1/programs", json=program)).raise_for_status()
            for body in PROMOTIONS:
                r = await c.post("/v1/programs/bench/promotions", json=body)
                assert r.status_code == 201, r.text
            ids = []
            for i in range(members):
                r = await c.post("/v1/programs/bench/members", json={"external_id": f"m{i}"})
                r.raise_for_status()
                ids.append(r.json()["id"])
            r = await c.post(
                "/v1/programs/bench/api-keys", json={"name": "till", "scopes": ["events:write"]}
            )
            r.raise_for_status()
            c.headers["Authorization"] = f"Bearer {r.json()['key']}"
            rng = random.Random(21)
            engines = {db.write_engine.sync_engine}
            read_engine = getattr(db, "read_engine", None)
            if read_engine is not None:
                engines.add(read_engine.sync_engine)
            seen: Counter[str] = Counter()

            shown: list[str] = []

            reads: dict[str, tuple[str, Any]] = {}

            def count(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
                seen[statement.split(None, 1)[0].upper()] += 1
                if explain and statement.lstrip().upper().startswith("SELECT"):
                    reads.setdefault(statement, (statement, params))
                if show and len(shown) < 40:
                    shown.append(" ".join(statement.split())[:150])

            # Statements sent to asyncpg straight (`db.driver_connection`: the live
            # promotions, a price's member), which SQLAlchemy's events do not see: counted
            # apart, as "SELECT*".
            fetch = asyncpg.Connection.fetch
            fetchrow = asyncpg.Connection.fetchrow

            async def straight(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                seen[query.split(None, 1)[0].upper() + "*"] += 1
                return await fetch(self, query, *args, **kw)

            async def straight_row(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                seen[query.split(None, 1)[0].upper() + "*"] += 1
                return await fetchrow(self, query, *args, **kw)

            for mode in ("price", "confirm"):
                n = 0

                async def one(mode: str = mode) -> None:
                    nonlocal n
                    n += 1
                    body = basket(rng, rng.choice(ids))
                    if mode == "confirm":
                        body["external_id"] = f"b{n}"
                    r = await c.post(f"/v1/programs/bench/baskets/{mode}", json=body)
                    assert r.status_code == 200, r.text

                for _ in range(30):  # warm up: caches, prepared statements, the pool
                    await one()
                seen.clear()
                for engine in engines:
                    event.listen(engine, "before_cursor_execute", count)
                asyncpg.Connection.fetch = straight  # type: ignore[method-assign]
                asyncpg.Connection.fetchrow = straight_row  # type: ignore[method-assign]
                prof = cProfile.Profile() if profile else None
                cpu, wall = time.process_time(), time.perf_counter()
                if prof is not None:
                    prof.enable()
                for _ in range(baskets):
                    await one()
                if prof is not None:
                    prof.disable()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                for engine in engines:
                    event.remove(engine, "before_cursor_execute", count)
                asyncpg.Connection.fetch = fetch  # type: ignore[method-assign]
                asyncpg.Connection.fetchrow = fetchrow  # type: ignore[method-assign]
                if show:
                    print(f"{mode}: the statements of the first requests measured")
                    print("\n".join(f"  {t}" for t in shown))
                    shown.clear()
                total = sum(seen.values())
                kinds = {k: round(v / baskets, 2) for k, v in sorted(seen.items())}
                print(f"{mode:<8} statements/request {total / baskets:.2f} {kinds}")
                print(f"{mode:<8} CPU ms/request {1000 * cpu / baskets:.2f}  "
                      f"(wall {1000 * wall / baskets:.2f} ms, {baskets} sequential)")  # fmt: skip
                if prof is not None:
                    out = io.StringIO()
                    stats = pstats.Stats(prof, stream=out)
                    stats.sort_stats("tottime").print_stats(40)
                    stats.sort_stats("cumulative").print_stats("habitue", 40)
                    print(out.getvalue())
        if explain:
            async with db.write_engine.connect() as conn:
                for statement, params in reads.values():
                    plan = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                    )
                    lines = [r[0] for r in plan.all()]
                    print(" ".join(statement.split())[:110])
                    print("    " + lines[0][:110])
                    print("    " + next(x for x in lines if "Execution Time" in x).strip())
    await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baskets", type=int, default=200)
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--show", action="store_true", help="print the first statements measured")
    ap.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each read measured")
    args = ap.parse_args()
    with scratch_pg("bench_price_statements") as url:
        upgrade(url)
        asyncio.run(run(url, args.baskets, args.members, args.profile, args.show, args.explain))


if __name__ == "__main__":
    main()
