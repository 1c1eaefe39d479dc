"""bench/earn: purchases/s through the API on PostgreSQL vs pgbench TPC-B on the same server.

    .venv/bin/python bench/earn.py [--seconds 20] [--connections 32] [--rules]
    .venv/bin/python bench/earn.py --shapes [--seconds 10] [--big 100000] [--warmup 3]

Starts `habitue serve` (production settings, 2 workers) on a scratch database, enrols
members, drives purchase events with unique ids through wrk at 32 connections, then runs
pgbench TPC-B with 32 clients on the same PostgreSQL, and prints the figures and the ratio.
With --rules the program gets 50 active rules (the rules benchmark's set) first.

With --shapes it drives, one after the other, the request shapes tills send (see SHAPES): the
member named by `id`, `external_id` or `card_number`; `occurred_at` from the till (a month
back) or absent; with or without basket lines; an `Idempotency-Key` header; 1,000 and
`--big` members (enrolled by the import; `--big 0`: 1,000 only). Each shape gets its own
figure and ratio against pgbench measured before and after the shapes (their mean); the
slowest shape is the figure that counts. `habitue ledger verify` runs at the end of each database.
Before the shapes it waits until the server's delivery workers have planned the enrolling
import's domain events (printed), then sends `--warmup` seconds of purchases (not counted): the
server is fresh, its pools and prepared statements are not (a till meets a running server).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, pgbench_tps, run_wrk, scratch_pg, server, wait_drained  # noqa: E402

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


@dataclass(frozen=True)
class Shape:
    """One way a till sends a purchase."""

    by: str = "id"  # how the member is named
    time: str = "now"  # "now": no occurred_at; "past": the till's time, a month back
    lines: bool = True
    idempotency_key: bool = False

    def label(self) -> str:
        return (f"{self.by}, {'till time' if self.time == 'past' else 'no time'}, "
                f"{'lines' if self.lines else 'no lines'}"
                f"{', Idempotency-Key' if self.idempotency_key else ''}")


# bench/earn's own shape first, then one change at a time, then the outside load test's shape.
SHAPES = [
    Shape(),
    Shape(by="external_id"),
    Shape(by="card_number"),
    Shape(time="past"),
    Shape(lines=False),
    Shape(idempotency_key=True),
    Shape(by="external_id", time="past", lines=False),
]


def _enrol_by_import(url: str, members: int) -> None:
    """Enrol `members` members as a migration would: `habitue import purchases --enrol-missing`
    of one purchase each, a year back (their cards are issued by the import)."""
    when = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        for i in range(members):
            w.writerow([f"m{i}", f"seed-{i}", when, "10.00"])
    env = {**os.environ, "HABITUE_DATABASE_URL": url}
    try:
        subprocess.run([str(BIN / "habitue"), "import", "purchases", fh.name, "--program",
                        "bench", "--enrol-missing"], env=env, check=True, capture_output=True)
    finally:
        os.unlink(fh.name)


def _member_names(url: str) -> list[str]:
    """Each member as "public id,external id,card number"."""
    import psycopg

    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT m.public_id, m.external_id, min(c.number) FROM members m "
            "JOIN cards c ON c.member_id = m.id AND c.status = 'active' "
            "GROUP BY m.public_id, m.external_id"
        ).fetchall()
    return [f"{a},{b},{c}" for a, b, c in rows]


def _verify(url: str) -> bool:
    done = subprocess.run([str(BIN / "habitue"), "ledger", "verify"],
                          env={**os.environ, "HABITUE_DATABASE_URL": url}, capture_output=True)
    return done.returncode == 0


def _wal_lsn(url: str) -> str:
    """The server's current WAL position (shared by every database of the server: run alone)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]


