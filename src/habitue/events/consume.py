"""Stream intake: event bodies from NATS JetStream, recorded as the batch endpoint does.

`habitue consume --program P` pulls messages from a durable JetStream consumer in batches,
records them through `events.batch.record_many` (the path of `POST /events/batch`), and
acknowledges each message only after the commit that holds it. At least once: a message
redelivered after a crash (its event committed, its ack lost) is a retry of its
`external_id`, answered from the first recording and credited once.

A message that cannot be recorded — not JSON, not an event body, or an event refused (a 4xx:
validation, unknown member…) — is parked in `intake_parked` with its raw body, status and
reason, then acknowledged: the consumer goes on. A redelivered parked message is parked once
(one row per stream sequence). A database outage acknowledges nothing: the batch is
redelivered later. An event that fails unexpectedly (500) is redelivered, and parked at its
fifth delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, dialect_name, table_of
from habitue.errors import ServiceUnavailable
from habitue.events.batch import Slot, record_many
from habitue.events.models import IntakeParked
from habitue.events.pipeline import Pipeline
from habitue.programs.service import ProgramInfo

log = structlog.get_logger()

_parked = table_of(IntakeParked)

DEFAULT_STREAM = "HABITUE_EVENTS"
MAX_TRIES = 5
"""Deliveries of a message whose event fails unexpectedly (500) before it is parked."""


def default_subject(program: str) -> str:
    return f"habitue.events.{program}"


def default_durable(program: str) -> str:
    return f"habitue-{program}"


@dataclass
class Stats:
    """What a run of the consumer did."""

    recorded: int = 0
    """Messages whose event is recorded (new, or a retry of one recorded before)."""
    parked: int = 0
    redelivered: int = 0
    batches: int = 0
    seen: int = 0
    parked_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Park:
    stream: str
    subject: str
    seq: int
    body: str
    status: int
    reason: str


def _reason(slot: Slot) -> str:
    problem = slot.problem or {}
    return str(problem.get("detail") or problem.get("title") or f"status {slot.status}")


async def _park(db: Database, program: ProgramInfo, rows: list[Park], now: datetime) -> None:
    """Keep the batch's parked messages (a redelivered one once), in one unit of work."""
    values = [
        {
            "program_id": program.id,
            "stream": p.stream,
            "subject": p.subject[:255],
            "stream_seq": p.seq,
            "body": p.body,
            "status": p.status,
            "reason": p.reason,
            "parked_at": now,
        }
        for p in rows
    ]

    async def work(session: AsyncSession) -> None:
        dialect = dialect_name(session)
        stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(_parked)
        await session.execute(
            stmt.on_conflict_do_nothing(index_elements=["stream", "stream_seq"]), values
        )

    await db.write(work)


async def apply_messages(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    stream: str,
    msgs: list[Any],
    stats: Stats,
) -> bool:
    """Record one fetched batch and acknowledge it; False when nothing could be committed
    (the database is unavailable: the messages are left to be redelivered)."""
    raws: list[Any] = []
    which: list[int] = []
    parks: list[Park] = []
    for i, msg in enumerate(msgs):
        seq = msg.metadata.sequence.stream
        if msg.metadata.num_delivered > 1:
            stats.redelivered += 1
        try:
            raws.append(orjson.loads(msg.data))
            which.append(i)
        except orjson.JSONDecodeError as exc:
            body = msg.data.decode("utf-8", "replace")
            parks.append(Park(stream, msg.subject, seq, body, 400, f"not JSON: {exc}"))
    try:
        slots = await record_many(db, pipeline, program, raws)
    except ServiceUnavailable as exc:
        log.warning("the database is unavailable; the batch will be redelivered", error=str(exc))
        for msg in msgs:
            await msg.nak(delay=1)
        return False
    retry: list[int] = []
    for i, slot in zip(which, slots, strict=True):
        msg = msgs[i]
        if slot.status < 400:
            stats.recorded += 1
        elif slot.status >= 500 and msg.metadata.num_delivered < MAX_TRIES:
            retry.append(i)  # unexpected: tried again, then parked
        else:
            body = msg.data.decode("utf-8", "replace")
            seq = msg.metadata.sequence.stream
            parks.append(Park(stream, msg.subject, seq, body, slot.status, _reason(slot)))
    if parks:
        try:
            await _park(db, program, parks, clock.now())
        except ServiceUnavailable:
            parked = {p.seq for p in parks}
            for msg in msgs:
                if msg.metadata.sequence.stream in parked:
                    await msg.nak(delay=1)
            parks = []
    stats.parked += len(parks)
    stats.parked_reasons += [p.reason for p in parks]
    nak = set(retry)
    done = {p.seq for p in parks} | {
        msgs[i].metadata.sequence.stream
        for i, s in zip(which, slots, strict=True)
        if s.status < 400
    }
    for i, msg in enumerate(msgs):
        if i in nak:
            await msg.nak(delay=1)
        elif msg.metadata.sequence.stream in done:
            await msg.ack()
    stats.batches += 1
    stats.seen += len(msgs)
    return True


async def consume(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    *,
    url: str,
    stream: str = DEFAULT_STREAM,
    subject: str | None = None,
    durable: str | None = None,
    batch: int = 1000,
    until_idle: bool = False,
    idle_seconds: float = 1.0,
    max_messages: int | None = None,
    ack_wait: float = 30.0,
    on_batch: Callable[[Stats], None] | None = None,
) -> Stats:
    """Pull and record until stopped, or after `max_messages`, or with `until_idle` once the
    consumer has nothing left: no message waiting and none delivered but unacknowledged.

    `ack_wait`: how long JetStream waits for a delivered message's ack before it redelivers
    it (set when the durable consumer is made); a batch must be recorded within it."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    subject = subject or default_subject(program.code)
    durable = durable or default_durable(program.code)
    stats = Stats()
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=[subject])
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_ack_pending=max(2 * batch, 1000),
            max_deliver=-1,
        )
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        while max_messages is None or stats.seen < max_messages:
            want = batch if max_messages is None else min(batch, max_messages - stats.seen)
            try:
                msgs = await sub.fetch(want, timeout=idle_seconds)
            except (TimeoutError, NatsTimeout):
                if until_idle:
                    info = await sub.consumer_info()
                    if not info.num_pending and not info.num_ack_pending:
                        break
                continue
            if not await apply_messages(db, pipeline, program, stream, msgs, stats):
                await asyncio.sleep(1)
            elif on_batch is not None:
                on_batch(stats)
        await nc.flush(timeout=10)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return stats


async def parked(session: AsyncSession, program: ProgramInfo, limit: int = 100) -> list[Any]:
    """The program's parked messages, the latest first."""
    rows = await session.execute(
        select(_parked)
        .where(_parked.c.program_id == program.id)
        .order_by(_parked.c.parked_at.desc(), _parked.c.id.desc())
        .limit(limit)
    )
    return list(rows.mappings())
