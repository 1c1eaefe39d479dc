"""The moment analytics are computed "as of": given, or the end of the program's history.

A retailer who imports four months of history that ended last spring wants RFM, CLV and
segments as they stood when the history ends, not "today", when nobody has bought for months.
So unless an ``as_of`` is given, analytics use:

- now, when the program's last event happened within its pending period (``pending_days``,
  at least one day): the program is live;
- otherwise the end of the UTC day of the program's last event (the next midnight), so the
  last day counts in full and recency is measured from the end of the history.

A date given alone (``2026-03-31``) means the end of that UTC day as well: everything that
happened on it is included. A timestamp is taken as it is (UTC when it has no offset).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, func, select

from habitue import clock
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.db import table_of
from habitue.events.models import Event
from habitue.programs.service import ProgramInfo

_events = table_of(Event)


def end_of_day(day: date) -> datetime:
    """The first instant (UTC) after the UTC day."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def parse_as_of(text: str) -> datetime:
    """``YYYY-MM-DD`` → the end of that UTC day; an ISO timestamp → itself (UTC if naive)."""
    value = text.strip()
    try:
        if len(value) == 10:
            return end_of_day(date.fromisoformat(value))
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidAnalyticsInput(
            f"as_of must be a date (YYYY-MM-DD) or an ISO timestamp, not {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def last_event_at(conn: Connection, program_id: int) -> datetime | None:
    """When the program's most recent event happened (its ``occurred_at``), if any."""
    value = conn.execute(
        select(func.max(_events.c.occurred_at)).where(_events.c.program_id == program_id)
    ).scalar()
    return None if value is None else clock.as_utc(value)


def default_as_of(
    last_event: datetime | None, *, pending_days: int, now: datetime | None = None
) -> datetime:
    """Now for a live program, else the end of the day of its last event (see the module)."""
    moment = now or clock.now()
    if last_event is None:
        return moment
    if last_event >= moment - timedelta(days=max(pending_days, 1)):
        return moment
    return end_of_day(last_event.astimezone(UTC).date())


def resolve(
    conn: Connection,
    program: ProgramInfo,
    as_of: datetime | None = None,
    *,
    now: datetime | None = None,
) -> datetime:
    """The as-of moment of an analytics run: the one given, or the program's default."""
    if as_of is not None:
        return clock.as_utc(as_of)
    return default_as_of(
        last_event_at(conn, program.id), pending_days=program.pending_days, now=now
    )
