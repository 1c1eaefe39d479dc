"""The variables CEL rules see, built once per event from the plain snapshots.

`event`: type, external_id, total and discount (doubles, major units), total_minor and
discount_minor (ints), base_points, lines, attributes. `line` (line conditions only): sku and
category (strings, "" when unknown), quantity, unit_price, amount (doubles), unit_price_minor,
amount_minor (ints). `member`: id, tier ("" when none), status, tenure_days, attributes,
counters (every name of `COUNTERS` present, 0 by default), benefits and segments (sorted lists).
`now`: the event's local time in the program's time zone — weekday (0 = Monday … 6 = Sunday),
weekday_name ("mon" … "sun"), hour, minute, time ("HH:MM"), date ("YYYY-MM-DD"), day, month,
year.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from habitue.rules.counters import COUNTERS
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


def now_values(local: datetime) -> dict[str, Any]:
    """The `now` variable for a local wall-clock time."""
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
) -> dict[str, Any]:
    """All CEL root variables for one event except `line` (plain dicts, built once)."""
    scale = float(10**program.currency_exponent)
    counters = _ZERO_COUNTERS | member.counters if member.counters else dict(_ZERO_COUNTERS)
    return {
        "event": {
            "type": event.type,
            "external_id": event.external_id,
            "total": event.total_minor / scale,
            "total_minor": event.total_minor,
            "discount": event.discount_minor / scale,
            "discount_minor": event.discount_minor,
            "base_points": base_points,
            "lines": [line_values(line, scale) for line in event.lines],
            "attributes": event.attributes,
        },
        "member": {
            "id": member.id,
            "tier": member.tier or "",
            "status": member.status,
            "tenure_days": max((event.occurred_at - member.enrolled_at).days, 0),
            "attributes": member.attributes,
            "counters": counters,
            "benefits": sorted(member.benefits),
            "segments": sorted(member.segments),
        },
        "now": now_values(local),
    }
