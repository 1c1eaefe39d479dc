"""bench/statements: CPU per statement on the request path's drivers, on PostgreSQL.

    .venv/bin/python bench/statements.py [--n 3000]

One connection, one transaction, a loop of insert + update + select on a scratch table, timed
in process CPU: through an SQLAlchemy `AsyncSession` (as the rooms run them) on asyncpg and on
psycopg, and on asyncpg directly. This is the cost the earn and redeem benchmarks pay about
twelve times per request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402

META = MetaData()
PROBE = Table(
    "probe", META, Column("id", BigInteger, primary_key=True), Column("a", BigInteger),
    Column("b", String(20)),
)  # fmt: skip


async def _session_loop(url: str, driver: str, n: int) -> float:
    engine = create_async_engine(url.replace("postgresql+psycopg", f"postgresql+{driver}"))
    async with engine.begin() as conn:
        await conn.run_sync(META.drop_all)
        await conn.run_sync(META.create_all)
    ins, sel = insert(PROBE), select(PROBE.c.a).where(PROBE.c.id == 0)
    upd = update(PROBE).where(PROBE.c.id == 0).values(a=PROBE.c.a + 1)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await session.execute(ins, {"id": 0, "a": 0, "b": "x"})
            start = time.process_time()
            for i in range(1, n + 1):
                await session.execute(ins, {"id": i, "a": i, "b": "x"})
                await session.execute(upd)
                (await session.execute(sel)).scalar_one()
            return (time.process_time() - start) / (3 * n) * 1e6
    finally:
        await engine.dispose()


async def _asyncpg_loop(url: str, n: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+psycopg", "postgresql"))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS probe (id bigint PRIMARY KEY, a bigint, b text)"
        )
        async with conn.transaction():
            await conn.execute("TRUNCATE probe")
            await conn.execute("INSERT INTO probe VALUES (0, 0, 'x')")
            start = time.process_time()
            for i in range(1, n + 1):
                await conn.execute("INSERT INTO probe (id, a, b) VALUES ($1, $2, $3)", i, i, "x")
                await conn.execute("UPDATE probe SET a = a + 1 WHERE id = 0")
                await conn.fetchval("SELECT a FROM probe WHERE id = 0")
            return (time.process_time() - start) / (3 * n) * 1e6
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    with scratch_pg("bench_statements") as url:
        rows = [
            ("AsyncSession on psycopg", asyncio.run(_session_loop(url, "psycopg", args.n))),
            ("AsyncSession on asyncpg", asyncio.run(_session_loop(url, "asyncpg", args.n))),
            ("asyncpg directly", asyncio.run(_asyncpg_loop(url, args.n))),
        ]
    print(f"{'path':<28}{'CPU per statement':>20}")
    for name, us in rows:
        print(f"{name:<28}{us:>17.0f} µs")


if __name__ == "__main__":
    main()
