"""The catalogue: create, list, read and change rewards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Prefetch, table_of
from habitue.errors import ValidationFailed
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rewards.errors import RewardExists, RewardInUse, RewardNotFound
from habitue.rewards.models import Reward
from habitue.rewards.schemas import DiscountFields, RewardCreate, RewardRead, RewardUpdate
from habitue.rewards.till import DiscountTerms

_rewards = table_of(Reward)

COUPON_KINDS = frozenset({"voucher", "discount", "free_product", "experience"})


def money_field(program: ProgramInfo, value: str | None, field: str) -> int | None:
    """A decimal string of the program's currency in minor units (None stays None)."""
    if value is None:
        return None
    try:
        return parse_minor(value, program.currency_exponent)
    except MoneyFormatError as exc:
        raise ValidationFailed(field, str(exc)) from exc


def discount_columns(program: ProgramInfo, data: DiscountFields) -> dict[str, Any]:
    """The minor-unit columns of a discount's terms."""
    return {
        "value_minor": money_field(program, data.value, "value"),
        "percent": data.percent,
        "cap_minor": money_field(program, data.cap, "cap"),
        "min_basket_minor": money_field(program, data.min_basket, "min_basket"),
    }


@dataclass(frozen=True, slots=True)
class RewardRow:
    """A reward as plain values."""

    id: int
    code: str
    kind: str
    cost_points: int
    active: bool
    valid_from: datetime | None
    valid_until: datetime | None
    stock: int | None
    per_member_limit: int | None
    period: str | None
    period_limit: int | None
    tiers: list[str] | None
    coupon_days: int | None
    terms: DiscountTerms
    cause: str | None

    def available_at(self, now: datetime) -> bool:
        if not self.active:
            return False
        if self.valid_from is not None and now < clock.as_utc(self.valid_from):
            return False
        return self.valid_until is None or now < clock.as_utc(self.valid_until)


def terms_of(row: Any) -> DiscountTerms:
    """The discount terms of a reward or offer row."""
    return DiscountTerms(
        value_minor=row["value_minor"],
        percent=Decimal(row["percent"]) if row["percent"] is not None else None,
        cap_minor=row["cap_minor"],
        min_basket_minor=row["min_basket_minor"],
        sku=row.get("sku"),
    )


def to_row(r: Any) -> RewardRow:
    return RewardRow(
        id=r["id"],
        code=r["code"],
        kind=r["kind"],
        cost_points=r["cost_points"],
        active=r["active"],
        valid_from=r["valid_from"],
        valid_until=r["valid_until"],
        stock=r["stock"],
        per_member_limit=r["per_member_limit"],
        period=r["period"],
        period_limit=r["period_limit"],
        tiers=r["tiers"],
        coupon_days=r["coupon_days"],
        terms=terms_of(r),
        cause=r["cause"],
    )


def _money(program: ProgramInfo, minor: int | None) -> str | None:
    return None if minor is None else format_minor(minor, program.currency_exponent)


def to_read(program: ProgramInfo, r: Any) -> RewardRead:
    return RewardRead(
        code=r["code"],
        kind=r["kind"],
        cost_points=r["cost_points"],
        active=r["active"],
        valid_from=clock.as_utc(r["valid_from"]) if r["valid_from"] else None,
        valid_until=clock.as_utc(r["valid_until"]) if r["valid_until"] else None,
        stock=r["stock"],
        per_member_limit=r["per_member_limit"],
        period=r["period"],
        period_limit=r["period_limit"],
        tiers=r["tiers"],
        texts=r["texts"],
        value=_money(program, r["value_minor"]),
        percent=r["percent"],
        cap=_money(program, r["cap_minor"]),
        min_basket=_money(program, r["min_basket_minor"]),
        sku=r["sku"],
        cause=r["cause"],
        partner_code=r["partner_code"],
        partner_rate=r["partner_rate"],
        coupon_days=r["coupon_days"],
        created_at=clock.as_utc(r["created_at"]),
    )


