"""bench/scale: whether the engine stays as fast with 1,000,000 members as with 10,000.

    PYTHONPATH=src .venv/bin/python bench/scale.py [--quick] [--seconds 10] [--probe 50000]

On a scratch PostgreSQL database, behind `habitue serve` (production settings, 2 workers),
it enrols 10,000, then 100,000, then 1,000,000 members (`--quick` stops at 100,000) by
`habitue import purchases --enrol-missing` (one purchase each, as a migration enrols them,
with their cards) and at each size measures:

- single-event throughput: purchases shaped as the tills of issue 20 send them (the member
  by `external_id`, the till's `occurred_at` a month back, no lines, a scoped till key),
  32 connections through wrk for `--seconds`, members drawn from the whole table;
- balance reads (`GET …/members/{id}/balance`): requests/s and p99;
- the import's rows/s: `--probe` purchases of members already enrolled, one file of the
  same size at every size (the enrolling imports differ in size, so they are shown but not
  compared);
- (before the first size's figures) `--warmup` seconds of purchases and of reads, not
  counted: the server is fresh, its pools and prepared statements cold;
- (before the probe import, and again before the figures) how long the server's delivery
  workers take to plan the imports' domain events (`member.enrolled`, `points.earned`,
  `event.recorded`), waited for and shown apart: the probe's CPU counts every backend of the
  database, the workers' included;
- the query plans, by `EXPLAIN (ANALYZE, BUFFERS)` of the statements the application sends
  for a member found by id, by external id and by card number, and for a balance read
  (captured from the services themselves): each must use indexes only, and the buffers it
  touches must not grow with the members.

Each figure is printed with its ratio to the 10,000-member one. The machine is shared, so
beside each rate it prints CPU per operation (the server's or the import's processes and
their PostgreSQL backends), which moves less than wall-clock rates. At the end: every
accepted purchase credited once (the events' points against the members' balances),
`habitue ledger verify`, and pgbench TPC-B on the same PostgreSQL as the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BIN,
    Probe,
    pgbench_tps,
    run_wrk,
    scratch_pg,
    server,
    wait_drained,
)

from habitue.migrate import upgrade  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE = 20_000
"""Members the request runs draw from, spread over the whole table."""


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


async def _keys(base: str, admin: str) -> tuple[str, str]:
    """The program, a till key (`events:write`) and a key that reads members."""
    h = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as c:
        r = await c.post("/v1/programs", json={"code": "bench", "name": "Bench",
                                               "currency": "EUR", "timezone": "Europe/Paris"})
        r.raise_for_status()
        keys = []
        for name, scopes in (("till", ["events:write"]), ("reader", ["members:read"])):
            r = await c.post("/v1/programs/bench/api-keys", json={"name": name, "scopes": scopes})
            r.raise_for_status()
            keys.append(r.json()["key"])
        return keys[0], keys[1]


def _import(url: str, rows: list[list[str]]) -> tuple[float, Probe]:
    """`habitue import purchases --enrol-missing` of `rows`: rows/s and what it cost."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total"])
        w.writerows(rows)
    env = {**os.environ, "HABITUE_DATABASE_URL": url}
    try:
        with Probe(pg_database=url.rsplit("/", 1)[1], include_self=False) as probe:
            t = time.perf_counter()
            subprocess.run([str(BIN / "habitue"), "import", "purchases", fh.name, "--program",
                            "bench", "--enrol-missing"], env=env, check=True,
                           capture_output=True)
            elapsed = time.perf_counter() - t
    finally:
        os.unlink(fh.name)
    return len(rows) / elapsed, probe


def _enrol(url: str, start: int, stop: int) -> tuple[float, Probe]:
    """Members m{start}…m{stop - 1}, each with one purchase a year back."""
    when = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _import(url, [[f"m{i}", f"seed-{i}", when, "10.00"] for i in range(start, stop)])


def _probe_import(url: str, members: int, rows: int, tag: str) -> tuple[float, Probe]:
    """`rows` purchases of members drawn from all `members`, in receipt order."""
    rng = random.Random(members)
    start = datetime.now(UTC) - timedelta(days=60)
    data = []
    for i in range(rows):
        at = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cents = rng.randint(100, 9000)
        data.append([f"m{rng.randrange(members)}", f"{tag}-{i:08d}", at,
                     f"{cents // 100}.{cents % 100:02d}"])
    return _import(url, data)


def _sample(url: str, n: int) -> list[tuple[str, str, str]]:
    """`n` members drawn at random from the whole table: (public id, external id, card)."""
    with psycopg.connect(_dsn(url)) as conn:
        rows = conn.execute(
            "SELECT m.public_id, m.external_id, c.number FROM members m "
            "JOIN cards c ON c.member_id = m.id AND c.status = 'active' "
            "ORDER BY random() LIMIT %s", (n,)
        ).fetchall()
    return [(a, b, c) for a, b, c in rows]


