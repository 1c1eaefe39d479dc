"""Delivering what `decide` decided: every effect kind has one applier, dispatched here.

Read top to bottom, this is what an event's effects do, in the event's own transaction:

- `earn` and `multiplier` (`EarnPoints`): credited by the ledger, with the event's row
  (`ledger.service.plan_credit`, written by `events.service`);
- `tier_credits` (`AddTierCredits`): counted by the tiers room (`tiers.service.on_event`);
- `benefit` (`GrantBenefit`): the privilege is granted until `now + days` (or open-ended),
  a repeat grant extending it (`tiers.granted.grant`);
- `coupon` (`IssueCoupon`): a coupon of the named reward is issued to the member
  (`rewards.coupons.issue_for_event`), voided if the purchase is refunded while unused.

The rooms' appliers are handed to the event pipeline when it is built
(`habitue.rooms.build_pipeline`, `Appliers`). The dispatch is an
exhaustive `match` ending in `assert_never`: an effect type added to `rules.types.Effect`
without a branch here fails type checking (and `tests/events/test_apply.py`). An applier that
fails raises, and the whole event rolls back.

An event whose decision has only points and tier credits (nearly all of them) costs nothing
here beyond building its answer's entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, assert_never

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events.kinds import RefundEffectKind
from habitue.events.schemas import EffectRead
from habitue.programs.service import ProgramInfo
from habitue.rules.types import (
    AddTierCredits,
    Decision,
    EarnPoints,
    Effect,
    EffectKind,
    GrantBenefit,
    IssueCoupon,
)


@dataclass(frozen=True, slots=True)
class Target:
    """Whom an event's effects are for, and which event delivers them."""

    program: ProgramInfo
    member_id: int
    event_id: str
    now: datetime


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A coupon an applier issued: its printed code and its reward's code."""

    code: str
    reward: str


BenefitApplier = Callable[[AsyncSession, Target, GrantBenefit], Awaitable[datetime | None]]
"""Grant the benefit; returns the member's `until` for it (None: open-ended)."""
CouponApplier = Callable[[AsyncSession, Target, IssueCoupon], Awaitable[IssuedCoupon]]
"""Issue a coupon of the effect's reward to the member."""
CouponVoider = Callable[[AsyncSession, ProgramInfo, str], Awaitable[list[IssuedCoupon]]]
"""Void the unused coupons the event (a refunded purchase) issued; returns them."""


@dataclass(frozen=True, slots=True)
class Appliers:
    """The rooms' appliers, one per effect kind that writes outside the ledger."""

    benefit: BenefitApplier | None = None
    coupon: CouponApplier | None = None
    void_coupons: CouponVoider | None = None


class NoApplier(RuntimeError):
    """An effect kind whose room gave the pipeline no applier (`habitue.rooms`)."""


T = TypeVar("T")


def _need(applier: T | None, kind: EffectKind) -> T:
    if applier is None:
        raise NoApplier(f"no applier registered for effect kind {kind!r}")
    return applier


def entry(effect: Effect, now: datetime) -> EffectRead:
    """The answer's entry for an effect as decided (what `quote` shows: a coupon has no code,
    a benefit's `until` is counted from `now`)."""
    match effect:
        case EarnPoints():
            return EffectRead(kind=effect.kind, rule=effect.rule_code, points=effect.amount)
        case AddTierCredits():
            return EffectRead(
                kind=effect.kind, rule=effect.rule_code, points=0, detail={"credits": effect.amount}
            )
        case GrantBenefit():
            until = now + timedelta(days=effect.days) if effect.days is not None else None
            return EffectRead(
                kind=effect.kind, rule=effect.rule_code, points=0, benefit=effect.benefit,
                until=until,
            )  # fmt: skip
        case IssueCoupon():
            return EffectRead(
                kind=effect.kind, rule=effect.rule_code, points=0, coupon=None,
                reward=effect.reward_code,
            )  # fmt: skip
        case _:
            assert_never(effect)


def entries(decision: Decision, now: datetime) -> list[EffectRead]:
    """The entries of a decision, writing nothing (the quote's)."""
    return [entry(e, now) for e in decision.effects]


async def _apply(
    session: AsyncSession, appliers: Appliers, target: Target, effect: Effect
) -> EffectRead:
    match effect:
        case EarnPoints() | AddTierCredits():
            # Written by the ledger's credit and the tiers room (see the module's docstring).
            return entry(effect, target.now)
        case GrantBenefit():
            grant = _need(appliers.benefit, effect.kind)
            until = await grant(session, target, effect)
            return EffectRead(
                kind=effect.kind, rule=effect.rule_code, points=0, benefit=effect.benefit,
                until=until,
            )  # fmt: skip
        case IssueCoupon():
            issue = _need(appliers.coupon, effect.kind)
            coupon = await issue(session, target, effect)
            return EffectRead(
                kind=effect.kind, rule=effect.rule_code, points=0, coupon=coupon.code,
                reward=coupon.reward,
            )  # fmt: skip
        case _:
            assert_never(effect)


async def deliver(
    session: AsyncSession, appliers: Appliers, target: Target, decision: Decision
) -> list[EffectRead]:
    """Apply the decision's effects other than points and tier credits; its answer's entries."""
    if not decision.delivers:
        return entries(decision, target.now)
    return [await _apply(session, appliers, target, e) for e in decision.effects]


def issued_coupons(response: dict[str, Any] | None) -> bool:
    """Whether a recorded answer lists a coupon issued by its event (read from the row)."""
    effects = (response or {}).get("effects") or ()
    return any(e.get("kind") == EffectKind.COUPON and e.get("coupon") for e in effects)


async def undo_for_refund(
    session: AsyncSession,
    appliers: Appliers,
    program: ProgramInfo,
    purchase_id: str,
    response: dict[str, Any] | None,
) -> list[EffectRead]:
    """What a refund undoes of its purchase's effects: its unused coupons are voided (a used
    one stays used). Nothing is read when the purchase issued no coupon."""
    if not issued_coupons(response):
        return []
    void = _need(appliers.void_coupons, EffectKind.COUPON)
    return [
        EffectRead(
            kind=RefundEffectKind.COUPON_VOIDED, rule=None, points=0, coupon=c.code,
            reward=c.reward,
        )  # fmt: skip
        for c in await void(session, program, purchase_id)
    ]
