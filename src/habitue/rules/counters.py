"""Member counters that rules read as `member.counters.<name>`, and how to compute them.

Windows are in whole local days of the program's time zone: "30d" is the day of `as_of` and
the 29 days before it; "year" is the calendar year of `as_of`; "lifetime" is everything up
to `as_of`. Refunds lower the spend counters (on the refund's day) but not the purchase
counts. Category counters are named ``purchases_30d.<category>`` (read them in CEL as
``member.counters['purchases_30d.coffee']``).

Rules read the counters with the event being decided counted (`including`): on the 19th
visit of the month `visits_30d` is 19, so "after 19 visits" is `visits_30d >= 19`.

`recompute_counters` is the reference: a pure recomputation from the member's events.
`CounterState` with `bump` and `counters_at` is the incremental twin, kept as per-day
buckets so a decision reads counters in O(1); its state is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from habitue.frozen import fast_init

COUNTERS: tuple[str, ...] = (
    "visits_30d",
    "visits_lifetime",
    "purchases_30d",
    "purchases_year",
    "purchases_lifetime",
    "spend_30d_minor",
    "spend_year_minor",
    "spend_lifetime_minor",
    "reviews_7d",
    "reviews_lifetime",
    "referrals_lifetime",
)
"""Counter names every member has (0 when nothing happened), besides category counters."""

CATEGORY_PREFIX = "purchases_30d."
_WINDOWS = {"30d": 30, "7d": 7}


class CounterEvent(NamedTuple):
    """What counters need to know of an event."""

    type: str
    occurred_at: datetime
    total_minor: int = 0
    categories: tuple[str, ...] = ()


def category_counter(category: str) -> str:
    """The counter name of purchases in a category over the last 30 days."""
    return CATEGORY_PREFIX + category


def _increments(event: CounterEvent) -> dict[str, int]:
    if event.type == "visit":
        return {"visits": 1}
    if event.type == "purchase":
        out = {"purchases": 1, "spend_minor": event.total_minor}
        for cat in set(event.categories):
            out["purchases." + cat] = 1
        return out
    if event.type == "refund":
        return {"spend_minor": -event.total_minor}
    if event.type == "review":
        return {"reviews": 1}
    if event.type == "referral":
        return {"referrals": 1}
    return {}


_OWN_COUNTERS: dict[str, tuple[str, ...]] = {
    "visits": ("visits_30d", "visits_lifetime"),
    "purchases": ("purchases_30d", "purchases_year", "purchases_lifetime"),
    "spend_minor": ("spend_30d_minor", "spend_year_minor", "spend_lifetime_minor"),
    "reviews": ("reviews_7d", "reviews_lifetime"),
    "referrals": ("referrals_lifetime",),
}
"""The counters an increment of `_increments` adds to, for the event being decided (which
is in every window of its own time)."""


def including(counters: Mapping[str, int], event: CounterEvent) -> dict[str, int]:
    """The counters a condition reads for `event`: the member's, as of just before it, with
    the event itself counted ("after 19 visits" holds on the 19th visit)."""
    out = dict(counters)
    for name, inc in _increments(event).items():
        if name.startswith("purchases."):
            key = CATEGORY_PREFIX + name.removeprefix("purchases.")
            out[key] = out.get(key, 0) + inc
            continue
        for key in _OWN_COUNTERS[name]:
            out[key] = out.get(key, 0) + inc
    return out


def _local_date(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def recompute_counters(
    events: Iterable[CounterEvent], as_of: datetime, timezone: str
) -> dict[str, int]:
    """Recompute every counter from a member's events as of a time (the reference)."""
    tz = ZoneInfo(timezone)
    today = _local_date(as_of, tz)
    out = dict.fromkeys(COUNTERS, 0)
    for ev in events:
        if ev.occurred_at > as_of:
            continue
        day = _local_date(ev.occurred_at, tz)
        age = (today - day).days
        in_30 = age < 30
        in_7 = age < 7
        this_year = day.year == today.year
        if ev.type == "visit":
            out["visits_lifetime"] += 1
            out["visits_30d"] += in_30
        elif ev.type == "purchase":
            out["purchases_lifetime"] += 1
            out["purchases_30d"] += in_30
            out["purchases_year"] += this_year
            out["spend_lifetime_minor"] += ev.total_minor
            out["spend_30d_minor"] += ev.total_minor if in_30 else 0
            out["spend_year_minor"] += ev.total_minor if this_year else 0
            if in_30:
                for cat in set(ev.categories):
                    name = category_counter(cat)
                    out[name] = out.get(name, 0) + 1
        elif ev.type == "refund":
            out["spend_lifetime_minor"] -= ev.total_minor
            out["spend_30d_minor"] -= ev.total_minor if in_30 else 0
            out["spend_year_minor"] -= ev.total_minor if this_year else 0
        elif ev.type == "review":
            out["reviews_lifetime"] += 1
            out["reviews_7d"] += in_7
        elif ev.type == "referral":
            out["referrals_lifetime"] += 1
    return out


