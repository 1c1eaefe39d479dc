"""The event pipeline's write stage: an event's row and everything written with it.

On PostgreSQL one statement (`db.compose`): the ledger's credit if the event earns, the writes
the pipeline's stages left to it (`Planned.writes`), the event, its basket lines, the member's
lifetime total and the domain events. Each part's parameters are under its room's namespace
(`ledger__`, `counters__`, `event__`, `members__`, `outbox__`): no name is shared by convention.
On SQLite, the same writes as statements of their own, in the same order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import (
    Part,
    bind,
    compose,
    dialect_name,
    execute_composed,
    table_of,
    write_late_merged,
)
from habitue.events.models import Event, EventLine
from habitue.events.schemas import EventRead
from habitue.ledger import service as ledger_service
from habitue.members import service as members_service
from habitue.messaging import outbox
from habitue.rules.types import EventInput

_events = table_of(Event)
_lines = table_of(EventLine)
_EVENT_INSERT = insert(_events)
_LINES_INSERT = insert(_lines)

# The event and its basket lines (the lines' foreign key is checked at the statement's end).
_EVENT_SQL = """
    event AS (
        INSERT INTO events (id, program_id, member_id, type, source, external_id, occurred_at,
                            total_minor, points, points_spent, refers_to, refunded_minor,
                            points_taken_back, spent_returned, attributes, response, created_at)
        VALUES (:id, :program_id, :member_id, :type, :source, :external_id, :occurred_at,
                :total_minor, :points, :points_spent, :refers_to, 0, 0, 0,
                CAST(:attributes AS json), CAST(:response AS json), :created_at)
    ), lines AS (
        INSERT INTO event_lines (program_id, member_id, event_id, line_no, sku, category,
                                 quantity, unit_price_minor, amount_minor, tax_minor)
        SELECT :program_id, :member_id, :id, line.line_no, line.sku, line.category,
               line.quantity, line.unit_price_minor, line.amount_minor, line.tax_minor
        FROM unnest(CAST(:line_nos AS integer[]), CAST(:skus AS varchar[]),
                    CAST(:categories AS varchar[]), CAST(:quantities AS varchar[]),
                    CAST(:unit_prices AS bigint[]), CAST(:line_amounts AS bigint[]),
                    CAST(:line_taxes AS bigint[]))
             AS line(line_no, sku, category, quantity, unit_price_minor, amount_minor,
                     tax_minor)
    )
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event's row as the pipeline wrote it: who, what, and its answer."""

    id: str
    program_id: int
    member_id: int
    type: str
    source: str
    external_id: str
    event: EventInput
    points: int
    points_spent: int
    refers_to: str | None
    attributes: dict[str, Any]
    response: EventRead
    created_at: datetime
    response_json: str | None = None
    """The answer's JSON when the caller made it already (a batch's slot answers with it)."""

    def response_text(self) -> str:
        """The answer as stored: its JSON, made once."""
        text = self.response_json
        return self.response.model_dump_json() if text is None else text

    def columns(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "program_id": self.program_id,
            "member_id": self.member_id,
            "type": self.type,
            "source": self.source,
            "external_id": self.external_id,
            "occurred_at": self.event.occurred_at,
            "total_minor": self.event.total_minor,
            "points": self.points,
            "points_spent": self.points_spent,
            "refers_to": self.refers_to,
        }

    def part(self) -> Part:
        lines = self.event.lines
        return Part(
            "event",
            _EVENT_SQL,
            {
                **self.columns(),
                "attributes": json.dumps(self.attributes) if self.attributes else "{}",
                "response": self.response_text(),
                "created_at": self.created_at,
                "line_nos": list(range(len(lines))),
                "skus": [ln.sku for ln in lines],
                "categories": [ln.category for ln in lines],
                "quantities": [str(ln.quantity) for ln in lines],
                "unit_prices": [ln.unit_price_minor for ln in lines],
                "line_amounts": [ln.amount_minor for ln in lines],
                "line_taxes": [ln.tax_minor for ln in lines],
            },
        )


