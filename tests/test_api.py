"""The application as `create_app` builds it: FastAPI's own OpenTelemetry only where
OpenTelemetry is set up."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from habitue.api import create_app, fastapi_telemetry
from habitue.db import Database
from habitue.settings import Settings


def _no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "FASTAPI_OTEL_")):
            monkeypatch.delenv(name)


def _count_tracer_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the looks at the global tracer provider (FastAPI makes one per request while
    its telemetry is on)."""
    seen = [0]
    lookup = trace.get_tracer_provider

    def counted() -> Any:
        seen[0] += 1
        return lookup()

    monkeypatch.setattr(trace, "get_tracer_provider", counted)
    return seen


async def _get_twice(settings: Settings, db: Database) -> None:
    app = create_app(settings, db=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for _ in range(2):
                assert (await c.get("/healthz")).status_code == 200


async def test_fastapi_telemetry_is_off_when_opentelemetry_is_not_set_up(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_otel_variables(monkeypatch)
    assert fastapi_telemetry() == {"tracing": False, "metrics": False, "logs": False}
    seen = _count_tracer_lookups(monkeypatch)
    await _get_twice(settings, db)
    assert seen[0] <= 1  # at most the one look `create_app` makes, none per request


async def test_fastapi_telemetry_keeps_its_defaults_when_opentelemetry_is_set_up(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_otel_variables(monkeypatch)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "habitue")
    assert fastapi_telemetry() is None
    seen = _count_tracer_lookups(monkeypatch)
    await _get_twice(settings, db)
    assert seen[0] >= 2  # FastAPI looks for its providers at each request

    monkeypatch.delenv("OTEL_SERVICE_NAME")

    class TracerProvider:  # a provider set in code (an SDK's), before the app is made
        pass

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())
    assert fastapi_telemetry() is None
