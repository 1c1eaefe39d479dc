"""What a member may claim now: their tier's privileges, their active clubs' benefits and the
privileges `benefit` rules granted them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs import service as clubs_service
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.tiers import granted
from habitue.tiers import service as tiers_service
from habitue.tiers.schemas import BenefitSource, BenefitsRead


async def benefits_of(
    session: AsyncSession, program: ProgramInfo, member: MemberRef
) -> BenefitsRead:
    """Tier privileges, club benefits and rule-granted privileges active now, with the
    combined earn multiplier."""
    now = clock.now()
    sources: list[BenefitSource] = []
    multiplier = Decimal(1)
    tier = await tiers_service.tier_benefits(session, program, member.id)
    if tier is not None:
        multiplier *= tier.multiplier
        sources.append(
            BenefitSource(
                source="tier",
                code=tier.code,
                multiplier=str(tier.multiplier),
                privileges=list(tier.privileges),
            )
        )
    for club in await clubs_service.active_benefits(session, program, member.id, now):
        multiplier *= club.multiplier
        sources.append(
            BenefitSource(
                source="club",
                code=club.plan,
                multiplier=str(club.multiplier),
                privileges=list(club.privileges),
                until=club.until,
            )
        )
    for held in await granted.active(session, program.id, member.id, now):
        sources.append(
            BenefitSource(
                source="rule",
                code=held.rule_code or held.code,
                multiplier="1",
                privileges=[held.code],
                until=held.until,
            )
        )
    privileges = sorted({p for s in sources for p in s.privileges})
    return BenefitsRead(
        member_id=member.public_id,
        tier=tier.code if tier else None,
        multiplier=str(multiplier),
        privileges=privileges,
        sources=sources,
    )


def privilege_list(held: BenefitsRead) -> list[tuple[str, datetime | None]]:
    """Each privilege the member holds, by code, with when it ends: the latest end when
    several sources give it, None when one of them has no set end (a tier, an open grant)."""
    ends: dict[str, datetime | None] = {}
    for source in held.sources:
        for code in source.privileges:
            if code not in ends:
                ends[code] = source.until
                continue
            prev = ends[code]
            ends[code] = None if prev is None or source.until is None else max(prev, source.until)
    return sorted(ends.items())
