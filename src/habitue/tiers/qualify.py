"""Tier qualification as a pure, in-memory replay (no I/O), for backtests and simulations.

`Qualifier` keeps each member's metric per bucket (a calendar year, or a month for rolling
windows; the same buckets as `periods.bucket_of`) as events are fed in time order, and each
member's rank:

- an event adds its amount to the bucket of its local day (the program's time zone); when the
  metric over the current period (`periods.period_of`) reaches a higher tier's threshold, the
  member moves up at once (as `service.on_event`);
- when a period closes (1 January for calendar years, the 1st of each month for rolling
  windows), every member who entered the ladder before that day keeps or raises the tier the
  closed period's metric earns, or else moves down one step, never below the base tier (as
  `evaluate.close_pass`).

Simplifications against the stored path: no grace period (a downgrade applies on the closing
day), no guarantees, refunds do not take metric back nor reverse an upgrade, and anniversary
years are not supported (`UnsupportedLadder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from habitue.rules.types import AddTierCredits, Decision, EventInput
from habitue.tiers import periods

NO_TIER = "(none)"
"""The key of members below the ladder in `Qualifier.mix` (never a valid tier code)."""

METRICS = ("qualifying_spend", "visits", "purchases", "bookings", "tier_credits")


class UnsupportedLadder(ValueError):
    """A ladder the pure qualification cannot replay (anniversary years, unknown metric)."""


@dataclass(frozen=True, slots=True)
class QualifyingTier:
    """One rung: its code, the metric's threshold (minor units for spend) and multiplier."""

    code: str
    threshold: int
    multiplier: str = "1"


@dataclass(frozen=True, slots=True)
class QualifyingLadder:
    """The ladder's shape: metric, window and tiers ranked from 0 with increasing thresholds."""

    metric: str
    window: periods.Window
    tiers: tuple[QualifyingTier, ...]

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UnsupportedLadder(f"unknown metric {self.metric!r}")
        if self.window.kind == periods.ANNIVERSARY:
            raise UnsupportedLadder("anniversary_year windows are not supported by the replay")
        if self.window.kind not in (periods.CALENDAR, periods.ROLLING):
            raise UnsupportedLadder(f"unknown window {self.window.kind!r}")
        if not self.tiers:
            raise UnsupportedLadder("a ladder needs at least one tier")
        thresholds = [t.threshold for t in self.tiers]
        if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)):
            raise UnsupportedLadder("thresholds must increase strictly up the ladder")

    @property
    def base_rank(self) -> int:
        """The rank every member holds without qualifying (-1: no tier)."""
        return 0 if self.tiers[0].threshold == 0 else -1

    def earned_rank(self, value: int) -> int:
        """The highest rank whose threshold `value` reaches (-1: none)."""
        rank = -1
        for i, t in enumerate(self.tiers):
            if value >= t.threshold:
                rank = i
        return rank

    def code(self, rank: int) -> str:
        """The tier code of a rank, `NO_TIER` below the ladder."""
        return self.tiers[rank].code if rank >= 0 else NO_TIER


def metric_amount(metric: str, event: EventInput, decision: Decision) -> int:
    """What an event adds to a metric: spend paid, one visit/purchase/booking, or credits."""
    if metric == "qualifying_spend":
        return max(event.total_minor - event.discount_minor, 0) if event.type == "purchase" else 0
    if metric == "visits":
        return 1 if event.type == "visit" else 0
    if metric == "purchases":
        return 1 if event.type == "purchase" else 0
    if metric == "bookings":
        return 1 if event.type == "booking" else 0
    return sum(e.amount for e in decision.effects if isinstance(e, AddTierCredits))


@dataclass(slots=True)
class _Member:
    rank: int
    since: date
    buckets: dict[date, int] = field(default_factory=dict)


class Qualifier:
    """Members' metric totals and ranks, kept incrementally while events are replayed."""

    def __init__(self, ladder: QualifyingLadder, timezone: str) -> None:
        self.ladder = ladder
        self.zone = ZoneInfo(timezone)
        self.members: dict[str, _Member] = {}
        self.closed_through: date | None = None
        """The last closing day applied (None before the first event)."""

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def advance(self, day: date) -> None:
        """Close every period that closes on or before `day` (in order, each once)."""
        if self.closed_through is None:
            self.closed_through = day
            return
        if day <= self.closed_through:
            return
        for end in periods.closings(self.ladder.window, self.closed_through, day):
            self._close(end)
        self.closed_through = day

    def _close(self, end: date) -> None:
        start, _ = periods.closing_window(self.ladder.window, end)
        ladder = self.ladder
        base = ladder.base_rank
        for state in self.members.values():
            if state.since >= end:
                continue
            metric = sum(v for b, v in state.buckets.items() if start <= b < end)
            earned = ladder.earned_rank(metric)
            old = state.rank
            state.rank = earned if earned >= old else max(old - 1, earned, base)
            # Buckets before the next period's start can never count again.
            keep_from = periods.closing_window(
                ladder.window, periods.add_months(end, periods.step_months(ladder.window))
            )[0]
            for b in [b for b in state.buckets if b < keep_from]:
                del state.buckets[b]

    def add(self, member: str, at: datetime, amount: int) -> int:
        """Count `amount` of the metric for the member at `at`; return the member's rank."""
        day = self.local_day(at)
        self.advance(day)
        state = self.members.get(member)
        if state is None:
            state = self.members[member] = _Member(self.ladder.base_rank, day)
        if amount > 0:
            window = self.ladder.window
            bucket = periods.bucket_of(window, state.since, day)
            state.buckets[bucket] = state.buckets.get(bucket, 0) + amount
            start, end = periods.period_of(window, state.since, day)
            value = sum(v for b, v in state.buckets.items() if start <= b < end)
            earned = self.ladder.earned_rank(value)
            if earned > state.rank:
                state.rank = earned
        return state.rank

    def rank(self, member: str) -> int:
        """The member's rank now (the base rank for a member not seen yet)."""
        state = self.members.get(member)
        return state.rank if state is not None else self.ladder.base_rank

    def mix(self) -> dict[str, int]:
        """Members per tier code (`NO_TIER` below the ladder), every tier listed."""
        out = {t.code: 0 for t in self.ladder.tiers}
        if self.ladder.base_rank < 0:
            out = {NO_TIER: 0, **out}
        for state in self.members.values():
            code = self.ladder.code(state.rank)
            out[code] = out.get(code, 0) + 1
        return out
