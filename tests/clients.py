"""One application reached from several client addresses, with a limiter on a clock the test
moves (the rate-limit tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from habitue.api import create_app
from habitue.db import Database
from habitue.ratelimit import MemoryRateLimiter
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Served:
    """The application, its limiter's clock, and clients from any address."""

    def __init__(self, app: object, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    def at(self, address: str, key: str | None = ADMIN_KEY) -> httpx.AsyncClient:
        """A client from `address`, sending `key` (None: no Authorization header)."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 50123))  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@contextlib.asynccontextmanager
async def serve(settings: Settings, db: Database) -> AsyncIterator[Served]:
    """The application with its default in-process limiter on a test clock."""
    app = create_app(settings, db=db)
    clock = Clock()
    app.state.limiter = MemoryRateLimiter(max_keys=settings.rate_limit_max_keys, clock=clock)
    async with app.router.lifespan_context(app):
        yield Served(app, clock)


async def new_key(client: httpx.AsyncClient, program: str, name: str, *scopes: str) -> str:
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": name, "scopes": list(scopes)}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def limited(r: httpx.Response, retry_after: int) -> None:
    """`r` is the API's 429 `rate-limited` problem, to retry after `retry_after` seconds."""
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "https://habitue.dev/errors/rate-limited"
    assert r.headers["retry-after"] == str(retry_after)
    assert r.json()["retry_after"] == retry_after
