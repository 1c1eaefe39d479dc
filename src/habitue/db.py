"""Engines, sessions and the unit of work; SQLite and PostgreSQL behind one interface."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import itertools
import math
import os
import re
import socket
import zlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TextClause,
    event,
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.concurrency import greenlet_spawn

from habitue.errors import ServiceUnavailable

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JSONType = JSON()


def ident(length: int) -> String:
    """Text that identifies something (ids, external ids, references, card numbers, key
    hashes): only equality and byte order matter for it.

    On PostgreSQL it is declared `COLLATE "C"`, so that its indexes compare bytes instead of
    going through the locale's string comparison (a sixth of a bulk import's time on a
    `C.UTF-8` database; docs/benchmarks.md). SQLite compares bytes already.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING)


T = TypeVar("T")


def sync_url(url: str) -> URL:
    """The synchronous driver URL (sqlite / postgresql+psycopg)."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return u.set(drivername="sqlite")
    if u.drivername.startswith("postgresql"):
        return u.set(drivername="postgresql+psycopg")
    return u


def async_url(url: str) -> URL:
    """The asynchronous driver URL: sqlite+aiosqlite, or postgresql+asyncpg.

    asyncpg costs about a quarter less CPU per statement than psycopg under SQLAlchemy
    (measured in docs/benchmarks.md); `HABITUE_PG_ASYNC_DRIVER=psycopg` switches back.
    """
    u = sync_url(url)
    if u.drivername == "sqlite":
        return u.set(drivername="sqlite+aiosqlite")
    driver = os.environ.get("HABITUE_PG_ASYNC_DRIVER", "asyncpg")
    return u.set(drivername=f"postgresql+{driver}")


def is_sqlite(url: str | URL) -> bool:
    return make_url(str(url) if isinstance(url, URL) else url).get_backend_name() == "sqlite"


def _sqlite_setup(sync_engine: Engine, *, immediate: bool) -> None:
    """WAL, a busy timeout, foreign keys, and transactions we open ourselves.

    pysqlite's own transaction handling is bypassed so that savepoints work and writers
    take the lock up front (`BEGIN IMMEDIATE`) instead of failing on lock upgrade.
    """

    @event.listens_for(sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_sync_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> Engine:
    """A synchronous engine for batch paths (import, migrations, verify).

    On SQLite its transactions take the write lock up front unless `immediate` is False
    (an engine that only reads).
    """
    from sqlalchemy import create_engine

    u = sync_url(url)
    if u.get_backend_name() == "sqlite":
        engine = create_engine(u, **kwargs)
        _sqlite_setup(engine, immediate=immediate)
        return engine
    return create_engine(u, **kwargs)


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a statement composed from several rooms' writes (PostgreSQL): a CTE
    named `cte` (or, when None, a list of CTEs written out, or the statement's last part).

    `sql` names its own parameters `:name`; `compose` renames them `:<namespace>__name` and
    `bind` does the same to `params`, so two parts cannot read each other's parameters, whatever
    they call them. Two parts of one statement have two namespaces (checked when composed).
    """

    namespace: str
    sql: str
    params: Mapping[str, Any]
    cte: str | None = None
    merge: Callable[[Sequence[Part]], Part] | None = None
    """How several such parts (of several events: a batch's group) become one, if they can:
    `events.write.write_events` then writes them in its statement instead of one by one."""

    def bound(self) -> dict[str, Any]:
        """The part's parameters under its namespace."""
        ns = self.namespace
        return {f"{ns}__{name}": value for name, value in self.params.items()}


def _namespaced(namespace: str, sql: str) -> str:
    return _PARAM.sub(lambda m: f":{namespace}__{m[1]}", sql)


_COMPOSED: dict[tuple[tuple[str, str | None, str], ...], TextClause] = {}


