"""bench/plan_cpu: the delivery worker's CPU per outbox event planned, in-process, no sending.

    PYTHONPATH=$PWD/src .venv/bin/python bench/plan_cpu.py [--against OTHER/src] [--rounds 3]
        [--events 10000] [--trickle 20] [--steps 150]

On a scratch PostgreSQL database: one program, and outbox events as purchases write them
(`event.recorded` with its effects, then `points.earned`, for distinct members), that the
worker's planner (`planning.plan`, as each worker step calls it) turns into deliveries. The
figure is the CPU per event planned: this process's (`time.process_time`, the planner only:
the events are written before the clock starts) plus the PostgreSQL backends serving the
database (from /proc/PID/schedstat: the WAL writer and checkpointer not counted). Two mixes:

- `none`: no endpoint, no template: the events call for nothing (bench/earn's case);
- `hook`: one endpoint subscribed to `points.earned`: half of the events call for a delivery.

and two shapes: `backlog` (`--events` events written, then planned, 1,000 a step, as after
an import) and `trickle` (`--trickle` events written then planned, `--steps` times, as the
worker beside a server under a purchase load). Prints the least and the median over
`--rounds` rounds of µs per event.

`--against OTHER/src` runs the same measure with the code of another tree (e.g. an export of
main: `git archive main src | tar -x -C /tmp/base`) in a subprocess, alternating with this
tree round by round, each on a scratch database of its own, and prints both with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def backend_ns(dbname: str) -> int:
    """CPU (ns on a CPU, from /proc/PID/schedstat) of the PostgreSQL backends serving `dbname`
    so far: finer than the clock ticks of /proc/PID/stat, for steps of a few milliseconds."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
            if not title.startswith(b"postgres: ") or f" {dbname} ".encode() not in title:
                continue
            total += int((proc / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return total


def _purchase_rows(program_id: int, n: int) -> list[dict[str, Any]]:
    """`n` outbox rows as `n / 2` purchases write them (the payloads' shape and size)."""
    from habitue.messaging import outbox

    rows = []
    for i in range(n // 2):
        member = str(uuid.uuid4())
        event = str(uuid.uuid4())
        rows.append(
            outbox.outbox_row(
                program_id,
                "event.recorded",
                member,
                {"event_id": event, "type": "purchase", "external_id": f"t{i}",
                 "total": "12.50", "points": 12, "pending": False,
                 "effects": [{"kind": "earn", "points": 12, "rule": "base",
                              "account": "available"}]},
            )
        )  # fmt: skip
        rows.append(
            outbox.outbox_row(
                program_id, "points.earned", member,
                {"event_id": event, "points": 12, "pending": False, "balance": 12 + i},
            )
        )  # fmt: skip
    return rows


async def _measure(
    url: str, mix: str, shape: str, args: argparse.Namespace
) -> tuple[float, float]:
    """µs of CPU per event planned, one round: (this process, the database's backends)."""
    from habitue.db import Database
    from habitue.messaging import outbox, planning, webhooks
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ProgramCreate

    dbname = url.rsplit("/", 1)[1]
    db = Database(url, group_commit=False)
    try:
        code = f"p{uuid.uuid4().hex[:8]}"
        data = ProgramCreate(code=code, name="Plan", currency="EUR", timezone="UTC")
        await db.write(lambda s: programs_service.create_program(s, data))
        async with db.read() as s:
            info = await programs_service.get_info(s, code)
        if mix == "hook":
            await db.write(
                lambda s: webhooks.create(
                    s, info, url="https://example.com/hook", events=["points.earned"],
                    description=None, production=False,
                )
            )  # fmt: skip
        warm = _purchase_rows(info.id, 20)  # the statements compiled, the caches filled
        await db.write(lambda s: outbox.emit_many(s, warm))
        while await planning.plan(db):  # the cursor, and what came before
            pass
        planned = cpu = 0.0
        backend = 0
        batches = (
            [args.events] if shape == "backlog" else [args.trickle] * args.steps
        )
        for n in batches:
            rows = _purchase_rows(info.id, n)
            await db.write(lambda s, rows=rows: outbox.emit_many(s, rows))
            b0 = backend_ns(dbname)  # reading /proc is not the planner's CPU
            t0 = time.process_time()
            if shape == "trickle":  # one plan a worker step, as the worker does
                planned += await planning.plan(db)
            else:
                while done := await planning.plan(db):
                    planned += done
            cpu += time.process_time() - t0
            backend += backend_ns(dbname) - b0
        assert planned == sum(batches), (planned, sum(batches))
        return cpu / planned * 1e6, backend / 1e3 / planned
    finally:
        await db.dispose()


MIXES = ("none", "hook")
SHAPES = ("backlog", "trickle")


def _one(args: argparse.Namespace) -> dict[str, float]:
    """One round of every mix and shape, with this interpreter's `habitue`."""
    from habitue.migrate import upgrade

    out: dict[str, float] = {}
    with scratch_pg("h6_outbox_plan") as url:
        upgrade(url)
        for mix in MIXES:
            for shape in SHAPES:
                process, backends = asyncio.run(_measure(url, mix, shape, args))
                out[f"{mix}/{shape}"] = process + backends
                out[f"{mix}/{shape} pg"] = backends
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--trickle", type=int, default=20)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--against", help="another tree's src directory, measured alternately")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(_one(args)))
        return
    trees = {"this": str(ROOT / "src")}
    if args.against:
        trees = {"against": str(Path(args.against).resolve()), **trees}
    results: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree, src in trees.items():
            cmd = [sys.executable, __file__, "--once", "--events", str(args.events),
                   "--trickle", str(args.trickle), "--steps", str(args.steps)]  # fmt: skip
            out = subprocess.run(  # noqa: S603 (our own interpreter and script)
                cmd, env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True,
                check=True,
            ).stdout  # fmt: skip
            results[tree].append(json.loads(out.strip().splitlines()[-1]))
    print(f"µs of CPU (process + PostgreSQL backends) per event planned; {args.rounds} rounds,"
          f" load {os.getloadavg()[0]:.1f}")  # fmt: skip
    header = f"{'mix/shape':<14}" + "".join(f"{t + ' least':>14}{t + ' median':>15}" for t in trees)
    print(header + ("   ratio (least, median)" if args.against else ""))
    for key in results["this"][0]:
        line = f"{key:<14}"
        figures = {}
        for tree in trees:
            values = [r[key] for r in results[tree]]
            figures[tree] = (min(values), statistics.median(values))
            line += f"{figures[tree][0]:>14.1f}{figures[tree][1]:>15.1f}"
        if args.against:
            a, b = figures["against"], figures["this"]
            line += f"   {b[0] / a[0]:.2f} x, {b[1] / a[1]:.2f} x"
        print(line)


if __name__ == "__main__":
    main()
