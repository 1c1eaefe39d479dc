"""Club plans and subscriptions: trialing → active → past_due → canceled/expired.

Benefits are active while a subscription is trialing or active, and while it is past due
within its plan's grace days; they end at once on cancellation, on a refund of a fee and when
the retries of a failed renewal run out (the subscription expires).
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.errors import (
    AlreadyCanceled,
    AlreadyRefunded,
    AlreadySubscribed,
    BadSignature,
    InvalidPlan,
    PaymentFailed,
    PaymentNotFound,
    PlanExists,
    PlanNotFound,
    SubscriptionEnded,
    SubscriptionNotFound,
)
from habitue.clubs.models import ClubPayment, ClubPlan, ClubSubscription, ClubWebhookSecret
from habitue.clubs.providers import PROVIDERS, Charge, ChargeResult
from habitue.clubs.schemas import (
    CancelRequest,
    PaymentRead,
    PaymentRecord,
    PlanCreate,
    PlanRead,
    RenewalRun,
    SubscriptionCreate,
    SubscriptionRead,
    WebhookSecretRead,
)
from habitue.db import dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind
from habitue.ledger.service import Leg
from habitue.members.models import Member
from habitue.members.service import MemberRef
from habitue.messaging import outbox, signing
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo

_plans = table_of(ClubPlan)
_subs = table_of(ClubSubscription)
_payments = table_of(ClubPayment)
_secrets = table_of(ClubWebhookSecret)
_members = table_of(Member)

LIVE = ("incomplete", "trialing", "active", "past_due")
ENDED = ("canceled", "expired")
RETRY_DAYS = (1, 3, 7)
"""A failed renewal is retried 1, 3 and 7 days after the period ended; then it expires."""
WEBHOOK_TOLERANCE = timedelta(minutes=5)


def add_period(at: datetime, period: str, count: int = 1) -> datetime:
    """`at` moved by whole months or years, clamping the day to the month's length."""
    months = count * (12 if period == "yearly" else 1)
    index = at.year * 12 + (at.month - 1) + months
    year, month = index // 12, index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def benefits_active(
    status: str, past_due_since: datetime | None, grace_days: int, now: datetime
) -> bool:
    """Whether a subscription's benefits apply at `now` (see the module's docstring)."""
    if status in ("trialing", "active"):
        return True
    if status == "past_due" and past_due_since is not None:
        return now < clock.as_utc(past_due_since) + timedelta(days=grace_days)
    return False


# ----------------------------------------------------------------------------------------
# Plans


def _plan_read(program: ProgramInfo, row: Any) -> PlanRead:
    return PlanRead(
        code=row["code"],
        name=row["name"],
        price=format_minor(row["price_minor"], program.currency_exponent),
        currency=row["currency"],
        period=row["period"],
        trial_days=row["trial_days"],
        grace_days=row["grace_days"],
        multiplier=row["multiplier"],
        privileges=list(row["privileges"] or []),
        voucher_points=row["voucher_points"],
        created_at=clock.as_utc(row["created_at"]),
    )


async def create_plan(session: AsyncSession, program: ProgramInfo, data: PlanCreate) -> PlanRead:
    """Create a plan; its price is a non-negative amount in the program's currency."""
    if data.currency != program.currency:
        raise InvalidPlan(
            f"the program's currency is {program.currency}",
            errors=[{"field": "currency", "message": f"expected {program.currency}"}],
        )
    try:
        price = parse_minor(data.price, program.currency_exponent)
    except MoneyFormatError as exc:
        raise InvalidPlan(
            f"price: {exc}", errors=[{"field": "price", "message": str(exc)}]
        ) from exc
    values = {
        "program_id": program.id,
        "code": data.code,
        "name": data.name,
        "price_minor": price,
        "currency": data.currency,
        "period": data.period,
        "trial_days": data.trial_days,
        "grace_days": data.grace_days,
        "multiplier": data.multiplier,
        "privileges": data.privileges,
        "voucher_points": data.voucher_points,
        "created_at": clock.now(),
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(_plans).values(values))
    except IntegrityError as exc:
        raise PlanExists(f"a plan {data.code!r} exists") from exc
    _has_plans.pop(program.id, None)
    await outbox.emit(
        session,
        program_id=program.id,
        type_="club.plan_created",
        member_id=None,
        payload={"plan": data.code, "price": data.price, "period": data.period},
    )
    return _plan_read(program, values)


