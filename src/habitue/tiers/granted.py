"""Privileges granted by `benefit` rules: written in the event's transaction, read with the
tier's and the clubs' privileges (`GET …/benefits`, `member.benefits` in conditions).

One row per member and benefit code: a repeat grant extends `until` to the later of the two
(NULL, open-ended, wins), so a member never holds the same benefit twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.members.service import MemberColumn
from habitue.rules.types import GrantBenefit
from habitue.tiers.models import MemberBenefit

_granted = table_of(MemberBenefit)

CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""What a benefit code may be: a snake_case word of at most 64 characters."""


@dataclass(frozen=True, slots=True)
class Granted:
    """A benefit the member holds now, and until when (None: open-ended)."""

    code: str
    until: datetime | None
    rule_code: str | None


def until_of(effect: GrantBenefit, now: datetime) -> datetime | None:
    """When a grant made now ends (None: open-ended)."""
    return now + timedelta(days=effect.days) if effect.days is not None else None


async def grant(
    session: AsyncSession,
    program_id: int,
    member_id: int,
    effect: GrantBenefit,
    *,
    event_id: str,
    now: datetime,
) -> datetime | None:
    """Grant (or extend) the benefit; returns the member's `until` for it after the grant."""
    until = until_of(effect, now)
    values = {
        "program_id": program_id,
        "member_id": member_id,
        "code": effect.benefit,
        "until": until,
        "rule_code": effect.rule_code,
        "event_id": event_id,
        "granted_at": now,
    }
    postgres = dialect_name(session) == "postgresql"
    stmt: Any = (pg_insert if postgres else sqlite_insert)(_granted).values(values)
    old, new = _granted.c.until, stmt.excluded.until
    later = func.greatest(old, new) if postgres else func.max(old, new)
    stmt = stmt.on_conflict_do_update(
        index_elements=[_granted.c.member_id, _granted.c.code],
        set_={
            "until": case((or_(old.is_(None), new.is_(None)), None), else_=later),
            "rule_code": stmt.excluded.rule_code,
            "event_id": stmt.excluded.event_id,
            "granted_at": stmt.excluded.granted_at,
        },
    ).returning(_granted.c.until)
    got = (await session.execute(stmt)).scalar_one()
    return clock.as_utc(got) if got is not None else None


async def active(
    session: AsyncSession, program_id: int, member_id: int, now: datetime
) -> list[Granted]:
    """The rule-granted benefits the member holds at `now`, by code."""
    rows = (
        await session.execute(
            select(_granted.c.code, _granted.c.until, _granted.c.rule_code)
            .where(
                _granted.c.program_id == program_id,
                _granted.c.member_id == member_id,
                or_(_granted.c.until.is_(None), _granted.c.until > now),
            )
            .order_by(_granted.c.code)
        )
    ).all()
    return [
        Granted(r.code, clock.as_utc(r.until) if r.until is not None else None, r.rule_code)
        for r in rows
    ]


def has_granted_column(member_id: ColumnElement[int]) -> ColumnElement[Any]:
    """Whether the member ever got a benefit from a rule, as a column of its event query.

    Read with the member on the event path (`EXTRA`, a pipeline's `member_reads`): the events
    of a member without one (nearly all of them) read no benefits.
    """
    return exists().where(_granted.c.member_id == member_id)


EXTRA = MemberColumn("tiers.granted_benefits", has_granted_column)
"""Whether the member ever got a benefit from a rule, read with the member for its events."""
