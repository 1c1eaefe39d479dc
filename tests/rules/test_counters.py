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
