"""Probes and database outages: `/healthz`, `/readyz`, and 503 when the database is down.

`/healthz` is a liveness probe: the process answers, nothing more. `/readyz` is the
readiness probe: 200 `{"ready": true}` when the database answers `SELECT 1` within
`HABITUE_DB_TIMEOUT_SECONDS`, else `503 service-unavailable` (problem+json, `Retry-After`).

A request that cannot reach the database is answered `503 service-unavailable` with
`Retry-After`: `Database.read` and `Database.write` raise `ServiceUnavailable`, rendered by the
error handler; `DatabaseUnavailable` (the outermost middleware) catches what escapes the
other middleware, so no outage surfaces as a 500.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from habitue.db import Database, is_unavailable, unavailable
from habitue.errors import ServiceUnavailable
from habitue.middleware import send_problem

log = structlog.get_logger()

router = APIRouter()


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Any:
    db: Database = request.app.state.db
    if await db.ready():
        return {"ready": True}
    error = ServiceUnavailable("the database does not answer")
    return JSONResponse(
        error.problem(),
        status_code=error.status,
        media_type="application/problem+json",
        headers=error.headers(),
    )


class DatabaseUnavailable:
    """Answers 503 for a database outage that escaped the error handlers (middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("database unavailable", path=scope.get("path"), error=type(exc).__name__)
            error = unavailable(exc)
            headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers() or {}).items()]
            # No wrapper watches every response for this rare case: when the response had
            # started already, the server refuses a second start, and that is all there is.
            with contextlib.suppress(Exception):
                await send_problem(send, error, headers)
