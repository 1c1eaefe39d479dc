"""The variables CEL rules see, built once per event from the plain snapshots.

`event`: type, external_id, total and discount (doubles, major units), total_minor and
discount_minor (ints), base_points, line_count (int), quantity (double: units in the basket),
lines, attributes. `line` (line conditions only): sku and
category (strings, "" when unknown), quantity, unit_price, amount (doubles), unit_price_minor,
amount_minor (ints). `member`: id, tier ("" when none), status, tenure_days, attributes,
counters (every name of `COUNTERS` present, 0 by default; the event being decided
counted), benefits and segments (sorted lists).
`now`: the event's local time in the program's time zone — weekday (0 = Monday … 6 = Sunday),
weekday_name ("mon" … "sun"), hour, minute, time ("HH:MM"), date ("YYYY-MM-DD"), day, month,
year.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from habitue.rules.counters import COUNTERS, CounterEvent, including
from habitue.rules.types import EventInput, LineInput, MemberSnapshot, ProgramSnapshot

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ZERO_COUNTERS = dict.fromkeys(COUNTERS, 0)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The `ZoneInfo` of a time-zone name, cached."""
    return ZoneInfo(name)


def local_time(at: datetime, timezone: str) -> datetime:
    """An aware UTC time as wall-clock time in the program's zone (DST-correct)."""
    return at.astimezone(zone(timezone))


def line_values(line: LineInput, scale: float) -> dict[str, Any]:
    """The `line` variable of one basket line."""
    return {
        "sku": line.sku or "",
        "category": line.category or "",
        "quantity": float(line.quantity),
        "unit_price": line.unit_price_minor / scale,
        "unit_price_minor": line.unit_price_minor,
        "amount": line.amount_minor / scale,
        "amount_minor": line.amount_minor,
    }


def lines_values(event: EventInput, program: ProgramSnapshot) -> list[dict[str, Any]]:
    """The `event.lines` variable."""
    scale = float(10**program.currency_exponent)
    return [line_values(line, scale) for line in event.lines]


def now_values(local: datetime) -> dict[str, Any]:
    """The `now` variable for a local wall-clock time (shared: never mutate it)."""
    return _now_values(local.year, local.month, local.day, local.hour, local.minute)


@lru_cache(maxsize=4096)
def _now_values(year: int, month: int, day: int, hour: int, minute: int) -> dict[str, Any]:
    local = datetime(year, month, day, hour, minute)  # naive: wall-clock fields only
    wd = local.weekday()
    return {
        "weekday": wd,
        "weekday_name": WEEKDAY_NAMES[wd],
        "hour": local.hour,
        "minute": local.minute,
        "time": f"{local.hour:02d}:{local.minute:02d}",
        "date": local.date().isoformat(),
        "day": local.day,
        "month": local.month,
        "year": local.year,
    }


def build_roots(
    event: EventInput,
    member: MemberSnapshot,
    program: ProgramSnapshot,
    local: datetime,
    base_points: int,
    *,
    with_lines: bool = True,
    include: Collection[str] = ("event", "member", "now"),
) -> dict[str, Any]:
    """The CEL root variables for one event except `line` (plain dicts, built once).

    Only the roots named in `include` are built. Without `with_lines`, `event.lines` is left
    out for the caller to add when an expression reads it (see `lines_values`).
    """
    out: dict[str, Any] = {}
    if "event" in include:
        out["event"] = event_values(event, program, base_points, with_lines=with_lines)
    if "member" in include:
        out["member"] = member_values(member, event.occurred_at, event)
    if "now" in include:
        out["now"] = now_values(local)
    return out


def event_values(
    event: EventInput, program: ProgramSnapshot, base_points: int, *, with_lines: bool = True
) -> dict[str, Any]:
    """The `event` variable."""
    scale = float(10**program.currency_exponent)
    ev: dict[str, Any] = {
        "type": event.type,
        "external_id": event.external_id,
        "total": event.total_minor / scale,
        "total_minor": event.total_minor,
        "discount": event.discount_minor / scale,
        "discount_minor": event.discount_minor,
        "base_points": base_points,
        "line_count": len(event.lines),
        "quantity": float(sum((ln.quantity for ln in event.lines), 0)),
        "attributes": event.attributes,
    }
    if with_lines:
        ev["lines"] = lines_values(event, program)
    return ev


def member_values(
    member: MemberSnapshot, at: datetime, event: EventInput | None = None
) -> dict[str, Any]:
    """The `member` variable as of a time (for `tenure_days`); its counters count `event`,
    the event being decided, besides the member's earlier events (see `counters.including`)."""
    counters = _ZERO_COUNTERS | member.counters if member.counters else _ZERO_COUNTERS
    if event is not None:
        categories = tuple(line.category for line in event.lines if line.category)
        counters = including(
            counters, CounterEvent(event.type, event.occurred_at, event.total_minor, categories)
        )
    return {
        "id": member.id,
        "tier": member.tier or "",
        "status": member.status,
        "tenure_days": max((at - member.enrolled_at).days, 0),
        "attributes": member.attributes,
        "counters": counters,
        "benefits": sorted(member.benefits),
        "segments": sorted(member.segments),
    }
