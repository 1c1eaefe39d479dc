"""bench/price_paths: the server's CPU per basket with the till's fast paths on and off, in one
process, alternated round by round.

    PYTHONPATH=$PWD/src .venv/bin/python bench/price_paths.py [--shape price] [--rounds 60]
        [--configs "all fast paths"]

On a machine shared with other work, two runs of one tree differ by tens of per cent; the same
process switching a path on and off between rounds (in a shuffled order) compares them under
the same load. As `bench/request_cpu.py`: bench/price's baskets (5 lines, 2 codes, 10
promotions) sent to the ASGI app in this process, `--at-once` at a time (16: one server
worker's share of bench/price's 32 connections), on a scratch PostgreSQL database; the figure
is this process's CPU (`time.process_time`) per request. The paths (each patched off alone,
then all together, the reference):

- `quote_event`: the purchase quoted (price) and recorded (confirm) from the net amounts,
  not through the event body (`promotions.basket.quote_event`);
- `answer_json`: the price's answer written straight to JSON, not through `BasketRead`;
- `read_statements`: the price's reads without a transaction (PostgreSQL);
- `merged insert`: a confirm's promotion uses and confirmation in one statement;
- `live straight`: the live promotions' query sent to asyncpg straight, not through the
  session (`promotions.service._driver`; h5/price);
- `live cache`: the live promotions kept in the process under the stamp read with the
  member, not read at every basket (`promotions.service.live`; h6/price);
- `member straight`: a price's member read sent to asyncpg straight, not through the
  session (`promotions.till._member_driver`; h6/price);
- `grouped confirm`: a grouped batch reads its confirms' previous answers and members in
  one statement each and writes their purchases, uses and confirmations at its end
  (`promotions.till._grouping`; h7/confirm); `late confirm`: only the writes at its end.
- `pooled member`: that read on a connection of the pool checked out for it alone, not on
  the session's (`promotions.till._member_connection`, `db.pooled_driver`; h7/price).

`--configs` runs only the configurations named (comma-separated): `--configs "all fast
paths"` with `PYTHONPATH` set to one tree's `src`, then another's, compares two trees (the
script runs on any tree that has the paths above).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402
from price_statements import basket  # noqa: E402
from request_cpu import seed_till  # noqa: E402

from habitue.api import create_app  # noqa: E402
from habitue.db import Database  # noqa: E402
from habitue.migrate import upgrade  # noqa: E402
from habitue.promotions import basket as basket_shapes  # noqa: E402
from habitue.promotions import service as promotions_service  # noqa: E402
from habitue.promotions import till  # noqa: E402
from habitue.settings import Settings  # noqa: E402

CONFIGS: dict[str, set[str]] = {
    "all fast paths": set(),
    "no quote_event": {"quote"},
    "no answer_json": {"json"},
    "no read_statements": {"statements"},
    "no merged insert": {"merge"},
    "no live straight": {"straight"},
    "no live cache": {"cache"},
    "no member straight": {"member"},
    "no grouped confirm": {"group"},
    "no late confirm": {"late"},
    "no pooled member": {"pooled"},
    "reference (none)": {
        "quote", "json", "statements", "merge", "straight", "cache", "member", "group",
        "pooled",
    },
}


def _reference_json(*args: Any, **kw: Any) -> bytes:
    return basket_shapes.read_answer(*args, **kw).model_dump_json().encode()


async def run(url: str, shape: str, rounds: int, at_once: int, configs: list[str]) -> None:
    settings = Settings(env="test", database_url=url, admin_key="k", scheduler=False, worker=False)
    db = Database(url)
    app = create_app(settings, db=db)
    read_statements = Database.read_statements
    dialect_name = till.dialect_name
    driver = promotions_service._driver
    member_reads = promotions_service.MEMBER_READS
    member_driver = till._member_driver
    grouping = till._grouping

    def alone(*_: Any) -> tuple[tuple[Any, ...], bool]:
        return (), False

    def not_late(*args: Any) -> tuple[tuple[Any, ...], bool]:
        return grouping(*args)[0], False

    member_connection = getattr(till, "_member_connection", None)  # h7/price on

    @asynccontextmanager
    async def session_connection(session: Any) -> AsyncIterator[Any]:
        yield await till._member_driver(session)

    async def no_driver(_session: Any) -> None:
        return None

    def switch(off: set[str]) -> None:
        till.quote_event = (lambda *_: None) if "quote" in off else basket_shapes.quote_event
        till.answer_json = _reference_json if "json" in off else basket_shapes.answer_json
        Database.read_statements = Database.read if "statements" in off else read_statements
        till.dialect_name = (lambda _: "other") if "merge" in off else dialect_name
        promotions_service._driver = no_driver if "straight" in off else driver  # type: ignore[assignment]
        promotions_service.MEMBER_READS = () if "cache" in off else member_reads  # type: ignore[assignment]
        till._member_driver = no_driver if "member" in off else member_driver  # type: ignore[assignment]
        till._grouping = (  # type: ignore[assignment]
            alone if "group" in off else not_late if "late" in off else grouping
        )
        if member_connection is not None:
            pooled = not off & {"member", "pooled"}
            till._member_connection = member_connection if pooled else session_connection  # type: ignore[assignment]

    async with app.router.lifespan_context(app):
        members, client = await seed_till(app, "pp", at_once)
        rng = random.Random(21)
        sent = 0

        async def one(member: dict[str, Any]) -> None:
            nonlocal sent
            sent += 1
            body = basket(rng, member["id"])
            if shape == "confirm":
                body["external_id"] = f"b{sent}"
            status, answer = await client.post(f"/v1/programs/pp/baskets/{shape}", body)
            assert status == 200, answer

        async def round_() -> None:
            await asyncio.gather(*(one(m) for m in members))

        for _ in range(4):  # warm up
            await round_()
        cpu: dict[str, list[float]] = {name: [] for name in configs}
        names = list(configs)
        for _ in range(rounds):
            random.shuffle(names)
            for name in names:
                switch(CONFIGS[name])
                await round_()  # the switch's first round: caches, prepared statements
                start = time.process_time()
                await round_()
                cpu[name].append((time.process_time() - start) / at_once)
        switch(set())
        for name, values in cpu.items():
            print(
                f"{shape:<8} {name:<20} CPU ms/request:"
                f" median {1000 * statistics.median(values):6.3f}"
                f"  mean {1000 * statistics.mean(values):6.3f}  min {1000 * min(values):6.3f}"
            )
    await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["price", "confirm"], default="price")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--at-once", type=int, default=16)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    args = ap.parse_args()
    configs = [name.strip() for name in args.configs.split(",")]
    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; known: {list(CONFIGS)}")
    with scratch_pg("bench_price_paths") as url:
        upgrade(url)
        asyncio.run(run(url, args.shape, args.rounds, args.at_once, configs))


if __name__ == "__main__":
    main()
