"""Many events at once: the batch endpoint's and the stream intake's one path.

Each event is validated on its own (the schema of `POST /events`), and answered in its slot as
`POST /events` would answer that event alone: 201 and the event, the first answer again for a
retry of an `external_id` already recorded (in an earlier request or earlier in the same
batch), or the event's own problem+json.

Members named by `external_id` or by card are looked up for the whole batch first (one query
each), and their events named by `id` from then on: a member is named one way throughout.

The events that earn and pay with no points (nearly all a till sends) are recorded in
**groups** (`_record_group`): at most `GROUP_SIZE` events, each member at most once, each
member's events in slot order across the groups. A group is one unit of work: its members
read and locked in one query, its already recorded `external_id`s in another, then every
event through the pipeline's stages 1 to 5 as `POST /events` runs them
(`events.service.decide_earn`, `finish_earn`), and its rows written at the end one statement
per table (`events.write.write_events`). An event refused before anything is written for it
(an unknown or inactive member, a bad amount, too many points) gets its error and the group
goes on; a group that fails otherwise is rolled back whole and its events are recorded one
by one by the service's own request path (`events.service.record_event`), each in its own
savepoint.

Order: an event that reads what earlier ones write — a refund (it reads its purchase), a
purchase paid with points (it reads the balance) — waits until every earlier slot of the
batch is committed, and is recorded by the service's request path; so are a partner's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import JSON, String, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.api import validation_problem
from habitue.db import Database, dialect_name, prefetch_now, table_of
from habitue.errors import ERROR_BASE, Forbidden, HabitueError, ServiceUnavailable
from habitue.events import service as events_service
from habitue.events.models import Event
from habitue.events.pipeline import EventApplied, Pipeline
from habitue.events.schemas import EventCreate, EventRead, MemberSelector
from habitue.events.write import EventWrite, write_events
from habitue.members import service as members_service
from habitue.partners import access as partner_access
from habitue.programs.service import Principal, ProgramInfo

log = structlog.get_logger()

_events = table_of(Event)

MAX_EVENTS = 1000
"""The most events one batch request holds."""


class BatchCreate(BaseModel):
    """`POST /events/batch`'s body: each event is checked on its own, in its slot."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(max_length=MAX_EVENTS)


class SlotRead(BaseModel):
    status: int
    body: dict[str, Any]


class BatchRead(BaseModel):
    results: list[SlotRead]


@dataclass(frozen=True, slots=True)
class Slot:
    """One event's answer: its HTTP status and body (the event, or a problem+json)."""

    status: int
    event: EventRead | None = None
    problem: dict[str, Any] | None = None
    text: str | None = None
    """The event's JSON, when it was made already (as its row stores it)."""

    def body(self) -> dict[str, Any]:
        if self.event is not None:
            return self.event.model_dump(mode="json")
        assert self.problem is not None
        return self.problem

    def json(self) -> bytes:
        if self.text is not None:
            body = self.text.encode()
        elif self.event is not None:
            body = self.event.model_dump_json().encode()
        else:
            body = orjson.dumps(self.problem)
        return b'{"status":%d,"body":%s}' % (self.status, body)


def _error(exc: HabitueError) -> Slot:
    return Slot(exc.status, problem=exc.problem())


_INTERNAL = {
    "type": ERROR_BASE + "internal",
    "title": "Internal error",
    "status": 500,
    "detail": "an unexpected error occurred; it has been logged",
}


def parse(raw: Any) -> EventCreate | Slot:
    """The event body validated as `POST /events` does, or its 422 slot."""
    try:
        return EventCreate.model_validate(raw)
    except ValidationError as exc:
        return Slot(422, problem=validation_problem(exc.errors(include_url=False)))


def _waits_for_earlier(body: EventCreate) -> bool:
    """Whether the event reads what earlier events of the batch write."""
    return body.type == "refund" or bool(body.spend_points)


