"""Velocity rules against points fraud: a member who trips one is held for review.

A program sets its limits (`PUT /v1/programs/{p}/fraud/settings`; none set, nothing is
watched and the event path reads nothing more): purchases per hour, refunds per day, and
the fastest plausible travel between two events that
carry the till's position (`attributes.lat` / `attributes.lon`, degrees) — a card used in two
distant places within minutes.

The event that trips a limit is recorded as usual; its member is then `held`: the member's
status stops every new earning and spending (events, spends, redemptions, club payments answer
409 `member-not-active`) until a reviewer releases them (`active` again) or suspends them
(`suspended`). Each hold is a row of `fraud_holds`, the review queue (API, console).

The decision is `assess`, a pure function over the member's recent events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import Conflict, NotFound
from habitue.events.models import Event
from habitue.members.models import Member
from habitue.privacy.models import FraudHold, FraudSettings
from habitue.programs.service import ProgramInfo

_settings = table_of(FraudSettings)
_holds = table_of(FraudHold)
_events = table_of(Event)
_members = table_of(Member)

HELD, RELEASED, SUSPENDED = "held", "released", "suspended"


@dataclass(frozen=True, slots=True)
class Limits:
    """A program's velocity limits; None turns one off."""

    purchases_per_hour: int | None = None
    refunds_per_day: int | None = None
    max_speed_kmh: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "purchases_per_hour": self.purchases_per_hour,
            "refunds_per_day": self.refunds_per_day,
            "max_speed_kmh": self.max_speed_kmh,
        }

    @property
    def any(self) -> bool:
        return any(v is not None for v in self.as_dict().values())


@dataclass(frozen=True, slots=True)
class Seen:
    """One event as the rules see it."""

    kind: str
    """The event's type (`purchase`, `refund`, `visit`…)."""
    at: datetime
    position: tuple[float, float] | None = None


