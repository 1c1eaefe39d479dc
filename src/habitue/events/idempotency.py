"""Idempotency-Key records: claimed after authentication, leased, answered with the work.

A POST with `Idempotency-Key: K` (habitue.middleware.IdempotencyKeys) is remembered per
program, per credential and per key, for `HABITUE_IDEMPOTENCY_TTL_HOURS` (24 h) from its first
use. Its record goes through these states:

- **claimed**: `claim` inserts it with a random `token` and a lease (`lease_until`, now +
  `HABITUE_IDEMPOTENCY_LEASE_SECONDS`, 30 s). While the lease runs, a retry gets 409
  `request-in-progress` with `Retry-After`.
- **committed**: each unit of work the request writes (`Database.write`) also runs
  `RequestClaim.within` in its own transaction: a conditional UPDATE on (id, token) that sets
  `committed_at` and, when the unit's value is the route's response model, the response
  itself (status, body). The work and its answer therefore commit together or not at all. If
  the token no longer matches (a retry took the key over after the lease), the UPDATE finds no
  row and the unit is rolled back (`RequestInProgress`): two runs of one key never both commit.
- **answered**: after the response is sent, `settle` stores it when it differs from what the
  unit stored (a route that shapes its answer after the work), or, for a 5xx (and 408, 429)
  of a request that committed nothing, deletes the record so that a retry runs at once.

After a crash (`kill -9`, a database outage), the record is left claimed or committed. Once its
lease has run out, a retry with the same request takes it over (a conditional UPDATE of the
token: one retry wins) and runs the request again; the work was rolled back with the crash,
so nothing is done twice. A record whose work committed with its response replays that
response; one whose work committed without a storable response (the coupon CSV batches) answers
409 `idempotent-response-lost` rather than doing the work twice. Events are also idempotent on
their own by `(program, source, external_id)`.

`POST /events` (one unit of work, whose value is the answer) takes no claim first
(`InlineClaim`): the event's own unit inserts the record, committed and answered, in its
transaction; the record's unique key makes a second request under the key fail in its own
unit (rolled back whole), after which `claim` decides for it as above. So the usual event
with a key costs no transaction and, in a grouped batch, one statement for all its records.

An expired record (older than the TTL) is treated as absent: the key may carry another request.
`purge` deletes expired records (the scheduler and `habitue idempotency purge`).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, select, text, update
from sqlalchemy import insert as plain_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import (
    Part,
    dialect_name,
    driver_connection,
    straight,
    table_of,
    write_at_end,
)
from habitue.errors import HabitueError
from habitue.events.errors import IdempotencyKeyReused, RequestInProgress, ResponseLost
from habitue.events.models import IdempotencyRecord

_records = table_of(IdempotencyRecord)

# Answers a retry should not get back: it may well succeed next time.
NOT_STORED = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Response:
    """A stored answer: the status, the content type and the body (JSON, or text)."""

    status: int
    content_type: str
    body: Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a claim found: run the request (`token` set), replay an answer, or an error."""

    record_id: int | None = None
    token: str | None = None
    replay: Response | None = None
    error: HabitueError | None = None
    retry_after: int | None = None


def _busy(lease_until: datetime, now: datetime) -> Outcome:
    wait = max(1, math.ceil((clock.as_utc(lease_until) - now).total_seconds()))
    return Outcome(
        error=RequestInProgress(
            f"a request with this Idempotency-Key is still in progress; retry in {wait} s"
        ),
        retry_after=wait,
    )


async def claim(
    session: AsyncSession,
    *,
    program_id: int,
    credential: str,
    key: str,
    request_hash: str,
    lease: timedelta,
    ttl: timedelta,
    answer: Response | None = None,
) -> Outcome:
    """Take `key` for this request, or say why not. One statement when the key is new.

    With `answer` (a request that ran before it took its key and committed nothing: see
    `InlineClaim`), the key is taken with that answer stored: a retry replays it."""
    now = clock.now()
    token = secrets.token_hex(16)
    answered = _answer_columns(answer)
    fresh = {
        "request_hash": request_hash,
        "token": token,
        "lease_until": now + lease,
        "committed_at": None,
        **answered,
        "created_at": now,
    }
    scope = and_(
        _records.c.program_id == program_id,
        _records.c.credential == credential,
        _records.c.key == key,
    )
    insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    for _ in range(3):
        stmt = (
            insert(_records)
            .values(program_id=program_id, credential=credential, key=key, **fresh)
            .on_conflict_do_nothing(index_elements=["program_id", "credential", "key"])
            .returning(_records.c.id)
        )
        new_id = (await session.execute(stmt)).scalar()
        if new_id is not None:
            return Outcome(record_id=new_id, token=token)
        row = (await session.execute(select(_records).where(scope))).mappings().first()
        if row is None:  # purged in between: insert again
            continue
        if clock.as_utc(row["created_at"]) + ttl <= now:
            values = fresh  # expired: the key is free for any request
        elif row["request_hash"] != request_hash:
            return Outcome(
                error=IdempotencyKeyReused("this Idempotency-Key was used with another request")
            )
        elif row["status_code"] is not None:
            return Outcome(replay=Response(row["status_code"], row["content_type"], row["body"]))
        elif clock.as_utc(row["lease_until"]) > now:
            return _busy(row["lease_until"], now)
        elif row["committed_at"] is not None:
            return Outcome(
                error=ResponseLost(
                    "the request with this Idempotency-Key committed but its server stopped "
                    "before answering; look its result up instead of retrying"
                )
            )
        else:  # the lease ran out before anything committed: this retry runs it
            values = {"token": token, "lease_until": now + lease}
            if answer is not None:
                values.update(answered)
        taken = await session.execute(
            update(_records)
            .where(_records.c.id == row["id"], _records.c.token == row["token"])
            .values(**values)
        )
        if getattr(taken, "rowcount", 0) == 1:
            return Outcome(record_id=row["id"], token=token)
        return _busy(now + timedelta(seconds=1), now)  # another retry won the race
    return _busy(now + timedelta(seconds=1), now)


