"""Helpers for the caps and budgets state that `decide` reads as `RuleUsage`.

The events service keeps, per (member, rule code, period key), the points and grants a rule
gave, and per rule code the points granted over all members (the budget used). Periods are
calendar periods of the program's time zone: the local day, the ISO week (Monday to Sunday),
the month, the year, and "lifetime".
"""

from __future__ import annotations

from datetime import datetime

from habitue.rules.context import local_time
from habitue.rules.types import AddTierCredits, Decision, EarnPoints, Period, Tally

PERIODS: tuple[Period, ...] = ("day", "week", "month", "year", "lifetime")


def period_keys(at: datetime, timezone: str) -> dict[Period, str]:
    """The keys of the periods containing a time, e.g. day "2026-01-07", week "2026-W02"."""
    local = local_time(at, timezone)
    iso = local.isocalendar()
    return {
        "day": local.date().isoformat(),
        "week": f"{iso.year}-W{iso.week:02d}",
        "month": f"{local.year}-{local.month:02d}",
        "year": str(local.year),
        "lifetime": "lifetime",
    }


def usage_increments(decision: Decision) -> dict[str, Tally]:
    """What applying a decision adds to each rule's tallies (points or credits, and 1 grant)."""
    out: dict[str, Tally] = {}
    for effect in decision.effects:
        if effect.rule_code == "base":
            continue
        amount = effect.amount if isinstance(effect, EarnPoints | AddTierCredits) else 0
        prev = out.get(effect.rule_code, Tally())
        out[effect.rule_code] = Tally(prev.points + amount, prev.count + 1)
    return out
