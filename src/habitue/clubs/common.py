"""What the club's use cases share: its tables, states, periods and lookups."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.errors import (
    PaymentNotFound,
    PlanNotFound,
    SubscriptionNotFound,
)
from habitue.clubs.models import ClubPayment, ClubPlan, ClubSubscription, ClubWebhookSecret
from habitue.clubs.providers import ChargeResult
from habitue.clubs.schemas import (
    PaymentRead,
    SubscriptionRead,
)
from habitue.db import dialect_name, table_of
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind
from habitue.ledger.service import Leg
from habitue.members.models import Member
from habitue.messaging import outbox
from habitue.money import format_minor
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