def _answer_columns(response: Response | None) -> dict[str, Any]:
    if response is None:
        return {"status_code": None, "content_type": None, "body": None}
    return {
        "status_code": response.status,
        "content_type": response.content_type,
        "body": response.body,
    }


_INSERT = plain_insert(_records)

# A grouped batch's new records in one INSERT of parallel arrays (PostgreSQL): one execution
# of one prepared statement whatever their number (an executemany is one per record).
_RECORDS_INSERT = """
    INSERT INTO idempotency_records (program_id, credential, key, request_hash, token,
                                     lease_until, committed_at, status_code, content_type,
                                     body, created_at)
    SELECT r.program_id, r.credential, r.key, r.request_hash, r.token, r.lease_until,
           r.committed_at, r.status_code, r.content_type, CAST(r.body AS json), r.created_at
    FROM unnest(CAST(:programs AS bigint[]), CAST(:credentials AS varchar[]),
                CAST(:keys AS varchar[]), CAST(:hashes AS varchar[]), CAST(:tokens AS varchar[]),
                CAST(:leases AS timestamptz[]), CAST(:committed AS timestamptz[]),
                CAST(:statuses AS integer[]), CAST(:content_types AS varchar[]),
                CAST(:bodies AS text[]), CAST(:created AS timestamptz[]))
         AS r(program_id, credential, key, request_hash, token, lease_until, committed_at,
              status_code, content_type, body, created_at)
"""
_RECORDS_SQL = text(_RECORDS_INSERT)


def _json_text(value: Any) -> str:
    """`value` as the JSON column's text (orjson; what it cannot encode, as the column would)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


_COLUMNS = (
    "program_id", "credential", "key", "request_hash", "token", "lease_until", "committed_at",
    "status_code", "content_type", "body", "created_at",
)  # fmt: skip


def _array_params(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of `_RECORDS_INSERT` for `rows`."""
    columns = [[r[c] for r in rows] for c in _COLUMNS]
    columns[9] = [_json_text(body) for body in columns[9]]
    names = ("programs", "credentials", "keys", "hashes", "tokens", "leases", "committed",
             "statuses", "content_types", "bodies", "created")  # fmt: skip
    return dict(zip(names, columns, strict=True))


def _records_part(rows: list[dict[str, Any]]) -> Part:
    """A grouped batch's new records as a CTE of the statement that writes its events (one
    round trip fewer: `db.write_at_end`'s `part`; PostgreSQL)."""
    return Part("idempotency", _RECORDS_INSERT, _array_params(rows), cte="idempotency_records_")


