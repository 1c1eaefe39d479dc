"""Messages due on a date or a balance rather than after an event, and quiet hours.

The decisions are pure functions (`quiet_until`, `is_birthday`, `reward_crossing`); the
worker's periodic scan (`scan`) turns what they decide into outbox events — `member.birthday`,
`points.expiring`, `reward.available` — in the transaction that marks them as done, so that
a second scan, a second worker or a restart sends nothing twice. The events then go the way
of every other one: planned into deliveries, sent with consent, the cap, quiet hours.

- `points.expiring`: a lot of available points expires within `points_expiring_days` (program
  setting, else `HABITUE_POINTS_EXPIRING_DAYS`, 14): once per lot (`message_marks`).
- `member.birthday`: on the member's birthday in the program's time zone (29 February is kept
  on 28 February in other years): once per year.
- `reward.available`: the member's available points cover the cheapest active reward's cost
  one more time than when last looked at (`reward_levels`): reaching 50 then 100 with a
  cheapest reward at 50 is two messages, a jump from 0 to 100 one. A balance that falls is
  remembered lower, so crossing again later is a new message. Balances are looked at on every
  scan (`HABITUE_TIMED_SCAN_SECONDS`): two crossings between two scans make one message.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import and_, case, extract, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, dialect_name, table_of
from habitue.ledger.models import Account, Lot
from habitue.members.models import Member
from habitue.messaging import outbox
from habitue.messaging.models import MessageMark, RewardLevel
from habitue.programs.models import Program
from habitue.rewards.models import Reward
from habitue.settings import Settings

log = structlog.get_logger()

_marks = table_of(MessageMark)
_levels = table_of(RewardLevel)
_m = table_of(Member)
_p = table_of(Program)
_lots = table_of(Lot)
_accounts = table_of(Account)
_rewards = table_of(Reward)

TIMED_EVENTS = {
    "points.expiring": "points_expiring",
    "member.birthday": "birthday",
    "reward.available": "reward_available",
}
"""The timed domain events and the message template each calls for."""

SCAN_LOCK = 0x74696D6564 << 24
"""Base of the PostgreSQL advisory lock keys of the scan (one per program id)."""


_QUIET = re.compile(r"\d\d:\d\d *- *\d\d:\d\d")

# --- decisions (pure) -------------------------------------------------------------------------


def parse_quiet_hours(value: str) -> tuple[time, time]:
    """`"21:00-08:00"` → (start, end); a window may run over midnight. ValueError if bad."""
    try:
        if not _QUIET.fullmatch(value.strip()):
            raise ValueError(value)
        start_s, end_s = value.split("-")
        start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
    except ValueError as exc:
        raise ValueError("quiet hours must be HH:MM-HH:MM, e.g. 21:00-08:00") from exc
    if start == end:
        raise ValueError("quiet hours must start and end at different times")
    return start, end


def quiet_until(now: datetime, tz: str, window: tuple[time, time] | None) -> datetime | None:
    """When the quiet hours holding `now` end (UTC), or None when `now` is outside them.

    The window is local wall-clock time in the program's time zone `tz`."""
    if window is None:
        return None
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start, end = window
    t = local.timetz().replace(tzinfo=None)
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:  # over midnight: 21:00-08:00
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def is_birthday(birth_date: date, today: date) -> bool:
    """Whether `today` (local) is the birthday; 29 February counts on 28 February in other
    years."""
    if (birth_date.month, birth_date.day) == (today.month, today.day):
        return True
    leap = today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0)
    return (
        (birth_date.month, birth_date.day) == (2, 29)
        and not leap
        and (
            today.month,
            today.day,
        )
        == (2, 28)
    )


def reward_crossing(previous: int | None, balance: int, cheapest: int) -> tuple[int, bool]:
    """(the new level, whether to announce): the level is how many times the balance covers
    the cheapest reward; a level higher than the previous one is announced once."""
    level = max(0, balance) // cheapest if cheapest > 0 else 0
    return level, level > (previous or 0)


