"""The rewards room's stages of the event pipeline (listed in `habitue.rooms`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events import apply
from habitue.events.pipeline import EventApplied, Planned, RefundApplied
from habitue.events.schemas import EffectRead
from habitue.programs.service import ProgramInfo
from habitue.rewards import coupons, referrals
from habitue.rules.types import IssueCoupon


async def issue_coupon(
    session: AsyncSession, target: apply.Target, effect: IssueCoupon
) -> apply.IssuedCoupon:
    """The `coupon` applier: a coupon of the effect's reward for the member."""
    made = await coupons.issue_for_event(
        session,
        target.program,
        target.member_id,
        effect.reward_code,
        event_id=target.event_id,
        now=target.now,
    )
    return apply.IssuedCoupon(made.code, made.reward)


async def void_coupons(
    session: AsyncSession, program: ProgramInfo, event_id: str
) -> list[apply.IssuedCoupon]:
    """A refunded purchase's unused coupons are voided."""
    voided = await coupons.void_for_event(session, program, event_id)
    return [apply.IssuedCoupon(code, reward) for code, reward in voided]


async def after_event(session: AsyncSession, applied: EventApplied) -> Planned:
    """A referee's first qualifying purchase starts its referral's return window."""
    effects = await referrals.on_purchase(session, applied)
    return Planned([EffectRead.model_validate(x) for x in effects])


async def after_refund(session: AsyncSession, applied: RefundApplied) -> Planned:
    """A refund of the qualifying purchase within the window cancels the referral's rewards."""
    effects = await referrals.on_refund(session, applied)
    return Planned([EffectRead.model_validate(x) for x in effects])


MEMBER_READS = (referrals.PENDING,)
