"""The one transition function of events and refunds (`tiers.transition`), at its boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from habitue.tiers.kinds import TierChangeReason
from habitue.tiers.ladder import Ladder, TierDef
from habitue.tiers.periods import Window
from habitue.tiers.transition import Cause, Status, transition

BRONZE, SILVER, GOLD = 0, 1, 2
LADDER = Ladder(
    program_id=1,
    metric="visits",
    window=Window("calendar_year"),
    grace_days=0,
    tiers=tuple(
        TierDef(code, code.title(), rank, threshold, Decimal(1), ())
        for rank, (code, threshold) in enumerate((("bronze", 0), ("silver", 10), ("gold", 20)))
    ),
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)
TODAY = date(2026, 6, 15)
END = date(2027, 1, 1)
"""The current period ends (exclusive) on 1 January."""


def test_an_event_reaching_a_threshold_promotes_at_once_and_keeps_the_floor() -> None:
    below = transition(Status(BRONZE), LADDER, cause=Cause.EVENT, metric=9, today=TODAY,
                       period_end=END, event_id="e1")  # fmt: skip
    assert not below.changed and not below.writes

    up = transition(Status(BRONZE), LADDER, cause=Cause.EVENT, metric=10, today=TODAY,
                    period_end=END, event_id="e1")  # fmt: skip
    assert (up.old, up.new, up.changed) == (BRONZE, SILVER, True)
    assert up.reason == TierChangeReason.QUALIFIED
    assert up.writes["upgrade_from_rank"] == BRONZE
    assert up.writes["upgrade_period_end"] == END
    assert up.writes["upgrade_event_id"] == "e1"

    # A second upgrade in the same period keeps the first floor (the rank of the period's start).
    again = transition(
        Status(SILVER, upgrade_from_rank=BRONZE, upgrade_period_end=END), LADDER,
        cause=Cause.EVENT, metric=20, today=TODAY, period_end=END, event_id="e2",
    )  # fmt: skip
    assert (again.new, again.writes["upgrade_from_rank"]) == (GOLD, BRONZE)
    # In a new period the floor is the rank held when it began.
    later = transition(
        Status(SILVER, upgrade_from_rank=BRONZE, upgrade_period_end=date(2026, 1, 1)), LADDER,
        cause=Cause.EVENT, metric=20, today=TODAY, period_end=END, event_id="e3",
    )  # fmt: skip
    assert later.writes["upgrade_from_rank"] == SILVER


def test_an_event_re_qualifying_in_grace_cancels_the_downgrade_without_a_change() -> None:
    graced = Status(SILVER, grace_until=date(2026, 7, 1))
    move = transition(graced, LADDER, cause=Cause.EVENT, metric=10, today=TODAY, period_end=END)
    assert not move.changed and move.reason is None
    assert move.writes == {"grace_until": None, "grace_rank": None}
    short = transition(graced, LADDER, cause=Cause.EVENT, metric=9, today=TODAY, period_end=END)
    assert not short.writes


def test_a_refund_below_the_threshold_undoes_this_periods_upgrade() -> None:
    upgraded = Status(GOLD, upgrade_from_rank=BRONZE, upgrade_period_end=END)
    # At the threshold: nothing moves.
    kept = transition(upgraded, LADDER, cause=Cause.REFUND, metric=20, today=TODAY,
                      period_end=END)  # fmt: skip
    assert not kept.changed and not kept.writes
    # One below: down to what the metric still earns, the floor kept for a further refund.
    down = transition(upgraded, LADDER, cause=Cause.REFUND, metric=19, today=TODAY,
                      period_end=END)  # fmt: skip
    assert (down.old, down.new, down.reason) == (GOLD, SILVER, TierChangeReason.REFUND)
    assert down.writes == {"rank": SILVER, "upgrade_event_id": None,
                           "upgrade_from_rank": BRONZE, "upgrade_period_end": END}  # fmt: skip
    # Back to the floor: the period's upgrade is forgotten.
    floor = transition(upgraded, LADDER, cause=Cause.REFUND, metric=3, today=TODAY,
                       period_end=END)  # fmt: skip
    assert floor.new == BRONZE
    assert floor.writes["upgrade_from_rank"] is None and floor.writes["upgrade_period_end"] is None


def test_a_refund_never_goes_below_the_floor_nor_touches_an_earlier_periods_upgrade() -> None:
    from_silver = Status(GOLD, upgrade_from_rank=SILVER, upgrade_period_end=END)
    move = transition(from_silver, LADDER, cause=Cause.REFUND, metric=0, today=TODAY,
                      period_end=END)  # fmt: skip
    assert move.new == SILVER
    earlier = Status(GOLD, upgrade_from_rank=BRONZE, upgrade_period_end=date(2026, 1, 1))
    stay = transition(earlier, LADDER, cause=Cause.REFUND, metric=0, today=TODAY,
                      period_end=END)  # fmt: skip
    assert not stay.changed and not stay.writes
    # An event never demotes, even below the threshold.
    event = transition(from_silver, LADDER, cause=Cause.EVENT, metric=0, today=TODAY,
                       period_end=END)  # fmt: skip
    assert not event.changed


def test_a_guarantee_running_today_holds_a_refund_up_to_its_last_day() -> None:
    def guaranteed(until: date) -> Status:
        return Status(GOLD, upgrade_from_rank=BRONZE, upgrade_period_end=END,
                      guaranteed_rank=SILVER, guaranteed_until=until)  # fmt: skip

    last_day = transition(guaranteed(TODAY), LADDER, cause=Cause.REFUND, metric=0,
                          today=TODAY, period_end=END)  # fmt: skip
    assert last_day.new == SILVER
    over = transition(guaranteed(date(2026, 6, 14)), LADDER, cause=Cause.REFUND, metric=0,
                      today=TODAY, period_end=END)  # fmt: skip
    assert over.new == BRONZE
    # A guarantee of the tier held keeps it: no change at all.
    held = Status(GOLD, upgrade_from_rank=BRONZE, upgrade_period_end=END,
                  guaranteed_rank=GOLD, guaranteed_until=TODAY)  # fmt: skip
    stay = transition(held, LADDER, cause=Cause.REFUND, metric=0, today=TODAY, period_end=END)
    assert not stay.changed and not stay.writes
