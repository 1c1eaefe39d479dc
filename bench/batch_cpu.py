"""bench/batch_cpu: CPU per event of `habitue serve` and PostgreSQL under a batch load.

    PYTHONPATH=$PWD/src .venv/bin/python bench/batch_cpu.py [--seconds 8] [--rounds 3]
        [--trees /work/main/src,$PWD/src] [--by external_id] [--past] [--members 1000]

bench/batch's load without its pgbench run: `habitue serve` (production settings, 2 workers)
on a fresh scratch database per run, 1,000 members, 4 clients posting batches of 1,000
purchases (bench/batch's bodies) for `--seconds`; the CPU the server's processes and the
PostgreSQL backends serving its database used over the load (from /proc) is divided by the
events accepted. Each run checks that every accepted event is credited once (the members'
balances against the events' points). With `--trees A,B` each round runs one server per
source tree in turn (PYTHONPATH), so two builds are compared alternately in the same minutes;
the least and the median over the rounds are printed per tree. On a shared machine events/s
wander with the load; the CPU per event much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_pg, server  # noqa: E402
from batch import _credited, _drive, _events_points, _seed  # noqa: E402
from request_cpu import backend_seconds  # noqa: E402
from server_cpu import _tree_cpu  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402


def _run(args: Any, tree: str) -> tuple[float, float, int, float]:
    """One server of `tree` under the load: (server µs, PostgreSQL µs per event, events,
    events/s)."""
    if tree:
        os.environ["PYTHONPATH"] = tree
    admin = secrets.token_hex(32)
    with scratch_pg("bench_batch_cpu") as url:
        upgrade(url)
        dbname = url.rsplit("/", 1)[1]
        with server(url, admin, workers=args.workers) as base:
            key, members = asyncio.run(_seed(base, admin, args.members))
            cpu0, pg0 = _tree_cpu(), backend_seconds(dbname)
            got = asyncio.run(_drive(base, key, members, args))
            cpu = _tree_cpu() - cpu0
            pg = sum(t - pg0.get(pid, 0.0) for pid, t in backend_seconds(dbname).items())
            count, points = _events_points(url)
            credited = asyncio.run(_credited(base, admin, members))
        if not got["retry_ok"] or credited != points or count < got["events"]:
            raise SystemExit(f"{tree}: not credited once ({count} events, {points} points, "
                             f"{credited} credited, retry {got['retry_ok']})")
    events = got["events"]
    return 1e6 * cpu / events, 1e6 * pg / events, events, events / got["elapsed"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--by", choices=["id", "external_id", "card_number"], default="external_id")
    ap.add_argument("--past", action="store_true", help="occurred_at a month back")
    ap.add_argument("--trees", default="", help="comma-separated src directories to alternate")
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t] or [""]
    runs: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for n in range(args.rounds):
        for tree in trees:
            server_us, pg_us, events, rate = _run(args, tree)
            runs[tree].append((server_us, pg_us))
            print(f"round {n + 1} {tree or 'this tree'}: {events:,} events, {rate:,.0f}/s; "
                  f"CPU per event: server {server_us:.0f} µs, PostgreSQL {pg_us:.0f} µs, "
                  f"both {server_us + pg_us:.0f} µs", flush=True)
    for tree, got in runs.items():
        both = [s + p for s, p in got]
        print(f"{tree or 'this tree'}: both least {min(both):.0f} median "
              f"{statistics.median(both):.0f} µs; server least {min(s for s, _ in got):.0f} "
              f"median {statistics.median(s for s, _ in got):.0f}; PostgreSQL least "
              f"{min(p for _, p in got):.0f} median {statistics.median(p for _, p in got):.0f}")


if __name__ == "__main__":
    main()