def compose(parts: Sequence[Part]) -> TextClause:
    """One statement of `parts`: every part but the last is a CTE (`WITH a AS (...), ...`),
    the last is the statement. Built once per combination (a handful): the driver keeps each
    prepared."""
    key = tuple((p.namespace, p.cte, p.sql) for p in parts)
    statement = _COMPOSED.get(key)
    if statement is None:
        spaces = [p.namespace for p in parts]
        if len(set(spaces)) != len(spaces):
            raise AssertionError(f"two parts of one statement share a namespace: {spaces}")
        *ctes, last = parts
        bodies = [
            _namespaced(p.namespace, p.sql if p.cte is None else f"{p.cte} AS ({p.sql})")
            for p in ctes
        ]
        head = "WITH " + ",\n".join(bodies) + "\n" if bodies else ""
        statement = text(head + _namespaced(last.namespace, last.sql))
        _COMPOSED[key] = statement
    return statement


def bind(parts: Sequence[Part]) -> dict[str, Any]:
    """The parameters of `compose(parts)`."""
    params: dict[str, Any] = {}
    for part in parts:
        params |= part.bound()
    return params


async def execute_composed(session: AsyncSession, parts: Sequence[Part]) -> None:
    """Run `compose(parts)` with `bind(parts)`'s values, its result unread: on PostgreSQL
    through asyncpg straight (`driver_connection`, `straight`) when the session's transaction
    has begun, skipping SQLAlchemy's processing of every parameter and of the result (a
    batch group's statement carries some sixty arrays); else through the session. Sent
    straight, a failure is asyncpg's own exception, not SQLAlchemy's: `is_retryable` and
    `is_unavailable` read both."""
    statement = compose(parts)
    raw = await driver_connection(session)
    plan = straight(statement, session.get_bind().dialect) if raw is not None else None
    if raw is None or plan is None:
        await session.execute(statement, bind(parts))
        return
    await raw.execute(plan.sql, *plan.args(bind(parts)))


_BATCHED = "habitue.batched_statements"


async def write_late(session: AsyncSession, statement: Executable, params: dict[str, Any]) -> None:
    """Run a unit's last write now, or, in a grouped batch whose units allow it (`late=True`
    on `Database.write`), with the batch's other such writes, in their order, just before the
    batch commits: one round trip for all the writes of one text (a pipelined executemany).

    Only for a write nothing reads back before the commit: neither the rest of its unit nor
    the batch's later units of the same kind (a unit of another kind runs after them).
    """
    pending: list[tuple[Executable, dict[str, Any]]] | None = session.info.get(_BATCHED)
    if pending is None:
        await session.execute(statement, params)
    else:
        pending.append((statement, params))


@dataclass(frozen=True, slots=True)
class _Merged:
    """A late write kept as a value: the batch's consecutive ones of one `flush` are written
    by one call of it, with all their values, just before the batch commits."""

    flush: Callable[[AsyncSession, list[Any]], Awaitable[None]]
    value: Any
    carry: Callable[[AsyncSession, list[Any], Sequence[Part]], Awaitable[None]] | None = None
    """(A late write) `flush` whose last statement also writes the given parts."""
    part: Callable[[list[Any]], Part] | None = None
    """(A write at the end) the values as one part of another statement."""


def write_late_merged(
    session: AsyncSession,
    flush: Callable[[AsyncSession, list[Any]], Awaitable[None]],
    value: Any,
    *,
    carry: Callable[[AsyncSession, list[Any], Sequence[Part]], Awaitable[None]] | None = None,
) -> bool:
    """`write_late` for a write the caller can merge with others of its kind: in a grouped
    batch whose units allow late writes, keep `value` and return True; at the batch's end,
    `flush(session, values)` writes it with the consecutive late writes of the same `flush`
    (in their order), so a table gets one multi-row statement for the batch instead of one per
    unit. Elsewhere return False: the caller writes now. The same rule as `write_late`:
    nothing in the batch reads back what it writes before the commit.

    With `carry`, when this write is among the batch's last late writes, the batch's writes
    at its end that can be parts (`write_at_end(part=...)`) go into its last statement:
    `carry(session, values, parts)` instead of `flush` and a statement of their own."""
    pending: list[Any] | None = session.info.get(_BATCHED)
    if pending is None:
        return False
    pending.append(_Merged(flush, value, carry=carry))
    return True