async def list_plans(session: AsyncSession, program: ProgramInfo) -> list[PlanRead]:
    """The program's plans, by code."""
    rows = (
        await session.execute(
            select(_plans).where(_plans.c.program_id == program.id).order_by(_plans.c.code)
        )
    ).mappings()
    return [_plan_read(program, r) for r in rows]


async def _plan(session: AsyncSession, program: ProgramInfo, *, code: str | None = None,
                plan_id: int | None = None) -> Any:  # fmt: skip
    q = select(_plans).where(_plans.c.program_id == program.id)
    q = q.where(_plans.c.code == code) if code is not None else q.where(_plans.c.id == plan_id)
    row = (await session.execute(q)).mappings().first()
    if row is None:
        raise PlanNotFound(
            f"no plan {code!r}", errors=[{"field": "plan", "message": "unknown plan"}]
        )
    return row


# ----------------------------------------------------------------------------------------
# Subscriptions


@dataclass(frozen=True, slots=True)
class ClubBenefit:
    """Benefits of one live subscription."""

    plan: str
    multiplier: Decimal
    privileges: tuple[str, ...]
    until: datetime


async def _sub(session: AsyncSession, program: ProgramInfo, sub_id: str, *, lock: bool) -> Any:
    q = select(_subs).where(_subs.c.program_id == program.id, _subs.c.id == sub_id)
    if lock and dialect_name(session) == "postgresql":
        q = q.with_for_update()
    row = (await session.execute(q)).mappings().first()
    if row is None:
        raise SubscriptionNotFound(f"no subscription {sub_id}")
    return row


async def _payment(
    session: AsyncSession, program: ProgramInfo, payment_id: str, *, lock: bool
) -> Any:
    q = select(_payments).where(_payments.c.program_id == program.id, _payments.c.id == payment_id)
    if lock and dialect_name(session) == "postgresql":
        q = q.with_for_update()
    row = (await session.execute(q)).mappings().first()
    if row is None:
        raise PaymentNotFound(f"no payment {payment_id}")
    return row


async def _sub_read(session: AsyncSession, program: ProgramInfo, row: Any) -> SubscriptionRead:
    plan = await _plan(session, program, plan_id=row["plan_id"])
    public = (
        await session.execute(select(_members.c.public_id).where(_members.c.id == row["member_id"]))
    ).scalar_one()
    now = clock.now()

    def ts(v: Any) -> datetime | None:
        return None if v is None else clock.as_utc(v)

    return SubscriptionRead(
        id=row["id"],
        member_id=public,
        plan=plan["code"],
        provider=row["provider"],
        status=row["status"],
        benefits_active=benefits_active(
            row["status"], row["past_due_since"], plan["grace_days"], now
        ),
        trial_end=ts(row["trial_end"]),
        current_period_start=clock.as_utc(row["current_period_start"]),
        current_period_end=clock.as_utc(row["current_period_end"]),
        past_due_since=ts(row["past_due_since"]),
        retry_count=row["retry_count"],
        next_retry_at=ts(row["next_retry_at"]),
        cancel_at_period_end=bool(row["cancel_at_period_end"]),
        canceled_at=ts(row["canceled_at"]),
        ended_at=ts(row["ended_at"]),
        ended_reason=row["ended_reason"],
        vouchers_granted=row["vouchers_granted"],
    )


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


async def _emit(
    session: AsyncSession, program: ProgramInfo, type_: str, member_id: int, payload: dict[str, Any]
) -> None:
    public = (
        await session.execute(select(_members.c.public_id).where(_members.c.id == member_id))
    ).scalar_one()
    await outbox.emit(
        session,
        program_id=program.id,
        type_=type_,
        member_id=public,
        payload={"member_id": public, **payload},
    )


