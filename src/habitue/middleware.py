"""Pure ASGI middleware: body size limit, Idempotency-Key replay, request metrics."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from habitue import clock
from habitue.db import table_of
from habitue.errors import HabitueError, PayloadTooLarge
from habitue.events.models import IdempotencyRecord

REQUESTS = Counter("habitue_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram(
    "habitue_http_request_seconds",
    "HTTP request latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_records = table_of(IdempotencyRecord)


async def send_problem(
    send: Send, error: HabitueError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(error.problem())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 problem+json.

    A declared `Content-Length` over the limit is refused before reading; a chunked body is read
    up to the limit and refused as soon as it goes over. The body is handed on only once it is
    known to fit, so the refusal never surfaces inside the application as a parsing error."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"body over {self.max_bytes} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_problem(send, too_large)
                return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before the end of the body: the app sees the disconnect.
                await self.app(scope, _then(message, receive), send)
                return
            chunk: bytes = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await send_problem(send, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _then(body, receive), send)


def _then(first: Message, receive: Receive) -> Receive:
    """A receive that answers `first` once, then defers to `receive` (for the disconnect)."""
    pending: Message | None = first

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay


class Metrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUESTS.labels(scope["method"], str(status)).inc()
            LATENCY.labels(scope["method"]).observe(time.perf_counter() - start)


class IdempotencyKeys:
    """A POST with `Idempotency-Key` is answered once; a retry gets the first response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http" and scope["method"] == "POST":
            for name, value in scope["headers"]:
                if name == b"idempotency-key":
                    key = value.decode("latin-1")[:200]
        path: str = scope.get("path", "")
        parts = path.split("/")
        if key is None or len(parts) < 4 or parts[1:3] != ["v1", "programs"]:
            await self.app(scope, receive, send)
            return
        from habitue.db import Database
        from habitue.programs import service as programs_service

        db: Database = scope["app"].state.db
        body_chunks: list[bytes] = []
        while True:
            message = await receive()
            body_chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(body_chunks)
        auth = dict(scope["headers"]).get(b"authorization", b"")
        digest = hashlib.sha256(auth + b"\0" + path.encode() + b"\0" + body).hexdigest()
        try:
            async with db.read() as session:
                program = await programs_service.get_info(session, parts[3])
        except HabitueError:
            await self.app(scope, _replay_body(body), send)
            return
        scope_key = f"{key}"

        async def claim(session: Any) -> dict[str, Any] | None:
            row = (
                (
                    await session.execute(
                        select(_records).where(
                            _records.c.program_id == program.id, _records.c.key == scope_key
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                return dict(row)
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(_records).values(
                            program_id=program.id,
                            key=scope_key,
                            request_hash=digest,
                            status_code=None,
                            body=None,
                            created_at=clock.now(),
                        )
                    )
            except IntegrityError:
                return {"status_code": None, "request_hash": digest}
            return None

        existing = await db.write(claim)
        if existing is not None:
            if existing["request_hash"] != digest:
                err = HabitueError("this Idempotency-Key was used with another request")
                err.status, err.type = 422, "idempotency-key-reused"
                await send_problem(send, err)
                return
            if existing["status_code"] is None:
                err = HabitueError("a request with this Idempotency-Key is still in progress")
                err.status, err.type = 409, "request-in-progress"
                await send_problem(send, err)
                return
            payload = orjson.dumps(existing["body"])
            await send(
                {
                    "type": "http.response.start",
                    "status": existing["status_code"],
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        status = 500
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay_body(body), capture)
        finally:

            async def finish(session: Any) -> None:
                cond = (_records.c.program_id == program.id) & (_records.c.key == scope_key)
                if status < 500:
                    try:
                        stored = orjson.loads(b"".join(chunks)) if chunks else None
                    except orjson.JSONDecodeError:
                        stored = None
                    await session.execute(
                        update(_records).where(cond).values(status_code=status, body=stored)
                    )
                else:
                    await session.execute(delete(_records).where(cond))

            await db.write(finish)


def _replay_body(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