# A group of events in one statement (a batch's group, PostgreSQL): the events and their basket
# lines from parallel arrays, as `_EVENT_SQL` writes one.
_EVENTS_SQL = """
    events_ AS (
        INSERT INTO events (id, program_id, member_id, type, source, external_id, occurred_at,
                            total_minor, points, points_spent, refers_to, refunded_minor,
                            points_taken_back, spent_returned, attributes, response, created_at)
        SELECT e.id, e.program_id, e.member_id, e.type, e.source, e.external_id, e.occurred_at,
               e.total_minor, e.points, e.points_spent, e.refers_to, 0, 0, 0,
               CAST(e.attributes AS json), CAST(e.response AS json), e.created_at
        FROM unnest(CAST(:ids AS varchar[]), CAST(:programs AS bigint[]),
                    CAST(:members AS bigint[]), CAST(:types AS varchar[]),
                    CAST(:sources AS varchar[]), CAST(:external_ids AS varchar[]),
                    CAST(:occurred AS timestamptz[]), CAST(:totals AS bigint[]),
                    CAST(:points AS bigint[]), CAST(:spent AS bigint[]),
                    CAST(:refers_to AS varchar[]), CAST(:attributes AS text[]),
                    CAST(:responses AS text[]), CAST(:created AS timestamptz[]))
             AS e(id, program_id, member_id, type, source, external_id, occurred_at,
                  total_minor, points, points_spent, refers_to, attributes, response,
                  created_at)
    ), lines_ AS (
        INSERT INTO event_lines (program_id, member_id, event_id, line_no, sku, category,
                                 quantity, unit_price_minor, amount_minor, tax_minor)
        SELECT l.program_id, l.member_id, l.event_id, l.line_no, l.sku, l.category,
               l.quantity, l.unit_price_minor, l.amount_minor, l.tax_minor
        FROM unnest(CAST(:l_programs AS bigint[]), CAST(:l_members AS bigint[]),
                    CAST(:l_events AS varchar[]), CAST(:l_nos AS integer[]),
                    CAST(:l_skus AS varchar[]), CAST(:l_categories AS varchar[]),
                    CAST(:l_quantities AS varchar[]), CAST(:l_unit_prices AS bigint[]),
                    CAST(:l_amounts AS bigint[]), CAST(:l_taxes AS bigint[]))
             AS l(program_id, member_id, event_id, line_no, sku, category, quantity,
                  unit_price_minor, amount_minor, tax_minor)
    )
"""


def events_part(rows: Sequence[EventRow]) -> Part:
    """Several events' rows and their basket lines as CTEs of a composed statement."""
    p: dict[str, list[Any]] = {k: [] for k in (
        "ids", "programs", "members", "types", "sources", "external_ids", "occurred", "totals",
        "points", "spent", "refers_to", "attributes", "responses", "created", "l_programs",
        "l_members", "l_events", "l_nos", "l_skus", "l_categories", "l_quantities",
        "l_unit_prices", "l_amounts", "l_taxes",
    )}  # fmt: skip
    for row in rows:
        event = row.event
        p["ids"].append(row.id)
        p["programs"].append(row.program_id)
        p["members"].append(row.member_id)
        p["types"].append(row.type)
        p["sources"].append(row.source)
        p["external_ids"].append(row.external_id)
        p["occurred"].append(event.occurred_at)
        p["totals"].append(event.total_minor)
        p["points"].append(row.points)
        p["spent"].append(row.points_spent)
        p["refers_to"].append(row.refers_to)
        p["attributes"].append(json.dumps(row.attributes) if row.attributes else "{}")
        p["responses"].append(row.response_text())
        p["created"].append(row.created_at)
        for n, ln in enumerate(event.lines):
            p["l_programs"].append(row.program_id)
            p["l_members"].append(row.member_id)
            p["l_events"].append(row.id)
            p["l_nos"].append(n)
            p["l_skus"].append(ln.sku)
            p["l_categories"].append(ln.category)
            p["l_quantities"].append(str(ln.quantity))
            p["l_unit_prices"].append(ln.unit_price_minor)
            p["l_amounts"].append(ln.amount_minor)
            p["l_taxes"].append(ln.tax_minor)
    return Part("event", _EVENTS_SQL, p)


@dataclass(frozen=True, slots=True)
class EventWrite:
    """What stage 6 writes for one event: its row (and basket lines), what it adds to (or,
    refunded, takes off) the member's lifetime total, its domain events, the ledger's credit
    if it earns, and the writes the pipeline's stages left to it."""

    row: EventRow
    lifetime: int
    outbox_rows: Sequence[dict[str, Any]]
    credit: ledger_service.CreditPlan | None = None
    writes: Sequence[Part] = ()


async def write_runs(session: AsyncSession, writes: Sequence[EventWrite]) -> None:
    """Events a caller kept for a grouped batch's end itself (a confirmed basket's purchase,
    `promotions.till._write_confirmed`), written as the batch's own late events are
    (`_write_late`: each run of different members in one statement)."""
    await _write_late(session, list(writes))