def _server_wrk(url: str, base: str, script: str, path: str, env: dict[str, str],
                seconds: int) -> tuple[dict[str, float], float]:
    """wrk at 32 connections; its figures and the CPU per request of the server's processes
    and their backends (wrk's own included: it shares the cores)."""
    os.environ.update(env)
    with Probe(pg_database=url.rsplit("/", 1)[1], include_self=False) as probe:
        got = run_wrk(base + path, HERE / script, connections=32, seconds=seconds)
    return got, probe.cpu / max(got["requests"], 1.0) * 1e6


async def _statements(url: str, member: tuple[str, str, str]) -> dict[str, list[tuple[str, Any]]]:
    """The statements the services send to find `member` by id, external id and card, and
    to read its balance, each with its parameters."""
    from sqlalchemy import event

    from habitue.db import Database
    from habitue.members import service as members_service
    from habitue.programs import service as programs_service

    db = Database(url)
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.read_engine.sync_engine, "before_cursor_execute", record)
    out: dict[str, list[tuple[str, Any]]] = {}
    public, external, card = member
    try:
        async with db.read() as session:
            program = await programs_service.get_info(session, "bench")
            steps: dict[str, Any] = {
                "member by id": lambda: members_service.resolve(
                    session, program, member_id=public),
                "member by external_id": lambda: members_service.resolve(
                    session, program, external_id=external),
                "member by card_number": lambda: members_service.resolve(
                    session, program, card_number=card),
                "balance read": lambda: members_service.balance(session, program, public),
            }
            for name, step in steps.items():
                seen.clear()
                await step()
                out[name] = list(seen)
    finally:
        await db.dispose()
    return out


def _walk(plan: dict[str, Any]) -> list[str]:
    node = plan["Node Type"] + (f" on {plan['Relation Name']}" if "Relation Name" in plan
                                else "")
    if "Index Name" in plan:
        node += f" using {plan['Index Name']}"
    return [node] + [n for child in plan.get("Plans", []) for n in _walk(child)]


def explain(url: str, member: tuple[str, str, str]) -> dict[str, tuple[list[str], float, int]]:
    """Per lookup: its plans' scan nodes, execution ms and shared buffers touched (summed
    over its statements)."""
    # The statements are captured through psycopg so that they can be explained as sent; only
    # here: the server, the import and `ledger verify` run with the production driver (asyncpg).
    # (Until 7 December 22:58 this was set for the whole bench, and so for the server too.)
    os.environ["HABITUE_PG_ASYNC_DRIVER"] = "psycopg"
    try:
        found = asyncio.run(_statements(url, member))
    finally:
        del os.environ["HABITUE_PG_ASYNC_DRIVER"]
    out = {}
    with psycopg.connect(_dsn(url)) as conn:
        for name, statements in found.items():
            nodes: list[str] = []
            ms, buffers = 0.0, 0
            for statement, parameters in statements:
                row = conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
                ).fetchone()
                assert row is not None
                plan = row[0][0]
                nodes += [n for n in _walk(plan["Plan"]) if "Scan" in n]
                ms += plan["Execution Time"]
                top = plan["Plan"]
                buffers += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            out[name] = (nodes, ms, buffers)
    return out


def _credited_once(url: str) -> bool:
    """Every recorded purchase's points are in the members' balances, once."""
    with psycopg.connect(_dsn(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(points), 0) FROM events), "
            "(SELECT coalesce(sum(balance), 0) FROM accounts WHERE member_id IS NOT NULL)"
        ).fetchone()
    assert row is not None
    return bool(row[0] == row[1])


