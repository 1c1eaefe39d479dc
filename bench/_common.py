"""Shared pieces of the benchmarks: scratch databases, a server process, wrk and pgbench."""

from __future__ import annotations

import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psycopg

PG_ADMIN = os.environ.get("HABITUE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@contextmanager
def scratch_pg(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(url: str, admin_key: str, *, workers: int = 2) -> Iterator[str]:
    """`habitue serve` with production settings; yields its base URL once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "HABITUE_DATABASE_URL": url,
        "HABITUE_ADMIN_KEY": admin_key,
        "HABITUE_ENV": "production",
        "HABITUE_HMAC_KEY": secrets.token_hex(32),
        "HABITUE_SCHEDULER": "false",
        "HABITUE_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [str(BIN / "habitue"), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server died")
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def run_wrk(url: str, script: Path, *, connections: int, seconds: int,
            threads: int = 2) -> dict[str, float]:
    """Drive `url` with wrk and a Lua script; returns requests/s, p50 and p99 in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if m is None:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
    }


def wait_drained(url: str, *, timeout: float = 900.0) -> float:
    """Wait until the server's delivery workers have caught up with the outbox (every event
    sequenced and planned, no delivery pending); the seconds it took. An import writes its
    domain events to the outbox at once: a measurement taken while the workers drain them
    measures the drain, so the benches wait for it and print it apart."""
    dsn = url.replace("postgresql+psycopg", "postgresql")
    start = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            behind = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE seq IS NULL)"
                " OR EXISTS (SELECT 1 FROM outbox o JOIN delivery_cursors c"
                "            ON c.program_id = o.program_id WHERE o.seq > c.last_seq)"
                " OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending')"
            ).fetchone()
            if not (behind and behind[0]):
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"the delivery workers did not catch up in {timeout:.0f} s")
            time.sleep(0.5)


def pgbench_tps(*, clients: int, seconds: int, scale: int = 10) -> float:
    """TPC-B tps of pgbench on a scratch database of the same PostgreSQL."""
    with scratch_pg("pgbench") as url:
        dsn = url.replace("postgresql+psycopg", "postgresql")
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), dsn], check=True,
                       capture_output=True)
        out = subprocess.run(
            ["pgbench", "-c", str(clients), "-j", "2", "-T", str(seconds), "-n", dsn],
            capture_output=True, text=True, check=True,
        ).stdout
    m = re.search(r"tps = ([\d.]+)", out)
    if m is None:
        raise RuntimeError(out)
    return float(m.group(1))


def pgbench_init_rows_per_s(*, scale: int = 10) -> float:
    """Rows/s of `pgbench -i` (COPY of scale x 100,000 accounts, vacuum, primary keys) on a
    scratch database of the same PostgreSQL: how fast this machine bulk-loads right now."""
    with scratch_pg("pgbench_init") as url:
        dsn = url.replace("postgresql+psycopg", "postgresql")
        t = time.perf_counter()
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), dsn], check=True,
                       capture_output=True)
        return scale * 100_000 / (time.perf_counter() - t)


def checkpoint() -> None:
    """Flush PostgreSQL's dirty pages now, so that the next measurement starts clean."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute("CHECKPOINT")



def _children(pid: int) -> list[int]:
    out: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                out.extend(int(p) for p in (task / "children").read_text().split())
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Probe:
    """What a measured step costs in memory and CPU, its own processes only (the machine is
    shared, so its busy time says little).

    - `peak_rss`: the sum over this process and every process it starts of each one's peak
      resident memory. Linux keeps a process's peak (`VmHWM` in /proc/PID/status); a thread
      reads it every `interval` seconds, so a child's peak is known up to its last sample
      before it exits. On entry this process's own peak is cleared (`/proc/self/clear_refs`),
      so that what it held before the step does not count.
    - `cpu`: CPU seconds of this process and its children (`getrusage`, children counted once
      waited for; with `include_self=False` the children only), plus, with `pg_database`,
      of the PostgreSQL backends serving that database (the postmaster's children whose
      title names it; each as last sampled), and of the processes started earlier and
      still running at the end (a server), as sampled.
    """

    def __init__(self, *, pg_database: str | None = None, interval: float = 0.2,
                 include_self: bool = True) -> None:
        self._interval = interval
        self._self = include_self
        self._pg_database = pg_database
        self._postmaster: int | None = None
        self._peaks: dict[int, int] = {}
        self._cpu_seen: dict[int, float] = {}
        self._cpu_base: dict[int, float] = {}
        self._alive: list[int] = []
        self._backends: dict[int, float] = {}
        self._backends0: dict[int, float] = {}
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = 0.0
        self.cpu = 0.0
        self.backend_cpu = 0.0

    @staticmethod
    def _hwm(pid: int) -> int:
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        tree, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(_children(pid))
        for pid in tree if self._self else tree[1:]:
            hwm = self._hwm(pid)
            if hwm > self._peaks.get(pid, 0):
                self._peaks[pid] = hwm
        self._alive = tree[1:]
        for pid in self._alive:
            self._cpu_seen[pid] = _cpu_seconds(pid)
        if self._postmaster is not None:
            tag = f" {self._pg_database} ".encode()
            for pid in _children(self._postmaster):
                with suppress(OSError):
                    if tag in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                        self._backends[pid] = max(self._backends.get(pid, 0.0),
                                                  _cpu_seconds(pid))

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def _own_cpu(self) -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = kids.ru_utime + kids.ru_stime
        if self._self:
            me = resource.getrusage(resource.RUSAGE_SELF)
            cpu += me.ru_utime + me.ru_stime
        return cpu

    def __enter__(self) -> Probe:
        if self._pg_database is not None:
            with psycopg.connect(PG_ADMIN) as conn:  # the backend's parent, while it runs
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                stat = Path(f"/proc/{row[0]}/stat").read_text()
            self._postmaster = int(stat.rsplit(")", 1)[1].split()[1])
        self._sample()
        self._backends0 = dict(self._backends)  # backends' CPU before the step
        self._cpu_base = dict(self._cpu_seen)  # and the processes already running
        with suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self._peaks.clear()
        self._cpu0 = self._own_cpu()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        backends = sum(cpu - self._backends0.get(pid, 0.0) for pid, cpu in self._backends.items())
        # Processes still running at the end (a server) were not waited for: their CPU
        # is what they used since the start, as sampled.
        running = sum(self._cpu_seen[p] - self._cpu_base.get(p, 0.0) for p in self._alive)
        self.cpu = self._own_cpu() - self._cpu0 + backends + running
        self.backend_cpu = backends

    @property
    def peak_rss(self) -> int:
        """Bytes: the sum over the processes of each one's peak."""
        return sum(self._peaks.values())

    @property
    def processes(self) -> int:
        return len(self._peaks)

    @property
    def largest(self) -> int:
        return max(self._peaks.values(), default=0)