async def record_many(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    raws: Sequence[Any],
    *,
    partner: str | None = None,
) -> list[Slot]:
    """Record each event of `raws` (raw JSON bodies) and answer one slot per event, in order.

    `partner`: the events come with a partner key (already checked active): each is
    recorded with the partner as its source, and one naming another source is refused (403)
    in its slot. A database outage (`ServiceUnavailable`) fails the whole call: the events
    answered so far are committed, and a retry of the whole batch is idempotent.
    """
    slots: list[Slot | None] = [None] * len(raws)
    bodies: list[tuple[int, EventCreate]] = []
    for i, raw in enumerate(raws):
        parsed = parse(raw)
        if isinstance(parsed, Slot):
            slots[i] = parsed
            continue
        if partner is not None:
            try:
                parsed = partner_access.source_for(partner, parsed)
            except Forbidden as exc:
                slots[i] = _error(exc)
                continue
        bodies.append((i, parsed))
    segment: list[tuple[int, EventCreate]] = []
    for i, parsed in await _by_id(db, program, bodies):
        if segment and _waits_for_earlier(parsed):
            await _run(db, pipeline, program, segment, slots, partner)
            segment = []
        segment.append((i, parsed))
    await _run(db, pipeline, program, segment, slots, partner)
    return [slot for slot in slots if slot is not None]


async def _by_id(
    db: Database, program: ProgramInfo, bodies: list[tuple[int, EventCreate]]
) -> list[tuple[int, EventCreate]]:
    """The events with the members they name by external id or card named by id instead,
    read in one query each: a member is then named one way throughout the batch (its events
    stay in order, its groups hold it once). A name not found is left as given: the event is
    answered 404 (or the card's own error) in its slot."""
    external_ids: set[str] = set()
    cards: set[str] = set()
    for _, body in bodies:
        sel = body.member
        if sel is None or sel.id is not None:
            continue
        if sel.external_id is not None:
            external_ids.add(sel.external_id)
        elif sel.card_number is not None:
            cards.add(sel.card_number)
    if not external_ids and not cards:
        return bodies
    async with db.read() as session:
        by_external, by_card = await members_service.public_ids_named(
            session, program, external_ids=external_ids, card_numbers=cards
        )
    out = []
    for i, body in bodies:
        sel = body.member
        found = None
        if sel is not None and sel.id is None:
            if sel.external_id is not None:
                found = by_external.get(sel.external_id)
            elif sel.card_number is not None:
                found = by_card.get(sel.card_number)
        if found is not None:
            body = body.model_copy(update={"member": MemberSelector(id=found)})
        out.append((i, body))
    return out


GROUP_SIZE = 100
"""The most events of one group: one transaction, its members read together, its rows
written one statement per table (`_record_group`)."""


def _takes_group_path(body: EventCreate, partner: str | None) -> bool:
    """Whether the event may be recorded in a group (`_record_group`): an event that earns,
    paid with no points, from no partner. A refund or a spend reads what earlier events write
    and goes through the service's own request path."""
    return partner is None and body.type != "refund" and not body.spend_points


def _groups(
    segment: list[tuple[int, EventCreate]], size: int
) -> list[list[tuple[int, EventCreate]]]:
    """The segment's events in groups of at most `size`, each member at most once in a group
    (as far as the names tell: a member named two ways is found when read) and each member's
    events in slot order, its later events in later groups."""
    groups: list[list[tuple[int, EventCreate]]] = []
    last: dict[str, int] = {}
    open_from = 0
    for item in segment:
        key = events_service.lock_key(item[1])
        g = max(last.get(key, -1) + 1, open_from)
        while g < len(groups) and len(groups[g]) >= size:
            g += 1
        if g == len(groups):
            groups.append([])
        groups[g].append(item)
        last[key] = g
        while open_from < len(groups) and len(groups[open_from]) >= size:
            open_from += 1
    return groups


class _Regroup(Exception):
    """A group named one member twice (in two ways): it is recorded event by event instead."""


