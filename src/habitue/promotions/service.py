"""Promotions: create, read, change, delete; and the deals the till prices with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import driver_connection, table_of
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.promotions.conditions import compile_condition
from habitue.promotions.errors import InvalidPromotion, PromotionExists, PromotionNotFound
from habitue.promotions.models import Promotion, PromotionUse
from habitue.promotions.pricing import Deal, EffectType, Source, Stacking
from habitue.promotions.schemas import (
    PromotionCreate,
    PromotionPage,
    PromotionRead,
    PromotionUpdate,
)
from habitue.rewards import codes
from habitue.rules.errors import RuleValidationError

_promotions = table_of(Promotion)
_uses = table_of(PromotionUse)

_NEEDS: dict[EffectType, tuple[str, ...]] = {
    EffectType.ORDER_PERCENT: ("percent",),
    EffectType.ORDER_AMOUNT: ("amount",),
    EffectType.LINES_PERCENT: ("percent",),
    EffectType.LINES_AMOUNT: ("amount",),
    EffectType.CHEAPEST: (),
    EffectType.MOST_EXPENSIVE: (),
    EffectType.BUY_X_GET_Y: ("buy", "get"),
    EffectType.BUNDLE_PRICE: ("amount", "bundle"),
    EffectType.FREE_ITEM: ("sku",),
    EffectType.STORED_VALUE: ("amount",),
}


def _money(program: ProgramInfo, value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_minor(value, program.currency_exponent)
    except MoneyFormatError as exc:
        raise InvalidPromotion(
            f"{field}: {exc}", errors=[{"field": field, "message": str(exc)}]
        ) from exc


def _invalid(field: str, message: str) -> InvalidPromotion:
    return InvalidPromotion(f"{field}: {message}", errors=[{"field": field, "message": message}])


def normalise_code(raw: str) -> str:
    """A promo code as typed, compared without case, dashes and spaces (as coupon codes)."""
    return codes.normalise(raw)


def _spec(program: ProgramInfo, data: dict[str, Any]) -> dict[str, Any]:
    """Check a promotion's fields and turn them into its stored spec (money in minor units)."""
    effect = dict(data["effect"])
    kind = EffectType(effect["type"])
    for name in _NEEDS[kind]:
        if not effect.get(name):
            raise _invalid(f"effect.{name}", f"is required for {kind}")
    if kind == EffectType.BUY_X_GET_Y and effect.get("get_sku") is None and not effect.get("buy"):
        raise _invalid("effect.buy", "must be at least 1")
    effect["amount_minor"] = _money(program, effect.pop("amount", None), "effect.amount")
    effect["bundle"] = [[b["sku"], b["quantity"]] for b in effect.get("bundle") or []]
    effect["percent"] = str(effect["percent"]) if effect.get("percent") is not None else None
    for name, line in (("condition", False), ("line_condition", True)):
        source = data.get(name)
        if source is not None:
            try:
                compile_condition(source, name, line=line)
            except RuleValidationError as exc:
                raise InvalidPromotion(str(exc), errors=[exc.as_dict()]) from exc
    trigger = data["trigger"]
    if trigger == "code" and not data.get("promo_code"):
        raise _invalid("promo_code", "is required for a promotion triggered by a code")
    if trigger == "coupon" and not data.get("reward"):
        raise _invalid("reward", "names the reward whose coupons this promotion prices")
    if trigger != "code" and data.get("promo_code"):
        raise _invalid("promo_code", "only a promotion triggered by a code has one")
    vf, vu = data.get("valid_from"), data.get("valid_until")
    if vf is not None and vu is not None and vu <= vf:
        raise _invalid("valid_until", "must be after valid_from")
    return {
        "name": data.get("name"),
        "effect": effect,
        "condition": data.get("condition"),
        "line_condition": data.get("line_condition"),
        "stacking": str(data.get("stacking") or Stacking.STACKS),
        "stacking_class": data.get("stacking_class") or "default",
        "valid_from": vf.isoformat() if isinstance(vf, datetime) else vf,
        "valid_until": vu.isoformat() if isinstance(vu, datetime) else vu,
        "max_per_order": data.get("max_per_order"),
        "cap_minor": _money(program, data.get("cap"), "cap"),
        "per_member_limit": data.get("per_member_limit"),
        "min_basket_minor": _money(program, data.get("min_basket"), "min_basket"),
    }


def _time(value: Any) -> datetime | None:
    return clock.as_utc(datetime.fromisoformat(value)) if value else None


