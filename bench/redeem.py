"""Benchmark redemptions through the API on PostgreSQL, against pgbench TPC-B in the same run.

    .venv/bin/python bench/redeem.py [--members 500] [--duration 20] [--connections 32]
                                     [--no-group-commit] [--scale 10]

Creates two scratch databases on the local PostgreSQL (dropped at the end), starts
`habitue serve --workers 2` with production settings (group commit on, as the server's
default), seeds members with points and a voucher
reward (unlimited stock, each redemption spends points, writes the redemption and issues a
coupon), drives
`POST /members/{id}/redemptions` with `wrk` at 32 connections from a Lua script, then runs
`pgbench -i -s SCALE` and `pgbench -c 32 -j 2 -T 20` (TPC-B), and prints redemptions/s,
p50/p99 latency, pgbench tps and the ratio (target ≥ 0.2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
HABITUE = ROOT / ".venv" / "bin" / "habitue"
PG_ADMIN = os.environ.get("HABITUE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_KEY = "bench-" + secrets.token_hex(16)

LUA = r"""
local ids = {%(ids)s}
local n = #ids
local headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer %(key)s"}
local body = '{"reward": "coffee"}'
math.randomseed(os.time())
request = function()
  local id = ids[math.random(1, n)]
  return wrk.format("POST", "/v1/programs/%(program)s/members/" .. id .. "/redemptions",
                    headers, body)
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"non2xx": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


async def seed(base: str, members: int, points: int) -> tuple[str, list[str]]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as c:
        code = "bench" + secrets.token_hex(3)
        r = await c.post("/v1/programs", json={"code": code, "name": "Bench", "currency": "EUR",
                                               "timezone": "UTC"})  # fmt: skip
        r.raise_for_status()
        r = await c.post(f"/v1/programs/{code}/rewards", json={
            "code": "coffee", "kind": "voucher", "value": "3.00", "cost_points": 10,
            "coupon_days": 30, "texts": {"en": {"name": "A coffee"}}})  # fmt: skip
        r.raise_for_status()
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> str:
            async with sem:
                m = await c.post(f"/v1/programs/{code}/members", json={"external_id": f"m{i}"})
                m.raise_for_status()
                mid = str(m.json()["id"])
                a = await c.post(f"/v1/programs/{code}/members/{mid}/adjustments",
                                 json={"points": points, "reason": "bench"})  # fmt: skip
                a.raise_for_status()
                return mid

        ids = await asyncio.gather(*[one(i) for i in range(members)])
    return code, list(ids)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its worker processes (they share its process group)."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The parent is gone; give its workers a moment, then make sure of them.
        time.sleep(0.5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def run_pgbench(db: str, scale: int, clients: int, duration: int) -> float:
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), url], check=True,
                   capture_output=True)  # fmt: skip
    out = subprocess.run(
        ["pgbench", "-c", str(clients), "-j", "2", "-T", str(duration), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    m = re.search(r"tps = ([0-9.]+)", out)
    if m is None:
        raise SystemExit(f"cannot read pgbench output:\n{out}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10,
                    help="pgbench -i scale (TPC-B branches); 10, as in bench/earn.py")
    ap.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="HABITUE_GROUP_COMMIT for the server, on as in its defaults "
        "(--no-group-commit: one transaction per request)",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (scripts/apt-packages.txt; make system-deps)")
    tag = secrets.token_hex(4)
    app_db, pg_db = f"bench_redeem_{tag}", f"bench_pgbench_{tag}"
    admin(f'CREATE DATABASE "{app_db}"')
    admin(f'CREATE DATABASE "{pg_db}"')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HABITUE_DATABASE_URL":
           f"postgresql+psycopg://postgres@127.0.0.1:5432/{app_db}",
           "HABITUE_ADMIN_KEY": ADMIN_KEY, "HABITUE_SCHEDULER": "false",
           "HABITUE_ENV": "production", "HABITUE_HMAC_KEY": secrets.token_hex(32),
           "HABITUE_PUBLIC_URL": base,
           "HABITUE_GROUP_COMMIT": "true" if args.group_commit else "false"}  # fmt: skip
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([str(HABITUE), "migrate"], env=env, check=True, capture_output=True)
        proc = subprocess.Popen(
            [str(HABITUE), "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the workers stop with it
        )  # fmt: skip
        wait_ready(base, proc)
        t0 = time.perf_counter()
        program, ids = asyncio.run(seed(base, args.members, args.points))
        seeded = time.perf_counter() - t0
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write(LUA % {"ids": ",".join(f'"{i}"' for i in ids), "key": ADMIN_KEY,
                            "program": program})  # fmt: skip
            script = fh.name
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
             "-s", script, base],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        os.unlink(script)
        if os.environ.get("BENCH_DEBUG"):
            print(out)
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        res: dict[str, Any] = json.loads(line[len("RESULT ") :])
        ok = res["requests"] - res["non2xx"] - res["socket_errors"]
        rps = ok / (res["duration_us"] / 1e6)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{app_db}") as conn:
            # One statement, one snapshot: requests still in flight when wrk stops may commit
            # between two separate counts.
            counted, coupons = conn.execute(
                "SELECT (SELECT count(*) FROM redemptions), (SELECT count(*) FROM coupons)"
            ).fetchone() or (0, 0)
    finally:
        if proc is not None:
            stop_group(proc)
    try:
        tps = run_pgbench(pg_db, args.scale, args.connections, args.duration)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')
        admin(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
    ratio = rps / tps
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"host: {os.cpu_count()} CPUs, load average {' '.join(load)} (shared machine?)")
    print(f"seeded {args.members:,} members in {seeded:.1f} s; server workers {args.workers}, "
          f"group commit {'on' if args.group_commit else 'off'}")  # fmt: skip
    print(f"{'measure':<34}{'value':>14}")
    print(f"{'redemptions/s (2xx, wrk -c' + str(args.connections) + ')':<34}{rps:>14,.0f}")
    print(f"{'  p50 latency (ms)':<34}{res['p50_us'] / 1000:>14.1f}")
    print(f"{'  p99 latency (ms)':<34}{res['p99_us'] / 1000:>14.1f}")
    print(f"{'  non-2xx / socket errors':<34}{res['non2xx']:>7} / {res['socket_errors']:<5}")
    print(f"{'  redemptions / coupons in db':<34}{counted:>7,} / {coupons:,}")
    print(f"{'pgbench TPC-B tps (-s ' + str(args.scale) + ', -c' + str(args.connections) + ')':<34}"
          f"{tps:>14,.0f}")  # fmt: skip
    print(f"{'ratio (target >= 0.2)':<34}{ratio:>14.2f}  {'PASS' if ratio >= 0.2 else 'FAIL'}")
    sys.exit(0 if ratio >= 0.2 else 1)


if __name__ == "__main__":
    main()
