"""bench/stack_cpu: the CPU each layer of the application's middleware stack costs a request.

    PYTHONPATH=$PWD/src .venv/bin/python bench/stack_cpu.py [--calls 20000] [--rounds 7]
        [--idempotency-key]

The application is built as `habitue serve` builds it (`create_app`), and its router replaced
by an app that answers at once (201, two bytes): what is left is the middleware stack a
till's `POST /v1/programs/{p}/events` goes through, called in-process, one request after the
other (no server, no client, no database). Each layer is called `--calls` times per round,
from the outermost (`FastAPI.__call__`) to the innermost; a layer's own cost is its total
less the next one's (least over the rounds, µs of CPU per request). `--idempotency-key` sends
the header too (the layer then ends in `db.write` of the claim: not the usual request).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.routing import Router

from habitue.api import create_app
from habitue.db import Database
from habitue.settings import Settings

BODY = b'{"type":"purchase","member":{"id":"x"},"external_id":"e1","total":"12.50"}'


async def _answer(_scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})  # fmt: skip


def _scope(idempotency_key: bool) -> dict[str, Any]:
    headers = [
        (b"host", b"t"), (b"user-agent", b"wrk"), (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()), (b"authorization", b"Bearer till"),
    ]  # fmt: skip
    if idempotency_key:
        headers.append((b"idempotency-key", b"k1"))
    path = "/v1/programs/rc/events"
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1234),
        "server": ("t", 80),
    }  # fmt: skip


async def run(calls: int, rounds: int, idempotency_key: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'stack.db'}"
        settings = Settings(
            env="test", database_url=url, admin_key="admin", scheduler=False, worker=False
        )
        db = Database(url)
        app = create_app(settings, db=db)
        app.middleware_stack = app.build_middleware_stack()
        layers: list[tuple[str, Any]] = [("FastAPI.__call__", app)]
        layer = app.middleware_stack
        while not isinstance(layer, Router):
            layers.append((type(layer).__name__, layer))
            layer = layer.app
        layers[-1][1].app = _answer  # the innermost middleware answers at once
        layers.append(("(the answer)", _answer))
        template = _scope(idempotency_key)

        async def call(target: Any, n: int) -> None:
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": BODY, "more_body": False}

            async def send(_message: Any) -> None:
                pass

            for _ in range(n):
                await target({**template, "state": {}, "app": app}, receive, send)

        seen: dict[str, list[float]] = {name: [] for name, _ in layers}
        for _ in range(rounds):
            for name, target in layers:
                await call(target, calls // 20)  # warm
                cpu = time.process_time()
                await call(target, calls)
                seen[name].append(1e6 * (time.process_time() - cpu) / calls)
        await db.dispose()
    least = [min(seen[name]) for name, _ in layers]
    print(f"{'layer':<32}{'total least µs':>15}{'median':>8}{'own µs':>8}")
    for i, (name, _) in enumerate(layers):
        inner = least[i + 1] if i + 1 < len(layers) else 0.0
        print(f"{name:<32}{least[i]:>15.2f}{statistics.median(seen[name]):>8.2f}"
              f"{least[i] - inner:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--idempotency-key", action="store_true")
    args = ap.parse_args()
    asyncio.run(run(args.calls, args.rounds, args.idempotency_key))


if __name__ == "__main__":
    main()
