"""Test fixtures: a fresh migrated database per run, on SQLite or PostgreSQL (`--db`)."""

from __future__ import annotations

import dataclasses
import gc
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.api import create_app
from habitue.db import Database
from habitue.migrate import upgrade
from habitue.programs import service as programs_service
from habitue.rules import service as rules_service
from habitue.settings import Settings

ADMIN_KEY = "test-admin-key"
PG_ADMIN_URL = os.environ.get("HABITUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("HABITUE_TEST_DB", "sqlite"),
        choices=("sqlite", "postgres"),
        help="the database the suite runs on",
    )


DATABASE_FIXTURES = frozenset({"db_url", "db_kind"})
"""A test that depends on one of these (directly or through `client`, `db`, …) touches the
database of the run; the others are the same on both databases."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On `--db postgres`, run only the tests that touch the database: the others (pure
    functions, the CLI's parsing, the outage of a server of their own…) already ran, identically,
    in the SQLite run of `make test`. The pages driven in Chromium (`browser` fixture) run on
    SQLite only too: the queries behind those pages run on PostgreSQL in the console's and the
    portal's HTTP tests, and what Chromium checks (the page's behaviour, its accessibility) does
    not depend on the database. `HABITUE_TEST_ALL=1` keeps them all."""
    if config.getoption("--db") != "postgres" or os.environ.get("HABITUE_TEST_ALL"):
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "browser" in names:
            dropped.append(item)
        elif names & DATABASE_FIXTURES or item.get_closest_marker("postgres"):
            keep.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _pg_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def db_kind(pytestconfig: pytest.Config) -> str:
    kind: str = pytestconfig.getoption("--db")
    return kind


@contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    """A new database migrated from the Alembic scripts (a file in `directory` on SQLite, a
    database of its own on PostgreSQL, dropped afterwards)."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / f'habitue-{secrets.token_hex(4)}.db'}"
        upgrade(url)
        yield url
        return
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} and CI requires it")
        pytest.skip("PostgreSQL is unreachable")
    import psycopg

    name = f"habitue_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database migrated from the Alembic scripts, for this test run."""
    with fresh_database(db_kind, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        env="test", database_url=db_url, admin_key=ADMIN_KEY, scheduler=False, worker=False,
        hmac_key="test-hmac-key",
    )


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    clock.reset()
    programs_service.forget()
    rules_service.forget_stamp()
    yield
    clock.reset()
    if os.environ.get("HABITUE_TEST_GC"):  # find a test that leaves a connection behind
        gc.collect()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url, group_commit=settings.group_commit)
    yield database
    await database.dispose()


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c:
            yield c


def change_pipeline(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, **stages: Any
) -> None:
    """Run the app of `client` with some stages of its event pipeline replaced (undone by
    `monkeypatch` at the test's end)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    state = transport.app.state  # type: ignore[attr-defined]
    changed = dataclasses.replace(state.pipeline, **stages)
    monkeypatch.setitem(state._state, "pipeline", changed)


def new_code(prefix: str = "p") -> str:
    return f"{prefix}{secrets.token_hex(5)}"


async def create_program(client: httpx.AsyncClient, **overrides: Any) -> str:
    """Create a program with a unique code through the API; returns its code."""
    body = {
        "code": new_code(),
        "name": "Test café",
        "currency": "EUR",
        "timezone": "Europe/Paris",
        **overrides,
    }
    r = await client.post("/v1/programs", json=body)
    assert r.status_code == 201, r.text
    return str(body["code"])


async def enrol(client: httpx.AsyncClient, program: str, **fields: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/members", json=fields)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def purchase(
    client: httpx.AsyncClient, program: str, member_id: str, total: str, **extra: Any
) -> httpx.Response:
    body = {
        "type": "purchase",
        "member": {"id": member_id},
        "external_id": extra.pop("external_id", new_code("t")),
        "total": total,
        **extra,
    }
    return await client.post(f"/v1/programs/{program}/events", json=body)


@pytest.fixture
async def program(client: httpx.AsyncClient) -> str:
    return await create_program(client)


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.read() as s:
        yield s
