"""Qualification windows and buckets as local calendar dates (pure functions, no I/O).

Every date here is a day in the program's time zone. A period is `[start, end)`: `end` is the
first day of the next period, the day on which the period closes.

- calendar_year: 1 January to 1 January; one bucket per year (its 1 January).
- anniversary_year: from the day of enrolment each year (29 February counts as 1 March); one
  bucket per period (its first day).
- rolling_months N: the current month and the N-1 before it, closing at each month's end; one
  bucket per month (its first day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

CALENDAR = "calendar_year"
ANNIVERSARY = "anniversary_year"
ROLLING = "rolling_months"


@dataclass(frozen=True, slots=True)
class Window:
    """How a ladder counts: the window kind and, for rolling windows, its months."""

    kind: str
    months: int = 12


def local_date(at: datetime, timezone: str) -> date:
    """The calendar day of an instant in the program's time zone."""
    return at.astimezone(ZoneInfo(timezone)).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """Shift a first-of-month (or any day up to the 28th) by whole months."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, day.day)


def anniversary_anchor(enrolled: date) -> date:
    """The day a member's anniversary periods start from (29 February becomes 1 March)."""
    if enrolled.month == 2 and enrolled.day == 29:
        return date(enrolled.year, 3, 1)
    return enrolled


def period_of(window: Window, enrolled: date, day: date) -> tuple[date, date]:
    """The qualification period `[start, end)` that contains `day`."""
    if window.kind == CALENDAR:
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    if window.kind == ANNIVERSARY:
        anchor = anniversary_anchor(enrolled)
        start = anchor.replace(year=day.year)
        if start > day:
            start = start.replace(year=day.year - 1)
        return start, start.replace(year=start.year + 1)
    end = add_months(month_start(day), 1)
    return add_months(end, -window.months), end


def bucket_of(window: Window, enrolled: date, day: date) -> date:
    """The bucket an event of `day` counts in (see the module's docstring)."""
    if window.kind == ROLLING:
        return month_start(day)
    return period_of(window, enrolled, day)[0]


def step_months(window: Window) -> int:
    """How far a period moves when it closes: a month for rolling windows, else a year."""
    return 1 if window.kind == ROLLING else 12


def anchor_md(enrolled: date) -> int:
    """A member's anniversary as month × 100 + day (29 February counts as 1 March)."""
    anchor = anniversary_anchor(enrolled)
    return anchor.month * 100 + anchor.day


def closings(window: Window, after: date, through: date) -> list[date]:
    """The days in `(after, through]` on which periods of this window close, in order.

    For anniversary years that is every day (each is some member's anniversary).
    """
    out: list[date] = []
    if window.kind == CALENDAR:
        for year in range(after.year + 1, through.year + 1):
            out.append(date(year, 1, 1))
        return out
    if window.kind == ROLLING:
        day = add_months(month_start(after), 1)
        while day <= through:
            out.append(day)
            day = add_months(day, 1)
        return out
    day = after + timedelta(days=1)
    while day <= through:
        out.append(day)
        day += timedelta(days=1)
    return out


def closing_window(window: Window, end: date) -> tuple[date, date]:
    """The period `[start, end)` that closes on `end`."""
    if window.kind == ROLLING:
        return add_months(end, -window.months), end
    if end.month == 2 and end.day == 29:
        return date(end.year - 1, 3, 1), end  # no anchor falls on 29 February
    return end.replace(year=end.year - 1), end
