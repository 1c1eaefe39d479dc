"""bench/http_cpu: the CPU of uvicorn's HTTP work per request, with and without the app's stack.

    PYTHONPATH=$PWD/src .venv/bin/python bench/http_cpu.py [--seconds 5] [--rounds 3]

One uvicorn process (httptools, uvloop, as `habitue serve` runs it: no access log, proxy
headers on) is driven by wrk at 32 connections with bench/earn's purchase (`POST`, JSON body,
bearer key), and the CPU it used per request is read from /proc. Two apps, alternated:

- `bare`: an ASGI app that reads the body and answers 201 with two bytes: what uvicorn,
  httptools, the event loop and the sockets cost a request;
- `stack`: `create_app` (production settings, no worker, no scheduler) with its router
  replaced by that answer: the same plus the whole middleware stack a purchase goes through.

No database is touched. What a purchase costs beyond `stack` is its route and its work
(bench/request_cpu.py measures those in-process).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import _cpu_seconds, free_port  # noqa: E402

SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer till"
wrk.body = '{"type":"purchase","member":{"id":"m1"},"external_id":"e1","total":"12.50",' ..
  '"lines":[{"sku":"latte","category":"coffee","quantity":1,"unit_price":"12.50"}]}'
"""


async def _answer(_scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})  # fmt: skip


async def bare(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _answer(scope, receive, send)


def stack() -> Any:
    """The application with its router answering at once (called by uvicorn, `--factory`)."""
    from starlette.routing import Router

    from habitue.api import create_app
    from habitue.db import Database
    from habitue.settings import Settings

    url = f"sqlite:///{tempfile.mkdtemp()}/http.db"
    settings = Settings(
        env="production", database_url=url, admin_key=secrets.token_hex(16), scheduler=False,
        worker=False, hmac_key=secrets.token_hex(32), public_url="http://127.0.0.1",
    )  # fmt: skip
    app = create_app(settings, db=Database(url))
    app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer.app, Router):
        layer = layer.app
    layer.app = _answer
    return app


def _serve(mode: str, port: int) -> None:
    import uvicorn

    target = "http_cpu:stack" if mode == "stack" else "http_cpu:bare"
    uvicorn.run(target, factory=mode == "stack", host="127.0.0.1", port=port,
                log_level="warning", access_log=False)  # fmt: skip


def _measure(mode: str, seconds: int, script: str) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)],
        cwd=Path(__file__).parent, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/programs/bench/events"
        for _ in range(600):  # until it answers (importing the app takes seconds)
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        wrk = ["wrk", "-t", "2", "-c", "32", "-s", script, url]
        subprocess.run([*wrk, "-d", "1s"], capture_output=True, check=True)  # warm up
        cpu = _cpu_seconds(proc.pid)
        out = subprocess.run([*wrk, "-d", f"{seconds}s"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        cpu = _cpu_seconds(proc.pid) - cpu
        requests = int(out.split(" requests in")[0].split()[-1])
        return 1e6 * cpu / requests, requests / seconds
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(SCRIPT)
    seen: dict[str, list[tuple[float, float]]] = {"bare": [], "stack": []}
    try:
        for _ in range(args.rounds):
            for mode in seen:
                us, rps = _measure(mode, args.seconds, fh.name)
                seen[mode].append((us, rps))
                print(f"{mode:<6} {us:7.1f} µs CPU/request  {rps:8.0f} requests/s", flush=True)
    finally:
        os.unlink(fh.name)
    for mode, rows in seen.items():
        cpu = [r[0] for r in rows]
        print(f"{mode:<6} least {min(cpu):6.1f}  median {statistics.median(cpu):6.1f} µs/request")


if __name__ == "__main__":
    main()
