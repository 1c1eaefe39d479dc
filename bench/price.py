"""bench/price: baskets priced and confirmed through the API vs pgbench TPC-B, same run.

    .venv/bin/python bench/price.py [--seconds 20] [--connections 32] [--members 2000]

Starts `habitue serve` (production settings, 2 workers) on a scratch PostgreSQL database,
creates 10 live automatic promotions (conditions in CEL over the basket and the member, line,
order and unit effects, a best-of class and caps) and 2 promo codes, enrols members, then
drives `POST /baskets/price` (5-line baskets, 2 codes, a random member) and
`POST /baskets/confirm` (the same with a unique external_id: records the purchase, counts
the promotions' uses, earns on the net) with wrk, runs `habitue ledger verify` on what the
confirms wrote, then runs pgbench TPC-B with as many clients on the same PostgreSQL, and prints
each figure and its ratio to pgbench (targets: price >= 0.5, confirm >= 0.25).
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
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, pgbench_tps, run_wrk, scratch_pg, server  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402

PROMOTIONS: list[dict[str, Any]] = [
    {"code": "b3g1-mugs", "effect": {"type": "buy_x_get_y", "buy": 3, "get": 1},
     "line_condition": "line.sku == 'MUG'"},
    {"code": "tea-20", "effect": {"type": "lines_percent", "percent": "20"},
     "line_condition": "line.sku == 'TEA'", "stacking": "best_of", "stacking_class": "tea"},
    {"code": "tea-1", "effect": {"type": "lines_amount", "amount": "1.00"},
     "line_condition": "line.sku == 'TEA'", "stacking": "best_of", "stacking_class": "tea"},
    {"code": "cheapest-furniture", "effect": {"type": "cheapest", "percent": "50"},
     "line_condition": "line.category == 'furniture'",
     "condition": "basket.lines.filter(l, l.category == 'furniture').size() >= 3"},
    {"code": "desk-lamp", "effect": {"type": "bundle_price", "amount": "99.00",
                                     "bundle": [{"sku": "DESK"}, {"sku": "LAMP"}]}},
    {"code": "big-basket", "effect": {"type": "order_amount", "amount": "15.00"},
     "condition": "basket.total_excl >= 300.0", "priority": -1},
    {"code": "gold-5", "effect": {"type": "order_percent", "percent": "5"},
     "condition": "member.tier == 'gold'"},
    {"code": "weekend-bread", "effect": {"type": "lines_percent", "percent": "10"},
     "line_condition": "line.category == 'food'", "condition": "now.weekday >= 5"},
    {"code": "soap-free", "effect": {"type": "free_item", "sku": "SOAP", "quantity": 1},
     "condition": "basket.total >= 100.0", "max_per_order": 1, "per_member_limit": 1000000},
    {"code": "loyal", "effect": {"type": "order_percent", "percent": "2"},
     "condition": "member.tenure_days >= 0", "cap": "3.00"},
    {"code": "save5", "trigger": "code", "promo_code": "SAVE5",
     "effect": {"type": "order_amount", "amount": "5.00"}, "min_basket": "20.00"},
    {"code": "tenoff", "trigger": "code", "promo_code": "TENOFF",
     "effect": {"type": "order_percent", "percent": "10"}, "cap": "30.00"},
]  # fmt: skip


async def _seed(base: str, admin: str, members: int) -> tuple[str, list[str]]:
    h = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as c:
        r = await c.post(
            "/v1/programs",
            json={"code": "bench", "name": "Bench", "currency": "EUR", "timezone": "Europe/Paris"},
        )
        r.raise_for_status()
        for body in PROMOTIONS:
            r = await c.post("/v1/programs/bench/promotions", json=body)
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
        r = await c.post(
            "/v1/programs/bench/api-keys", json={"name": "till", "scopes": ["events:write"]}
        )
        r.raise_for_status()
        return r.json()["key"], list(ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    admin = secrets.token_hex(16)
    figures: dict[str, dict[str, float]] = {}
    with scratch_pg("bench_price") as url:
        upgrade(url)
        with server(url, admin, workers=args.workers) as base:
            key, members = asyncio.run(_seed(base, admin, args.members))
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                fh.write("\n".join(members))
            os.environ["BENCH_MEMBERS"] = fh.name
            os.environ["BENCH_KEY"] = key
            script = Path(__file__).with_name("price.lua")
            for mode in ("price", "confirm"):
                os.environ["BENCH_MODE"] = mode
                figures[mode] = run_wrk(
                    f"{base}/v1/programs/bench/baskets/{mode}",
                    script,
                    connections=args.connections,
                    seconds=args.seconds,
                )
            os.unlink(fh.name)
        verify = subprocess.run(
            [str(BIN / "habitue"), "ledger", "verify"],
            env={**os.environ, "HABITUE_DATABASE_URL": url},
            capture_output=True,
            text=True,
        )
    tps = pgbench_tps(clients=args.connections, seconds=args.seconds)
    print(f"{'live promotions / codes':<30}10 automatic / 2 codes per basket, 5 lines")
    for mode, target in (("price", 0.5), ("confirm", 0.25)):
        f = figures[mode]
        print(f"{f'API {mode} baskets/s':<30}{f['rps']:.0f}")
        print(f"{f'API {mode} p50 / p99 (ms)':<30}{f['p50_ms']:.1f} / {f['p99_ms']:.1f}")
        print(f"{f'API {mode} non-2xx':<30}{f['non2xx']:.0f} of {f['requests']:.0f}")
        print(f"{f'ratio {mode} / pgbench':<30}{f['rps'] / tps:.2f}  (target >= {target})")
    print(f"{'pgbench TPC-B tps':<30}{tps:.0f}  ({args.connections} clients)")
    print(f"{'ledger verify':<30}{'ok' if verify.returncode == 0 else 'BREACH'}")
    if verify.returncode != 0:
        print(verify.stdout, verify.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
