"""Pure ASGI middleware: body size limit, Idempotency-Key replay, request metrics."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from habitue.db import unit_hook
from habitue.errors import HabitueError, PayloadTooLarge, ValidationFailed
from habitue.events import idempotency

if TYPE_CHECKING:
    from habitue.db import Database
    from habitue.settings import Settings

log = structlog.get_logger()
REQUESTS = Counter("habitue_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram(
    "habitue_http_request_seconds",
    "HTTP request latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


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
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_problem(send, self._too_large())
                return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before the end of the body: the app sees the disconnect.
                await self.app(scope, replay_first(message, receive), send)
                return
            chunk: bytes = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await send_problem(send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, replay_first(body, receive), send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"body over {self.max_bytes} bytes")


def replay_first(first: Message, receive: Receive) -> Receive:
    """A receive that answers `first` once, then defers to `receive` (for the disconnect)."""
    pending: Message | None = first

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay


_Children = tuple[Any, Any]  # a method and status's request counter and latency histogram
_CHILDREN: dict[tuple[str, int], _Children] = {}


def _children(method: str, status: int) -> _Children:
    """The metrics' children for `method` and `status`, looked up once per process: `labels`
    checks and locks at every call (about a fifth of this middleware's CPU)."""
    children = _CHILDREN.get((method, status))
    if children is None:
        children = (REQUESTS.labels(method, str(status)), LATENCY.labels(method))
        _CHILDREN[(method, status)] = children
    return children


class Metrics:
    """Counts each HTTP request by method and status and times it (`/metrics`)."""

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
            requests, latency = _children(scope["method"], status)
            requests.inc()
            latency.observe(time.perf_counter() - start)


class IdempotencyKeys:
    """A POST under `/v1/programs/{p}/…` with `Idempotency-Key` is answered once; a retry gets
    the first response (habitue.events.idempotency tells the record's life).

    The key is claimed only for an authenticated caller: the middleware resolves the bearer
    key itself, through the same cached look-ups as `deps.get_principal`, and passes anything
    it cannot attribute (no or unknown key, unknown program, another program's key) through
    untouched: the route answers 401 or 404, and no key is taken. Records are scoped to the
    credential (the operator key, or one API key): two callers never share a key.

    The request's units of work store the response in their own transaction (a
    `habitue.db.UnitHook`), so that the usual path costs the claim (one statement) and
    nothing after the answer; a POST without the header costs one header scan.

    `POST /v1/programs/{p}/events` is not claimed first: the event's unit of work inserts the
    key's record with its answer (`idempotency.InlineClaim`), so its usual request costs no
    statement of its own. Its answer is held until the key is known to be its own: when the
    event's unit found the key taken, or the request committed nothing (a refusal), the usual
    claim decides (replay, refusal, busy, or the request runs again under a claimed key).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = None
        auth = b""
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                raw_key = value
            elif name == b"authorization":
                auth = value
        path: str = scope.get("path", "")
        parts = path.split("/", 4)
        if raw_key is None or len(parts) < 4 or parts[1:3] != ["v1", "programs"] or not parts[3]:
            await self.app(scope, receive, send)
            return
        caller = await _caller(scope, auth, parts[3])
        if caller is None:
            await self.app(scope, receive, send)
            return
        program_id, credential = caller
        key = raw_key.decode("latin-1")
        if not key or len(key) > 200 or not key.isprintable():
            await send_problem(
                send,
                ValidationFailed(
                    "Idempotency-Key", "1 to 200 printable characters, without control ones"
                ),
            )
            return
        await self._handle(scope, receive, send, program_id, credential, key)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        program_id: int,
        credential: str,
        key: str,
    ) -> None:
        db: Database = scope["app"].state.db
        settings: Settings = scope["app"].state.settings
        body_chunks: list[bytes] = []
        while True:
            message = await receive()
            body_chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(body_chunks)
        request = scope["path"].encode() + b"?" + scope.get("query_string", b"") + b"\0" + body
        digest = hashlib.sha256(request).hexdigest()
        lease = timedelta(seconds=settings.idempotency_lease_seconds)
        ttl = timedelta(hours=settings.idempotency_ttl_hours)

        async def take(
            session: AsyncSession, answer: idempotency.Response | None = None
        ) -> idempotency.Outcome:
            return await idempotency.claim(
                session,
                program_id=program_id,
                credential=credential,
                key=key,
                request_hash=digest,
                lease=lease,
                ttl=ttl,
                answer=answer,
            )

        if inline_claimed(scope["path"]):
            inline = idempotency.InlineClaim(
                program_id=program_id,
                credential=credential,
                key=key,
                request_hash=digest,
                lease=lease,
                describe=lambda value: _describe(scope, value),
            )
            kept: list[Message] = []

            async def keep(message: Message) -> None:
                kept.append(message)

            try:
                with unit_hook(inline):
                    await self.app(scope, _replay_body(body), keep)
            finally:
                inline.closed = True
            status, content_type, payload = _response_of(kept)
            if inline.recorded and _is_stored(inline.stored, status, content_type, payload):
                await _send_all(send, kept)  # the usual answer: its work committed it as sent
                return
            answer = _answer(status, content_type, payload)
            if inline.recorded:  # the work committed with its key (and its answer)
                sent = answer
                if sent is not None and sent != inline.stored:
                    await self._settle(db, lambda s: inline.settle(s, sent))
                await _send_all(send, kept)
                return
            if answer is None and not inline.taken:  # a 5xx: nothing committed, nothing kept
                await _send_all(send, kept)
                return
            # Its work found the key taken (and was rolled back), or it committed nothing
            # (a refusal, an event recorded before): the usual claim decides, storing this
            # answer with the key when the request committed nothing.
            stored = None if inline.taken else answer
            outcome = await db.write(lambda s: take(s, stored))
            if outcome.token is not None and stored is not None:
                await _send_all(send, kept)
                return
        else:
            outcome = await db.write(take)
        if outcome.replay is not None:
            await _send_replay(send, outcome.replay)
            return
        if outcome.error is not None or outcome.record_id is None or outcome.token is None:
            error = outcome.error or HabitueError("the Idempotency-Key could not be claimed")
            headers = []
            if outcome.retry_after is not None:
                headers.append((b"retry-after", str(outcome.retry_after).encode()))
            await send_problem(send, error, headers)
            return
        held = idempotency.RequestClaim(
            outcome.record_id, outcome.token, lambda value: _describe(scope, value)
        )
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)
            await send(message)

        try:
            with unit_hook(held):
                await self.app(scope, _replay_body(body), capture)
        finally:
            held.closed = True
            answer = _answer(*_response_of(messages))
            if answer is None and held.committed_any:
                pass  # keep what the work committed; a retry replays it (or is told it is lost)
            elif answer is None or answer != held.stored:
                await self._settle(db, lambda s: held.settle(s, answer))

    @staticmethod
    async def _settle(db: Database, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        try:
            await db.write(work)
        except Exception as exc:  # the store is away: the lease frees the key
            log.warning("idempotency_record_unsettled", error=type(exc).__name__)


def inline_claimed(path: str) -> bool:
    """Whether a POST to `path` takes its key in its own unit of work (`InlineClaim`):
    `POST /v1/programs/{p}/events`, one unit of work whose value is the answer."""
    return path.count("/") == 4 and path.endswith("/events")


def _response_of(messages: list[Message]) -> tuple[int, str, bytes]:
    """The status, content type and body of a response's messages (500 when none started)."""
    status, content_type, chunks = 500, "", []
    for message in messages:
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
    return status, content_type, b"".join(chunks)


async def _send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


async def _caller(scope: Scope, auth: bytes, code: str) -> tuple[int, str] | None:
    """(program id, credential) of an authenticated caller of program `code`; None when the
    route should decide (no key, unknown key or program, another program's key)."""
    from habitue.programs import service as programs_service

    scheme, _, raw = auth.decode("latin-1").partition(" ")
    bearer = raw.strip()
    if scheme.lower() != "bearer" or not bearer:
        return None
    settings: Settings = scope["app"].state.settings
    known, principal = programs_service.cached_principal(bearer, settings.admin_key)
    program = programs_service.cached_info(code)
    if not known or program is None:
        db: Database = scope["app"].state.db
        try:
            async with db.read() as session:
                if not known:
                    principal = await programs_service.authenticate(
                        session, bearer, settings.admin_key
                    )
                if principal is not None and program is None:
                    program = await programs_service.get_info(session, code)
        except HabitueError:
            return None
    if principal is None or program is None:
        return None
    if principal.program_id is not None and principal.program_id != program.id:
        return None
    admin = settings.admin_key
    if admin and hmac.compare_digest(bearer.encode(), admin.encode()):
        return program.id, "admin"
    return program.id, programs_service.hash_key(bearer)


def _describe(scope: Scope, value: Any) -> idempotency.Response | None:
    """The response the matched route makes of a unit's value, when that value is the route's
    response model (FastAPI's serialisation options applied); None otherwise."""
    route = scope.get("route")
    model = getattr(route, "response_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel) and isinstance(value, model)):
        return None
    body = value.model_dump(
        mode="json",
        by_alias=getattr(route, "response_model_by_alias", True),
        include=getattr(route, "response_model_include", None),
        exclude=getattr(route, "response_model_exclude", None),
        exclude_unset=getattr(route, "response_model_exclude_unset", False),
        exclude_defaults=getattr(route, "response_model_exclude_defaults", False),
        exclude_none=getattr(route, "response_model_exclude_none", False),
    )
    return idempotency.Response(getattr(route, "status_code", None) or 200, JSON_TYPE, body)


JSON_TYPE = "application/json"


def _is_stored(
    stored: idempotency.Response | None, status: int, content_type: str, body: bytes
) -> bool:
    """Whether the answer sent is, byte for byte, the JSON of the answer stored (so nothing is
    left to settle), without parsing it back: the usual case, where both are made of one
    model. False says only "compare them" (`_answer`)."""
    return (
        stored is not None
        and stored.status == status
        and stored.content_type == content_type
        and "json" in content_type
        and stored.body is not None
        and _dumps(stored.body) == body
    )


def _dumps(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def _answer(status: int, content_type: str, body: bytes) -> idempotency.Response | None:
    """The answer to remember, or None for one a retry should not get back."""
    if status >= 500 or status in idempotency.NOT_STORED:
        return None
    if "json" in content_type:
        try:
            return idempotency.Response(status, content_type, orjson.loads(body) if body else None)
        except orjson.JSONDecodeError:
            return None
    try:
        return idempotency.Response(status, content_type or "text/plain", body.decode())
    except UnicodeDecodeError:
        return None


async def _send_replay(send: Send, answer: idempotency.Response) -> None:
    content_type = answer.content_type or JSON_TYPE
    if "json" in content_type:
        payload = orjson.dumps(answer.body) if answer.body is not None else b""
    else:
        payload = str(answer.body or "").encode()
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(payload)).encode()),
                (b"idempotent-replayed", b"true"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _replay_body(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