async def _write_records(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert a grouped batch's new records (`InlineClaim` rows), in one statement: on
    PostgreSQL one INSERT of parallel arrays, sent to asyncpg straight where it can be."""
    if dialect_name(session) != "postgresql":
        await session.execute(_INSERT, rows if len(rows) > 1 else rows[0])
        return
    params = _array_params(rows)
    raw = await driver_connection(session)
    plan = straight(_RECORDS_SQL, session.get_bind().dialect) if raw is not None else None
    if raw is not None and plan is not None:
        await raw.execute(plan.sql, *plan.args(params))
        return
    await session.execute(_RECORDS_SQL, params)


class InlineClaim:
    """A key taken by the request's own unit of work, with its answer: a `habitue.db.UnitHook`
    for a request made of one unit of work whose value is its answer (`POST /events`).

    No claim runs before the request: its unit inserts the key's record, committed and
    answered, in its own transaction (in a grouped batch, all the batch's records in one
    statement at its end: `habitue.db.write_at_end`). The record's unique key decides between
    two requests with one key: a second one's insert conflicts (on PostgreSQL it waits for the
    first's transaction) and its unit is rolled back whole (`taken`), so only one of them
    ever commits work. The middleware then runs the usual `claim`, which replays the first
    answer, refuses another request under the key, or (the first record expired, or a claim
    whose lease ran out) takes the key, and the request runs again, as any claimed one.

    A request that commits nothing (a refusal, a replayed event) takes its key afterwards,
    with its answer (`claim(answer=...)`): a retry replays that answer as if it had been
    claimed first. A later unit of the same request (none in `POST /events` today) updates the
    record as `RequestClaim` does.
    """

    def __init__(
        self,
        *,
        program_id: int,
        credential: str,
        key: str,
        request_hash: str,
        lease: timedelta,
        describe: Callable[[Any], Response | None],
    ) -> None:
        self.program_id = program_id
        self.credential = credential
        self.key = key
        self.request_hash = request_hash
        self.lease = lease
        self.token = secrets.token_hex(16)
        self.describe = describe
        self.closed = False
        self.recorded = False  # a unit of this request committed the record
        self.taken = False  # a unit found the key taken: its work was rolled back
        self.stored: Response | None = None
        self._pending: tuple[Any, Response | None] | None = None

    def _mine(self) -> Any:
        return (
            (_records.c.program_id == self.program_id)
            & (_records.c.credential == self.credential)
            & (_records.c.key == self.key)
            & (_records.c.token == self.token)
        )

    async def within(self, session: AsyncSession, value: Any) -> None:
        if self.closed:  # a task the request left behind: not the request's work
            return
        response = self.describe(value)
        now = clock.now()
        if self.recorded:  # a later unit of the request: as `RequestClaim.within`
            values: dict[str, Any] = {"committed_at": now}
            if response is not None:  # else the answer stored before stays
                values.update(_answer_columns(response))
            result = await session.execute(update(_records).where(self._mine()).values(**values))
            if getattr(result, "rowcount", 0) != 1:
                raise RequestInProgress(
                    "this request's lease on its Idempotency-Key ran out and a retry took it over"
                )
        else:
            row = {
                "program_id": self.program_id,
                "credential": self.credential,
                "key": self.key,
                "request_hash": self.request_hash,
                "token": self.token,
                "lease_until": now + self.lease,
                "committed_at": now,
                **_answer_columns(response),
                "created_at": now,
            }
            if not write_at_end(session, _write_records, row, part=_records_part):
                insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
                stmt = (
                    insert(_records)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["program_id", "credential", "key"])
                    .returning(_records.c.id)
                )
                if (await session.execute(stmt)).scalar() is None:
                    self.taken = True
                    raise RequestInProgress("another request holds this Idempotency-Key")
        self._pending = (value, response)

    def committed(self, value: Any) -> None:
        if self.closed:
            return
        self.recorded = True
        pending = self._pending
        if pending is not None and pending[0] is value and pending[1] is not None:
            self.stored = pending[1]

    async def settle(self, session: AsyncSession, response: Response) -> None:
        """Store the answer sent when it is not the one stored with the work."""
        await session.execute(
            update(_records).where(self._mine()).values(**_answer_columns(response))
        )


class RequestClaim:
    """The claim a request holds while it runs: a `habitue.db.UnitHook`.

    `describe(value)` turns a unit's value into the response the route will send, or None
    when the route's answer is not that value.
    """

    def __init__(
        self, record_id: int, token: str, describe: Callable[[Any], Response | None]
    ) -> None:
        self.record_id = record_id
        self.token = token
        self.describe = describe
        self.closed = False
        self.committed_any = False
        self.stored: Response | None = None
        self._pending: tuple[Any, Response | None] | None = None

    def _mine(self) -> Any:
        return (_records.c.id == self.record_id) & (_records.c.token == self.token)

    async def within(self, session: AsyncSession, value: Any) -> None:
        if self.closed:  # a task the request left behind: not the request's work
            return
        response = self.describe(value)
        values: dict[str, Any] = {"committed_at": clock.now()}
        if response is not None:
            values.update(
                status_code=response.status,
                content_type=response.content_type,
                body=response.body,
            )
        result = await session.execute(update(_records).where(self._mine()).values(**values))
        if getattr(result, "rowcount", 0) != 1:
            raise RequestInProgress(
                "this request's lease on its Idempotency-Key ran out and a retry took it over"
            )
        self._pending = (value, response)

    def committed(self, value: Any) -> None:
        if self.closed:
            return
        self.committed_any = True
        pending = self._pending
        if pending is not None and pending[0] is value and pending[1] is not None:
            self.stored = pending[1]

    async def settle(self, session: AsyncSession, response: Response | None) -> None:
        """Store the answer sent (when it is not the one stored with the work), or give the key
        back (`response` None: a 5xx, 408, 429 or a body that cannot be stored)."""
        if response is None:
            await session.execute(
                delete(_records).where(self._mine(), _records.c.committed_at.is_(None))
            )
            return
        await session.execute(
            update(_records)
            .where(self._mine())
            .values(
                status_code=response.status,
                content_type=response.content_type,
                body=response.body,
            )
        )


async def purge(session: AsyncSession, ttl: timedelta, *, limit: int = 5000) -> int:
    """Delete up to `limit` expired records; returns how many."""
    cutoff = clock.now() - ttl
    ids = (
        select(_records.c.id).where(_records.c.created_at <= cutoff).limit(limit).scalar_subquery()
    )
    result = await session.execute(delete(_records).where(_records.c.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)