def _wal_since(url: str, lsn: str) -> float:
    """WAL bytes written since `lsn` (full-page images included)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone()
        return float(row[0])  # type: ignore[index]


def shapes(args: argparse.Namespace) -> None:
    """Every shape of SHAPES on 1,000 members, the slowest ones again on `--big` members."""
    before = pgbench_tps(clients=args.connections, seconds=args.seconds)
    results: list[tuple[str, int, dict[str, float]]] = []
    verified: list[bool] = []
    drains: list[tuple[int, float]] = []
    for count in (1000, args.big) if args.big else (1000,):  # --big 0: no large program
        admin = secrets.token_hex(16)
        with scratch_pg("bench_shapes") as url:
            upgrade(url)
            with server(url, admin, workers=args.workers) as base:
                key, _ = asyncio.run(_seed(base, admin, 0, args.rules))
                _enrol_by_import(url, count)
                drains.append((count, wait_drained(url)))
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                    fh.write("\n".join(_member_names(url)))
                script = Path(__file__).with_name("shapes.lua")
                todo = SHAPES if count == 1000 else [SHAPES[0], SHAPES[-1]]
                if args.warmup:  # a fresh server: pools, prepared statements (not counted)
                    os.environ.update({"BENCH_PREFIX": "warmx", "BENCH_MEMBERS": fh.name,
                                       "BENCH_KEY": key, "BENCH_BY": "id", "BENCH_TIME": "now",
                                       "BENCH_LINES": "1", "BENCH_IDEM": "0"})
                    run_wrk(base + "/v1/programs/bench/events", script,
                            connections=args.connections, seconds=args.warmup)
                for n, shape in enumerate(todo):
                    os.environ.update({
                        # ids of their own per shape: a shape never replays an earlier one's
                        "BENCH_PREFIX": f"s{n}x",
                        "BENCH_MEMBERS": fh.name, "BENCH_KEY": key, "BENCH_BY": shape.by,
                        "BENCH_TIME": shape.time, "BENCH_LINES": "1" if shape.lines else "0",
                        "BENCH_IDEM": "1" if shape.idempotency_key else "0",
                    })
                    wal = _wal_lsn(url)
                    got = run_wrk(base + "/v1/programs/bench/events", script,
                                  connections=args.connections, seconds=args.seconds)
                    got["wal_kb"] = _wal_since(url, wal) / 1024 / max(got["requests"], 1)
                    results.append((shape.label(), count, got))
                os.unlink(fh.name)
            verified.append(_verify(url))
    after = pgbench_tps(clients=args.connections, seconds=args.seconds)
    tps = (before + after) / 2
    print(f"rules: {'50 active' if args.rules else 'base rate only'}; pgbench TPC-B "
          f"(32 cl., scale 10) {before:.0f} before, {after:.0f} after, mean {tps:.0f}")
    for count, seconds in drains:
        print(f"{count:,} members imported; their domain events planned by the server's "
              f"workers in {seconds:.1f} s, before the shapes; warm-up {args.warmup} s "
              "(not counted)")
    print(f"{'shape':<52}{'members':>9}{'events/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'non2xx':>8}{'ratio':>7}{'WAL KB/req':>11}")
    for label, count, got in results:
        print(f"{label:<52}{count:>9,}{got['rps']:>10.0f}{got['p50_ms']:>8.1f}"
              f"{got['p99_ms']:>8.1f}{got['non2xx']:>8.0f}{got['rps'] / tps:>7.2f}"
              f"{got['wal_kb']:>11.1f}")
    slowest = min(results, key=lambda r: r[2]["rps"])
    print(f"slowest: {slowest[0]} on {slowest[1]:,} members, {slowest[2]['rps'] / tps:.2f} x "
          f"pgbench; ledger verify {'ok' if all(verified) else 'BREACH'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rules", action="store_true", help="50 active rules")
    ap.add_argument("--shapes", action="store_true", help="every request shape tills send")
    ap.add_argument("--big", type=int, default=100_000, help="members of the large program")
    ap.add_argument("--warmup", type=int, default=3,
                    help="--shapes: seconds of purchases on the fresh server before the first"
                    " shape (not counted; 0: none)")
    args = ap.parse_args()
    if args.shapes:
        shapes(args)
        return
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
