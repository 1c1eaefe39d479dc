"""Subscriptions: subscribe, pay, cancel, refund, and what they read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.common import (
    ENDED,
    LIVE,
    _activate,
    _emit,
    _end,
    _grant_vouchers,
    _payment,
    _payment_read,
    _payments,
    _plan,
    _record_payment,
    _sub,
    _sub_read,
    _subs,
    add_period,
)
from habitue.clubs.errors import (
    AlreadyCanceled,
    AlreadyRefunded,
    AlreadySubscribed,
    PaymentFailed,
    SubscriptionEnded,
)
from habitue.clubs.providers import PROVIDERS, Charge, ChargeResult
from habitue.clubs.schemas import (
    CancelRequest,
    PaymentRead,
    PaymentRecord,
    SubscriptionCreate,
    SubscriptionRead,
)
from habitue.errors import ValidationFailed
from habitue.ids import new_id
from habitue.members.service import MemberRef
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo


async def get_subscription(
    session: AsyncSession, program: ProgramInfo, sub_id: str
) -> SubscriptionRead:
    """One subscription with its status and whether its benefits are active now."""
    return await _sub_read(session, program, await _sub(session, program, sub_id, lock=False))


async def member_subscriptions(
    session: AsyncSession, program: ProgramInfo, member: MemberRef
) -> list[SubscriptionRead]:
    """The member's subscriptions, newest first."""
    rows = (
        await session.execute(
            select(_subs)
            .where(_subs.c.program_id == program.id, _subs.c.member_id == member.id)
            .order_by(_subs.c.created_at.desc(), _subs.c.id.desc())
        )
    ).mappings()
    return [await _sub_read(session, program, r) for r in rows]


async def subscribe(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, data: SubscriptionCreate
) -> SubscriptionRead:
    """Start a subscription: a trial, or a first charge (pending with the manual provider)."""
    member.require_active()
    plan = await _plan(session, program, code=data.plan)
    live = (
        await session.execute(
            select(_subs.c.id).where(
                _subs.c.program_id == program.id,
                _subs.c.member_id == member.id,
                _subs.c.status.in_(LIVE),
            )
        )
    ).first()
    if live is not None:
        raise AlreadySubscribed(f"the member already has subscription {live.id}")
    now = clock.now()
    sub_id = new_id()
    values: dict[str, Any] = {
        "id": sub_id,
        "program_id": program.id,
        "member_id": member.id,
        "plan_id": plan["id"],
        "provider": data.provider,
        "retry_count": 0,
        "cancel_at_period_end": False,
        "vouchers_granted": 0,
        "created_at": now,
        "updated_at": now,
        "current_period_start": now,
    }
    result: ChargeResult | None = None
    if plan["trial_days"] > 0:
        trial_end = now + timedelta(days=plan["trial_days"])
        values.update(status="trialing", trial_end=trial_end, current_period_end=trial_end)
    else:
        provider = PROVIDERS[data.provider]
        result = await provider.charge(Charge(sub_id, plan["price_minor"], plan["currency"], 1))
        if result.status == "failed":
            raise PaymentFailed(f"the first payment was declined: {result.error}")
        if result.status == "succeeded":
            values.update(
                status="active",
                current_period_end=add_period(now, plan["period"]),
                next_voucher_at=now,
            )
        else:
            values.update(status="incomplete", current_period_end=now)
    await session.execute(insert(_subs).values(values))
    sub = await _sub(session, program, sub_id, lock=False)
    if result is not None and result.status == "succeeded":
        await _record_payment(
            session, program, sub, plan, provider=data.provider, result=result, now=now
        )
    await _emit(
        session,
        program,
        "club.subscribed",
        member.id,
        {"subscription_id": sub_id, "plan": plan["code"], "status": values["status"]},
    )
    await _grant_vouchers(session, program, sub_id, plan, now)
    return await get_subscription(session, program, sub_id)


