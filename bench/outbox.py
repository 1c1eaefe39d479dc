"""Benchmark the delivery worker: webhook deliveries/s and the lag from commit to delivery.

    .venv/bin/python bench/outbox.py [--backlog 20000] [--rate 500] [--seconds 20] [--workers 2]
                                     [--with-earn [--earn-connections 32] [--earn-seconds N]]

On a scratch PostgreSQL database (dropped at the end): one program, one webhook endpoint
subscribed to every event, pointing at a local receiver that answers 204 at once (its own
process, HTTP/1.1 keep-alive). Phase 1 writes `--backlog` `points.earned` outbox rows for
distinct members, starts `--workers` `habitue worker` processes and times the drain:
deliveries/s. Phase 2 writes `--rate` rows a second for `--seconds` seconds while the workers
run and reports the lag from each row's commit to its delivery (p50/p99). Prints one JSON
line. Issue #18's target: ≥ 2,000 deliveries/s and p99 lag ≤ 2 s with 2 workers while
`bench/earn.py`'s load runs.

Also measured: the CPU of the workers and of their PostgreSQL backends during the drain (per
delivery), and, with one worker in this process on 5,000 more events once the load is over,
the statements the worker has the server run per delivery (an `executemany` counts each of
its rows) and its deliveries per CPU-second.

`--with-earn` runs bench/earn's purchase load on the same database throughout both phases:
`habitue serve` (production settings, 2 processes, no worker of its own) on a second program
of 2,000 members, driven by wrk at `--earn-connections` with bench/earn.lua (the workers plan
those events too: no webhook is subscribed to them). Then pgbench TPC-B on the same server,
as bench/earn prints it.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import free_port, pgbench_tps, run_wrk, scratch_pg, server  # noqa: E402


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
        data = ProgramCreate(code="hooks", name="Hooks", currency="EUR", timezone="UTC")
        await db.write(lambda s: programs_service.create_program(s, data))
        async with db.read() as s:
            info = await programs_service.get_info(s, "hooks")
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

    db = Database(url, group_commit=False)
    try:
        for start in range(0, n, 5000):
            await _commit(db, program_id, min(5000, n - start))
    finally:
        await db.dispose()


async def _commit(db: Any, program_id: int, n: int) -> None:
    """Commit `n` `points.earned` events for distinct members."""
    from habitue.messaging import outbox

    rows = [
        outbox.outbox_row(
            program_id, "points.earned", str(uuid.uuid4()), {"points": 10, "reason": "bench"}
        )
        for _ in range(n)
    ]
    await db.write(lambda s: outbox.emit_many(s, rows))


async def _steady(url: str, program_id: int, rate: int, seconds: int) -> int:
    """`rate` events a second for `seconds` seconds, a tenth of them every 0.1 s (one
    connection); how many were written (fewer when the machine cannot keep up)."""
    from habitue.db import Database

    db = Database(url, group_commit=False)
    per_tick, written = max(1, rate // 10), 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            tick = time.monotonic()
            await _commit(db, program_id, per_tick)
            written += per_tick
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    finally:
        await db.dispose()
    return written


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


def _pg_backends(url: str, pids: list[int]) -> list[int]:
    """The PostgreSQL backends serving these local processes (matched by their TCP ports)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
    return [int(pid) for pid, port in rows if port in ports]


