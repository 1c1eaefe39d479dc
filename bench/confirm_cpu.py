"""bench/confirm_cpu: CPU per confirmed basket of `habitue serve` and of PostgreSQL, under wrk.

    PYTHONPATH=$PWD/src .venv/bin/python bench/confirm_cpu.py [--rounds 3] [--seconds 6]
        [--trees /work/main/src,$PWD/src] [--members 500] [--workers 2]

bench/price's confirm run counted as CPU instead of baskets/s (no pgbench): its promotions and
members (`price._seed`), wrk at 32 connections with bench/price.lua (`BENCH_MODE=confirm`, each
run's external ids under a prefix of its own), the server's processes' CPU (its delivery worker
included) and the PostgreSQL backends' of the scratch database over the run, divided by the
confirms answered. With `--trees A,B` each round starts one server per source tree in turn
(PYTHONPATH) on the same database, so that two builds are compared in the same minutes.
Ends with `habitue ledger verify`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, run_wrk, scratch_pg, server  # noqa: E402
from price import _seed  # noqa: E402
from request_cpu import backend_seconds  # noqa: E402
from server_cpu import _tree_cpu  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trees", default="", help="comma-separated src directories to alternate")
    args = ap.parse_args()
    trees = args.trees.split(",") if args.trees else [""]
    script = Path(__file__).with_name("price.lua")
    admin = secrets.token_hex(16)
    with scratch_pg("bench_confirm_cpu") as url:
        upgrade(url)
        dbname = url.rsplit("/", 1)[1]
        key, names, run = "", "", 0
        for round_ in range(args.rounds):
            for tree in trees:
                if tree:
                    os.environ["PYTHONPATH"] = tree
                with server(url, admin, workers=args.workers) as base:
                    if not key:
                        key, members = asyncio.run(_seed(base, admin, args.members))
                        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                            fh.write("\n".join(members))
                        names = fh.name
                    os.environ.update(
                        {"BENCH_MEMBERS": names, "BENCH_KEY": key, "BENCH_MODE": "confirm"}
                    )
                    target = f"{base}/v1/programs/bench/baskets/confirm"
                    run += 1
                    os.environ["BENCH_PREFIX"] = f"w{run}-"
                    run_wrk(target, script, connections=args.connections, seconds=args.warmup)
                    run += 1
                    os.environ["BENCH_PREFIX"] = f"r{run}-"
                    cpu, pg = _tree_cpu(), backend_seconds(dbname)
                    got = run_wrk(
                        target, script, connections=args.connections, seconds=args.seconds
                    )
                    cpu = _tree_cpu() - cpu
                    after = backend_seconds(dbname)
                    pg_s = sum(t - pg.get(pid, 0) for pid, t in after.items())
                    n = max(got["requests"], 1)
                    load = Path("/proc/loadavg").read_text().split()[0]
                    print(
                        f"round {round_ + 1} {Path(tree).parent.name or 'env':<12} server "
                        f"{1000 * cpu / n:.3f} ms  PostgreSQL {1000 * pg_s / n:.3f} ms  "
                        f"{got['rps']:.0f} confirms/s  p99 {got['p99_ms']:.0f} ms  non-2xx "
                        f"{got['non2xx']:.0f} of {got['requests']:.0f}  load {load}",
                        flush=True,
                    )
        if names:
            os.unlink(names)
        verify = subprocess.run(
            [str(BIN / "habitue"), "ledger", "verify"],
            env={**os.environ, "HABITUE_DATABASE_URL": url},
            capture_output=True,
            text=True,
        )
    print("ledger verify", "ok" if verify.returncode == 0 else "BREACH")


if __name__ == "__main__":
    main()
