"""Analytics' stage of the event pipeline: a member's dynamic segments become rule audiences
(listed in `habitue.rooms`)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.analytics import segments as segments_service
from habitue.analytics.models import Segment
from habitue.db import table_of
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules.types import MemberSnapshot

_segments = table_of(Segment)
_TTL = 5.0
_has_segments: dict[int, tuple[float, bool]] = {}


async def _program_has_segments(session: AsyncSession, program_id: int) -> bool:
    hit = _has_segments.get(program_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    count = (
        await session.execute(
            select(func.count()).select_from(_segments).where(_segments.c.program_id == program_id)
        )
    ).scalar_one()
    _has_segments[program_id] = (time.monotonic() + _TTL, bool(count))
    return bool(count)


def forget(program_id: int | None = None) -> None:
    """Drop the cached 'has segments' flag (after a segment is defined, and in tests)."""
    if program_id is None:
        _has_segments.clear()
    else:
        _has_segments.pop(program_id, None)


async def enrich(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    snap: MemberSnapshot,
    now: datetime,
) -> MemberSnapshot:
    """Give the rules the codes of the segments the member is in (none: no query at all);
    profiling segments only with the member's consent to profiling."""
    del now
    if not await _program_has_segments(session, program.id):
        return snap
    codes = await segments_service.segments_for_rules(session, member.id)
    return replace(snap, segments=snap.segments | codes)
