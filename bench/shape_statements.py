"""bench/shape_statements: statements per purchase, per request shape, when 32 arrive at once.

    PYTHONPATH=$PWD/src .venv/bin/python bench/shape_statements.py [--rounds 5] [--profile SHAPE]

The deterministic companion of `bench/earn.py --shapes`: the group committer reads the members
of a batch in one query and sends their writes in one round trip; a shape that does not get
that path (a member named by external id or card, the till's time, no lines, an
Idempotency-Key) shows here as more statements per purchase, whatever the machine's load.
This process's CPU per purchase (`time.process_time`: the app's Python work and httpx's,
not PostgreSQL's) is printed next to it; `--profile "by id, no time, 1 line"` cProfiles one
shape. Counted with SQLAlchemy's `before_cursor_execute` (a pipelined executemany counts once) on a
scratch PostgreSQL database: 5 rounds of 32 concurrent purchases per shape, by 32 members
whose counters exist already.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from dataclasses import dataclass
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

ROUNDS, AT_ONCE = 5, 32


@dataclass(frozen=True)
class Shape:
    by: str = "id"
    past: bool = False
    lines: bool = True
    idempotency_key: bool = False

    def label(self) -> str:
        return (
            f"by {self.by}, {'till time' if self.past else 'no time'}, "
            f"{'1 line' if self.lines else 'no lines'}{', Idempotency-Key' * self.idempotency_key}"
        )


SHAPES = [
    Shape(),
    Shape(by="external_id"),
    Shape(by="card_number"),
    Shape(past=True),
    Shape(lines=False),
    Shape(idempotency_key=True),
    Shape(by="external_id", past=True, lines=False),
]


async def run(url: str, profile: str | None = None, rounds: int = ROUNDS) -> None:
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    seen: list[str] = []
    sent = 0
    prof: cProfile.Profile | None = None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        h = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=h) as c:
            program = {"code": "pb", "name": "B", "currency": "EUR", "timezone": "Europe/Paris"}
            (await c.post("/v1/programs", json=program)).raise_for_status()
            members = []
            for i in range(AT_ONCE):
                r = await c.post("/v1/programs/pb/members", json={"external_id": f"x{i}"})
                r.raise_for_status()
                members.append(r.json())

            async def buy(shape: Shape, member: dict[str, Any]) -> None:
                nonlocal sent
                sent += 1
                body: dict[str, Any] = {
                    "type": "purchase",
                    "member": {shape.by: member[shape.by]},
                    "external_id": f"e{sent}",
                    "total": "12.50",
                }
                if shape.past:
                    at = datetime.now(UTC) - timedelta(days=30, seconds=sent)
                    body["occurred_at"] = at.isoformat()
                if shape.lines:
                    body["lines"] = [
                        {"sku": "C1", "category": "coffee", "quantity": 1, "unit_price": "12.50"}
                    ]
                headers = {"Idempotency-Key": f"k{sent}"} if shape.idempotency_key else {}
                r = await c.post("/v1/programs/pb/events", json=body, headers=headers)
                assert r.status_code == 201, r.text

            def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
                seen.append(statement.split(None, 1)[0].upper())

            engine = db.write_engine.sync_engine
            n = rounds * AT_ONCE
            for shape in SHAPES:
                await asyncio.gather(*(buy(shape, m) for m in members))  # warm up
                seen.clear()
                event.listen(engine, "before_cursor_execute", count)
                start, cpu = time.perf_counter(), time.process_time()
                if profile is not None and shape.label() == profile:
                    prof = cProfile.Profile()
                    prof.enable()
                for _ in range(rounds):
                    await asyncio.gather(*(buy(shape, m) for m in members))
                if prof is not None:
                    prof.disable()
                took, cpu = time.perf_counter() - start, time.process_time() - cpu
                event.remove(engine, "before_cursor_execute", count)
                kinds = {k: round(seen.count(k) / n, 2) for k in sorted(set(seen))}
                print(
                    f"{shape.label():50} {len(seen) / n:5.2f} statements/purchase {kinds}"
                    f"  ({1000 * took / n:.1f} ms/purchase in-process,"
                    f" CPU {1000 * cpu / n:.2f} ms)"
                )
                if prof is not None:
                    out = io.StringIO()
                    stats = pstats.Stats(prof, stream=out)
                    stats.sort_stats("tottime").print_stats(35)
                    stats.sort_stats("cumulative").print_stats("habitue|starlette|fastapi", 40)
                    print(out.getvalue())
                    prof = None
    await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", metavar="SHAPE", help="cProfile the shape of this label")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of 32 per shape")
    args = ap.parse_args()
    with scratch_pg("bench_shapes") as url:
        upgrade(url)
        asyncio.run(run(url, args.profile, args.rounds))


if __name__ == "__main__":
    main()
