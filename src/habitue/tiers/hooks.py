"""The tiers room's stages of the event pipeline (listed in `habitue.rooms`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events import apply
from habitue.events.pipeline import EventApplied, Planned, RefundApplied
from habitue.events.schemas import EffectRead
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules.types import GrantBenefit, MemberSnapshot
from habitue.tiers import granted
from habitue.tiers import service as tiers_service


async def enrich(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    snap: MemberSnapshot,
    now: datetime,
) -> MemberSnapshot:
    """Give the rules the member's tier, its earn multiplier and its privileges."""
    del now
    ladder = await tiers_service.load_ladder(session, program.id)
    if ladder is None:
        return snap
    tier = await tiers_service.tier_benefits(session, program, member.id)
    if tier is None:
        return replace(snap, tier=None)
    return replace(
        snap,
        tier=tier.code,
        earn_multiplier=snap.earn_multiplier * tier.multiplier,
        benefits=snap.benefits | frozenset(tier.privileges),
    )


async def enrich_granted(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    snap: MemberSnapshot,
    now: datetime,
) -> MemberSnapshot:
    """Give the rules the benefits `benefit` rules granted the member, unexpired at `now`.

    Read only for a member who ever got one (`granted.has_granted_column`, read with the
    member): the others' events pay nothing for it.
    """
    if not member.extras.get(granted.EXTRA, True):
        return snap
    held = await granted.active(session, program.id, member.id, now)
    if not held:
        return snap
    return replace(snap, benefits=snap.benefits | frozenset(g.code for g in held))


async def grant_benefit(
    session: AsyncSession, target: apply.Target, effect: GrantBenefit
) -> datetime | None:
    """The `benefit` applier: grant (or extend) the member's privilege."""
    return await granted.grant(
        session,
        target.program.id,
        target.member_id,
        effect,
        event_id=target.event_id,
        now=target.now,
    )


async def after_event(session: AsyncSession, applied: EventApplied) -> Planned:
    """Tier credits counted, and the member's tier moved if they cross a threshold."""
    effects = await tiers_service.on_event(
        session,
        applied.program,
        applied.member,
        event=applied.event,
        event_id=applied.event_id,
        decision=applied.decision,
        now=applied.now,
    )
    return Planned([EffectRead.model_validate(x) for x in effects])


async def after_refund(session: AsyncSession, applied: RefundApplied) -> Planned:
    """The refunded purchase's tier credits taken back (and the tier, if it falls)."""
    effects = await tiers_service.on_refund(
        session,
        applied.program,
        applied.member,
        purchase_id=applied.purchase_id,
        purchase_total_minor=applied.purchase_total_minor,
        refunded_total_minor=applied.refunded_total_minor,
        now=applied.now,
    )
    return Planned([EffectRead.model_validate(x) for x in effects])


MEMBER_READS = (granted.EXTRA,)
