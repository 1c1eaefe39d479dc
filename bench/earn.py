"""bench/earn: purchases/s through the API on PostgreSQL vs pgbench TPC-B on the same server.

    .venv/bin/python bench/earn.py [--seconds 20] [--connections 32] [--rules]

Starts `habitue serve` (production settings, 2 workers) on a scratch database, enrols
members, drives purchase events with unique ids through wrk at 32 connections, then runs
pgbench TPC-B with 32 clients on the same PostgreSQL, and prints the figures and the ratio.
With --rules the program gets 50 active rules (the rules benchmark's set) first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import pgbench_tps, run_wrk, scratch_pg, server  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402


async def _seed(base: str, admin: str, members: int, with_rules: bool) -> tuple[str, list[str]]:
    h = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as c:
        r = await c.post("/v1/programs", json={"code": "bench", "name": "Bench",
                                               "currency": "EUR", "timezone": "Europe/Paris"})
        r.raise_for_status()
        if with_rules:
            from rules import bench_rules  # bench/rules.py: the rules benchmark's 50 rules

            # The 2 % pastry lottery issues coupons of this reward (a coupon rule must name one).
            r = await c.post("/v1/programs/bench/rewards", json={
                "code": "free-pastry", "kind": "free_product", "sku": "PAS-002",
                "cost_points": 80, "texts": {"en": {"name": "A pastry"}}})  # fmt: skip
            r.raise_for_status()
            for spec in bench_rules():
                r = await c.post(
                    "/v1/programs/bench/rules", json=spec.model_dump(mode="json", exclude_none=True)
                )
                if r.status_code != 201:
                    raise RuntimeError(r.text)
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with sem:
                r = await c.post("/v1/programs/bench/members", json={"external_id": f"m{i}"})
                r.raise_for_status()
                member_id: str = r.json()["id"]
                return member_id

        ids = await asyncio.gather(*[one(i) for i in range(members)])
        r = await c.post("/v1/programs/bench/api-keys",
                         json={"name": "till", "scopes": ["events:write"]})
        r.raise_for_status()
        return r.json()["key"], list(ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rules", action="store_true", help="50 active rules")
    args = ap.parse_args()
    admin = secrets.token_hex(16)
    with scratch_pg("bench_earn") as url:
        upgrade(url)
        with server(url, admin, workers=args.workers) as base:
            key, members = asyncio.run(_seed(base, admin, args.members, args.rules))
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                fh.write("\n".join(members))
            os.environ["BENCH_MEMBERS"] = fh.name
            os.environ["BENCH_KEY"] = key
            script = Path(__file__).with_name("earn.lua")
            api = run_wrk(base + "/v1/programs/bench/events", script,
                          connections=args.connections, seconds=args.seconds)
            os.unlink(fh.name)
        from habitue.cli import app  # noqa: F401  (import check only)
    tps = pgbench_tps(clients=args.connections, seconds=args.seconds)
    ratio = api["rps"] / tps
    print(f"{'rules':<28}{'50 active' if args.rules else 'base rate only'}")
    print(f"{'API purchases/s':<28}{api['rps']:.0f}")
    print(f"{'API p50 / p99 (ms)':<28}{api['p50_ms']:.1f} / {api['p99_ms']:.1f}")
    print(f"{'API non-2xx responses':<28}{api['non2xx']:.0f} of {api['requests']:.0f}")
    print(f"{'pgbench TPC-B tps (32 cl.)':<28}{tps:.0f}")
    print(f"{'ratio API / pgbench':<28}{ratio:.2f}  (target >= 0.25)")


if __name__ == "__main__":
    main()
