"""The ASGI application: routers, error rendering, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from habitue import bounds, jobs, logs, openapi, ratelimit, rooms
from habitue.db import Database
from habitue.errors import ERROR_BASE, HabitueError
from habitue.events.pipeline import Pipeline
from habitue.health import DatabaseUnavailable
from habitue.health import router as health_router
from habitue.middleware import BodyLimit, IdempotencyKeys, Metrics
from habitue.settings import Settings, get_settings

log = structlog.get_logger()

PROBLEM = "application/problem+json"


def _problem(status: int, type_: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": ERROR_BASE + type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_problem(raw_errors: Sequence[Any]) -> dict[str, Any]:
    """The 422 `validation` problem+json body for pydantic's errors (a request's, or one
    event's in a batch)."""
    errors = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "message": e.get("msg", "invalid"),
            "code": e.get("type"),
        }
        for e in raw_errors
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return {
        "type": ERROR_BASE + "validation",
        "title": "Invalid request",
        "status": 422,
        "detail": detail,
        "errors": errors,
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HabitueError)
    async def _habitue(_: Request, exc: HabitueError) -> JSONResponse:
        return JSONResponse(
            exc.problem(), status_code=exc.status, media_type=PROBLEM, headers=exc.headers()
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_problem(exc.errors()), status_code=422, media_type=PROBLEM)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _problem(exc.status_code, kind, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return _problem(
            500, "internal", "Internal error", "an unexpected error occurred; it has been logged"
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # The ledger's CHECK constraints (migration 0015) refusing a balance past its bound.
        if bounds.is_bound_violation(exc):
            from habitue.ledger.errors import BalanceLimit

            error = BalanceLimit("the movement would carry a balance past the ledger's limit")
            return JSONResponse(error.problem(), status_code=error.status, media_type=PROBLEM)
        return await _unexpected(request, exc)


def fastapi_telemetry() -> TelemetryConfig | None:
    """FastAPI's own OpenTelemetry spans, metrics and logs: its defaults (on, through the
    global providers) when OpenTelemetry is set up before the app is made (an `OTEL_*` or
    `FASTAPI_OTEL_*` variable, or a provider set in code, as `opentelemetry-instrument` does);
    else off. Left on with nothing set up, FastAPI looks at the three global providers at
    every request to find them unset (11.6 µs a request here: each look reads `os.environ`
    for a name that is not there; docs/benchmarks.md)."""
    if any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ):
        return None
    from opentelemetry import _logs, metrics, trace

    providers = (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    )
    if any(not type(p).__name__.lstrip("_").startswith(("Proxy", "NoOp")) for p in providers):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    pipeline: Pipeline | None = None,
) -> FastAPI:
    """Build the application; `db` and `pipeline` may be passed in by tests and benchmarks."""
    settings = settings or get_settings()
    logs.configure(settings)
    # The event path, built once: every room's stages, in their order (`habitue.rooms`).
    event_pipeline = pipeline or rooms.build_pipeline()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = db or Database(
            settings.database_url,
            group_commit=settings.group_commit,
            max_batch=settings.group_commit_max,
            pool_size=settings.pool_size,
            lanes=settings.group_commit_lanes,
            timeout=settings.db_timeout_seconds,
            statement_timeout=settings.db_statement_timeout_seconds,
        )
        if settings.env == "production":
            # What was allocated at start-up stays out of the collector's way; a larger first
            # generation threshold makes collections rarer under load.
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
        tasks = []
        if settings.scheduler:
            tasks.append(asyncio.create_task(jobs.scheduler(app.state.db, settings)))
        stop_worker = asyncio.Event()
        worker_db: Database | None = None
        if settings.worker:
            from habitue.messaging import worker

            worker_db = app.state.db
            if not app.state.db.sqlite:
                # On PostgreSQL the delivery worker has connections of its own, outside the
                # requests' group committer: its planning transactions (thousands of outbox
                # rows under load) never sit in a batch of purchases and hold their answers.
                # SQLite has one writer: the worker takes its turn through the committer.
                worker_db = Database(
                    settings.database_url,
                    group_commit=False,
                    pool_size=2,
                    timeout=settings.db_timeout_seconds,
                    statement_timeout=settings.db_statement_timeout_seconds,
                )
            tasks.append(asyncio.create_task(worker.run(worker_db, settings, stop_worker)))
        try:
            yield
        finally:
            stop_worker.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if worker_db is not None and worker_db is not app.state.db:
                await worker_db.dispose()
            await app.state.limiter.close()
            if db is None:
                await app.state.db.dispose()

    app = FastAPI(
        telemetry=fastapi_telemetry(),
        title="Habitué",
        version="0.1.0",
        description="Loyalty-program engine: members, cards, points, rules, tiers, rewards.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from our own assets (habitue.privacy.docs)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pipeline = event_pipeline
    app.state.limiter = ratelimit.limiter_for(settings)
    app.state.limits = ratelimit.Limits.from_settings(settings)
    if db is not None:
        app.state.db = db
    install_error_handlers(app)

    from habitue.events.api import router as events_router
    from habitue.members.api import router as members_router
    from habitue.members.points_api import router as ledger_router
    from habitue.messaging.api import router as feed_router
    from habitue.programs.api import router as programs_router

    routers = (programs_router, members_router, ledger_router, events_router, feed_router)
    for router in (*routers, health_router):
        app.include_router(router)
    for extra in _optional_routers():
        app.include_router(extra)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    openapi.install(app)
    from habitue import lean
    from habitue.privacy import docs

    lean.install(app)  # the tills' hot routes, matched first (habitue.lean)
    from habitue.privacy.audit_http import AuditTrail

    docs.install(app)
    app.add_middleware(AuditTrail)  # innermost: it sees the caller the route resolved
    app.add_middleware(IdempotencyKeys)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Metrics)
    app.add_middleware(DatabaseUnavailable)
    app.add_middleware(bounds.SafeUrl)
    return app


def _optional_routers() -> list[Any]:
    """Routers of rooms that register themselves in `habitue.routers`."""
    from habitue.routers import extra_routers

    return extra_routers()
