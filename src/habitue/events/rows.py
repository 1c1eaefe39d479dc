"""What an event writes besides its effects, built once for the API and the import: the
domain events' payloads (`points.spent`, `points.earned`, `event.recorded`) and a purchase's
recorded answer.

`events.service` builds the API's answer as an `EventRead`; the import, which writes
hundreds of thousands of them, builds the same JSON as plain values (`purchase_answer`,
the same as the API's in `tests/events/test_import_effects.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from habitue.rules.types import EarnPoints

POINTS_SPENT, POINTS_EARNED, EVENT_RECORDED = "points.spent", "points.earned", "event.recorded"


def spent_payload(member: str, points: int, event_id: str) -> dict[str, Any]:
    """`points.spent`: points paid at the till by a purchase (`member`: its public id)."""
    return {"member_id": member, "points": points, "event_id": event_id, "reason": "till"}


def earned_payload(
    member: str, points: int, event_id: str, event_type: str, pending: bool
) -> dict[str, Any]:
    """`points.earned`: points an event credited (pending until its pending period ends)."""
    return {"member_id": member, "points": points, "event_id": event_id,
            "event_type": event_type, "pending": pending}  # fmt: skip


def recorded_payload(
    member: str, event_id: str, event_type: str, external_id: str, total: str | None
) -> dict[str, Any]:
    """`event.recorded`: an event was recorded (its total as the answer shows it)."""
    return {"member_id": member, "event_id": event_id, "type": event_type,
            "external_id": external_id, "total": total}  # fmt: skip


def instant(value: datetime) -> str:
    """An instant as the API's answers write it (`UtcDatetime`: UTC as `Z`, another offset
    kept, a naive value taken as UTC)."""
    text = value.isoformat()
    if value.tzinfo is None:  # taken as UTC
        return text + "Z"
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def earn_entry(effect: EarnPoints) -> dict[str, Any]:
    """The answer's entry of an `earn` or `multiplier` effect (`events.apply.entry`'s)."""
    return {"kind": effect.kind, "rule": effect.rule_code, "points": effect.amount, "detail": {},
            "benefit": None, "until": None, "coupon": None, "reward": None}  # fmt: skip


def purchase_answer(
    *,
    event_id: str,
    external_id: str,
    member: str,
    occurred_at: datetime,
    total: str,
    effects: Sequence[EarnPoints],
    points: int,
    pending: bool,
) -> dict[str, Any]:
    """The recorded answer of a purchase whose decision is `effects` (points only), crediting
    `points`, paying nothing with points, as `EventRead.model_dump(mode="json")` writes it."""
    return {
        "id": event_id,
        "type": "purchase",
        "external_id": external_id,
        "member_id": member,
        "occurred_at": instant(occurred_at),
        "total": total,
        "points": points,
        "points_earned": points,
        "points_spent": 0,
        "discount": None,
        "pending": pending and points > 0,
        "effects": [earn_entry(e) for e in effects],
        "errors": [],
        "shortfall": 0,
        "balance": None,
    }
