"""bench/server_cpu: CPU per purchase of `habitue serve` and of PostgreSQL, under wrk.

    PYTHONPATH=$PWD/src .venv/bin/python bench/server_cpu.py [--seconds 6] [--rounds 3]
        [--warmup 2] [--shapes plain,idem] [--trees /work/main/src,$PWD/src] [--workers 2]

What bench/earn measures as events/s, counted as CPU: the server (`habitue serve` with its
production settings, its delivery worker included) is driven by wrk at 32 connections with
bench/earn's shapes (`plain`: the member by id, no time, one line; `idem`: the same with an
`Idempotency-Key`), and the CPU its processes and the PostgreSQL backends serving its database
used over the run (from /proc) is divided by the requests answered. On a shared machine the
events/s wander with the load; the CPU per request much less.

With `--trees A,B` each round starts one server per source tree in turn (PYTHONPATH), on the
same database, so that two builds are compared alternately in the same minutes; the least and
the median over the rounds are printed per tree and shape.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, _children, _cpu_seconds, run_wrk, scratch_pg, server  # noqa: E402
from earn import _enrol_by_import, _member_names, _seed  # noqa: E402
from request_cpu import backend_seconds  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402

SHAPES = {"plain": "0", "idem": "1"}


def _tree_cpu() -> float:
    """CPU seconds of this process's descendants (the server and its workers)."""
    total, todo = 0.0, _children(os.getpid())
    while todo:
        pid = todo.pop()
        total += _cpu_seconds(pid)
        todo.extend(_children(pid))
    return total


def _spy(directory: str, name: str, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy (collapsed stacks, non-blocking) on each server worker for `seconds`."""
    if not directory:
        return []
    pids, todo = [], _children(os.getpid())
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if not kids:
            pids.append(pid)
        todo.extend(kids)
    return [
        subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--nonblocking", "-r", "250", "-d", str(seconds),
             "-f", "raw", "-o", f"{directory}/{name}-{pid}.txt", "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of wrk before measuring")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shapes", default="plain,idem")
    ap.add_argument("--spy", default="", help="a directory for py-spy's stacks of each worker")
    ap.add_argument("--trees", default="", help="comma-separated src directories to alternate")
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t] or [""]
    shapes = args.shapes.split(",")
    script = Path(__file__).with_name("shapes.lua")
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    admin = secrets.token_hex(16)
    with scratch_pg("bench_server_cpu") as url:
        upgrade(url)
        dbname = url.rsplit("/", 1)[1]
        key = ""
        members = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        run = 0
        for round_ in range(args.rounds):
            for tree in trees:
                if tree:
                    os.environ["PYTHONPATH"] = tree
                with server(url, admin, workers=args.workers) as base:
                    if not key:
                        key, _ = asyncio.run(_seed(base, admin, 0, False))
                        _enrol_by_import(url, 1000)
                        members.write("\n".join(_member_names(url)))
                        members.close()
                    run += 1
                    os.environ.update({
                        "BENCH_PREFIX": f"w{run}x", "BENCH_MEMBERS": members.name,
                        "BENCH_KEY": key, "BENCH_BY": "id", "BENCH_TIME": "now",
                        "BENCH_LINES": "1", "BENCH_IDEM": "1",
                    })  # fmt: skip
                    run_wrk(base + "/v1/programs/bench/events", script,  # warm-up
                            connections=args.connections, seconds=args.warmup)
                    for shape in shapes:
                        run += 1
                        os.environ.update({
                            "BENCH_PREFIX": f"r{run}x", "BENCH_MEMBERS": members.name,
                            "BENCH_KEY": key, "BENCH_BY": "id", "BENCH_TIME": "now",
                            "BENCH_LINES": "1", "BENCH_IDEM": SHAPES[shape],
                        })  # fmt: skip
                        spies = _spy(args.spy, f"{run}-{shape}", args.seconds)
                        cpu, pg = _tree_cpu(), backend_seconds(dbname)
                        got = run_wrk(base + "/v1/programs/bench/events", script,
                                      connections=args.connections, seconds=args.seconds)
                        cpu = _tree_cpu() - cpu
                        for spy in spies:
                            spy.wait()
                        after = backend_seconds(dbname)
                        pg_s = sum(t - pg.get(pid, 0) for pid, t in after.items())
                        n = max(got["requests"], 1)
                        row = (1000 * cpu / n, 1000 * pg_s / n, got["rps"])
                        figures.setdefault((tree, shape), []).append(row)
                        print(f"round {round_ + 1} {Path(tree).parent.name or 'env':<10} "
                              f"{shape:<6} server {row[0]:.3f} ms/req  PostgreSQL "
                              f"{row[1]:.3f} ms/req  {got['rps']:.0f} req/s  "
                              f"non-2xx {got['non2xx']:.0f}", flush=True)
        os.unlink(members.name)
    print(f"\n{'tree':<12}{'shape':<7}{'server least':>13}{'median':>8}"
          f"{'PG least':>10}{'median':>8}{'req/s med':>10}")
    for (tree, shape), rows in figures.items():
        srv, pg, rps = zip(*rows, strict=True)
        print(f"{Path(tree).parent.name or 'env':<12}{shape:<7}{min(srv):>13.3f}"
              f"{statistics.median(srv):>8.3f}{min(pg):>10.3f}{statistics.median(pg):>8.3f}"
              f"{statistics.median(rps):>10.0f}")


if __name__ == "__main__":
    main()
