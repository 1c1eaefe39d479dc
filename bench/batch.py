"""bench/batch: events/s through `POST /events/batch` on PostgreSQL vs pgbench TPC-B.

    .venv/bin/python bench/batch.py [--seconds 20] [--clients 4] [--size 1000] [--by id]
    .venv/bin/python bench/batch.py --consume [--events 20000] [--consumers 1]

Starts `habitue serve` (production settings, 2 workers) on a scratch database, enrols
members, and has `--clients` clients post batches of `--size` purchases (unique external ids,
members named by `--by`: id, external_id or card_number; with `--past` the till's
`occurred_at` a month back) for `--seconds`. Then it checks that every accepted event is
credited once (the events' points against the members' balances, and a retried batch
changing nothing), runs `habitue ledger verify`, runs pgbench TPC-B with 32 clients on the
same PostgreSQL, and prints events/s and the ratio.

With --consume, the events go through NATS JetStream instead (HABITUE_NATS_URL, a stream of
its own): `--events` purchases are published, then `habitue consume --until-idle` records
them; events/s is end to end, from the first publish to the consumer's exit after its last
commit and ack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, Probe, pgbench_tps, scratch_pg, server  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from habitue.migrate import upgrade  # noqa: E402


async def _seed(base: str, admin: str, members: int) -> tuple[str, list[dict[str, Any]]]:
    h = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as c:
        r = await c.post("/v1/programs", json={"code": "bench", "name": "Bench",
                                               "currency": "EUR", "timezone": "Europe/Paris"})
        r.raise_for_status()
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> dict[str, Any]:
            async with sem:
                r = await c.post("/v1/programs/bench/members", json={"external_id": f"m{i}"})
                r.raise_for_status()
                data: dict[str, Any] = r.json()
                return data

        found = await asyncio.gather(*[one(i) for i in range(members)])
        r = await c.post("/v1/programs/bench/api-keys",
                         json={"name": "till", "scopes": ["events:write"]})
        r.raise_for_status()
        return r.json()["key"], list(found)


def _selector(member: dict[str, Any], by: str) -> dict[str, str]:
    if by == "card_number":
        return {"card_number": member["card_number"]}
    return {by: member[by]}


def _event(n: int, member: dict[str, Any], by: str, when: str | None) -> dict[str, Any]:
    body = {"type": "purchase", "member": _selector(member, by), "external_id": f"b{n}",
            "total": f"{10 + n % 90}.{n % 100:02d}"}
    if when is not None:
        body["occurred_at"] = when
    return body


async def _drive(base: str, key: str, members: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    when = (datetime.now(UTC) - timedelta(days=30)).isoformat() if args.past else None
    counter = 0
    accepted = refused = 0
    latencies: list[float] = []
    first_batch: bytes | None = None
    deadline = time.perf_counter() + args.seconds

    def next_body() -> bytes:
        nonlocal counter
        events = []
        for _ in range(args.size):
            events.append(_event(counter, members[counter % len(members)], args.by, when))
            counter += 1
        return orjson.dumps({"events": events})

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal accepted, refused, first_batch
        while time.perf_counter() < deadline:
            body = next_body()
            first_batch = first_batch or body
            t = time.perf_counter()
            r = await c.post("/v1/programs/bench/events/batch", content=body)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            for slot in orjson.loads(r.content)["results"]:
                if slot["status"] == 201:
                    accepted += 1
                else:
                    refused += 1

    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=300, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(args.clients)])
        elapsed = time.perf_counter() - start
        # A retried batch answers its first answers and credits nothing.
        assert first_batch is not None
        r = await c.post("/v1/programs/bench/events/batch", content=first_batch)
        retry_ok = all(s["status"] == 201 for s in r.json()["results"])
    latencies.sort()
    return {
        "events": accepted, "refused": refused, "elapsed": elapsed, "sent": counter,
        "batches": len(latencies), "retry_ok": retry_ok,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def _credited(base: str, admin: str, members: list[dict[str, Any]]) -> int:
    h = {"Authorization": f"Bearer {admin}"}
    total = 0
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as c:
        sem = asyncio.Semaphore(16)

        async def one(m: dict[str, Any]) -> int:
            async with sem:
                r = await c.get(f"/v1/programs/bench/members/{m['id']}/balance")
                r.raise_for_status()
                return int(r.json()["available"]) + int(r.json()["pending"])

        for got in await asyncio.gather(*[one(m) for m in members]):
            total += got
    return total


def _events_points(url: str) -> tuple[int, int]:
    import psycopg

    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), coalesce(sum(points), 0) FROM events").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


async def _publish(stream: str, subject: str, bodies: list[bytes]) -> None:
    import nats

    nc = await nats.connect(os.environ.get("HABITUE_NATS_URL", "nats://127.0.0.1:4222"))
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for start in range(0, len(bodies), 1000):
            acks = [js.publish(subject, body, stream=stream)
                    for body in bodies[start:start + 1000]]
            await asyncio.gather(*acks)
    finally:
        await nc.close()


async def _drop_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(os.environ.get("HABITUE_NATS_URL", "nats://127.0.0.1:4222"))
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def _consume(url: str, members: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """Publish `--events` purchases and time `habitue consume` recording them all."""
    when = (datetime.now(UTC) - timedelta(days=30)).isoformat() if args.past else None
    bodies = [orjson.dumps(_event(n, members[n % len(members)], args.by, when))
              for n in range(args.events)]
    stream = f"BENCH_{secrets.token_hex(4)}"
    subject = f"bench.{stream}"
    start = time.perf_counter()
    try:
        asyncio.run(_publish(stream, subject, bodies))
        published = time.perf_counter() - start
        procs = [
            subprocess.Popen(
                [str(BIN / "habitue"), "consume", "--program", "bench", "--stream", stream,
                 "--subject", subject, "--until-idle"],
                env={**os.environ, "HABITUE_DATABASE_URL": url},
                stdout=subprocess.PIPE, text=True,
            )
            for _ in range(args.consumers)
        ]
        outs = [proc.communicate()[0].strip() for proc in procs]
        if any(proc.returncode for proc in procs):
            raise RuntimeError(f"habitue consume failed: {outs}")
        out = " | ".join(outs)
        elapsed = time.perf_counter() - start
    finally:
        asyncio.run(_drop_stream(stream))
    return {"events": args.events, "elapsed": elapsed, "published": published,
            "out": out.strip(), "retry_ok": True, "p50": float("nan"), "p99": float("nan"),
            "batches": 0, "refused": 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4, help="concurrent batch requests")
    ap.add_argument("--size", type=int, default=1000, help="events per batch")
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--by", choices=["id", "external_id", "card_number"], default="id")
    ap.add_argument("--past", action="store_true", help="occurred_at a month back")
    ap.add_argument("--pg-seconds", type=int, default=20)
    ap.add_argument("--consume", action="store_true", help="through NATS JetStream")
    ap.add_argument("--events", type=int, default=20000, help="events published (--consume)")
    ap.add_argument("--consumers", type=int, default=1,
                    help="habitue consume processes sharing the durable consumer (--consume)")
    args = ap.parse_args()
    admin = secrets.token_hex(16)
    with scratch_pg("bench_batch") as url:
        upgrade(url)
        with server(url, admin, workers=args.workers) as base:
            key, members = asyncio.run(_seed(base, admin, args.members))
            with Probe(pg_database=make_url(url).database) as probe:
                if args.consume:
                    got = _consume(url, members, args)
                else:
                    got = asyncio.run(_drive(base, key, members, args))
            credited = asyncio.run(_credited(base, admin, members))
        count, points = _events_points(url)
        verify = subprocess.run(
            [str(BIN / "habitue"), "ledger", "verify"],
            env={**os.environ, "HABITUE_DATABASE_URL": url}, capture_output=True, text=True,
        )
    load = os.getloadavg()
    tps = pgbench_tps(clients=32, seconds=args.pg_seconds)
    rate = got["events"] / got["elapsed"]
    once = count == got["events"] and points == credited and got["retry_ok"]
    print(f"{'shape':<30}member by {args.by}, occurred_at "
          f"{'a month back' if args.past else 'absent'}, {args.members} members")
    if args.consume:
        print(f"{'consumers':<30}{got['out']}")
        print(f"{'published in (s)':<30}{got['published']:.1f}")
        print(f"{'consume events/s (end to end)':<30}{rate:.0f}")
    else:
        print(f"{'batches (size x clients)':<30}{got['batches']} ({args.size} x {args.clients})")
        print(f"{'events accepted / refused':<30}{got['events']} / {got['refused']}")
        print(f"{'batch events/s':<30}{rate:.0f}")
        print(f"{'batch p50 / p99 (ms)':<30}{got['p50']:.0f} / {got['p99']:.0f}")
    print(f"{'credited once':<30}{'yes' if once else 'NO'} (events {count}, points {points}, "
          f"balances {credited}, retried batch unchanged: {got['retry_ok']})")
    print(f"{'ledger verify':<30}{'ok' if verify.returncode == 0 else 'BREACH'}")
    # CPU, not wall time: what the step cost its own processes (the server's, the consumers',
    # this client's) and the PostgreSQL backends serving its database, whatever else ran.
    n = max(got["events"], 1)
    print(f"{'CPU per event (us)':<30}{1e6 * probe.cpu / n:.0f}, of which PostgreSQL "
          f"{1e6 * probe.backend_cpu / n:.0f}  (server or consumer, client, PostgreSQL backends)")
    print(f"{'load average (1/5/15 min)':<30}{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{'pgbench TPC-B tps (32 cl.)':<30}{tps:.0f}")
    print(f"{'ratio events / pgbench':<30}{rate / tps:.2f}  (target >= 3)")
    if not once or verify.returncode != 0:
        print(verify.stdout, verify.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
