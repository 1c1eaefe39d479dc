"""Shared pieces of the benchmarks: scratch databases, a server process, wrk and pgbench."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