def _verify(url: str) -> bool:
    done = subprocess.run([str(BIN / "habitue"), "ledger", "verify"],
                          env={**os.environ, "HABITUE_DATABASE_URL": url}, capture_output=True)
    return done.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="stop at 100,000 members")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--probe", type=int, default=50_000, help="rows of the same-size import")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3,
                    help="seconds of purchases and of reads on the fresh server before the "
                    "first size's figures (not counted; 0: none)")
    ap.add_argument("--sizes", help="members at each step, e.g. 2000,5000 (a smoke run)")
    args = ap.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    admin = secrets.token_hex(16)
    figures: list[dict[str, Any]] = []
    with scratch_pg("bench_scale") as url:
        upgrade(url)
        with server(url, admin, workers=args.workers) as base:
            till, reader = asyncio.run(_keys(base, admin))
            enrolled = 0
            for size in sizes:
                enrol_rate, _ = _enrol(url, enrolled, size)
                enrolled = size
                # the imports' domain events are planned by the server's delivery workers:
                # measured apart, not under the probe import, the purchases and the reads
                # (the probe's CPU counts every backend of the database: until 8 December
                # 2026 it ran during the enrolment's drain, whose backends then made most
                # of its CPU a row at 1,000,000 members)
                with Probe(pg_database=url.rsplit("/", 1)[1], include_self=False) as drained:
                    drain = wait_drained(url)
                import_rate, imported = _probe_import(url, size, args.probe, f"probe{size}")
                with Probe(pg_database=url.rsplit("/", 1)[1], include_self=False) as after:
                    drain += wait_drained(url)
                drained.cpu += after.cpu
                sample = _sample(url, SAMPLE)
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                    fh.write("\n".join(",".join(m) for m in sample))
                try:
                    if size == sizes[0] and args.warmup:  # a fresh server (not counted)
                        _server_wrk(url, base, "shapes.lua", "/v1/programs/bench/events", {
                            "BENCH_MEMBERS": fh.name, "BENCH_KEY": till,
                            "BENCH_BY": "external_id", "BENCH_TIME": "past", "BENCH_LINES": "0",
                            "BENCH_IDEM": "0", "BENCH_PREFIX": "warmx"}, args.warmup)
                        _server_wrk(url, base, "balance.lua", "/", {
                            "BENCH_MEMBERS": fh.name, "BENCH_KEY": reader}, args.warmup)
                    events, event_cpu = _server_wrk(url, base, "shapes.lua",
                                                    "/v1/programs/bench/events", {
                        "BENCH_MEMBERS": fh.name, "BENCH_KEY": till, "BENCH_BY": "external_id",
                        "BENCH_TIME": "past", "BENCH_LINES": "0", "BENCH_IDEM": "0",
                        "BENCH_PREFIX": f"e{size}x"}, args.seconds)  # fmt: skip
                    reads, read_cpu = _server_wrk(
                        url, base, "balance.lua", "/", {"BENCH_MEMBERS": fh.name,
                                                        "BENCH_KEY": reader}, args.seconds)
                finally:
                    os.unlink(fh.name)
                figures.append({
                    "size": size, "enrol": enrol_rate, "import": import_rate,
                    "import_cpu": imported.cpu / args.probe * 1e6, "events": events,
                    "event_cpu": event_cpu, "reads": reads, "read_cpu": read_cpu,
                    "plans": explain(url, sample[0]), "drain": drain, "drain_cpu": drained.cpu,
                })  # fmt: skip
        credited = _credited_once(url)
        verified = _verify(url)
    tps = pgbench_tps(clients=32, seconds=args.seconds)
    _print(figures, tps, credited, verified)


def _print(figures: list[dict[str, Any]], tps: float, credited: bool, verified: bool) -> None:
    first = figures[0]

    def ratio(f: dict[str, Any], key: str, sub: str | None = None) -> str:
        a, b = (f[key], first[key]) if sub is None else (f[key][sub], first[key][sub])
        return f"{a / b:.2f}" if b else "-"

    print(f"{'members':>10}{'purchases/s':>13}{'p99 ms':>8}{'µs CPU':>8}{'ratio':>7}"
          f"{'reads/s':>9}{'p99 ms':>8}{'µs CPU':>8}{'p99 ratio':>10}"
          f"{'import r/s':>12}{'µs CPU':>8}{'ratio':>7}{'enrol r/s':>11}{'drain s':>9}"
          f"{'CPU s':>7}")
    for f in figures:
        e, r = f["events"], f["reads"]
        print(f"{f['size']:>10,}{e['rps']:>13,.0f}{e['p99_ms']:>8.0f}{f['event_cpu']:>8,.0f}"
              f"{ratio(f, 'events', 'rps'):>7}{r['rps']:>9,.0f}{r['p99_ms']:>8.0f}"
              f"{f['read_cpu']:>8,.0f}{ratio(f, 'reads', 'p99_ms'):>10}"
              f"{f['import']:>12,.0f}{f['import_cpu']:>8,.0f}{ratio(f, 'import'):>7}"
              f"{f['enrol']:>11,.0f}{f['drain']:>9.1f}{f['drain_cpu']:>7.1f}")
    print("µs CPU: per purchase, read or imported row, of the server's (or the import's) "
          "processes, wrk's and their PostgreSQL backends; drain: the wait, after the "
          "imports, until the server's delivery workers had planned their domain events "
          "(its CPU: the server's and its backends'), before the purchases and reads")
    non2xx = sum(f["events"]["non2xx"] + f["reads"]["non2xx"] for f in figures)
    print(f"non-2xx answers: {non2xx:.0f}; every purchase credited once: "
          f"{'yes' if credited else 'NO'}; ledger verify {'ok' if verified else 'BREACH'}; "
          f"pgbench TPC-B (32 cl., scale 10) {tps:,.0f} tps")
    print("plans (EXPLAIN ANALYZE of the statements the services send):")
    for f in figures:
        for name, (nodes, ms, buffers) in f["plans"].items():
            seq = any(n.startswith("Seq Scan") for n in nodes)
            print(f"  {f['size']:>9,} {name:<22} {ms:>7.3f} ms {buffers:>4} buffers "
                  f"{'SEQUENTIAL SCAN ' if seq else ''}{'; '.join(nodes)}")


if __name__ == "__main__":
    main()
