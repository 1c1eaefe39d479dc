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
from typing import NamedTuple
from zoneinfo import ZoneInfo

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


def is_counted(event: CounterEvent) -> bool:
    """Whether any counter reads events of this kind (`bump` would change the state)."""
    return bool(_increments(event))


def bump(state: CounterState, event: CounterEvent, timezone: str) -> CounterState:
    """A new state with one more event counted; buckets older than 31 days are dropped."""
    tz = ZoneInfo(timezone)
    inc = _increments(event)
    if not inc:
        return state
    day = _local_date(event.occurred_at, tz)
    key = day.isoformat()
    days = dict(state.days)
    days[key] = _add(days.get(key, {}), inc)
    newest = date.fromisoformat(max(days))  # ISO dates order as their text does
    oldest_kept = (newest - timedelta(days=31)).isoformat()
    days = {k: v for k, v in days.items() if k >= oldest_kept}
    latest = max([day.year, *state.years])
    years = {y: v for y, v in state.years.items() if y >= latest - 1}
    years[day.year] = _add(years.get(day.year, {}), inc)
    return CounterState(days=days, years=years, lifetime=_add(state.lifetime, inc))


def counters_at(state: CounterState, as_of: datetime, timezone: str) -> dict[str, int]:
    """Counters as of a time not earlier than the last event counted into `state`."""
    today = _local_date(as_of, ZoneInfo(timezone))
    win: dict[str, dict[str, int]] = {"30d": {}, "7d": {}}
    for key, tallies in state.days.items():
        age = (today - date.fromisoformat(key)).days
        for name, days in _WINDOWS.items():
            if 0 <= age < days:
                win[name] = _add(win[name], tallies)
    year = state.years.get(today.year, {})
    life = state.lifetime
    out = {
        "visits_30d": win["30d"].get("visits", 0),
        "visits_lifetime": life.get("visits", 0),
        "purchases_30d": win["30d"].get("purchases", 0),
        "purchases_year": year.get("purchases", 0),
        "purchases_lifetime": life.get("purchases", 0),
        "spend_30d_minor": win["30d"].get("spend_minor", 0),
        "spend_year_minor": year.get("spend_minor", 0),
        "spend_lifetime_minor": life.get("spend_minor", 0),
        "reviews_7d": win["7d"].get("reviews", 0),
        "reviews_lifetime": life.get("reviews", 0),
        "referrals_lifetime": life.get("referrals", 0),
    }
    for name, value in win["30d"].items():
        if name.startswith("purchases.") and value:
            out[CATEGORY_PREFIX + name.removeprefix("purchases.")] = value
    return out
