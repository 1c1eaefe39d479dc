"""Members' incremental counters in the database (`rules.counters.CounterState` as JSON): made
with the member, read locked with the member on the event path, bumped by each counted event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Part, dialect_name, table_of
from habitue.programs.service import ProgramInfo
from habitue.rules.counters import CounterEvent, CounterState, bump, counters_at, is_counted
from habitue.rules.models import MemberCounters

_counters = table_of(MemberCounters)


def state_to_json(state: CounterState) -> dict[str, Any]:
    """A `CounterState` as JSON (year keys as strings)."""
    return {
        "days": state.days,
        "years": {str(y): v for y, v in state.years.items()},
        "lifetime": state.lifetime,
    }


def state_from_json(data: Mapping[str, Any]) -> CounterState:
    """The `CounterState` of its JSON form (freshly decoded: its dicts are the state's own,
    not copied; a `CounterState`'s dicts are never changed, `bump` makes new ones)."""
    days = data.get("days")
    years = data.get("years")
    lifetime = data.get("lifetime")
    return CounterState(
        days=days if type(days) is dict else dict(days or {}),
        years={int(y): v for y, v in years.items()} if years else {},
        lifetime=lifetime if type(lifetime) is dict else dict(lifetime or {}),
    )


_COUNTERS_KEY = "habitue.rules.counters"
_COUNTERS_READ = select(_counters.c.state).where(_counters.c.member_id == bindparam("cnt_member"))
_COUNTERS_LOCK = _COUNTERS_READ.with_for_update()


def counters_column(member_id: ColumnElement[int]) -> ColumnElement[Any]:
    """The member's counter state as a column of the member's query, locked on PostgreSQL.

    Read with the member on the event path (`rules.hooks.COUNTERS`, a pipeline's `member_reads`),
    and `seed_counter_state` hands it to `counter_state` (saves a statement per event).
    """
    return (
        select(_counters.c.state)
        .where(_counters.c.member_id == member_id)
        .with_for_update()
        .scalar_subquery()
    )


def seed_counter_state(session: AsyncSession, member_id: int, raw: Any) -> None:
    """Keep a counter state read with the member (unless this unit of work has a newer one)."""
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id not in cache:
        cache[member_id] = None if raw is None else state_from_json(raw)


# The same write, as a part of the event's statement on PostgreSQL (`db.compose`).
_COUNTERS_WRITE_SQL = """
    UPDATE member_counters SET state = CAST(:state AS json), updated_at = :at
    WHERE member_id = :member
"""
_COUNTERS_WRITE = (
    update(_counters)
    .where(_counters.c.member_id == bindparam("cnt_member"))
    .values(state=bindparam("cnt_state"), updated_at=bindparam("cnt_at"))
)


# Several members' writes in one (a batch's group, `Part.merge`): each member's last state,
# the rows found by their key (`= ANY`), never by a scan of the table.
_COUNTERS_WRITE_MANY_SQL = """
    UPDATE member_counters SET state = CAST(c.state AS json), updated_at = c.at
    FROM unnest(CAST(:members AS bigint[]), CAST(:states AS text[]),
                CAST(:ats AS timestamptz[])) AS c(member, state, at)
    WHERE member_counters.member_id = c.member
      AND member_counters.member_id = ANY(CAST(:members AS bigint[]))
"""


def _merge_writes(parts: Sequence[Part]) -> Part:
    """The counters' writes of several events as one part: each member's last state."""
    last: dict[int, Mapping[str, Any]] = {}
    for part in parts:
        last[part.params["member"]] = part.params
    return Part(
        "counters",
        _COUNTERS_WRITE_MANY_SQL,
        {
            "members": list(last),
            "states": [params["state"] for params in last.values()],
            "ats": [params["at"] for params in last.values()],
        },
        "counters",
    )


def new_counters_row(program_id: int, member_id: int, now: datetime) -> dict[str, Any]:
    """A new member's counters row (nothing counted yet), made with the member: the event path
    then always finds a row to lock, and a member's first purchase inserts nothing."""
    return {
        "member_id": member_id,
        "program_id": program_id,
        "state": state_to_json(CounterState()),
        "updated_at": now,
    }


async def open_counters(
    session: AsyncSession, program_id: int, member_id: int, now: datetime
) -> None:
    """Make a new member's counters row (enrolment; the import makes its rows in bulk)."""
    await session.execute(insert(_counters).values(new_counters_row(program_id, member_id, now)))


async def counter_state(session: AsyncSession, member_id: int) -> CounterState:
    """A member's counter state (empty when nothing was counted yet).

    Read once per unit of work and kept on the session: the event path reads it before
    `decide` and writes it after. On PostgreSQL the row is locked on that first read, so two
    events of one member never count from the same state.
    """
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id in cache:
        return cache[member_id] or CounterState()
    query = _COUNTERS_LOCK if dialect_name(session) == "postgresql" else _COUNTERS_READ
    raw = (await session.execute(query, {"cnt_member": member_id})).scalar_one_or_none()
    cache[member_id] = None if raw is None else state_from_json(raw)
    return cache[member_id] or CounterState()


async def member_counters(
    session: AsyncSession, program: ProgramInfo, member_id: int, as_of: datetime
) -> dict[str, int]:
    """The member's counters as of a time (O(1): per-day buckets, not the event history)."""
    return counters_at(await counter_state(session, member_id), as_of, program.timezone)


async def count_event(
    session: AsyncSession, program: ProgramInfo, member_id: int, event: CounterEvent
) -> Part | None:
    """Count one event into the member's counters, in the event transaction.

    On PostgreSQL the update of a member's existing counters is returned, not run: the caller
    (the event pipeline) writes it as a part of the event's statement (saves a round trip).
    """
    if not is_counted(event):
        return None  # an event type no counter reads
    now = clock.now()
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id not in cache:
        await counter_state(session, member_id)
    known = cache[member_id]
    state = bump(CounterState() if known is None else known, event, program.timezone)
    if known is None:
        # The member's first counted event: one statement, no savepoint. When another
        # transaction counted a first event of the member meanwhile, nothing is inserted (once
        # that transaction has ended): start over from its row, now read locked.
        values = {
            "member_id": member_id,
            "program_id": program.id,
            "state": state_to_json(state),
            "updated_at": now,
        }
        dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
        first = (
            dialect.insert(_counters)
            .values(values)
            .on_conflict_do_nothing(index_elements=[_counters.c.member_id])
            .returning(_counters.c.member_id)
        )
        if (await session.execute(first)).scalar_one_or_none() is None:
            cache.pop(member_id, None)
            return await count_event(session, program, member_id, event)
    elif dialect_name(session) == "postgresql":
        # The row was locked with the member, and the unit reads the state from its cache.
        cache[member_id] = state
        state_text = orjson.dumps(state_to_json(state)).decode()
        params = {"member": member_id, "state": state_text, "at": now}
        return Part("counters", _COUNTERS_WRITE_SQL, params, "counters", merge=_merge_writes)
    else:
        await session.execute(
            _COUNTERS_WRITE,
            {"cnt_member": member_id, "cnt_state": state_to_json(state), "cnt_at": now},
        )
    cache[member_id] = state
    return None
