"""Register the rewards room on the event path (imported through `habitue.rooms`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events import apply, hooks
from habitue.members import service as members_service
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


if referrals.on_purchase not in hooks.after_event:
    hooks.after_event.append(referrals.on_purchase)
if referrals.on_refund not in hooks.after_refund:
    hooks.after_refund.append(referrals.on_refund)
members_service.event_extras.setdefault(referrals.PENDING, referrals.pending_column)
apply.APPLIERS.coupon = issue_coupon
apply.APPLIERS.void_coupons = void_coupons