_Outcome = EventRead | tuple[EventRead, str] | HabitueError | int
"""A group's answer for one event: the event (recorded by the group: with its JSON, as its
row stores it), its error, or (a repeat of an `external_id` earlier in the group) the
position of the event whose answer it gets."""


async def _record_group(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    group: list[tuple[int, EventCreate]],
) -> list[_Outcome]:
    """Record a group of events in the caller's transaction: what `record_event` does for
    each, with the group's members read (and locked) in one query, its already recorded
    `external_id`s in another, and its rows written one statement per table at the end
    (`events.write.write_events`). An event refused before anything is written for it (an
    unknown or inactive member, invalid values, too many points) gets its error; any other
    failure fails the group, whose events are then recorded one by one."""
    now = clock.now()
    bodies = [body for _, body in group]
    reads = [
        p
        for body in bodies
        if body.member is not None
        and (
            p := members_service.prefetch_named(
                program,
                member_id=body.member.id,
                card_number=body.member.card_number,
                external_id=body.member.external_id,
                reads=pipeline.member_reads,
            )
        )
        is not None
    ]
    await prefetch_now(session, reads)
    recorded = await _recorded(session, program, bodies)
    outcomes: list[_Outcome] = []
    first: dict[tuple[str, str], int] = {}
    members: set[int] = set()
    writes: list[EventWrite] = []
    applied: list[EventApplied] = []
    for body in bodies:
        key = (body.source, body.external_id)
        found = recorded.get(key)
        if found is not None:
            outcomes.append(found)
            continue
        if key in first:
            outcomes.append(first[key])
            continue
        try:
            prepared = events_service.prepare(program, body, now=now)
            decided = await events_service.decide_earn(session, pipeline, program, prepared, now)
        except ServiceUnavailable:
            raise
        except HabitueError as exc:  # nothing written for it: the group goes on
            outcomes.append(exc)
            continue
        if decided.member.id in members:
            raise _Regroup(decided.member.public_id)
        members.add(decided.member.id)
        done = await events_service.finish_earn(session, pipeline, program, decided)
        first[key] = len(outcomes)
        text = done.write.row.response_json
        outcomes.append(done.response if text is None else (done.response, text))
        writes.append(done.write)
        applied.append(done.applied)
    await write_events(session, writes)
    for one in applied:
        await pipeline.recorded(session, one)
    return outcomes


# One index probe per name (`uq_events_program_id_source_external_id`), whatever the planner
# knows of the table: with an IN list it may scan the program's events and filter them, which
# costs as much as the events recorded (a table never analysed while it grows).
_RECORDED = text("""
    SELECT e.source, e.external_id, e.response
    FROM unnest(CAST(:sources AS varchar[]), CAST(:external_ids AS varchar[]))
         AS wanted(source, external_id)
    CROSS JOIN LATERAL (
        SELECT events.source, events.external_id, events.response FROM events
        WHERE events.program_id = :program AND events.source = wanted.source
          AND events.external_id = wanted.external_id
    ) AS e
""").columns(source=String(), external_id=String(), response=JSON())


async def _recorded(
    session: AsyncSession, program: ProgramInfo, bodies: list[EventCreate]
) -> dict[tuple[str, str], EventRead]:
    """The first answers of the group's events already recorded (a retry), read once its
    members are locked: a concurrent event of one of them has committed by then."""
    wanted = sorted({(body.source, body.external_id) for body in bodies})
    if dialect_name(session) == "postgresql":
        rows = await session.execute(
            _RECORDED,
            {
                "program": program.id,
                "sources": [source for source, _ in wanted],
                "external_ids": [external_id for _, external_id in wanted],
            },
        )
    else:
        rows = await session.execute(
            select(_events.c.source, _events.c.external_id, _events.c.response).where(
                _events.c.program_id == program.id,
                _events.c.source.in_(sorted({source for source, _ in wanted})),
                _events.c.external_id.in_(sorted({external_id for _, external_id in wanted})),
            )
        )
    return {(r.source, r.external_id): EventRead.model_validate(r.response) for r in rows}