async def _record_payment(
    session: AsyncSession,
    program: ProgramInfo,
    sub: Any,
    plan: Any,
    *,
    provider: str,
    result: ChargeResult,
    now: datetime,
) -> str:
    payment_id = new_id()
    await session.execute(
        insert(_payments).values(
            id=payment_id,
            program_id=program.id,
            member_id=sub["member_id"],
            subscription_id=sub["id"],
            provider=provider,
            reference=result.reference,
            status="succeeded" if result.status == "succeeded" else "failed",
            amount_minor=plan["price_minor"],
            currency=plan["currency"],
            error=result.error,
            created_at=now,
        )
    )
    return payment_id


async def _grant_vouchers(
    session: AsyncSession, program: ProgramInfo, sub_id: str, plan: Any, now: datetime
) -> int:
    """Credit the monthly voucher points that fell due while the benefits were active."""
    sub = await _sub(session, program, sub_id, lock=False)
    points = int(plan["voucher_points"])
    due = sub["next_voucher_at"]
    if points <= 0 or due is None or sub["status"] != "active":
        return 0
    due = clock.as_utc(due)
    granted = int(sub["vouchers_granted"])
    n = 0
    accounts = (await ledger_service.accounts_of(session, [sub["member_id"]]))[sub["member_id"]]
    while due <= now and n < 24:
        granted += 1
        await ledger_service.credit(
            session,
            program,
            accounts,
            [Leg(points, f"club:{plan['code']}")],
            kind=EntryKind.CLUB_VOUCHER,
            reference=f"club:{sub_id}:voucher:{granted}",
            reason=f"monthly voucher of the {plan['name']} club",
            now=now,
        )
        due = add_period(due, "monthly")
        n += 1
    if n:
        await session.execute(
            update(_subs)
            .where(_subs.c.id == sub_id)
            .values(next_voucher_at=due, vouchers_granted=granted)
        )
        await _emit(
            session,
            program,
            "club.voucher_granted",
            sub["member_id"],
            {"subscription_id": sub_id, "points": points * n},
        )
    return n


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


def _paid_period(sub: Any, plan: Any, now: datetime) -> tuple[datetime, datetime]:
    """The period a successful payment pays for, given where the subscription stands."""
    status = sub["status"]
    start = clock.as_utc(sub["current_period_start"])
    end = clock.as_utc(sub["current_period_end"])
    if status == "incomplete":
        return now, add_period(now, plan["period"])
    if status == "active":
        return start, add_period(end, plan["period"])
    # trialing, or past due: the new period starts where the last one ended, unless long gone
    begin = end if add_period(end, plan["period"]) > now else now
    return begin, add_period(begin, plan["period"])


async def _activate(
    session: AsyncSession,
    program: ProgramInfo,
    sub: Any,
    plan: Any,
    *,
    provider: str,
    result: ChargeResult,
    now: datetime,
) -> str:
    start, end = _paid_period(sub, plan, now)
    payment_id = await _record_payment(
        session, program, sub, plan, provider=provider, result=result, now=now
    )
    voucher_at = sub["next_voucher_at"]
    if voucher_at is None:
        voucher_at = start if sub["status"] != "active" else now
    await session.execute(
        update(_subs)
        .where(_subs.c.id == sub["id"])
        .values(
            status="active",
            current_period_start=start,
            current_period_end=end,
            past_due_since=None,
            retry_count=0,
            next_retry_at=None,
            next_voucher_at=voucher_at,
            updated_at=now,
        )
    )
    await _emit(
        session,
        program,
        "club.renewed" if sub["status"] != "incomplete" else "club.activated",
        sub["member_id"],
        {"subscription_id": sub["id"], "payment_id": payment_id, "until": end.isoformat()},
    )
    await _grant_vouchers(session, program, sub["id"], plan, now)
    return payment_id


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