async def _fetch(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        (
            await session.execute(
                select(_rewards).where(_rewards.c.program_id == program.id, _rewards.c.code == code)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise RewardNotFound(f"no reward {code!r} in this program")
    return row


async def create(session: AsyncSession, program: ProgramInfo, data: RewardCreate) -> RewardRead:
    """Add a reward to the catalogue; its code is unique in the program."""
    now = clock.now()
    values = {
        "program_id": program.id,
        "code": data.code,
        "kind": data.kind,
        "cost_points": data.cost_points,
        "active": data.active,
        "valid_from": data.valid_from,
        "valid_until": data.valid_until,
        "stock": data.stock,
        "per_member_limit": data.per_member_limit,
        "period": data.period,
        "period_limit": data.period_limit,
        "tiers": data.tiers,
        "texts": {k: v.model_dump() for k, v in data.texts.items()},
        "sku": data.sku,
        "cause": data.cause,
        "partner_code": data.partner_code,
        "partner_rate": data.partner_rate,
        "coupon_days": data.coupon_days,
        "created_at": now,
        "updated_at": now,
        **discount_columns(program, data),
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(_rewards).values(values))
    except IntegrityError as exc:
        raise RewardExists(f"reward {data.code!r} already exists") from exc
    return to_read(program, await _fetch(session, program, data.code))


async def get(session: AsyncSession, program: ProgramInfo, code: str) -> RewardRead:
    """One reward of the catalogue; raises RewardNotFound."""
    return to_read(program, await _fetch(session, program, code))


BATCH_SLOT = "habitue.rewards.batch"


async def _read_batch(session: AsyncSession, args: list[tuple[ProgramInfo, str]]) -> None:
    """The rewards a batch of grouped redemptions names, in one query per program."""
    by_program: dict[int, list[str]] = {}
    for program, code in args:
        by_program.setdefault(program.id, []).append(code)
    found: dict[tuple[int, str], RewardRow] = session.info.setdefault(BATCH_SLOT, {})
    for program_id, wanted in by_program.items():
        rows = await session.execute(
            select(_rewards).where(
                _rewards.c.program_id == program_id, _rewards.c.code.in_(sorted(set(wanted)))
            )
        )
        for r in rows.mappings():
            found[(program_id, r["code"])] = to_row(r)


def prefetch(program: ProgramInfo, code: str) -> Prefetch:
    """For `Database.write`: a batch of redemptions reads its rewards together (`load`).

    Shared by the batch's units: what a redemption changes (the stock) is only read for a
    first, early refusal; the stock is taken by a conditional update all the same.
    """
    return Prefetch(_read_batch, (program, code), BATCH_SLOT)


async def load(session: AsyncSession, program: ProgramInfo, code: str) -> RewardRow:
    """A reward as plain values for redemption (read by its batch if it was); raises
    RewardNotFound."""
    found: dict[tuple[int, str], RewardRow] = session.info.get(BATCH_SLOT, {})
    row = found.get((program.id, code))
    return row if row is not None else to_row(await _fetch(session, program, code))


async def list_rewards(
    session: AsyncSession, program: ProgramInfo, *, available_only: bool = False
) -> list[RewardRead]:
    """The catalogue in code order; `available_only` keeps what can be redeemed now."""
    rows = (
        (
            await session.execute(
                select(_rewards)
                .where(_rewards.c.program_id == program.id)
                .order_by(_rewards.c.code)
            )
        )
        .mappings()
        .all()
    )
    now = clock.now()
    return [
        to_read(program, r)
        for r in rows
        if not available_only or (to_row(r).available_at(now) and r["stock"] != 0)
    ]


async def _refuse_if_named(session: AsyncSession, program: ProgramInfo, code: str) -> None:
    """A reward a live `coupon` rule names cannot be switched off (409): the rule would issue
    coupons of nothing."""
    from habitue.rules import service as rules_service

    named = await rules_service.rules_naming_reward(session, program, code)
    if named:
        raise RewardInUse(
            f"reward {code!r} is named by the live rules {named}: change or delete them first",
            errors=[{"field": "active", "message": f"named by rules {named}"}],
        )


async def update_reward(
    session: AsyncSession, program: ProgramInfo, code: str, data: RewardUpdate
) -> RewardRead:
    """Change the fields given; the kind and the discount terms are fixed at creation."""
    row = await _fetch(session, program, code)
    changes: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if name == "texts" and value is not None:
            value = {k: v.model_dump() for k, v in value.items()}
        if name in ("active", "cost_points", "texts") and value is None:
            raise ValidationFailed(name, "cannot be null")
        changes[name] = value
    if changes.get("active") is False and row["active"]:
        await _refuse_if_named(session, program, code)
    if changes:
        changes["updated_at"] = clock.now()
        await session.execute(update(_rewards).where(_rewards.c.id == row["id"]).values(changes))
    return to_read(program, await _fetch(session, program, code))