async def _run(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    segment: list[tuple[int, EventCreate]],
    slots: list[Slot | None],
    partner: str | None = None,
) -> None:
    if not segment:
        return
    # Only a segment's first event can read what earlier ones write (`record_many`).
    if not _takes_group_path(segment[0][1], partner):
        await _run_each(db, pipeline, program, segment[:1], slots)
        segment = segment[1:]
    if partner is not None:
        await _run_each(db, pipeline, program, segment, slots)
        return
    groups = _groups(segment, GROUP_SIZE)
    # A group waits only for the earlier groups that hold one of its members: groups of
    # different members run side by side (the committer's lanes), each member's in order.
    done: list[asyncio.Task[None]] = []
    last_of: dict[str, int] = {}
    for n, group in enumerate(groups):
        keys = {events_service.lock_key(body) for _, body in group}
        after = sorted({last_of[k] for k in keys if k in last_of})
        done.append(
            asyncio.ensure_future(
                _run_group(db, pipeline, program, group, slots, [done[k] for k in after])
            )
        )
        last_of.update(dict.fromkeys(keys, n))
    outcomes = await asyncio.gather(*done, return_exceptions=True)
    for outcome in outcomes:  # a database outage fails the whole call, once all have ended
        if isinstance(outcome, BaseException):
            raise outcome


async def _run_group(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    group: list[tuple[int, EventCreate]],
    slots: list[Slot | None],
    after: list[asyncio.Task[None]],
) -> None:
    if after:
        await asyncio.gather(*after)
    try:
        outcomes = await db.write(
            lambda s: _record_group(s, pipeline, program, group),
            key=events_service.lock_key(group[0][1]),
            alone=True,
        )
    except ServiceUnavailable:
        raise
    except Exception as exc:  # the group failed whole: its events one by one
        log.info("a batch group is recorded event by event", reason=type(exc).__name__)
        await _run_each(db, pipeline, program, group, slots)
        return
    for (i, _), outcome in zip(group, outcomes, strict=True):
        slots[i] = _slot_of(outcome, outcomes)


def _slot_of(outcome: _Outcome, outcomes: list[_Outcome]) -> Slot:
    if isinstance(outcome, int):
        outcome = outcomes[outcome]
    if isinstance(outcome, tuple):
        return Slot(201, event=outcome[0], text=outcome[1])
    if isinstance(outcome, EventRead):
        return Slot(201, event=outcome)
    assert isinstance(outcome, HabitueError)
    return _error(outcome)


async def _run_each(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    segment: list[tuple[int, EventCreate]],
    slots: list[Slot | None],
) -> None:
    """Each event of `segment` through the service's own request path, concurrently (each
    member's in slot order: one member's units share a lane of the committer)."""
    if not segment:
        return
    outcomes = await asyncio.gather(
        *(events_service.record_event(db, pipeline, program, body) for _, body in segment),
        return_exceptions=True,
    )
    for (i, _), outcome in zip(segment, outcomes, strict=True):
        if isinstance(outcome, EventRead):
            slots[i] = Slot(201, event=outcome)
        elif isinstance(outcome, ServiceUnavailable):
            raise outcome
        elif isinstance(outcome, HabitueError):
            slots[i] = _error(outcome)
        elif isinstance(outcome, Exception):
            log.error("an event of a batch failed", error=type(outcome).__name__, exc_info=outcome)
            slots[i] = Slot(500, problem=dict(_INTERNAL))
        else:
            raise outcome


async def record_batch(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    principal: Principal,
    raws: Sequence[Any],
) -> bytes:
    """The batch endpoint: slots as the response's JSON (`{"results": [...]}`)."""
    partner = principal.partner
    if partner is not None:
        await partner_access.require_active(db, program, partner)
    slots = await record_many(db, pipeline, program, raws, partner=partner)
    return b'{"results":[' + b",".join(slot.json() for slot in slots) + b"]}"