def _payment_read(program: ProgramInfo, row: Any) -> PaymentRead:
    return PaymentRead(
        id=row["id"],
        subscription_id=row["subscription_id"],
        provider=row["provider"],
        reference=row["reference"],
        status=row["status"],
        amount=format_minor(row["amount_minor"], program.currency_exponent),
        currency=row["currency"],
        error=row["error"],
        created_at=clock.as_utc(row["created_at"]),
        refunded_at=None if row["refunded_at"] is None else clock.as_utc(row["refunded_at"]),
    )


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


async def _end(
    session: AsyncSession,
    program: ProgramInfo,
    sub: Any,
    *,
    status: str,
    reason: str,
    now: datetime,
    ended_at: datetime | None = None,
) -> None:
    await session.execute(
        update(_subs)
        .where(_subs.c.id == sub["id"])
        .values(
            status=status,
            ended_at=ended_at or now,
            ended_reason=reason,
            canceled_at=sub["canceled_at"] or (now if status == "canceled" else None),
            next_retry_at=None,
            next_voucher_at=None,
            updated_at=now,
        )
    )
    await _emit(
        session,
        program,
        "club.ended",
        sub["member_id"],
        {"subscription_id": sub["id"], "status": status, "reason": reason},
    )


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


# ----------------------------------------------------------------------------------------
# Renewals


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


# ----------------------------------------------------------------------------------------
# Webhooks (Standard Webhooks: HMAC-SHA256 over "id.timestamp.body", base64, "v1,")


async def rotate_secret(session: AsyncSession, program: ProgramInfo) -> WebhookSecretRead:
    """Make a new signing secret for the shop's payment webhooks (the old one stops working)."""
    secret = signing.new_secret()
    now = clock.now()
    exists = (
        await session.execute(
            select(_secrets.c.program_id).where(_secrets.c.program_id == program.id)
        )
    ).first()
    if exists is None:
        await session.execute(
            insert(_secrets).values(program_id=program.id, secret=secret, created_at=now)
        )
    else:
        await session.execute(
            update(_secrets)
            .where(_secrets.c.program_id == program.id)
            .values(secret=secret, created_at=now)
        )
    return WebhookSecretRead(secret=secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value of a payload (Standard Webhooks, v1): the
    messaging room's signer, the one outbound webhooks use."""
    return signing.sign(secret, msg_id, timestamp, body)


def verify(secret: str, headers: dict[str, str], body: bytes, now: datetime) -> None:
    """Check a webhook's signature and timestamp; raises BadSignature."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    given = headers.get("webhook-signature")
    if not msg_id or not stamp or not given:
        raise BadSignature("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        ts = int(stamp)
    except ValueError as exc:
        raise BadSignature("webhook-timestamp is not an integer") from exc
    if abs(now.timestamp() - ts) > WEBHOOK_TOLERANCE.total_seconds():
        raise BadSignature("webhook-timestamp is too far from now")
    tolerance = int(WEBHOOK_TOLERANCE.total_seconds())
    if not signing.verify([secret], msg_id, stamp, given, body, now=ts, tolerance=tolerance):
        raise BadSignature("no valid signature")


async def webhook(
    session: AsyncSession, program: ProgramInfo, headers: dict[str, str], body: bytes
) -> PaymentRead:
    """Record a shop's signed `payment.succeeded` webhook as a manual payment."""
    secret = (
        await session.execute(select(_secrets.c.secret).where(_secrets.c.program_id == program.id))
    ).scalar()
    if secret is None:
        raise BadSignature("this program has no webhook secret")
    verify(secret, headers, body, clock.now())
    try:
        doc = json.loads(body)
        data = doc["data"]
        kind = doc["type"]
        sub_id = str(data["subscription_id"])
        record = PaymentRecord(amount=str(data["amount"]), reference=str(data["reference"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed("body", "expected {type, data: {subscription_id, amount, "
                               "reference}}") from exc  # fmt: skip
    if kind != "payment.succeeded":
        raise ValidationFailed("type", "only payment.succeeded is accepted")
    return await record_payment(session, program, sub_id, record)