_AT_END = "habitue.end_statements"


def write_at_end(
    session: AsyncSession,
    flush: Callable[[AsyncSession, list[Any]], Awaitable[None]],
    value: Any,
    *,
    part: Callable[[list[Any]], Part] | None = None,
) -> bool:
    """In a grouped batch's first, optimistic run, keep a unit's write (`value`) for the
    batch's end, after its late writes, and return True: there `flush(session, values)` writes
    it with the batch's other such writes of the same `flush`, in their order, so that a table
    gets one statement for the batch. Elsewhere (a unit alone, or the batch run again unit by
    unit in savepoints) return False: the caller writes now, and may look at what its write did.

    Only for a write nothing in the batch reads back and that reads nothing the batch writes
    (the Idempotency-Key records of habitue.events.idempotency). If it fails (a unique key
    taken), the batch is rolled back whole and runs again unit by unit, as on any failure.

    With `part` (the values of the batch's consecutive such writes made one `Part`), the
    writes ride in the last statement of the batch's late writes when that one can carry
    them (`write_late_merged(carry=...)`): one round trip and one statement fewer.
    """
    pending: list[Any] | None = session.info.get(_AT_END)
    if pending is None:
        return False
    pending.append(_Merged(flush, value, part=part))
    return True


def _runs(pending: list[Any]) -> list[list[Any]]:
    """Consecutive writes of one text (or of one flush) together."""

    def kind(write: Any) -> int:
        return id(write.flush) if isinstance(write, _Merged) else id(write[0])

    return [list(run) for _, run in itertools.groupby(pending, key=kind)]


def _as_parts(ends: list[Any]) -> list[Part] | None:
    """The batch's writes at its end as parts of another statement, if every one can be."""
    parts = []
    for writes in _runs(ends):
        make = writes[0].part
        if make is None:
            return None
        parts.append(make([write.value for write in writes]))
    return parts


async def _write_pending(
    session: AsyncSession, slot: str = _BATCHED, ends: list[Any] | None = None
) -> None:
    """The batch's late writes (or, `slot` `_AT_END`, its writes at its end), in order,
    consecutive ones of one text together. With `ends` (the writes at the end), those go into
    the last late statement when it can carry them, else after it, in a statement of their
    own."""
    runs = _runs(session.info.pop(slot, []))
    for n, writes in enumerate(runs):
        if isinstance(writes[0], _Merged):
            values = [write.value for write in writes]
            carry = writes[0].carry
            parts = _as_parts(ends) if ends and carry and n == len(runs) - 1 else None
            if carry is not None and parts is not None:
                await carry(session, values, parts)
                ends = None
            else:
                await writes[0].flush(session, values)
            continue
        group = [params for _, params in writes]
        await session.execute(writes[0][0], group if len(group) > 1 else group[0])
    if ends:
        session.info[_AT_END] = ends
        await _write_pending(session, _AT_END)


async def _unit(work: Work[T], session: AsyncSession) -> T:
    return await work(session)


RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_retryable(exc: BaseException) -> bool:
    """A serialization failure or deadlock that is safe to retry (through SQLAlchemy, or
    raised by asyncpg itself for a statement sent straight: `execute_composed`)."""
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None)
        if code in RETRYABLE_SQLSTATES:
            return True
        text = str(exc.orig).lower()
        return "database is locked" in text
    return type(exc).__module__.startswith("asyncpg") and (
        getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


# Connection exceptions (08xxx), the server shutting down or starting (57P01-57P03),
# too many connections (53300).
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
_NETWORK_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.ETIMEDOUT, errno.EPIPE,
}
_UNAVAILABLE_WORDS = (
    "connection is closed", "connection was closed", "connection failed",
    "connection refused", "could not connect", "server closed the connection",
    "terminating connection", "the database system is", "connection is lost",
    "connection reset", "connection timeout expired", "consuming input failed",
    "connect call failed",
)


