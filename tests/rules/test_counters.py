"""Counters: the reference recomputation, and the incremental buckets agree with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from habitue.rules.counters import (
    COUNTERS,
    CounterEvent,
    CounterState,
    bump,
    category_counter,
    counters_at,
    recompute_counters,
)

PARIS = "Europe/Paris"
AS_OF = datetime(2026, 3, 31, 21, 0, tzinfo=UTC)  # 23:00 CEST on Tuesday 31 March


def test_recompute_exact_numbers() -> None:
    events = [
        CounterEvent("visit", AS_OF - timedelta(days=29, hours=22)),  # 1 March 01:00: in 30d
        CounterEvent("visit", AS_OF - timedelta(days=30, hours=1)),  # 28 Feb local: out of 30d
        CounterEvent("visit", AS_OF + timedelta(hours=1)),  # 1 April 00:00 local: after as_of
        CounterEvent("purchase", AS_OF - timedelta(days=2), 1250, ("coffee", "coffee", "tea")),
        CounterEvent("purchase", datetime(2025, 12, 31, 23, 30, tzinfo=UTC), 900, ("coffee",)),
        CounterEvent("refund", AS_OF - timedelta(days=1), 300),
        CounterEvent("review", AS_OF - timedelta(days=6, hours=22)),  # 25 March 01:00: in 7d
        CounterEvent("review", AS_OF - timedelta(days=7)),  # 24 March: out of 7d
        CounterEvent("referral", datetime(2024, 5, 1, tzinfo=UTC)),
        CounterEvent("social", AS_OF),
    ]
    assert recompute_counters(events, AS_OF, PARIS) == {
        "visits_30d": 1,
        "visits_lifetime": 2,
        "purchases_30d": 1,
        "purchases_year": 2,  # 31 Dec 23:30 UTC is 1 January 2026 in Paris
        "purchases_lifetime": 2,
        "spend_30d_minor": 950,
        "spend_year_minor": 1850,
        "spend_lifetime_minor": 1850,
        "reviews_7d": 1,
        "reviews_lifetime": 2,
        "referrals_lifetime": 1,
        category_counter("coffee"): 1,
        category_counter("tea"): 1,
    }
    assert set(recompute_counters([], AS_OF, PARIS)) == set(COUNTERS)


counter_events = st.builds(
    CounterEvent,
    st.sampled_from(["visit", "purchase", "refund", "review", "referral", "social"]),
    st.integers(0, 60 * 24 * 800).map(
        lambda m: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=m)
    ),
    st.integers(0, 5_000),
    st.lists(st.sampled_from(["coffee", "tea", "food"]), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(counter_events, max_size=40), st.integers(0, 60 * 24 * 40))
def test_incremental_matches_recompute(events: list[CounterEvent], later: int) -> None:
    ordered = sorted(events, key=lambda e: e.occurred_at)
    state = CounterState()
    for ev in ordered:
        state = bump(state, ev, PARIS)
    last = ordered[-1].occurred_at if ordered else datetime(2025, 1, 1, tzinfo=UTC)
    as_of = last + timedelta(minutes=later)
    assert counters_at(state, as_of, PARIS) == recompute_counters(events, as_of, PARIS)
    assert len(state.days) <= 32


def _reference_bump(state: CounterState, event: CounterEvent, timezone: str) -> CounterState:
    """`bump` as it was first written (every bucket filtered, dates parsed): the faster one
    must keep exactly the same buckets."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from habitue.rules.counters import _add, _increments

    inc = _increments(event)
    if not inc:
        return state
    day = event.occurred_at.astimezone(ZoneInfo(timezone)).date()
    days = dict(state.days)
    days[day.isoformat()] = _add(days.get(day.isoformat(), {}), inc)
    oldest_kept = (date.fromisoformat(max(days)) - timedelta(days=31)).isoformat()
    days = {k: v for k, v in days.items() if k >= oldest_kept}
    latest = max([day.year, *state.years])
    years = {y: v for y, v in state.years.items() if y >= latest - 1}
    years[day.year] = _add(years.get(day.year, {}), inc)
    return CounterState(days=days, years=years, lifetime=_add(state.lifetime, inc))


@settings(max_examples=200, deadline=None)
@given(st.lists(counter_events, max_size=40), st.integers(0, 60 * 24 * 40))
def test_bump_keeps_the_reference_buckets(events: list[CounterEvent], later: int) -> None:
    """Events in any order (a till's late purchase): the same state as the reference, and
    through its JSON form (`state_from_json` shares the decoded dicts) the same counters."""
    import orjson

    from habitue.rules.counter_store import state_from_json, state_to_json

    state = reference = CounterState()
    for ev in events:
        state = bump(state, ev, PARIS)
        reference = _reference_bump(reference, ev, PARIS)
        assert state == reference
        state = state_from_json(orjson.loads(orjson.dumps(state_to_json(state))))
    if events:
        as_of = max(e.occurred_at for e in events) + timedelta(minutes=later)
        ordered = sorted(events, key=lambda e: e.occurred_at)
        in_order = CounterState()
        for ev in ordered:
            in_order = bump(in_order, ev, PARIS)
        assert counters_at(in_order, as_of, PARIS) == recompute_counters(events, as_of, PARIS)