def position_of(attributes: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not attributes:
        return None
    lat, lon = attributes.get("lat"), attributes.get("lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            return float(lat), float(lon)
    return None


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, Earth radius 6,371 km)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(
        (lon2 - lon1) / 2
    ) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def assess(limits: Limits, history: Sequence[Seen], new: Seen) -> tuple[str, str] | None:
    """(rule, reason) when `new`, after `history` (the member's recent events), trips a limit."""
    windows = (
        ("purchases_per_hour", "purchase", limits.purchases_per_hour, timedelta(hours=1)),
        ("refunds_per_day", "refund", limits.refunds_per_day, timedelta(days=1)),
    )
    for rule, kind, limit, window in windows:
        if limit is None or new.kind != kind:
            continue
        count = 1 + sum(1 for s in history if s.kind == kind and new.at - s.at < window)
        if count > limit:
            return rule, f"{count} {kind}s within {window} (limit {limit})"
    if limits.max_speed_kmh is not None and new.position is not None:
        for s in sorted(history, key=lambda s: s.at, reverse=True):
            if s.position is None:
                continue
            km = distance_km(s.position, new.position)
            hours = max(abs((new.at - s.at).total_seconds()) / 3600, 1 / 60)
            if km > 50 and km / hours > limits.max_speed_kmh:
                return (
                    "max_speed_kmh",
                    f"{km:.0f} km from the previous event in {hours * 60:.0f} min",
                )
            break
    return None


_CACHE_TTL = 5.0
_cache: dict[int, tuple[float, Limits]] = {}


def forget() -> None:
    _cache.clear()


async def limits_for(session: AsyncSession, program: ProgramInfo) -> Limits:
    """The program's limits (cached per process for a few seconds)."""
    hit = _cache.get(program.id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    row = (
        await session.execute(
            select(_settings.c.limits).where(_settings.c.program_id == program.id)
        )
    ).first()
    limits = Limits(**(row.limits if row else {}))
    _cache[program.id] = (time.monotonic() + _CACHE_TTL, limits)
    return limits


async def set_limits(session: AsyncSession, program: ProgramInfo, limits: Limits) -> Limits:
    now = clock.now()
    found = await session.execute(
        update(_settings)
        .where(_settings.c.program_id == program.id)
        .values(limits=limits.as_dict(), updated_at=now)
    )
    if not found.rowcount:  # type: ignore[attr-defined]
        await session.execute(
            insert(_settings).values(
                program_id=program.id, limits=limits.as_dict(), updated_at=now
            )
        )
    _cache.pop(program.id, None)
    return limits


async def watch(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    *,
    kind: str,
    at: datetime,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Check the member's new event against the program's limits; hold the member when one
    is tripped (the event itself stands). Reads nothing when the program sets no limit."""
    limits = await limits_for(session, program)
    if not limits.any:
        return
    since = at - timedelta(days=1)
    rows = (
        await session.execute(
            select(_events.c.type, _events.c.occurred_at, _events.c.attributes)
            .where(_events.c.member_id == member_id, _events.c.occurred_at >= since)
            .order_by(_events.c.occurred_at.desc())
            .limit(500)
        )
    ).all()
    history = [
        Seen(r.type, clock.as_utc(r.occurred_at), position_of(r.attributes)) for r in rows
    ]
    found = assess(limits, history, Seen(kind, at, position_of(attributes)))
    if found is not None:
        await hold(session, program, member_id, rule=found[0], reason=found[1])


async def hold(
    session: AsyncSession, program: ProgramInfo, member_id: int, *, rule: str, reason: str
) -> None:
    """Hold an active member for review (a member held already keeps their open hold)."""
    changed = await session.execute(
        update(_members)
        .where(_members.c.id == member_id, _members.c.status == "active")
        .values(status=HELD, updated_at=clock.now())
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return
    await session.execute(
        insert(_holds).values(
            program_id=program.id,
            member_id=member_id,
            rule=rule[:32],
            reason=reason[:300],
            status=HELD,
            created_at=clock.now(),
        )
    )


def _hold_read(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "member_id": row.public_id,
        "rule": row.rule,
        "reason": row.reason,
        "status": row.status,
        "created_at": clock.as_utc(row.created_at),
        "decided_at": None if row.decided_at is None else clock.as_utc(row.decided_at),
        "decided_by": row.decided_by,
    }


def _holds_query(program: ProgramInfo) -> Any:
    return (
        select(_holds, _members.c.public_id)
        .join(_members, _members.c.id == _holds.c.member_id)
        .where(_holds.c.program_id == program.id)
    )


async def queue(
    session: AsyncSession, program: ProgramInfo, *, status: str | None = HELD, limit: int = 100
) -> list[dict[str, Any]]:
    """The program's holds, oldest first (the open ones by default): the review queue."""
    q = _holds_query(program).order_by(_holds.c.id).limit(limit)
    if status is not None:
        q = q.where(_holds.c.status == status)
    return [_hold_read(r) for r in (await session.execute(q)).all()]


async def count_open(session: AsyncSession, program: ProgramInfo) -> int:
    q = select(func.count()).where(_holds.c.program_id == program.id, _holds.c.status == HELD)
    return int((await session.execute(q)).scalar_one())


async def decide(
    session: AsyncSession, program: ProgramInfo, hold_id: int, *, release: bool, actor: str
) -> dict[str, Any]:
    """Release (the member is active again) or suspend an open hold."""
    row = (await session.execute(_holds_query(program).where(_holds.c.id == hold_id))).first()
    if row is None:
        raise NotFound(f"no hold {hold_id} in this program")
    if row.status != HELD:
        raise Conflict(f"hold {hold_id} was {row.status} already")
    now = clock.now()
    status = RELEASED if release else SUSPENDED
    await session.execute(
        update(_holds)
        .where(_holds.c.id == hold_id)
        .values(status=status, decided_at=now, decided_by=actor[:200])
    )
    await session.execute(
        update(_members)
        .where(_members.c.id == row.member_id, _members.c.status == HELD)
        .values(status="active" if release else "suspended", updated_at=now)
    )
    row = (await session.execute(_holds_query(program).where(_holds.c.id == hold_id))).one()
    return _hold_read(row)
