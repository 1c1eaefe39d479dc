"""The one datetime type of API answers: always with an offset.

SQLite hands back naive datetimes for `DateTime(timezone=True)` columns; the store writes UTC, so
a naive value read back is UTC (as `clock.as_utc` takes it). Response models use `UtcDatetime` so
every instant the API answers carries its offset (`2026-12-06T20:49:01.742612Z`), on both
databases; an aware value keeps the offset it has (a period closing at local midnight, say).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def with_offset(value: datetime) -> datetime:
    """`value` with UTC attached if it is naive; aware values are kept as they are."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(with_offset)]
