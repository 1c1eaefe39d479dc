"""Benchmark the delivery worker: webhook deliveries/s and the lag from commit to delivery.

    .venv/bin/python bench/outbox.py [--backlog 20000] [--rate 500] [--seconds 20] [--workers 2]

On a scratch PostgreSQL database (dropped at the end): one program, one webhook endpoint
subscribed to every event, pointing at a local receiver that answers 204 at once (its own
process, HTTP/1.1 keep-alive). Phase 1 writes `--backlog` `points.earned` outbox rows for
distinct members, starts `--workers` `habitue worker` processes and times the drain:
deliveries/s. Phase 2 writes `--rate` rows a second for `--seconds` seconds while the workers
run and reports the lag from each row's commit to its delivery (p50/p99). Prints one JSON
line. Issue #18's target: ≥ 2,000 deliveries/s and p99 lag ≤ 2 s with 2 workers while
`bench/earn.py`'s load runs (run that alongside for the full picture).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import free_port, scratch_pg  # noqa: E402


def _receiver(port: int) -> None:
    """A minimal HTTP/1.1 server: reads each request and answers 204, keeping the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def _seed(url: str, receiver: str) -> int:
    from habitue.db import Database
    from habitue.messaging import webhooks
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ProgramCreate

    db = Database(url, group_commit=False)
    try:
        data = ProgramCreate(code="bench", name="Bench", currency="EUR", timezone="UTC")
        await db.write(lambda s: programs_service.create_program(s, data))
        async with db.read() as s:
            info = await programs_service.get_info(s, "bench")
        await db.write(
            lambda s: webhooks.create(
                s, info, url=receiver, events=["*"], description=None, production=False
            )
        )
        return info.id
    finally:
        await db.dispose()


async def _write(url: str, program_id: int, n: int) -> None:
    from habitue.db import Database
    from habitue.messaging import outbox

    db = Database(url, group_commit=False)
    try:
        for start in range(0, n, 5000):
            rows = [
                outbox.outbox_row(
                    program_id,
                    "points.earned",
                    str(uuid.uuid4()),
                    {"points": 10, "reason": "bench"},
                )
                for _ in range(min(5000, n - start))
            ]
            await db.write(lambda s, rows=rows: outbox.emit_many(s, rows))
    finally:
        await db.dispose()


def _count_sent(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()
        return int(row[0]) if row else 0


def _lags(url: str, since_id: int) -> list[float]:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT EXTRACT(EPOCH FROM d.sent_at - o.created_at) FROM deliveries d "
            "JOIN outbox o ON o.id = d.outbox_id WHERE d.status = 'sent' AND o.id > %s",
            (since_id,),
        ).fetchall()
    return sorted(float(r[0]) for r in rows)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _max_outbox_id(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from habitue.migrate import upgrade

    port = free_port()
    receiver = multiprocessing.Process(target=_receiver, args=(port,), daemon=True)
    receiver.start()
    with scratch_pg("habitue_bench_outbox") as url:
        upgrade(url)
        program_id = asyncio.run(_seed(url, f"http://127.0.0.1:{port}/hook"))
        asyncio.run(_write(url, program_id, args.backlog))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "HABITUE_DATABASE_URL": url,
            "HABITUE_WORKER_BATCH": "500",
            "HABITUE_WORKER_IDLE_SECONDS": "0.05",
        }
        code = "import sys; from habitue.cli import app; sys.argv = ['habitue', 'worker']; app()"
        procs = [
            subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: S603
            for _ in range(args.workers)
        ]
        try:
            pids = [p.pid for p in procs]
            # the workers' start-up (imports) is not the drain: the clock and the CPU count
            # from the first delivery on
            while (first := _count_sent(url)) == 0:
                time.sleep(0.05)
            started, cpu_started = time.monotonic(), _cpu_seconds(pids)
            while _count_sent(url) < args.backlog:
                time.sleep(0.2)
            drain = time.monotonic() - started
            drain_cpu = _cpu_seconds(pids) - cpu_started
            drained = args.backlog - first
            mark = _max_outbox_id(url)
            end = time.monotonic() + args.seconds
            per_tick = max(1, args.rate // 10)
            while time.monotonic() < end:
                tick = time.monotonic()
                asyncio.run(_write(url, program_id, per_tick))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
            total = args.backlog + per_tick * 10 * args.seconds
            deadline = time.monotonic() + 60
            while _count_sent(url) < total and time.monotonic() < deadline:
                time.sleep(0.2)
            lags = _lags(url, mark)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=15)
            receiver.terminate()
    result = {
        "workers": args.workers,
        "backlog": args.backlog,
        "backlog_deliveries_per_s": round(drained / drain),
        # CPU the workers used for the drain: with a core per worker, on a machine not shared
        # with other loads, the drain would go at about this figure times the workers
        "backlog_worker_cpu_s": round(drain_cpu, 2),
        "deliveries_per_worker_cpu_s": round(drained / drain_cpu) if drain_cpu else None,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "steady_rate_per_s": per_tick * 10,
        "steady_delivered": len(lags),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(lags[int(len(lags) * 0.99) - 1], 3) if lags else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