def _read(program: ProgramInfo, row: Any) -> PromotionRead:
    spec = row["spec"]
    exp = program.currency_exponent
    effect = dict(spec["effect"])
    amount = effect.pop("amount_minor", None)
    effect["amount"] = format_minor(amount, exp) if amount is not None else None
    effect["bundle"] = [{"sku": s, "quantity": q} for s, q in effect.get("bundle") or []]
    return PromotionRead(
        code=row["code"],
        name=spec.get("name"),
        trigger=row["trigger"],
        promo_code=row["promo_code"],
        reward=row["reward_code"],
        effect={k: v for k, v in effect.items() if v not in (None, [], 0) or k == "type"},
        condition=spec.get("condition"),
        line_condition=spec.get("line_condition"),
        priority=row["priority"],
        stacking=spec["stacking"],
        stacking_class=spec["stacking_class"],
        valid_from=_time(spec.get("valid_from")),
        valid_until=_time(spec.get("valid_until")),
        max_per_order=spec.get("max_per_order"),
        cap=format_minor(spec["cap_minor"], exp) if spec.get("cap_minor") is not None else None,
        per_member_limit=spec.get("per_member_limit"),
        min_basket=format_minor(spec["min_basket_minor"], exp)
        if spec.get("min_basket_minor") is not None
        else None,
        active=row["active"],
    )


