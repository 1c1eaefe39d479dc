"""Many events at once: the batch endpoint's and the stream intake's one path.

Each event is validated on its own (the schema of `POST /events`), then recorded by the
service's own request path (`events.service.record_event`): every event is a unit of work of
the group committer, so a batch's events share a few transactions (up to
`HABITUE_GROUP_COMMIT_MAX` units each, per lane) and one failing event is rolled back alone in
its savepoint. Each slot is answered after the commit that holds it, as `POST /events`
would answer that event alone: 201 and the event, the first answer again for a retry of an
`external_id` already recorded (in an earlier request or earlier in the same batch), or the
event's own problem+json.

Members named by `external_id` are looked up for the whole batch in one query first, and
their events recorded as if named by `id` (the service's faster path for those).

Order: the events run concurrently, each member's in slot order (one member's events share a
lane of the committer, whose queue keeps their order). An event that reads what earlier
ones write — a refund (it reads its purchase), a purchase paid with points (it reads the
balance) — waits until every earlier slot of the batch is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from habitue.api import validation_problem
from habitue.db import Database, table_of
from habitue.errors import ERROR_BASE, Forbidden, HabitueError, ServiceUnavailable
from habitue.events import service as events_service
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import EventCreate, EventRead, MemberSelector
from habitue.members.models import Member
from habitue.partners import access as partner_access
from habitue.programs.service import Principal, ProgramInfo

log = structlog.get_logger()

_members = table_of(Member)

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

    def body(self) -> dict[str, Any]:
        if self.event is not None:
            return self.event.model_dump(mode="json")
        assert self.problem is not None
        return self.problem

    def json(self) -> bytes:
        body = self.event.model_dump_json().encode() if self.event else orjson.dumps(self.problem)
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
    ids = await _ids_by_external_id(db, program, bodies)
    segment: list[tuple[int, EventCreate]] = []
    for i, parsed in bodies:
        sel = parsed.member
        if sel is not None and sel.external_id is not None and sel.external_id in ids:
            parsed = parsed.model_copy(update={"member": MemberSelector(id=ids[sel.external_id])})
        if segment and _waits_for_earlier(parsed):
            await _run(db, pipeline, program, segment, slots)
            segment = []
        segment.append((i, parsed))
    await _run(db, pipeline, program, segment, slots)
    return [slot for slot in slots if slot is not None]


async def _ids_by_external_id(
    db: Database, program: ProgramInfo, bodies: list[tuple[int, EventCreate]]
) -> dict[str, str]:
    """The members the batch names by `external_id`, read in one query: their events then
    take the service's path for members named by `id` (the group's members read at once, its
    writes sent together). One not found is left as named: the service answers it 404."""
    wanted = {
        body.member.external_id
        for _, body in bodies
        if body.member is not None and body.member.external_id is not None
    }
    if not wanted:
        return {}
    async with db.read() as session:
        rows = await session.execute(
            select(_members.c.external_id, _members.c.public_id).where(
                _members.c.program_id == program.id, _members.c.external_id.in_(sorted(wanted))
            )
        )
        return {str(ext): str(public) for ext, public in rows}


async def _run(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    segment: list[tuple[int, EventCreate]],
    slots: list[Slot | None],
) -> None:
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
