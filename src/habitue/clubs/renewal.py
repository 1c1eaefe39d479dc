"""Renewals (the `habitue clubs renew` job) and the club's benefits on the event path."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.common import (
    RETRY_DAYS,
    ClubBenefit,
    _activate,
    _emit,
    _end,
    _grant_vouchers,
    _plan,
    _plans,
    _record_payment,
    _sub,
    _subs,
    benefits_active,
)
from habitue.clubs.providers import PROVIDERS, Charge
from habitue.clubs.schemas import (
    RenewalRun,
)
from habitue.programs.service import ProgramInfo

_PLANS_TTL = 5.0


_has_plans: dict[int, tuple[float, bool]] = {}


async def _program_has_plans(session: AsyncSession, program_id: int) -> bool:
    """Whether the program sells a club at all (cached briefly: the event path asks often)."""
    hit = _has_plans.get(program_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    found = (
        await session.execute(select(_plans.c.id).where(_plans.c.program_id == program_id))
    ).first() is not None
    _has_plans[program_id] = (time.monotonic() + _PLANS_TTL, found)
    return found


async def active_benefits(
    session: AsyncSession, program: ProgramInfo, member_id: int, now: datetime
) -> list[ClubBenefit]:
    """Benefits of the member's subscriptions that are active at `now`."""
    if not await _program_has_plans(session, program.id):
        return []
    rows = (
        await session.execute(
            select(
                _subs.c.status,
                _subs.c.past_due_since,
                _subs.c.current_period_end,
                _plans.c.code,
                _plans.c.multiplier,
                _plans.c.privileges,
                _plans.c.grace_days,
            )
            .join(_plans, _plans.c.id == _subs.c.plan_id)
            .where(
                _subs.c.program_id == program.id,
                _subs.c.member_id == member_id,
                _subs.c.status.in_(("trialing", "active", "past_due")),
            )
        )
    ).all()
    out: list[ClubBenefit] = []
    for r in rows:
        if benefits_active(r.status, r.past_due_since, r.grace_days, now):
            until = clock.as_utc(r.current_period_end)
            if r.status == "past_due" and r.past_due_since is not None:
                until = clock.as_utc(r.past_due_since) + timedelta(days=r.grace_days)
            out.append(ClubBenefit(r.code, Decimal(r.multiplier), tuple(r.privileges or ()), until))
    return out


async def renew_one(
    session: AsyncSession, program: ProgramInfo, sub_id: str, *, now: datetime
) -> str:
    """Move one due subscription on: end, renew, retry or expire; returns what happened."""
    sub = await _sub(session, program, sub_id, lock=True)
    plan = await _plan(session, program, plan_id=sub["plan_id"])
    status = sub["status"]
    period_end = clock.as_utc(sub["current_period_end"])
    if status in ("trialing", "active") and period_end <= now and sub["cancel_at_period_end"]:
        await _end(
            session, program, sub, status="canceled", reason="canceled", now=now,
            ended_at=period_end,
        )  # fmt: skip
        return "ended"
    due = (status in ("trialing", "active") and period_end <= now) or (
        status == "past_due"
        and sub["next_retry_at"] is not None
        and clock.as_utc(sub["next_retry_at"]) <= now
    )
    if not due:
        if status == "active":
            return "vouchers" if await _grant_vouchers(session, program, sub_id, plan, now) else ""
        return ""
    attempt = int(sub["retry_count"]) + 1
    provider = PROVIDERS[sub["provider"]]
    result = await provider.charge(Charge(sub_id, plan["price_minor"], plan["currency"], attempt))
    if result.status == "succeeded":
        await _activate(
            session, program, sub, plan, provider=sub["provider"], result=result, now=now
        )
        return "renewed"
    if result.status == "failed":
        await _record_payment(
            session, program, sub, plan, provider=sub["provider"], result=result, now=now
        )
    if status != "past_due":
        await session.execute(
            update(_subs)
            .where(_subs.c.id == sub_id)
            .values(
                status="past_due",
                past_due_since=period_end,
                retry_count=0,
                next_retry_at=period_end + timedelta(days=RETRY_DAYS[0]),
                updated_at=now,
            )
        )
        await _emit(
            session,
            program,
            "club.payment_failed",
            sub["member_id"],
            {"subscription_id": sub_id, "attempt": attempt, "error": result.error},
        )
        return "failed"
    retries = int(sub["retry_count"]) + 1
    if retries >= len(RETRY_DAYS):
        await _end(session, program, sub, status="expired", reason="payment_failed", now=now)
        return "expired"
    since = clock.as_utc(sub["past_due_since"])
    await session.execute(
        update(_subs)
        .where(_subs.c.id == sub_id)
        .values(
            retry_count=retries,
            next_retry_at=since + timedelta(days=RETRY_DAYS[retries]),
            updated_at=now,
        )
    )
    await _emit(
        session,
        program,
        "club.payment_failed",
        sub["member_id"],
        {"subscription_id": sub_id, "attempt": attempt, "error": result.error},
    )
    return "failed"


async def due_subscriptions(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 500
) -> list[str]:
    """Subscriptions with a renewal, a retry, an end or a voucher due at `now`."""
    rows = await session.execute(
        select(_subs.c.id)
        .where(
            _subs.c.program_id == program.id,
            or_(
                (_subs.c.status.in_(("trialing", "active"))) & (_subs.c.current_period_end <= now),
                (_subs.c.status == "past_due") & (_subs.c.next_retry_at <= now),
                (_subs.c.status == "active") & (_subs.c.next_voucher_at <= now),
            ),
        )
        .order_by(_subs.c.id)
        .limit(limit)
    )
    return [r.id for r in rows]


def tally(outcomes: list[str]) -> RenewalRun:
    return RenewalRun(
        renewed=outcomes.count("renewed"),
        failed=outcomes.count("failed"),
        expired=outcomes.count("expired"),
        ended=outcomes.count("ended"),
        vouchers=outcomes.count("vouchers"),
    )
