"""The clubs room's stage of the event pipeline: a club's multiplier and privileges reach the
rules (listed in `habitue.rooms`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.clubs import service as clubs_service
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules.types import MemberSnapshot


async def enrich(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    snap: MemberSnapshot,
    now: datetime,
) -> MemberSnapshot:
    """Multiply the member's earn multiplier by each active club's and add its privileges."""
    benefits = await clubs_service.active_benefits(session, program, member.id, now)
    if not benefits:
        return snap
    multiplier = snap.earn_multiplier
    privileges = set(snap.benefits)
    for b in benefits:
        multiplier *= b.multiplier
        privileges.update(b.privileges)
        privileges.add(f"club:{b.plan}")
    return replace(snap, earn_multiplier=multiplier, benefits=frozenset(privileges))
