"""The one source of `now`: UTC-aware, and movable in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    """Current UTC time plus the test offset (zero in production)."""
    return datetime.now(UTC) + _offset


def advance(delta: timedelta) -> None:
    """Move the clock forward (tests and simulations only)."""
    global _offset
    _offset += delta


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    """Run with `now()` at `moment`, then put the clock back as it was (simulations only: the
    demo books its past redemptions at their simulated time)."""
    global _offset
    saved = _offset
    _offset = as_utc(moment) - datetime.now(UTC)
    try:
        yield
    finally:
        _offset = saved


def reset() -> None:
    """Put the clock back to real time."""
    global _offset
    _offset = timedelta(0)


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime to UTC; naive values are taken as UTC (SQLite returns them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