async def record_payment(
    session: AsyncSession, program: ProgramInfo, sub_id: str, data: PaymentRecord
) -> PaymentRead:
    """Record a payment made outside Habitué (staff or shop webhook); a repeated reference
    returns the first payment and changes nothing."""
    sub = await _sub(session, program, sub_id, lock=True)
    found = (
        (
            await session.execute(
                select(_payments).where(
                    _payments.c.program_id == program.id,
                    _payments.c.provider == "manual",
                    _payments.c.reference == data.reference,
                )
            )
        )
        .mappings()
        .first()
    )
    if found is not None:
        if found["subscription_id"] != sub_id:
            raise ValidationFailed("reference", "already used for another subscription")
        return _payment_read(program, found)
    if sub["status"] in ENDED:
        raise SubscriptionEnded(f"subscription {sub_id} is {sub['status']}")
    plan = await _plan(session, program, plan_id=sub["plan_id"])
    try:
        amount = parse_minor(data.amount, program.currency_exponent)
    except MoneyFormatError as exc:
        raise ValidationFailed("amount", str(exc)) from exc
    if amount != plan["price_minor"]:
        raise ValidationFailed(
            "amount",
            f"the plan's price is {format_minor(plan['price_minor'], program.currency_exponent)}",
        )
    now = clock.now()
    payment_id = await _activate(
        session,
        program,
        sub,
        plan,
        provider="manual",
        result=ChargeResult("succeeded", reference=data.reference),
        now=now,
    )
    return await get_payment(session, program, payment_id)


async def get_payment(session: AsyncSession, program: ProgramInfo, payment_id: str) -> PaymentRead:
    """One payment of a subscription fee."""
    return _payment_read(program, await _payment(session, program, payment_id, lock=False))


async def subscription_payments(
    session: AsyncSession, program: ProgramInfo, sub_id: str
) -> list[PaymentRead]:
    """A subscription's payments, oldest first."""
    await _sub(session, program, sub_id, lock=False)
    rows = (
        await session.execute(
            select(_payments)
            .where(_payments.c.program_id == program.id, _payments.c.subscription_id == sub_id)
            .order_by(_payments.c.created_at, _payments.c.id)
        )
    ).mappings()
    return [_payment_read(program, r) for r in rows]


async def cancel(
    session: AsyncSession, program: ProgramInfo, sub_id: str, data: CancelRequest
) -> SubscriptionRead:
    """Cancel now (benefits end at once) or at the period's end; cancelling twice is refused."""
    sub = await _sub(session, program, sub_id, lock=True)
    if sub["status"] in ENDED:
        raise AlreadyCanceled(f"subscription {sub_id} is already {sub['status']}")
    now = clock.now()
    if data.at_period_end:
        if sub["cancel_at_period_end"]:
            raise AlreadyCanceled(f"subscription {sub_id} already ends at its period's end")
        await session.execute(
            update(_subs)
            .where(_subs.c.id == sub_id)
            .values(cancel_at_period_end=True, canceled_at=now, updated_at=now)
        )
    else:
        await _end(session, program, sub, status="canceled", reason="canceled", now=now)
    return await get_subscription(session, program, sub_id)


async def refund_payment(
    session: AsyncSession, program: ProgramInfo, payment_id: str
) -> PaymentRead:
    """Refund a fee: the subscription and its benefits end at once."""
    row = await _payment(session, program, payment_id, lock=True)
    if row["status"] == "refunded":
        raise AlreadyRefunded(f"payment {payment_id} is already refunded")
    if row["status"] != "succeeded":
        raise ValidationFailed("payment", "only a succeeded payment can be refunded")
    now = clock.now()
    await PROVIDERS[row["provider"]].refund(row["reference"], row["amount_minor"])
    await session.execute(
        update(_payments)
        .where(_payments.c.id == payment_id)
        .values(status="refunded", refunded_at=now)
    )
    sub = await _sub(session, program, row["subscription_id"], lock=True)
    if sub["status"] not in ENDED:
        await _end(session, program, sub, status="canceled", reason="refunded", now=now)
    await _emit(
        session,
        program,
        "club.payment_refunded",
        row["member_id"],
        {"subscription_id": row["subscription_id"], "payment_id": payment_id},
    )
    return await get_payment(session, program, payment_id)