async def write_event(session: AsyncSession, write: EventWrite) -> None:
    """Write the event's row, its basket lines, the points it adds to (or, refunded, takes
    off) the member's lifetime total and its domain events; first the `credit`, if any, and
    the stages' `writes`."""
    row, lifetime, outbox_rows = write.row, write.lifetime, write.outbox_rows
    credit, writes = write.credit, write.writes
    if dialect_name(session) == "postgresql":
        # Nothing reads these rows back in the unit: a grouped batch writes them all at its
        # end, its consecutive events in one statement (`_write_late`).
        if not write_late_merged(session, _write_late, write, carry=_write_late):
            await _write_one(session, write)
        return
    if credit is not None:
        await ledger_service.apply_credit(session, credit)
    for part in writes:  # not on SQLite today; kept for a stage that plans one
        await session.execute(text(part.sql), dict(part.params))
    await session.execute(
        _EVENT_INSERT,
        {
            **row.columns(),
            "refunded_minor": 0,
            "points_taken_back": 0,
            "spent_returned": 0,
            "attributes": row.attributes,
            "response": row.response.model_dump(mode="json"),
            "created_at": row.created_at,
        },
    )
    if row.event.lines:
        await session.execute(
            _LINES_INSERT,
            [
                {
                    "program_id": row.program_id,
                    "member_id": row.member_id,
                    "event_id": row.id,
                    "line_no": n,
                    "sku": ln.sku,
                    "category": ln.category,
                    "quantity": str(ln.quantity),
                    "unit_price_minor": ln.unit_price_minor,
                    "amount_minor": ln.amount_minor,
                    "tax_minor": ln.tax_minor,
                }
                for n, ln in enumerate(row.event.lines)
            ],
        )
    if lifetime:
        await members_service.add_lifetime(session, row.member_id, lifetime)
    await outbox.emit_many(session, outbox_rows)


async def _write_one(
    session: AsyncSession, write: EventWrite, carried: Sequence[Part] = ()
) -> None:
    """`write_event` on PostgreSQL: one statement (with `carried`, other rooms' parts)."""
    row = write.row
    parts = [write.credit.part()] if write.credit is not None else []
    parts += write.writes
    parts += [
        row.part(),
        members_service.lifetime_part(row.member_id, write.lifetime),
        *carried,
        outbox.part(write.outbox_rows),
    ]
    await session.execute(compose(parts), bind(parts))


async def _write_late(
    session: AsyncSession, writes: list[EventWrite], carried: Sequence[Part] = ()
) -> None:
    """The events a grouped batch's units left to its end (PostgreSQL), in their order: each
    run of events whose members are all different in one statement (`write_events`), a lone
    one in its own (`_write_one`). An event of a member already in the run starts the next
    run, so a member's events are written one after the other, as the units made them.
    `carried`: the batch's writes at its end (`db.write_at_end`, the Idempotency-Key
    records), written by the last statement."""
    run: list[EventWrite] = []
    members: set[int] = set()
    for write in [*writes, None]:
        if write is None or write.row.member_id in members:
            last = carried if write is None else ()
            if len(run) == 1:
                await _write_one(session, run[0], last)
            elif run:
                await write_events(session, run, last)
            run, members = [], set()
        if write is not None:
            run.append(write)
            members.add(write.row.member_id)


async def write_events(
    session: AsyncSession, group: Sequence[EventWrite], carried: Sequence[Part] = ()
) -> None:
    """`write_event` for each of a group of events whose members are all different (a batch's
    group): on PostgreSQL the credits, the stages' writes that merge (the counters), the events
    and their lines, the lifetime totals and the domain events in one statement, each table
    written once for the whole group (with `carried`, other rooms' parts: PostgreSQL only).
    On SQLite, `write_event` one after the other."""
    if not group:
        return
    if dialect_name(session) != "postgresql":
        assert not carried, "parts are carried on PostgreSQL only"
        for write in group:
            await write_event(session, write)
        return
    # The stages' writes: those that merge (`Part.merge`) go into the statement, one part per
    # kind; the others first, consecutive ones of one text in one pipelined round trip.
    mergeable: dict[Callable[[Sequence[Part]], Part], list[Part]] = {}
    others: list[Part] = []
    for write in group:
        for part in write.writes:
            if part.merge is not None:
                mergeable.setdefault(part.merge, []).append(part)
            else:
                others.append(part)
    for _, run in itertools.groupby(others, key=lambda part: (part.namespace, part.sql)):
        same = list(run)
        await session.execute(text(same[0].sql), [dict(part.params) for part in same])
    credits = [write.credit for write in group if write.credit is not None]
    lifetimes: dict[int, int] = {}
    for write in group:
        lifetimes[write.row.member_id] = lifetimes.get(write.row.member_id, 0) + write.lifetime
    parts = [ledger_service.credits_part(credits)] if credits else []
    parts += [merge(same) for merge, same in mergeable.items()]
    parts += [
        events_part([write.row for write in group]),
        members_service.lifetimes_part(lifetimes),
        *carried,
        outbox.part([row for write in group for row in write.outbox_rows]),
    ]
    await execute_composed(session, parts)
