"""Club plans: created and listed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.common import _plans
from habitue.clubs.errors import (
    InvalidPlan,
    PlanExists,
)
from habitue.clubs.renewal import _has_plans
from habitue.clubs.schemas import (
    PlanCreate,
    PlanRead,
)
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo


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