@fast_init
@dataclass(frozen=True, slots=True)
class CounterState:
    """Incremental counters: per-day buckets (ISO date → tallies), per-year and lifetime sums."""

    days: dict[str, dict[str, int]] = field(default_factory=dict)
    years: dict[int, dict[str, int]] = field(default_factory=dict)
    lifetime: dict[str, int] = field(default_factory=dict)


def _add(into: Mapping[str, int], inc: Mapping[str, int]) -> dict[str, int]:
    out = dict(into)
    for k, v in inc.items():
        out[k] = out.get(k, 0) + v
    return out


_ZONES: dict[str, ZoneInfo] = {}


def _zone(timezone: str) -> ZoneInfo:
    """The program's time zone, looked up once per process (`ZoneInfo(name)` costs a call
    through its own cache every time)."""
    zone = _ZONES.get(timezone)
    if zone is None:
        zone = _ZONES[timezone] = ZoneInfo(timezone)
    return zone


@lru_cache(maxsize=4096)
def _days_before(day: str, days: int) -> str:
    """The ISO date `days` days before the ISO date `day`."""
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()


_NOTHING: dict[str, int] = {}


def is_counted(event: CounterEvent) -> bool:
    """Whether any counter reads events of this kind (`bump` would change the state)."""
    return bool(_increments(event))


def bump(state: CounterState, event: CounterEvent, timezone: str) -> CounterState:
    """A new state with one more event counted; buckets older than 31 days are dropped.

    The event path runs it for every counted event (and the backtest for every purchase):
    ISO dates are compared as text (they order as the dates do) and the buckets are filtered
    only when one has fallen out; the state's dicts are never changed, only replaced."""
    inc = _increments(event)
    if not inc:
        return state
    day = event.occurred_at.astimezone(_zone(timezone)).date()
    key = day.isoformat()
    days = dict(state.days)
    days[key] = _add(days.get(key, _NOTHING), inc)
    oldest_kept = _days_before(max(days), 31)
    if min(days) < oldest_kept:
        days = {k: v for k, v in days.items() if k >= oldest_kept}
    year = day.year
    kept = state.years
    latest = max(year, max(kept)) if kept else year
    years = {y: v for y, v in kept.items() if y >= latest - 1}
    years[year] = _add(years.get(year, _NOTHING), inc)
    return CounterState(days=days, years=years, lifetime=_add(state.lifetime, inc))


@lru_cache(maxsize=1024)
def _windows(today: date) -> tuple[str, str, str]:
    """`today` and the first days of its 30- and 7-day windows, as ISO dates."""
    return (
        today.isoformat(),
        (today - timedelta(days=_WINDOWS["30d"] - 1)).isoformat(),
        (today - timedelta(days=_WINDOWS["7d"] - 1)).isoformat(),
    )


def counters_at(state: CounterState, as_of: datetime, timezone: str) -> dict[str, int]:
    """Counters as of a time not earlier than the last event counted into `state`."""
    today = as_of.astimezone(_zone(timezone)).date()
    last, first_30, first_7 = _windows(today)
    w30: dict[str, int] = {}
    w7: dict[str, int] = {}
    for key, tallies in state.days.items():  # a day is in a window: first <= key <= last
        if key > last or key < first_30:
            continue
        for name, value in tallies.items():
            w30[name] = w30.get(name, 0) + value
        if key >= first_7:
            for name, value in tallies.items():
                w7[name] = w7.get(name, 0) + value
    year = state.years.get(today.year, _NOTHING)
    life = state.lifetime
    out = {
        "visits_30d": w30.get("visits", 0),
        "visits_lifetime": life.get("visits", 0),
        "purchases_30d": w30.get("purchases", 0),
        "purchases_year": year.get("purchases", 0),
        "purchases_lifetime": life.get("purchases", 0),
        "spend_30d_minor": w30.get("spend_minor", 0),
        "spend_year_minor": year.get("spend_minor", 0),
        "spend_lifetime_minor": life.get("spend_minor", 0),
        "reviews_7d": w7.get("reviews", 0),
        "reviews_lifetime": life.get("reviews", 0),
        "referrals_lifetime": life.get("referrals", 0),
    }
    for name, value in w30.items():
        if name.startswith("purchases.") and value:
            out[CATEGORY_PREFIX + name.removeprefix("purchases.")] = value
    return out
