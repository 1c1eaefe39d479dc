"""The one rule by which an event or a refund moves a member's tier (pure).

`transition` is given the member's status, the ladder, the metric of the current period and
today, and says the member's rank after the movement and which status columns change. Both
`movement.on_event` and `movement.on_refund` call it and write what it says:

- an event whose metric reaches a higher tier promotes at once (`qualified`); the rank the
  member came from is kept as the floor a later refund of this period may fall back to. An
  event that re-qualifies a member in grace cancels the pending downgrade (no change of rank);
- a refund that takes the metric below the current tier's threshold undoes this period's
  upgrade, down to the highest of: the rank the metric still earns, the rank before the
  period's first upgrade, a guarantee still running today, and the base rank (`refund`).
  A refund never demotes past this period's upgrades: earlier ranks are the period-end
  evaluation's business (`evaluate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from habitue.tiers.kinds import TierChangeReason
from habitue.tiers.ladder import Ladder


class Cause(StrEnum):
    """What moved the metric."""

    EVENT = "event"
    """An event counted toward the metric (it only rises)."""
    REFUND = "refund"
    """A refund took a purchase's share out of the metric (it only falls)."""


@dataclass(frozen=True, slots=True)
class Status:
    """What the transition reads of a member's tier status (`tier_status`)."""

    rank: int
    grace_until: date | None = None
    upgrade_from_rank: int | None = None
    upgrade_period_end: date | None = None
    guaranteed_rank: int | None = None
    guaranteed_until: date | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Status:
        """The status of a `tier_status` row."""
        return cls(
            rank=int(row["rank"]),
            grace_until=row["grace_until"],
            upgrade_from_rank=_int_or_none(row["upgrade_from_rank"]),
            upgrade_period_end=row["upgrade_period_end"],
            guaranteed_rank=_int_or_none(row["guaranteed_rank"]),
            guaranteed_until=row["guaranteed_until"],
        )

    def upgraded_in(self, period_end: date) -> bool:
        """Whether the member moved up in the period ending at `period_end` (only such an
        upgrade can a refund undo)."""
        return self.upgrade_period_end == period_end and self.upgrade_from_rank is not None

    def guaranteed(self, today: date) -> int:
        """The rank a guarantee still running today keeps (-1: none)."""
        until = self.guaranteed_until
        if until is None or self.guaranteed_rank is None or until < today:
            return -1
        return self.guaranteed_rank


@dataclass(frozen=True, slots=True)
class Transition:
    """The member's rank before and after, why it changed, and the status columns to write
    (empty: nothing to write)."""

    old: int
    new: int
    reason: TierChangeReason | None = None
    writes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the rank changed (a tier change to record)."""
        return self.new != self.old


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def transition(
    status: Status,
    ladder: Ladder,
    *,
    cause: Cause,
    metric: int,
    today: date,
    period_end: date,
    event_id: str | None = None,
) -> Transition:
    """Where the member's tier goes when `cause` left the current period's metric at
    `metric` (the period ends, exclusive, at `period_end`). `event_id` is the event that
    promotes, kept so the period's upgrade can be undone."""
    current = status.rank
    stay = Transition(current, current)
    earned = ladder.earned_rank(metric)
    if cause is Cause.EVENT:
        if earned > current:
            first_this_period = status.upgrade_period_end != period_end
            return Transition(
                current,
                earned,
                TierChangeReason.QUALIFIED,
                {
                    "rank": earned,
                    "grace_until": None,
                    "grace_rank": None,
                    "upgrade_event_id": event_id,
                    "upgrade_from_rank": current
                    if first_this_period
                    else status.upgrade_from_rank,
                    "upgrade_period_end": period_end,
                },
            )
        if status.grace_until is not None and earned >= current:
            # Re-qualified during the grace period: the pending downgrade is cancelled.
            return Transition(current, current, None, {"grace_until": None, "grace_rank": None})
        return stay
    # A refund undoes only this period's upgrade, and only below the tier's threshold.
    floor = status.upgrade_from_rank
    if not status.upgraded_in(period_end) or floor is None:
        return stay
    if current < 0 or metric >= ladder.tiers[current].threshold:
        return stay
    new = max(earned, floor, status.guaranteed(today), ladder.base_rank)
    if new >= current:
        return stay
    back_to_floor = new == floor
    return Transition(
        current,
        new,
        TierChangeReason.REFUND,
        {
            "rank": new,
            "upgrade_event_id": None,
            "upgrade_from_rank": None if back_to_floor else floor,
            "upgrade_period_end": None if back_to_floor else period_end,
        },
    )