async def _row(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        (
            await session.execute(
                select(_promotions).where(
                    _promotions.c.program_id == program.id, _promotions.c.code == code
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise PromotionNotFound(f"no promotion {code!r} in this program")
    return row


async def create(
    session: AsyncSession, program: ProgramInfo, data: PromotionCreate
) -> PromotionRead:
    """Save a new promotion once its effect, conditions and money fields check out."""
    raw = data.model_dump()
    spec = _spec(program, raw)
    now = clock.now()
    values = {
        "program_id": program.id,
        "code": data.code,
        "trigger": data.trigger,
        "promo_code": normalise_code(data.promo_code) if data.promo_code else None,
        "reward_code": data.reward,
        "priority": data.priority or 0,
        "active": True if data.active is None else data.active,
        "spec": spec,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(_promotions).values(**values))
    except IntegrityError as exc:
        raise PromotionExists(f"promotion {data.code!r} exists") from exc
    return _read(program, values)


async def update_promotion(
    session: AsyncSession, program: ProgramInfo, code: str, data: PromotionUpdate
) -> PromotionRead:
    """Change a promotion; the fields not sent keep their values."""
    row = await _row(session, program, code)
    current = _read(program, row).model_dump()
    current["effect"] = {k: v for k, v in current["effect"].items() if v is not None}
    changes = data.model_dump(exclude_unset=True)
    if changes.get("effect") is None:
        changes.pop("effect", None)  # null: keep the effect
    merged = {**current, **changes, "trigger": row["trigger"]}
    spec = _spec(program, merged)
    values = {
        "promo_code": normalise_code(merged["promo_code"]) if merged.get("promo_code") else None,
        "reward_code": merged.get("reward"),
        "priority": merged.get("priority") or 0,
        "active": merged["active"] if merged.get("active") is not None else True,
        "spec": spec,
        "updated_at": clock.now(),
    }
    await session.execute(update(_promotions).where(_promotions.c.id == row["id"]).values(**values))
    return _read(program, {**row, **values})


async def delete_promotion(session: AsyncSession, program: ProgramInfo, code: str) -> None:
    """Delete a promotion never used; a used one is deactivated (its uses keep their history)."""
    row = await _row(session, program, code)
    used = (
        await session.execute(select(func.count()).where(_uses.c.promotion_id == row["id"]))
    ).scalar_one()
    if used:
        await session.execute(
            update(_promotions).where(_promotions.c.id == row["id"]).values(active=False)
        )
    else:
        await session.execute(delete(_promotions).where(_promotions.c.id == row["id"]))


async def get(session: AsyncSession, program: ProgramInfo, code: str) -> PromotionRead:
    """A promotion by code."""
    return _read(program, await _row(session, program, code))


async def list_promotions(session: AsyncSession, program: ProgramInfo) -> PromotionPage:
    """Every promotion of the program, by code."""
    rows = (
        (
            await session.execute(
                select(_promotions)
                .where(_promotions.c.program_id == program.id)
                .order_by(_promotions.c.code)
            )
        )
        .mappings()
        .all()
    )
    return PromotionPage(items=[_read(program, r) for r in rows])


# --- deals ---------------------------------------------------------------------------------

_compiled: dict[tuple[int, datetime], Deal] = {}


def deal_of(row: Any, *, source: Source = Source.PROMOTION, code: str | None = None) -> Deal:
    """The core's view of a stored promotion (compiled once per version)."""
    key = (row["id"], row["updated_at"])
    deal = _compiled.get(key)
    if deal is None:
        spec = row["spec"]
        eff = spec["effect"]
        cond, line_cond = spec.get("condition"), spec.get("line_condition")
        deal = Deal(
            source=Source.PROMOTION,
            code=row["code"],
            effect=EffectType(eff["type"]),
            percent=Decimal(eff["percent"]) if eff.get("percent") else None,
            amount_minor=eff.get("amount_minor"),
            buy=eff.get("buy") or 0,
            get=eff.get("get") or 0,
            get_sku=eff.get("get_sku"),
            sku=eff.get("sku"),
            quantity=eff.get("quantity") or 1,
            bundle=tuple((s, int(q)) for s, q in eff.get("bundle") or []),
            condition=compile_condition(cond, "condition") if cond else None,
            line_condition=compile_condition(line_cond, "line_condition", line=True)
            if line_cond
            else None,
            priority=row["priority"],
            stacking=Stacking(spec["stacking"]),
            stacking_class=spec["stacking_class"],
            valid_from=_time(spec.get("valid_from")),
            valid_until=_time(spec.get("valid_until")),
            times=spec.get("max_per_order"),
            cap_minor=spec.get("cap_minor"),
            per_member_limit=spec.get("per_member_limit"),
            min_basket_minor=spec.get("min_basket_minor"),
            promotion_id=row["id"],
        )
        if len(_compiled) > 4096:
            _compiled.clear()
        _compiled[key] = deal
    if source != Source.PROMOTION or code is not None:
        deal = replace(deal, source=source, code=code or deal.code)
    return deal


@dataclass(frozen=True, slots=True)
class Live:
    """A program's active promotions, split by trigger."""

    automatic: list[Any]
    by_promo_code: dict[str, Any]
    by_reward: dict[str, Any]


_LIVE = select(_promotions).where(
    _promotions.c.program_id == bindparam("live_program"), _promotions.c.active.is_(True)
)
_LIVE_WITH_USES = select(
    _promotions,
    select(func.count())
    .where(_uses.c.promotion_id == _promotions.c.id, _uses.c.member_id == bindparam("live_member"))
    .scalar_subquery()
    .label("member_uses"),
).where(_promotions.c.program_id == bindparam("live_program"), _promotions.c.active.is_(True))


_LIVE_SQL = (
    "SELECT p.id, p.program_id, p.code, p.trigger, p.promo_code, p.reward_code, p.priority,"
    " p.active, p.spec, p.created_at, p.updated_at"
    " FROM promotions AS p WHERE p.program_id = $1 AND p.active IS true"
)
_LIVE_WITH_USES_SQL = (
    "SELECT p.id, p.program_id, p.code, p.trigger, p.promo_code, p.reward_code, p.priority,"
    " p.active, p.spec, p.created_at, p.updated_at,"
    " (SELECT count(*) FROM promotion_uses AS u"
    " WHERE u.promotion_id = p.id AND u.member_id = $2) AS member_uses"
    " FROM promotions AS p WHERE p.program_id = $1 AND p.active IS true"
)
"""`_LIVE` and `_LIVE_WITH_USES` as asyncpg runs them (sent straight: `_driver`)."""


_driver = driver_connection
"""The asyncpg connection under a session where a statement sent straight runs where the
session's own would, else None (`habitue.db.driver_connection`). Through the driver, a query
costs about half the client's CPU (docs/benchmarks.md, h5/price); its rows are asyncpg
records, read by name as the session's mappings, their JSON decoded by the codec the dialect
set up."""


async def live(session: AsyncSession, program: ProgramInfo, member_id: int | None = None) -> Live:
    """The active promotions, each with its `updated_at` (a compiled deal is kept per
    version: `deal_of`), and with `member_id` the member's confirmed baskets per promotion
    (`member_uses`, for per-member limits): one query, sent to asyncpg straight where it
    can be (`_driver`)."""
    rows: Sequence[Any]
    raw = await _driver(session)
    if raw is not None:
        if member_id is None:
            rows = await raw.fetch(_LIVE_SQL, program.id)
        else:
            rows = await raw.fetch(_LIVE_WITH_USES_SQL, program.id, member_id)
    elif member_id is None:
        rows = (await session.execute(_LIVE, {"live_program": program.id})).mappings().all()
    else:
        params = {"live_program": program.id, "live_member": member_id}
        rows = (await session.execute(_LIVE_WITH_USES, params)).mappings().all()
    return Live(
        automatic=[r for r in rows if r["trigger"] == "automatic"],
        by_promo_code={r["promo_code"]: r for r in rows if r["trigger"] == "code"},
        by_reward={r["reward_code"]: r for r in rows if r["trigger"] == "coupon"},
    )


async def record_uses(
    session: AsyncSession,
    program: ProgramInfo,
    uses: list[tuple[int, int]],
    *,
    member_id: int | None,
    external_id: str,
    now: datetime,
) -> None:
    """One use per (promotion id, discount) of a confirmed basket."""
    if not uses:
        return
    await session.execute(
        insert(_uses),
        [
            {"program_id": program.id, "promotion_id": pid, "member_id": member_id,
             "external_id": external_id, "discount_minor": off, "created_at": now}
            for pid, off in uses
        ],
    )  # fmt: skip
