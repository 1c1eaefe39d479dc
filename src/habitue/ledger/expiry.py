"""When a lot expires, by the program's policy, in the program's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def lot_expiry(
    earned_at: datetime, policy: str, days: int | None, timezone: str
) -> datetime | None:
    """The instant a lot credited at `earned_at` expires (None: never).

    `end_of_month`/`end_of_year` mean the first instant of the next local month/year.
    """
    if policy == "never":
        return None
    if policy == "days":
        return earned_at + timedelta(days=days or 0)
    local = earned_at.astimezone(ZoneInfo(timezone))
    if policy == "end_of_month":
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    elif policy == "end_of_year":
        year, month = local.year + 1, 1
    else:
        raise ValueError(f"unknown expiry policy {policy!r}")
    return datetime(year, month, 1, tzinfo=ZoneInfo(timezone)).astimezone(UTC)