def _cpu_of(pids: list[int]) -> dict[int, float]:
    """Each process's CPU seconds so far (those gone meanwhile are left out)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = _cpu_seconds([pid])
        except OSError:
            pass
    return out


async def _statements(url: str, program_id: int, n: int) -> dict[str, float]:
    """One worker in this process, once it has caught up, delivers `n` new events: statements
    and round trips per delivery (what the worker has the server run; an executemany counts
    each of its rows), and deliveries per CPU-second of this process (without the gc.freeze()
    of `habitue worker`)."""
    from sqlalchemy import event, text

    from habitue.db import Database
    from habitue.messaging import worker
    from habitue.settings import Settings

    db = Database(url, group_commit=False)
    settings = Settings(database_url=url, worker_batch=500)
    await worker.run_until_idle(db, settings)  # what is left (the earn load's events)
    await _write(url, program_id, n)
    counts = {"statements": 0, "round_trips": 0}
    sent_sql = text("SELECT count(*) FROM deliveries WHERE status = 'sent'")

    def count(*args: object) -> None:
        params, many = args[3], args[5]
        counts["round_trips"] += 1
        counts["statements"] += len(params) if many and isinstance(params, list | tuple) else 1

    try:
        async with db.read() as session:
            before = (await session.execute(sent_sql)).scalar_one()
        event.listen(db.read_engine.sync_engine, "before_cursor_execute", count)
        cpu = time.process_time()
        await worker.run_until_idle(db, settings)
        cpu = time.process_time() - cpu
        event.remove(db.read_engine.sync_engine, "before_cursor_execute", count)
        async with db.read() as session:
            after = (await session.execute(sent_sql)).scalar_one()
    finally:
        await db.dispose()
    sent = max(1, int(after) - int(before))
    return {
        "statements_per_delivery": round(counts["statements"] / sent, 4),
        "round_trips_per_delivery": round(counts["round_trips"] / sent, 4),
        "in_process_deliveries_per_cpu_s": round(sent / cpu) if cpu else 0,
    }


class _Earn:
    """bench/earn's purchase load (habitue serve + wrk) on the same database, in a thread."""

    def __init__(self, url: str, connections: int, seconds: int) -> None:
        import threading

        self.url, self.connections, self.seconds = url, connections, seconds
        self.result: dict[str, float] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.ended = 0.0

    def _run(self) -> None:
        import secrets
        import tempfile

        from earn import _seed as earn_seed

        try:
            admin = secrets.token_hex(16)
            os.environ["HABITUE_WORKER"] = "false"  # the bench's workers are the only ones
            with server(self.url, admin, workers=2) as base:
                key, members = asyncio.run(earn_seed(base, admin, 2000, False))
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
                    fh.write("\n".join(members))
                os.environ["BENCH_MEMBERS"] = fh.name
                os.environ["BENCH_KEY"] = key
                self.ready.set()
                self.result = run_wrk(
                    base + "/v1/programs/bench/events",
                    ROOT / "bench" / "earn.lua",
                    connections=self.connections,
                    seconds=self.seconds,
                )
                self.ended = time.monotonic()
                os.unlink(fh.name)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()


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
    parser.add_argument("--with-earn", action="store_true", help="bench/earn's load alongside")
    parser.add_argument("--earn-connections", type=int, default=32)
    parser.add_argument(
        "--earn-seconds", type=int, help="how long wrk runs (default: --seconds + 40)"
    )
    args = parser.parse_args()

    from habitue.migrate import upgrade

    port = free_port()
    receiver = multiprocessing.Process(target=_receiver, args=(port,), daemon=True)
    receiver.start()
    earn: _Earn | None = None
    with scratch_pg("habitue_bench_outbox") as url:
        upgrade(url)
        program_id = asyncio.run(_seed(url, f"http://127.0.0.1:{port}/hook"))
        if args.with_earn:
            # to cover the drain and the steady phase (the result says whether it did)
            earn = _Earn(url, args.earn_connections, seconds=args.earn_seconds or args.seconds + 40)
            earn.thread.start()
            earn.ready.wait()
            if earn.error is not None:
                raise earn.error
            time.sleep(2)  # wrk under way
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
            backends = _pg_backends(url, pids)
            started, cpu_started = time.monotonic(), _cpu_seconds(pids)
            pg_started = _cpu_of(backends)
            while _count_sent(url) < args.backlog:
                time.sleep(0.2)
            drain = time.monotonic() - started
            drain_cpu = _cpu_seconds(pids) - cpu_started
            backends = sorted(set(backends) | set(_pg_backends(url, pids)))
            pg_ended = _cpu_of(backends)
            pg_cpu = sum(t - pg_started.get(pid, 0.0) for pid, t in pg_ended.items())
            drained = args.backlog - first
            mark = _max_outbox_id(url)
            written = asyncio.run(_steady(url, program_id, args.rate, args.seconds))
            total = args.backlog + written
            deadline = time.monotonic() + 60
            while _count_sent(url) < total and time.monotonic() < deadline:
                time.sleep(0.2)
            steady_ended = time.monotonic()
            lags = _lags(url, mark)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=15)
        if earn is not None:
            earn.thread.join()
            if earn.error is not None:
                raise earn.error
        statements = asyncio.run(_statements(url, program_id, 5000))
    receiver.terminate()
    result: dict[str, object] = {
        "workers": args.workers,
        "backlog": args.backlog,
        "backlog_deliveries_per_s": round(drained / drain),
        # CPU the workers used for the drain: with a core per worker, on a machine not shared
        # with other loads, the drain would go at about this figure times the workers
        "backlog_worker_cpu_s": round(drain_cpu, 2),
        "deliveries_per_worker_cpu_s": round(drained / drain_cpu) if drain_cpu else None,
        # and the CPU of the PostgreSQL backends serving the workers, for the same drain
        "backlog_pg_backend_cpu_s": round(pg_cpu, 2),
        "deliveries_per_pg_cpu_s": round(drained / pg_cpu) if pg_cpu else None,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "steady_rate_per_s": round(written / args.seconds),
        "steady_delivered": len(lags),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(lags[int(len(lags) * 0.99) - 1], 3) if lags else None,
        **statements,
    }
    if earn is not None:
        # wrk began before the backlog was written and must outlast the steady phase
        result["earn_covered_both_phases"] = earn.ended >= steady_ended
        result["earn_purchases_per_s"] = round(earn.result["rps"])
        result["earn_p99_ms"] = round(earn.result["p99_ms"], 1)
        result["earn_non2xx"] = int(earn.result["non2xx"])
        result["pgbench_tps"] = round(pgbench_tps(clients=args.earn_connections, seconds=10))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
