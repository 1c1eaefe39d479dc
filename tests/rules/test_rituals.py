"""Ritual schedules in the program's local time, across midnight and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rules_factories import create_event, create_member, create_program, rules

from habitue.rules.decide import decide


def points_at(at: datetime, schedule: dict[str, object]) -> int:
    rs = rules(
        {
            "code": "ritual",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 10},
            "schedule": schedule,
        }
    )
    event = create_event("visit", at=at)
    return decide(event, create_member(), create_program(), rs, at).points


WED_NIGHT = {"days": ["wed"], "start": "21:00", "end": "23:59"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 1, 7, 20, 0, tzinfo=UTC), 10),  # winter, UTC+1: Wed 21:00 local
        (datetime(2026, 1, 7, 19, 59, tzinfo=UTC), 0),  # Wed 20:59 local
        (datetime(2026, 1, 7, 22, 59, 59, tzinfo=UTC), 10),  # Wed 23:59:59 local
        (datetime(2026, 1, 7, 23, 0, tzinfo=UTC), 0),  # Thu 00:00 local
        (datetime(2026, 7, 1, 19, 0, tzinfo=UTC), 10),  # summer, UTC+2: Wed 21:00 local
        (datetime(2026, 7, 1, 18, 30, tzinfo=UTC), 0),  # Wed 20:30 local (would be 19:30 UTC+1)
        (datetime(2026, 7, 1, 21, 30, tzinfo=UTC), 10),  # Wed 23:30 local
        (datetime(2026, 7, 1, 22, 30, tzinfo=UTC), 0),  # Thu 00:30 local
    ],
)
def test_wednesday_night_in_paris_winter_and_summer(at: datetime, expected: int) -> None:
    assert points_at(at, WED_NIGHT) == expected


SAT_LATE = {"days": ["sat"], "start": "23:00", "end": "01:00"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Night of Sat 24 → Sun 25 October 2026; clocks go back at 03:00 CEST on Sunday.
        (datetime(2026, 10, 24, 20, 59, tzinfo=UTC), 0),  # Sat 22:59 CEST
        (datetime(2026, 10, 24, 21, 0, tzinfo=UTC), 10),  # Sat 23:00 CEST
        (datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 10),  # Sun 00:30 CEST: started on Saturday
        (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), 10),  # Sun 01:00 CEST
        (datetime(2026, 10, 24, 23, 1, tzinfo=UTC), 0),  # Sun 01:01 CEST
        (datetime(2026, 10, 31, 22, 30, tzinfo=UTC), 10),  # next Sat 23:30 CET (UTC+1)
        (datetime(2026, 10, 30, 22, 30, tzinfo=UTC), 0),  # Fri 23:30 CET
    ],
)
def test_window_across_midnight_and_autumn_change(at: datetime, expected: int) -> None:
    assert points_at(at, SAT_LATE) == expected


SUNDAY_2AM = {"days": ["sun"], "start": "02:00", "end": "02:59"}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 10),  # 02:30 CEST (first pass)
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 10),  # 02:30 CET (second pass)
        (datetime(2026, 10, 25, 2, 30, tzinfo=UTC), 0),  # 03:30 CET
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), 0),  # 01:59 CET, then 02:00 is skipped
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 0),  # 03:00 CEST: the 02:xx hour never was
    ],
)
def test_hour_repeated_or_skipped_by_dst(at: datetime, expected: int) -> None:
    assert points_at(at, SUNDAY_2AM) == expected


def test_now_variables_are_local() -> None:
    rs = rules(
        {
            "code": "now",
            "event_type": "visit",
            "effect": {"kind": "fixed", "points": 1},
            "condition": "now.weekday == 2 && now.weekday_name == 'wed' && now.hour == 21 && "
            "now.minute == 30 && now.time == '21:30' && now.date == '2026-07-01' && "
            "now.day == 1 && now.month == 7 && now.year == 2026",
        }
    )
    at = datetime(2026, 7, 1, 19, 30, tzinfo=UTC)
    event = create_event("visit", at=at)
    assert decide(event, create_member(), create_program(), rs, at).points == 1