def _unavailable_one(exc: BaseException) -> bool:
    if isinstance(exc, ServiceUnavailable | PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, socket.gaierror):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and _unavailable_one(exc.orig)
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS or (
            exc.errno is None and "connect" in str(exc).lower()
        )
    module = type(exc).__module__
    if module.startswith(("sqlite3", "aiosqlite")):
        return False  # "database is locked" is a retry, not an outage
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(code, str) and (code.startswith("08") or code in _UNAVAILABLE_SQLSTATES):
        return True
    if module.startswith(("asyncpg", "psycopg", "sqlalchemy")):
        text_ = str(exc).lower()
        return any(word in text_ for word in _UNAVAILABLE_WORDS)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached: refused or lost connection,
    connect or pool timeout, the server shutting down or starting. Such a request is
    answered `503 service-unavailable`, never retried here: a lost COMMIT may have landed.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable_one(current):
            return True
        current = current.__cause__
    return False


def unavailable(exc: BaseException) -> ServiceUnavailable:
    """The client's error for an unreachable database (the cause is chained, not shown)."""
    error = ServiceUnavailable("the database is unavailable; retry shortly")
    error.__cause__ = exc
    return error


Work = Callable[[AsyncSession], Awaitable[T]]


BatchRead = Callable[[AsyncSession, list[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Prefetch:
    """A read that a grouped batch makes once for all its units, instead of once per unit.

    `read(session, args)` gets the `arg` of every unit of the batch that names the same
    `read`, in the units' (key) order, and leaves what it found in `session.info[slot]`, where
    the units look first. What was read stays valid only while units of the same `read` run:
    before any other unit of the batch, the slot is emptied (that unit may change what was
    read). A unit that runs alone, or again on its own after a failure in its batch, finds
    nothing there and reads for itself.
    """

    read: BatchRead
    arg: Any
    slot: str


Prefetches = Prefetch | tuple[Prefetch, ...] | None


def _grouped(reads: Iterable[Prefetch]) -> dict[tuple[BatchRead, str], list[Any]]:
    """The args of `reads`, by the read (and slot) they name, in order."""
    groups: dict[tuple[BatchRead, str], list[Any]] = {}
    for p in reads:
        groups.setdefault((p.read, p.slot), []).append(p.arg)
    return groups


async def _prefetch(session: AsyncSession, jobs: list[_Job]) -> set[str]:
    """Run the batch's shared reads; returns the slots they filled."""
    slots = set()
    for (read, slot), args in _grouped(p for job in jobs for p in job.prefetch).items():
        if len(args) > 1:
            await read(session, args)
            slots.add(slot)
    return slots


async def prefetch_now(session: AsyncSession, reads: Sequence[Prefetch]) -> None:
    """Run `reads` now, in `session`, each `read` once for all the args that name it (a unit
    that reads for many members itself, as a batch's group does)."""
    for (read, _), args in _grouped(reads).items():
        await read(session, args)


def _keep_only_own(session: AsyncSession, slots: set[str], job: _Job) -> None:
    """Before a unit runs, drop what other reads left: the unit may change it."""
    own = {p.slot for p in job.prefetch}
    for slot in slots - own:
        session.info.pop(slot, None)


@dataclass
class _Job:
    work: Work[Any]
    future: asyncio.Future[Any]
    key: str = ""
    tries: int = 0
    prefetch: tuple[Prefetch, ...] = ()
    late: bool = False
    alone: bool = False


@dataclass
class GroupCommitter:
    """Runs units of work from concurrent requests in one transaction and one commit.

    A batch first runs optimistically, its units one after the other with no savepoint (two
    statements fewer per unit). When a unit fails, that transaction is rolled back whole and
    the batch runs again with each unit in its own savepoint, so that the failing one is rolled
    back alone. Each caller is answered only after the commit that holds its work.

    When the database cannot be reached (`is_unavailable`), the batch is not run again: each
    of its callers, and each caller still queued behind it, gets the error at once (a lost
    COMMIT may have landed, so a unit is never run twice; the client retries, idempotently).
    """

    sessionmaker: async_sessionmaker[AsyncSession]
    max_batch: int = 64
    _queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None
    _next: _Job | None = None

    async def run(
        self,
        work: Work[T],
        key: str = "",
        prefetch: Prefetches = (),
        late: bool = False,
        alone: bool = False,
    ) -> T:
        loop = asyncio.get_running_loop()
        reads = (prefetch,) if isinstance(prefetch, Prefetch) else tuple(prefetch or ())
        job = _Job(
            work=work, future=loop.create_future(), key=key, prefetch=reads, late=late,
            alone=alone,
        )  # fmt: skip
        await self._queue.put(job)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._loop())
        result: T = await job.future
        return result

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            first, self._next = self._next, None
            jobs = [first if first is not None else await self._queue.get()]
            # A unit that asks to run alone (a batch's group: many members, many rows) gets a
            # transaction of its own: joined to others it would hold their locks longer.
            while not jobs[0].alone and len(jobs) < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job.alone:
                    self._next = job
                    break
                jobs.append(job)
            # Units that lock one member's rows run in key order, so that two batches
            # (two server processes) always take row locks in the same order: no deadlock.
            jobs.sort(key=lambda j: j.key)
            await self._run_batch(jobs)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        if len(jobs) == 1:
            await self._run_alone(jobs[0])  # its own transaction: no savepoint needed
        elif not await self._run_optimistic(jobs):
            await self._run_isolated(jobs)

    async def _run_optimistic(self, jobs: list[_Job]) -> bool:
        """All units in one transaction without savepoints; False (nothing kept) if one fails."""
        values: list[Any] = []
        try:
            async with self.sessionmaker() as session, session.begin():
                session.info[_AT_END] = []
                slots = await _prefetch(session, jobs)
                for job in jobs:
                    _keep_only_own(session, slots, job)
                    if job.late:
                        session.info.setdefault(_BATCHED, [])
                    else:  # it may read what they write: they go first, its own at once
                        await _write_pending(session)
                    values.append(await _unit(job.work, session))
                await _write_pending(session, ends=session.info.pop(_AT_END))
        except Exception as exc:  # rolled back whole: the caller runs the batch unit by unit
            if is_unavailable(exc):
                self._fail(jobs, exc)
                return True
            return False
        for job, value in zip(jobs, values, strict=True):
            if not job.future.done():
                job.future.set_result(value)
        return True

    async def _run_isolated(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        retry: list[_Job] = []
        try:
            async with self.sessionmaker() as session, session.begin():
                for job in jobs:
                    try:
                        async with session.begin_nested():
                            value = await _unit(job.work, session)
                        outcomes.append((job, value, None))
                    except Exception as exc:  # one unit fails alone
                        # Whatever it cached on the session was rolled back with it.
                        session.info.clear()
                        if is_retryable(exc) and job.tries < 5:
                            retry.append(job)
                        else:
                            outcomes.append((job, None, exc))
        except Exception as exc:
            if is_unavailable(exc):
                self._fail(jobs, exc)
                return
            # The commit itself failed: run each unit again on its own.
            for job in jobs:
                job.tries += 1
                if job.tries > 5:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    continue
                await self._run_alone(job)
            return
        for job, value, error in outcomes:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(value)
        for job in retry:
            job.tries += 1
            await self._run_alone(job)

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        """The database is unreachable: answer the batch and everyone queued behind it."""
        if self._next is not None:
            jobs.append(self._next)
            self._next = None
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(unavailable(exc))

    async def _run_alone(self, job: _Job) -> None:
        for attempt in range(6):
            try:
                async with self.sessionmaker() as session, session.begin():
                    value = await _unit(job.work, session)
            except Exception as exc:
                if is_unavailable(exc):
                    self._fail([job], exc)
                    return
                if is_retryable(exc) and attempt < 5:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if not job.future.done():
                    job.future.set_exception(exc)
                return
            if not job.future.done():
                job.future.set_result(value)
            return


class UnitHook(Protocol):
    """Work a request adds to each of its units of work, in the unit's own transaction.

    `within(session, value)` runs after the unit's work, with what the work returned; it may
    raise to roll the unit back. `committed(value)` is told once the unit has committed.
    The Idempotency-Key middleware uses it to store a request's response with its work.
    """

    async def within(self, session: AsyncSession, value: Any) -> None: ...

    def committed(self, value: Any) -> None: ...


_unit_hook: contextvars.ContextVar[UnitHook | None] = contextvars.ContextVar(
    "habitue.unit_hook", default=None
)


@contextlib.contextmanager
def unit_hook(hook: UnitHook) -> Iterator[None]:
    """Run `hook` in every unit of work written from this context (this request)."""
    token = _unit_hook.set(hook)
    try:
        yield
    finally:
        _unit_hook.reset(token)


@contextlib.contextmanager
def no_unit_hook() -> Iterator[None]:
    """Units of work written from this context are not the request's work (bookkeeping such
    as an API key's last use): the request's hook does not run in them."""
    token = _unit_hook.set(None)
    try:
        yield
    finally:
        _unit_hook.reset(token)


def _hooked(work: Work[T], hook: UnitHook) -> Work[T]:
    async def run(session: AsyncSession) -> T:
        value = await work(session)
        await hook.within(session, value)
        return value

    return run


@contextlib.asynccontextmanager
async def _reading(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session of `maker`; an unreachable store raises `ServiceUnavailable`."""
    try:
        async with maker() as session:
            yield session
    except ServiceUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise


class Database:
    """The store: an async engine for reads, one for writes, and the group committer."""

    def __init__(
        self,
        url: str,
        *,
        group_commit: bool = True,
        max_batch: int = 64,
        pool_size: int = 20,
        lanes: int = 2,
        timeout: float = 2.0,
        statement_timeout: float | None = None,
    ) -> None:
        """`timeout`: the longest wait for a connection (pool checkout, connect) on
        PostgreSQL, after which the request fails `ServiceUnavailable`; `statement_timeout`:
        the longest wait for one statement's answer (asyncpg; the server sets it, batch
        commands run without)."""
        self.url = url
        self.timeout = timeout
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            self.read_engine: AsyncEngine = create_async_engine(async_url(url), poolclass=NullPool)
            self.write_engine: AsyncEngine = create_async_engine(
                async_url(url), pool_size=1, max_overflow=0
            )
            _sqlite_setup(self.read_engine.sync_engine, immediate=False)
            _sqlite_setup(self.write_engine.sync_engine, immediate=True)
        else:
            u = async_url(url)
            connect_args: dict[str, Any] = (
                {"timeout": timeout, "command_timeout": statement_timeout}
                if u.drivername.endswith("asyncpg")
                else {"connect_timeout": max(1, math.ceil(timeout))}
            )
            self.read_engine = create_async_engine(
                u,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=timeout,
                connect_args=connect_args,
                # JSON columns read back (an event's answer, the counters) decoded by orjson
                json_deserializer=orjson.loads,
            )
            event.listen(self.read_engine.sync_engine, "checkout", _drop_if_closed)
            self.write_engine = self.read_engine
        self.reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # `read_statements`: on PostgreSQL, the same pool's connections without a transaction.
        self.statement_reader = (
            self.reader
            if self.sqlite
            else async_sessionmaker(
                self.read_engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
            )
        )
        self.writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        # SQLite has one writer: everything that writes goes through one committer there.
        # PostgreSQL gets several lanes so that batches of different members commit in
        # parallel; a key always maps to the same lane, so its units keep their order.
        n = 1 if self.sqlite else max(1, lanes)
        self.committers = (
            [GroupCommitter(self.writer, max_batch=max_batch) for _ in range(n)]
            if group_commit or self.sqlite
            else []
        )
        self.committer = self.committers[0] if self.committers else None

    def read(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A session to read in; an unreachable store raises `ServiceUnavailable`."""
        return _reading(self.reader)

    def read_statements(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """`read` for read-only work whose statements share nothing but what each reads: on
        PostgreSQL they run without a transaction around them, each on its own snapshot as
        in `read`'s READ COMMITTED transaction, without its BEGIN and ROLLBACK round trips
        (about a sixth of the client's CPU of a session of two statements). SQLite: `read`
        (a transaction there gives its statements one snapshot)."""
        return _reading(self.statement_reader)

    async def ready(self) -> bool:
        """Whether a `SELECT 1` answers within the connection timeout."""
        try:
            async with asyncio.timeout(self.timeout), self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def write(
        self,
        work: Work[T],
        *,
        key: str = "",
        prefetch: Prefetches = (),
        late: bool = False,
        alone: bool = False,
    ) -> T:
        """Run one unit of work in a transaction (grouped with its neighbours when enabled).

        `key` names what the unit locks (e.g. the member): grouped units run in key order.
        `prefetch`: reads the units of a batch share (see `Prefetch`). `late`: the unit's
        `write_late` writes may wait for the batch's end (see there). `alone`: the unit is
        large (a batch's group) and runs in a transaction of its own, in its lane's order.
        """
        hook = _unit_hook.get()
        try:
            if hook is None:
                return await self._write(work, key, prefetch, late, alone)
            value = await self._write(_hooked(work, hook), key, prefetch, late, alone)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc) from exc
            raise
        hook.committed(value)
        return value

    async def _write(
        self, work: Work[T], key: str, prefetch: Prefetches, late: bool, alone: bool = False
    ) -> T:
        if self.committers:
            lane = zlib.crc32(key.encode()) % len(self.committers) if key else 0
            return await self.committers[lane].run(work, key, prefetch, late, alone)
        for attempt in range(6):
            try:
                async with self.writer() as session, session.begin():
                    return await _unit(work, session)
            except DBAPIError as exc:
                if is_retryable(exc) and attempt < 5:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        for committer in self.committers:
            await committer.close()
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


def _drop_if_closed(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed (restart, outage) is replaced at checkout,
    at no cost: asyncpg notices the closed socket itself, so the first request after the
    database is back does not fail on a dead connection."""
    raw = getattr(record, "driver_connection", None)
    is_closed = getattr(raw, "is_closed", None)
    if callable(is_closed) and is_closed():
        raise DisconnectionError("the server closed this connection")
    if getattr(raw, "broken", False):
        raise DisconnectionError("this connection is broken")


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index over the rows that match `where`, alike on PostgreSQL and SQLite."""
    return Index(
        name, *columns, unique=unique, postgresql_where=text(where), sqlite_where=text(where)
    )


def sqlite_foreign_key(column: str, target: str) -> ForeignKeyConstraint:
    """A foreign key that SQLite enforces and PostgreSQL does not (migration 0038).

    On PostgreSQL each check of a reference is a query per row written, and a reference to a
    row every till shares (the program, its `issued` account) locks that row in every
    transaction; the purchase path's references are checked by `habitue ledger verify`
    instead (`habitue.ledger.verify.REFERENCES`). Alembic's autogenerate leaves it out on
    PostgreSQL (`info["dialects"]`, read by the migrations' environment).
    """
    return ForeignKeyConstraint([column], [target], info={"dialects": ("sqlite",)}).ddl_if(
        dialect="sqlite"
    )


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class (typed for mypy)."""
    return cast(Table, model.__table__)


def dialect_name(session: AsyncSession) -> str:
    """`postgresql` or `sqlite`: for the few statements that differ."""
    return session.get_bind().dialect.name


async def driver_connection(session: AsyncSession) -> Any | None:
    """The asyncpg connection under `session` when a statement sent on it straight runs
    where the session's own would: on PostgreSQL through asyncpg, on a connection in
    autocommit (`Database.read_statements`) or inside the session's transaction. SQLAlchemy's
    asyncpg adapter sends BEGIN with the transaction's first statement; when none has run yet
    (a grouped batch's member read), it is sent here, as the adapter would send it. Else
    None: the caller goes through the session. Through the driver, a read costs about
    half the client's CPU (no compiling of the statement's cache key, no result wrapping;
    docs/benchmarks.md, h5/price and h6/price); its rows are asyncpg records, read by name,
    their JSON decoded by the codec the dialect set up on the connection."""
    if session.get_bind().dialect.driver != "asyncpg":
        return None
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection
    if getattr(adapted, "isolation_level", None) != "autocommit" and (
        getattr(adapted, "_transaction", None) is None
    ):
        start = getattr(adapted, "_start_transaction", None)
        mutex = getattr(adapted, "_execute_mutex", None)
        if start is None or mutex is None:
            return None
        async with mutex:
            if adapted._transaction is None:
                await start()
        if adapted._transaction is None:
            return None
    return fairy.driver_connection


@contextlib.asynccontextmanager
async def pooled_driver(session: AsyncSession) -> AsyncIterator[Any | None]:
    """An asyncpg connection of `session`'s pool, for statements sent straight, given back
    to the pool as the block ends; None (nothing checked out) unless the session reads in
    autocommit (`Database.read_statements`) on asyncpg and has begun nothing yet.

    Such a session's statements each run on their own snapshot, outside any transaction; a
    statement sent straight on a connection of the same pool (which the pool hands back
    reset, outside a transaction) runs as it would have, without the session's checkout of
    its connection (`driver_connection`), which costs ~0.15-0.2 ms of CPU more than the
    pool's (bench/price: a price's member read, docs/benchmarks.md, h7/price). The session
    stays usable, and checks out a connection of its own if something reads through it
    later (after the block: one connection at a time)."""
    bind = session.get_bind()
    if (
        not isinstance(bind, Engine)
        or bind.dialect.driver != "asyncpg"
        or session.in_transaction()
        or bind.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
    ):
        yield None
        return
    fairy = await greenlet_spawn(bind.raw_connection)
    try:
        raw = fairy.driver_connection
        yield None if raw is None or raw.is_in_transaction() else raw
    finally:
        await greenlet_spawn(fairy.close)


@dataclass(frozen=True, slots=True)
class Straight:
    """A SQLAlchemy query compiled once for asyncpg: its SQL, the order of its parameters
    and the values written into the query itself (`straight`)."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params` (the query's bound parameters)."""
        return [params[n] if n in params else self.fixed[n] for n in self.names]


_straight: dict[tuple[Any, int], Straight | None] = {}


def _passes_as_is(type_: Any, dialect: Any) -> bool:
    """Whether SQLAlchemy sends a parameter of `type_` to the driver unchanged: no bind
    processor, or an ARRAY of items that have none (its processor only makes a list of the
    sequence, which asyncpg takes as it is)."""
    if type_._cached_bind_processor(dialect) is None:
        return True
    if isinstance(type_, ARRAY):
        return _passes_as_is(type_.item_type.dialect_impl(dialect), dialect)
    return False


def straight(query: Any, dialect: Any) -> Straight | None:
    """`query` (a statement built once and reused) as asyncpg runs it with
    `driver_connection`; None when SQLAlchemy would process a parameter or a column on the
    way (a type's bind or result processor, a parameter rendered into the SQL at each
    execution): that query goes through the session."""
    key = (query, id(dialect))
    if key in _straight:
        return _straight[key]
    compiled = query.compile(dialect=dialect)
    plan: Straight | None = None
    plain = (
        compiled.positiontup is not None
        and not compiled.literal_execute_params
        and not compiled.post_compile_params
        and all(_passes_as_is(b.type, dialect) for b in compiled.binds.values())
        and all(c[3]._cached_result_processor(dialect, None) is None
                for c in compiled._result_columns)
    )  # fmt: skip
    if plain:
        required = {b.key for b in compiled.binds.values() if b.required}
        values = compiled.construct_params(_check=False)
        fixed = {k: v for k, v in values.items() if k not in required}
        plan = Straight(str(compiled), tuple(compiled.positiontup), fixed)
    if len(_straight) > 256:
        _straight.clear()
    _straight[key] = plan
    return plan