# --- the scan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ProgramRow:
    id: int
    timezone: str
    settings: dict[str, Any]


def _insert_ignore(session: AsyncSession, table: Any) -> Any:
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    return dialect.insert(table)


async def _mark(
    session: AsyncSession, program_id: int, kind: str, keys: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Insert (member, key) marks of `kind`; the ones that were new (the others exist)."""
    if not keys:
        return set()
    now = clock.now()
    rows = [
        {"program_id": program_id, "member_id": m, "kind": kind, "key": k, "created_at": now}
        for m, k in keys
    ]
    q = (
        _insert_ignore(session, _marks)
        .on_conflict_do_nothing(index_elements=["program_id", "member_id", "kind", "key"])
        .returning(_marks.c.member_id, _marks.c.key)
    )
    fresh: set[tuple[str, str]] = set()
    for start in range(0, len(rows), 500):
        result = await session.execute(q, rows[start : start + 500])
        fresh.update((r.member_id, r.key) for r in result)
    return fresh


async def scan_birthdays(session: AsyncSession, program: _ProgramRow, *, now: datetime) -> int:
    """`member.birthday` for the members whose birthday it is today, locally; how many."""
    today = now.astimezone(ZoneInfo(program.timezone)).date()
    days = [(today.month, today.day)]
    if is_birthday(date(2000, 2, 29), today) and today.day == 28:
        days.append((2, 29))
    day_match = or_(
        *(
            and_(extract("month", _m.c.birth_date) == m, extract("day", _m.c.birth_date) == d)
            for m, d in days
        )
    )
    members = list(
        (
            await session.execute(
                select(_m.c.public_id).where(
                    _m.c.program_id == program.id,
                    _m.c.status == "active",
                    _m.c.birth_date.is_not(None),
                    day_match,
                )
            )
        ).scalars()
    )
    year = str(today.year)
    fresh = await _mark(session, program.id, "birthday", [(m, year) for m in members])
    rows = [
        outbox.outbox_row(
            program.id, "member.birthday", m, {"member_id": m, "date": today.isoformat()}
        )
        for m, _ in sorted(fresh)
    ]
    await outbox.emit_many(session, rows)
    return len(rows)


async def scan_expiring(
    session: AsyncSession, program: _ProgramRow, *, now: datetime, days: int
) -> int:
    """`points.expiring` for every lot of available points expiring within `days`, once per
    lot; how many."""
    if days <= 0:
        return 0
    lots = (
        await session.execute(
            select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at, _m.c.public_id)
            .join(_accounts, _accounts.c.id == _lots.c.account_id)
            .join(_m, _m.c.id == _lots.c.member_id)
            .where(
                _lots.c.program_id == program.id,
                _accounts.c.kind == "available",
                _lots.c.remaining > 0,
                _lots.c.expires_at.is_not(None),
                _lots.c.expires_at > now,
                _lots.c.expires_at <= now + timedelta(days=days),
                or_(_lots.c.pending_until.is_(None), _lots.c.pending_until <= now),
                _m.c.status == "active",
            )
            .order_by(_lots.c.id)
        )
    ).all()
    by_key = {(r.public_id, str(r.id)): r for r in lots}
    fresh = await _mark(session, program.id, "points_expiring", list(by_key))
    rows = [
        outbox.outbox_row(
            program.id,
            "points.expiring",
            member,
            {
                "member_id": member,
                "points": int(by_key[(member, key)].remaining),
                "expires_at": clock.as_utc(by_key[(member, key)].expires_at).isoformat(),
            },
        )
        for member, key in sorted(fresh, key=lambda mk: int(mk[1]))
    ]
    await outbox.emit_many(session, rows)
    return len(rows)


async def scan_rewards(session: AsyncSession, program: _ProgramRow, *, now: datetime) -> int:
    """`reward.available` for each member whose balance crossed the cheapest active reward's
    cost once more since the last scan; how many."""
    cheapest = (
        await session.execute(
            select(func.min(_rewards.c.cost_points)).where(
                _rewards.c.program_id == program.id,
                _rewards.c.active.is_(True),
                _rewards.c.cost_points > 0,
            )
        )
    ).scalar_one_or_none()
    if cheapest is None:
        return 0
    cheapest = int(cheapest)
    level = case((_accounts.c.balance < 0, 0), else_=_accounts.c.balance // cheapest)
    stored = func.coalesce(_levels.c.level, 0)
    changed = (
        await session.execute(
            select(_m.c.public_id, _accounts.c.balance, _levels.c.level)
            .join(_m, _m.c.id == _accounts.c.member_id)
            .outerjoin(
                _levels,
                and_(_levels.c.program_id == program.id, _levels.c.member_id == _m.c.public_id),
            )
            .where(
                _accounts.c.program_id == program.id,
                _accounts.c.kind == "available",
                _m.c.status == "active",
                level != stored,
            )
        )
    ).all()
    announce: list[dict[str, Any]] = []
    upserts: list[dict[str, Any]] = []
    for member, balance, previous in changed:
        new_level, tell = reward_crossing(previous, int(balance), cheapest)
        if new_level == (previous or 0) and previous is not None:
            continue
        upserts.append(
            {"program_id": program.id, "member_id": member, "level": new_level, "updated_at": now}
        )
        if tell:
            announce.append(
                outbox.outbox_row(
                    program.id,
                    "reward.available",
                    member,
                    {"member_id": member, "points": int(balance), "cheapest_cost": cheapest},
                )
            )
    if upserts:
        q = _insert_ignore(session, _levels)
        q = q.on_conflict_do_update(
            index_elements=["program_id", "member_id"],
            set_={"level": q.excluded.level, "updated_at": q.excluded.updated_at},
        )
        for start in range(0, len(upserts), 500):
            await session.execute(q, upserts[start : start + 500])
    await outbox.emit_many(session, announce)
    return len(announce)


async def _programs(session: AsyncSession) -> list[_ProgramRow]:
    rows = await session.execute(select(_p.c.id, _p.c.timezone, _p.c.settings).order_by(_p.c.id))
    return [_ProgramRow(r.id, r.timezone, dict(r.settings or {})) for r in rows]


def expiring_days(program_settings: dict[str, Any], settings: Settings) -> int:
    value = program_settings.get("points_expiring_days", settings.points_expiring_days)
    return value if isinstance(value, int) else settings.points_expiring_days


async def _scan_program(
    session: AsyncSession, *, program: _ProgramRow, settings: Settings, now: datetime
) -> int:
    if dialect_name(session) == "postgresql":
        # One scanner per program at a time (the marks make a second one harmless anyway).
        # An advisory lock, not the program's row: the planner updates that row
        # (`programs.feed_seq`) and must not wait for a scan.
        got = (
            await session.execute(select(func.pg_try_advisory_xact_lock(SCAN_LOCK + program.id)))
        ).scalar_one()
        if not got:
            return 0
    n = await scan_birthdays(session, program, now=now)
    n += await scan_expiring(
        session, program, now=now, days=expiring_days(program.settings, settings)
    )
    n += await scan_rewards(session, program, now=now)
    return n


async def scan(db: Database, settings: Settings) -> int:
    """One scan of every program for timed messages and due newsletters; events written."""
    from habitue.messaging import newsletters

    async with db.read() as session:
        programs = await _programs(session)
    now = clock.now()
    total = 0
    for program in programs:
        try:
            total += await db.write(
                functools.partial(_scan_program, program=program, settings=settings, now=now)
            )
        except Exception:  # one program's problem must not hold back the others
            log.exception("timed messages scan failed", program=program.id)
    total += await newsletters.send_due(db)
    return total
