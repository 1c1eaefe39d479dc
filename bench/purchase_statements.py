"""bench/purchase_statements: statements and time per sequential purchase, on PostgreSQL.

    PYTHONPATH=$PWD/src .venv/bin/python bench/purchase_statements.py [--purchases 150]

A deterministic companion of bench/earn on a loaded machine: the write of an ordinary purchase
must not gain statements (today: the member's read and one `WITH` statement). Run it in two
trees alternately to compare their times.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
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


async def run(url: str, purchases: int) -> None:
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    seen: list[str] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        h = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=h) as c:
            program = {"code": "pbench", "name": "B", "currency": "EUR", "timezone": "Europe/Paris"}
            (await c.post("/v1/programs", json=program)).raise_for_status()
            members = []
            for _ in range(20):
                r = await c.post("/v1/programs/pbench/members", json={})
                r.raise_for_status()
                members.append(r.json()["id"])

            async def buy(i: int) -> None:
                body = {"type": "purchase", "member": {"id": members[i % 20]},
                        "external_id": f"e{i}", "total": "12.50"}  # fmt: skip
                r = await c.post("/v1/programs/pbench/events", json=body)
                assert r.status_code == 201, r.text

            for i in range(20):  # warm up
                await buy(i)

            def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
                seen.append(statement.split(None, 1)[0].upper())

            engine = db.write_engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            for i in range(20, 40):
                await buy(i)
            event.remove(engine, "before_cursor_execute", count)
            start = time.perf_counter()
            for i in range(40, 40 + purchases):
                await buy(i)
            took = time.perf_counter() - start
    await db.dispose()
    per = {k: seen.count(k) / 20 for k in sorted(set(seen))}
    print(f"statements per sequential purchase: {sum(per.values()):.2f} {per}")
    print(f"{purchases} sequential purchases: {took:.2f} s, {1000 * took / purchases:.2f} ms each")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--purchases", type=int, default=150)
    args = ap.parse_args()
    with scratch_pg("bench_statements") as url:
        upgrade(url)
        asyncio.run(run(url, args.purchases))


if __name__ == "__main__":
    main()
