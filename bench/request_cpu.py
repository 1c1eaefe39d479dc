"""bench/request_cpu: the server's CPU per request, per route and shape, in-process, no client.

    PYTHONPATH=$PWD/src .venv/bin/python bench/request_cpu.py [--rounds 20] [--profile SHAPE]
        [--shapes id,idempotency] [--at-once 32] [--repeat 1]
        [--drop fk_events_program_id_programs,...]

The app is called as an ASGI server calls it (a scope, a `receive` that hands over the body,
a `send` that keeps the answer), so the figure is this process's CPU (`time.process_time`) for
the server's side alone: no HTTP client in the process, no network; PostgreSQL's CPU is
another process's and not counted. On a scratch PostgreSQL database, with a scoped till key
(`events:write`) as bench/earn and bench/price use, each shape sends `--rounds` rounds of 32
concurrent requests after four rounds of warm-up:

- `POST /events`, a purchase with one line, the member named by `id`, by `external_id`, by
  `card_number`, and by `id` with an `Idempotency-Key` (bench/earn --shapes' shapes); by `id`
  with no lines (`nolines`) and with three (`lines3`);
- `POST /baskets/price` and `/baskets/confirm`, bench/price's baskets (5 lines, 2 codes, 10
  promotions).

Prints the mean, the median and the least CPU per request of a round: on a loaded machine
(other processes taking turns on the cores) the mean wanders by tens of per cent between runs
of one build, the median and the least much less; compare two trees alternately. Next to it,
the CPU the PostgreSQL backends serving the scratch database used per request over the shape's
rounds (from /proc, the scheduler's nanoseconds; the WAL writer and checkpointer not
counted), and the MultiXacts the server's PostgreSQL created per request (`mxid_age`: the
whole server's, so other databases' transactions count too; row locks taken by several
transactions at once, such as foreign-key checks of one parent row). `--drop` names
constraints or indexes removed from the scratch database after its migrations, to measure
what the schema costs. `--profile SHAPE` (`id`, `external_id`, `card`, `nolines`, `lines3`,
`idempotency`, `price`, `confirm`) prints cProfile's top functions; `--shapes id,idempotency`
runs only those shapes; `--repeat N` runs them N times, alternated, and prints the least and
median over all the runs (two shapes compared in the same minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PG_ADMIN, scratch_pg  # noqa: E402
from price import PROMOTIONS  # noqa: E402
from price_statements import basket  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.settings import Settings  # noqa: E402

AT_ONCE = 32


TICKS = os.sysconf("SC_CLK_TCK")


def backend_seconds(dbname: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `dbname`, by pid (from /proc: the
    backends' titles name their database; {} where there is no /proc). The scheduler's run
    time (`schedstat`, nanoseconds) where the kernel keeps it: user + system time in clock
    ticks (`stat`) is sampled 100 times a second, so 20 backends' few seconds over a run
    carry an error of several per cent."""
    found: dict[int, float] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
            if not title.startswith(b"postgres: ") or f" {dbname} ".encode() not in title:
                continue
            try:
                found[int(proc.name)] = int((proc / "schedstat").read_text().split()[0]) / 1e9
                continue
            except (OSError, IndexError, ValueError):
                pass
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def next_multixact() -> int:
    """The server's next MultiXact id, as it is now (`mxid_age` reads it from shared memory;
    pg_control_checkpoint() has it only as of the last checkpoint)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT mxid_age('1'::xid)").fetchone()
    assert row is not None
    return int(row[0])


def drop(url: str, names: list[str]) -> None:
    """Remove the named constraints (`fk_…`) and indexes from the database at `url`."""
    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            row = conn.execute(
                "SELECT conrelid::regclass::text FROM pg_constraint WHERE conname = %s", (name,)
            ).fetchone()
            if row is not None:
                conn.execute(f'ALTER TABLE {row[0]} DROP CONSTRAINT "{name}"')
            elif conn.execute("SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'i'",
                              (name,)).fetchone():
                conn.execute(f'DROP INDEX "{name}"')
            else:
                raise SystemExit(f"--drop: no constraint or index named {name}")


class Client:
    """Calls the ASGI app directly, as a server would."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        raw = orjson.dumps(body)
        head = [
            (b"host", b"t"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"authorization", f"Bearer {self.key}".encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": head, "client": ("127.0.0.1", 1234),
            "server": ("t", 80), "state": {},
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        payload = b"".join(chunks)
        return status, orjson.loads(payload) if payload else None


async def seed_till(app: Any, code: str, members: int) -> tuple[list[dict[str, Any]], Client]:
    """A program `code` with bench/price's promotions, `members` members (external ids x0,
    x1, …) and a till's scoped key: the members' answers and the till's client."""
    admin = Client(app, "k")
    program = {"code": code, "name": "B", "currency": "EUR", "timezone": "Europe/Paris"}
    status, answer = await admin.post("/v1/programs", program)
    assert status == 201, answer
    for promotion in PROMOTIONS:
        status, answer = await admin.post(f"/v1/programs/{code}/promotions", promotion)
        assert status == 201, answer
    enrolled = []
    for i in range(members):
        status, answer = await admin.post(f"/v1/programs/{code}/members", {"external_id": f"x{i}"})
        assert status == 201, answer
        enrolled.append(answer)
    status, answer = await admin.post(
        f"/v1/programs/{code}/api-keys", {"name": "till", "scopes": ["events:write"]}
    )
    assert status == 201, answer
    return enrolled, Client(app, answer["key"])


def _count_declined() -> list[int]:
    """A counter of the requests the lean routes hand to FastAPI's (a cold cache, say)."""
    from habitue import lean

    count = [0]
    decline = lean.LeanRoutes._decline

    async def declining(route: Any, *args: Any) -> None:
        count[0] += 1
        await decline(route, *args)

    lean.LeanRoutes._decline = declining  # type: ignore[method-assign]
    return count


async def run(
    url: str,
    rounds: int,
    profile: str | None,
    only: list[str] | None = None,
    at_once: int = AT_ONCE,
    repeat: int = 1,
) -> None:
    dbname = url.rsplit("/", 1)[1]
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    declined = _count_declined()
    async with app.router.lifespan_context(app):
        members, till = await seed_till(app, "rc", at_once)
        rng = random.Random(21)
        sent = 0

        def purchase(
            by: str, idempotency: bool, lines: int = 1
        ) -> Callable[[dict[str, Any]], Any]:
            async def one(member: dict[str, Any]) -> None:
                nonlocal sent
                sent += 1
                body: dict[str, Any] = {
                    "type": "purchase", "member": {by: member[by]}, "external_id": f"e{sent}",
                    "total": f"{12.5 * max(lines, 1):.2f}",
                }  # fmt: skip
                if lines:
                    body["lines"] = [
                        {"sku": f"C{n}", "category": "coffee", "quantity": 1,
                         "unit_price": "12.50"}
                        for n in range(lines)
                    ]  # fmt: skip
                headers = {"Idempotency-Key": f"k{sent}"} if idempotency else None
                status, answer = await till.post("/v1/programs/rc/events", body, headers)
                assert status == 201, answer

            return one

        def at_till(mode: str) -> Callable[[dict[str, Any]], Any]:
            async def one(member: dict[str, Any]) -> None:
                nonlocal sent
                sent += 1
                body = basket(rng, member["id"])
                if mode == "confirm":
                    body["external_id"] = f"b{sent}"
                status, answer = await till.post(f"/v1/programs/rc/baskets/{mode}", body)
                assert status == 200, answer

            return one

        shapes = {
            "id": purchase("id", False),
            "external_id": purchase("external_id", False),
            "card": purchase("card_number", False),
            "nolines": purchase("id", False, lines=0),
            "lines3": purchase("id", False, lines=3),
            "idempotency": purchase("id", True),
            "price": at_till("price"),
            "confirm": at_till("confirm"),
        }
        chosen = [name for name in shapes if only is None or name in only]
        for name in chosen:
            for _ in range(4):  # warm up
                await asyncio.gather(*(shapes[name](m) for m in members))
        totals: dict[str, tuple[list[float], list[float]]] = {}
        for name in chosen * repeat:
            one = shapes[name]
            prof = cProfile.Profile() if profile == name else None
            per_round = []
            backends = backend_seconds(dbname)
            multixacts = next_multixact()
            declined[0] = 0
            wall = time.perf_counter()
            if prof is not None:
                prof.enable()
            for _ in range(rounds):
                cpu = time.process_time()
                await asyncio.gather(*(one(m) for m in members))
                per_round.append((time.process_time() - cpu) / at_once)
            if prof is not None:
                prof.disable()
            wall = time.perf_counter() - wall
            n = rounds * at_once
            after = backend_seconds(dbname)
            multixacts = next_multixact() - multixacts
            pg = sum(t - backends.get(pid, 0.0) for pid, t in after.items())
            kept = totals.setdefault(name, ([], []))
            kept[0].extend(per_round)
            kept[1].append(pg / n)
            print(
                f"{name:<12} CPU ms/request: mean {1000 * sum(per_round) / rounds:6.3f}"
                f"  median {1000 * statistics.median(per_round):6.3f}"
                f"  min {1000 * min(per_round):6.3f}"
                f"  PostgreSQL {1000 * pg / n:6.3f}"
                f"  MultiXacts/request {multixacts / n:.3f}"
                f"  (wall {1000 * wall / n:.2f} ms, {n} requests, {at_once} at once;"
                f" {declined[0]} handed to FastAPI's route)"
            )
            if prof is not None:
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats("tottime").print_stats(45)
                stats.sort_stats("cumulative").print_stats(60)
                print(out.getvalue())
        if repeat > 1:
            print(f"\nover {repeat} alternated runs: server CPU ms/request of a round, "
                  "PostgreSQL ms/request of a run")
            for name, (cpu_rounds, pg_runs) in totals.items():
                print(f"{name:<12} server least {1000 * min(cpu_rounds):6.3f}"
                      f"  median {1000 * statistics.median(cpu_rounds):6.3f}"
                      f"  PostgreSQL least {1000 * min(pg_runs):6.3f}"
                      f"  median {1000 * statistics.median(pg_runs):6.3f}")
    await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--profile", metavar="SHAPE")
    ap.add_argument("--shapes", help="comma-separated shapes to run (default: all)")
    ap.add_argument(
        "--at-once",
        type=int,
        default=AT_ONCE,
        help="concurrent requests (above the pool's 20, connections are opened and closed)",
    )
    ap.add_argument(
        "--drop",
        help="comma-separated constraints or indexes removed after the migrations",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the shapes this many times, alternated, and print least and median over all",
    )
    args = ap.parse_args()
    only = args.shapes.split(",") if args.shapes else None
    with scratch_pg("bench_request_cpu") as url:
        upgrade(url)
        if args.drop:
            drop(url, args.drop.split(","))
        asyncio.run(run(url, args.rounds, args.profile, only, args.at_once, args.repeat))


if __name__ == "__main__":
    main()
