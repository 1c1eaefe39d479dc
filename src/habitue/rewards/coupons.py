"""Coupons: issue, validate for a basket, burn exactly once, generate in bulk, expire."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.members import service as members_service
from habitue.members.errors import MemberNotFound
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rewards import catalogue, codes
from habitue.rewards.errors import (
    CouponAlreadyRedeemed,
    CouponCanceled,
    CouponExpired,
    CouponNotApplicable,
    CouponNotFound,
    CouponVoided,
    InvalidCouponCode,
    RewardNotAvailable,
    RewardNotRedeemable,
)
from habitue.rewards.models import Coupon, CouponAttempt, Reward
from habitue.rewards.schemas import (
    BasketIn,
    CouponBatchCreate,
    CouponCheck,
    CouponRead,
    MemberCouponRead,
)
from habitue.rewards.sql import affected
from habitue.rewards.till import BasketLine, discount_for

_coupons = table_of(Coupon)
_rewards = table_of(Reward)
_attempts = table_of(CouponAttempt)

BASKET_KINDS = frozenset({"voucher", "discount", "free_product"})


def expiry(reward: catalogue.RewardRow, now: datetime) -> datetime | None:
    """When a coupon of this reward issued now expires (None: never)."""
    ends: list[datetime] = []
    if reward.coupon_days is not None:
        ends.append(now + timedelta(days=reward.coupon_days))
    return min(ends) if ends else None


async def issue(
    session: AsyncSession,
    program: ProgramInfo,
    reward: catalogue.RewardRow,
    *,
    member_id: int,
    redemption_id: int | None,
    now: datetime,
    event_id: str | None = None,
) -> CouponRead:
    """Issue one coupon for a redemption (or, with `event_id`, for an event's `coupon` rule),
    with a fresh random code."""
    expires = expiry(reward, now)
    for _ in range(5):
        code = codes.new_code()
        values = {
            "program_id": program.id,
            "member_id": member_id,
            "code": code,
            "reward_id": reward.id,
            "redemption_id": redemption_id,
            "campaign": None,
            "state": "issued",
            "issued_at": now,
            "expires_at": expires,
            "event_id": event_id,
        }
        # A 64-bit collision is vanishingly rare: skip the row rather than pay for a savepoint.
        if dialect_name(session) == "postgresql":
            stmt: Any = pg_insert(_coupons).values(values).on_conflict_do_nothing()
        else:
            stmt = insert(_coupons).values(values).prefix_with("OR IGNORE")
        if (await session.execute(stmt.returning(_coupons.c.id))).first() is None:
            continue
        return issued(reward, code, now, expires)
    raise AssertionError("five code collisions in a row")


def issued(
    reward: catalogue.RewardRow, code: str, now: datetime, expires: datetime | None
) -> CouponRead:
    """The coupon just issued with `code` (as the redemption's answer shows it)."""
    return CouponRead(
        code=codes.display(code),
        state="issued",
        reward=reward.code,
        kind=reward.kind,
        issued_at=now,
        expires_at=expires,
    )


def _coupon_query(program: ProgramInfo) -> Any:
    return (
        select(
            _coupons,
            _rewards.c.code.label("reward_code"),
            _rewards.c.kind,
            _rewards.c.value_minor,
            _rewards.c.percent,
            _rewards.c.cap_minor,
            _rewards.c.min_basket_minor,
            _rewards.c.sku,
        )
        .join(_rewards, _rewards.c.id == _coupons.c.reward_id)
        .where(_coupons.c.program_id == program.id)
    )


async def find(
    session: AsyncSession, program: ProgramInfo, raw_code: str, *, member_id: int | None = None
) -> Any:
    """The coupon of a code typed at a till; a malformed or unknown code is a failed lookup.

    A coupon of another program, or issued to another member than the one named, is not found.
    """
    code = codes.normalise(raw_code)
    if not codes.is_well_formed(code):
        raise InvalidCouponCode(
            "not a coupon code (check character mismatch)",
            errors=[{"field": "code", "message": "mistyped or not a coupon code"}],
        )
    row = (
        (await session.execute(_coupon_query(program).where(_coupons.c.code == code)))
        .mappings()
        .first()
    )
    if row is None or (
        member_id is not None and row["member_id"] is not None and row["member_id"] != member_id
    ):
        raise CouponNotFound("no such coupon in this program")
    return row


def _state_error(row: Any, now: datetime) -> None:
    state = row["state"]
    if state == "redeemed":
        raise CouponAlreadyRedeemed("this coupon has already been redeemed")
    if state == "canceled":
        raise CouponCanceled("this coupon was canceled")
    if state == "voided":
        raise CouponVoided("this coupon was voided: the purchase that won it was refunded")
    expires = row["expires_at"]
    if state == "expired" or (expires is not None and clock.as_utc(expires) <= now):
        raise CouponExpired("this coupon has expired")


def _basket(program: ProgramInfo, basket: BasketIn) -> tuple[int | None, tuple[BasketLine, ...]]:
    exp = program.currency_exponent
    try:
        total = parse_minor(basket.total, exp) if basket.total is not None else None
        lines = tuple(BasketLine(ln.sku, parse_minor(ln.unit_price, exp)) for ln in basket.lines)
    except MoneyFormatError as exc:
        raise ValidationFailed("total", str(exc)) from exc
    return total, lines


def _discount(program: ProgramInfo, row: Any, basket: BasketIn) -> tuple[int, str | None]:
    """(discount in minor units, why it does not apply or None)."""
    if row["kind"] not in BASKET_KINDS:
        return 0, None
    total, lines = _basket(program, basket)
    if total is None:
        raise ValidationFailed("total", "a basket total is required for this coupon")
    terms = catalogue.terms_of(row)
    if terms.min_basket_minor is not None and total < terms.min_basket_minor:
        need = format_minor(terms.min_basket_minor, program.currency_exponent)
        return 0, f"the basket must be at least {need}"
    off = discount_for(terms, total, lines)
    if terms.sku is not None and off == 0:
        return 0, f"the basket has no {terms.sku}"
    return off, None


async def _member_id(
    session: AsyncSession, program: ProgramInfo, public_id: str | None
) -> int | None:
    if public_id is None:
        return None
    return (await members_service.resolve(session, program, member_id=public_id)).id


async def validate(
    session: AsyncSession, program: ProgramInfo, raw_code: str, basket: BasketIn
) -> CouponCheck:
    """What the coupon would take off this basket; writes nothing."""
    now = clock.now()
    member_id = await _member_id(session, program, basket.member)
    row = await find(session, program, raw_code, member_id=member_id)
    _state_error(row, now)
    off, reason = _discount(program, row, basket)
    return CouponCheck(
        code=codes.display(row["code"]),
        state=row["state"],
        reward=row["reward_code"],
        kind=row["kind"],
        applicable=reason is None,
        discount=format_minor(off, program.currency_exponent),
        reason=reason,
        expires_at=clock.as_utc(row["expires_at"]) if row["expires_at"] else None,
    )


async def redeem(
    session: AsyncSession, program: ProgramInfo, raw_code: str, basket: BasketIn, *, actor: str
) -> CouponRead:
    """Burn the coupon exactly once: a conditional update that only one till can win."""
    now = clock.now()
    member_id = await _member_id(session, program, basket.member)
    row = await find(session, program, raw_code, member_id=member_id)
    _state_error(row, now)
    off, reason = _discount(program, row, basket)
    if reason is not None:
        raise CouponNotApplicable(reason)
    total, _ = _basket(program, basket)
    expires = row["expires_at"]
    won = await session.execute(
        update(_coupons)
        .where(
            _coupons.c.id == row["id"],
            _coupons.c.state == "issued",
            (_coupons.c.expires_at.is_(None)) | (_coupons.c.expires_at > now),
        )
        .values(
            state="redeemed",
            redeemed_at=now,
            redeemed_by=(f"{actor}:{basket.reference}" if basket.reference else actor)[:200],
            basket_minor=total,
            discount_minor=off,
        )
    )
    if affected(won) != 1:
        raise CouponAlreadyRedeemed("this coupon has already been redeemed")
    discount = format_minor(off, program.currency_exponent)
    await outbox.emit(
        session,
        program_id=program.id,
        type_="coupon.redeemed",
        member_id=None,
        payload={"code": codes.display(row["code"]), "reward": row["reward_code"],
                 "discount": discount, "reference": basket.reference},
    )  # fmt: skip
    return CouponRead(
        code=codes.display(row["code"]),
        state="redeemed",
        reward=row["reward_code"],
        kind=row["kind"],
        issued_at=clock.as_utc(row["issued_at"]),
        expires_at=clock.as_utc(expires) if expires else None,
        redeemed_at=now,
        discount=discount,
    )


async def get(session: AsyncSession, program: ProgramInfo, raw_code: str) -> CouponRead:
    """A coupon's state by code."""
    row = await find(session, program, raw_code)
    return _read(program, row)


def _read(program: ProgramInfo, row: Any) -> CouponRead:
    return CouponRead(
        code=codes.display(row["code"]),
        state=row["state"],
        reward=row["reward_code"],
        kind=row["kind"],
        issued_at=clock.as_utc(row["issued_at"]),
        expires_at=clock.as_utc(row["expires_at"]) if row["expires_at"] else None,
        redeemed_at=clock.as_utc(row["redeemed_at"]) if row["redeemed_at"] else None,
        discount=format_minor(row["discount_minor"], program.currency_exponent)
        if row["discount_minor"] is not None
        else None,
        purchase=_purchase_of(row["redeemed_by"]),
    )


BASKET_REFERENCE = "basket:"
"""`redeemed_by` of a coupon burnt by a confirmed basket: `basket:<external_id>`."""


def _purchase_of(redeemed_by: str | None) -> str | None:
    if redeemed_by is None or not redeemed_by.startswith(BASKET_REFERENCE):
        return None
    return redeemed_by[len(BASKET_REFERENCE) :]


async def issue_for_event(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    reward_code: str,
    *,
    event_id: str,
    now: datetime,
) -> CouponRead:
    """Issue a coupon of `reward_code` to the member for an event's `coupon` rule: a gift, no
    points spent; the code and expiry are as for a redemption's coupon."""
    reward = await catalogue.load(session, program, reward_code)
    if not reward.active:
        # Saving the rule and switching the reward off both refuse this (422, 409); a reward
        # switched off behind their back fails the applier, and the whole event rolls back.
        raise RewardNotAvailable(f"reward {reward_code!r} is inactive: no coupon can be issued")
    if reward.kind not in catalogue.COUPON_KINDS:
        raise RewardNotRedeemable(f"a {reward.kind} reward has no coupons")
    return await issue(
        session, program, reward, member_id=member_id, redemption_id=None, now=now,
        event_id=event_id,
    )  # fmt: skip


async def void_for_event(
    session: AsyncSession, program: ProgramInfo, event_id: str
) -> list[tuple[str, str]]:
    """Void the unused coupons an event issued (its purchase was refunded); a used one stays
    used. Returns (printed code, reward code) of each voided coupon."""
    rows = (
        (
            await session.execute(
                _coupon_query(program).where(
                    _coupons.c.event_id == event_id, _coupons.c.state == "issued"
                )
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        return []
    await session.execute(
        update(_coupons)
        .where(_coupons.c.id.in_([r["id"] for r in rows]), _coupons.c.state == "issued")
        .values(state="voided")
    )
    return [(codes.display(r["code"]), r["reward_code"]) for r in rows]


async def for_member(
    session: AsyncSession, program: ProgramInfo, member_id: int
) -> list[MemberCouponRead]:
    """The member's coupons, newest first, each with the event that issued it (if any)."""
    rows = (
        (
            await session.execute(
                _coupon_query(program)
                .where(_coupons.c.member_id == member_id)
                .order_by(_coupons.c.issued_at.desc(), _coupons.c.id.desc())
            )
        )
        .mappings()
        .all()
    )
    return [
        MemberCouponRead(**_read(program, r).model_dump(), event_id=r["event_id"]) for r in rows
    ]


async def for_redemptions(
    session: AsyncSession, program: ProgramInfo, redemption_ids: list[int]
) -> dict[int, CouponRead]:
    """The coupons of these redemptions, by redemption id."""
    if not redemption_ids:
        return {}
    rows = (
        (
            await session.execute(
                _coupon_query(program).where(_coupons.c.redemption_id.in_(redemption_ids))
            )
        )
        .mappings()
        .all()
    )
    return {r["redemption_id"]: _read(program, r) for r in rows}


async def cancel_for_redemption(session: AsyncSession, redemption_id: int) -> bool:
    """Cancel a redemption's unused coupons (one per unit); False when one of them was already
    used (or it has none): the caller refuses the cancel and its unit of work rolls back."""
    issued = len(
        (
            await session.execute(
                select(_coupons.c.id).where(_coupons.c.redemption_id == redemption_id)
            )
        ).all()
    )
    done = await session.execute(
        update(_coupons)
        .where(_coupons.c.redemption_id == redemption_id, _coupons.c.state == "issued")
        .values(state="canceled")
    )
    return issued > 0 and affected(done) == issued


async def has_coupon(session: AsyncSession, redemption_id: int) -> bool:
    found = await session.execute(
        select(_coupons.c.id).where(_coupons.c.redemption_id == redemption_id)
    )
    return found.first() is not None


def batch_codes(count: int) -> Iterator[str]:
    """`count` distinct fresh codes."""
    seen: set[str] = set()
    while len(seen) < count:
        code = codes.new_code()
        if code not in seen:
            seen.add(code)
            yield code


async def generate(
    session: AsyncSession, program: ProgramInfo, data: CouponBatchCreate, *, chunk: int = 5000
) -> list[tuple[str, datetime | None]]:
    """Generate a campaign's codes in bulk (not tied to a member); returns (code, expiry)."""
    reward = await catalogue.load(session, program, data.reward)
    if reward.kind not in catalogue.COUPON_KINDS:
        raise RewardNotRedeemable(f"a {reward.kind} reward has no coupons")
    now = clock.now()
    expires = data.expires_at or expiry(reward, now)
    made: list[tuple[str, datetime | None]] = []
    batch: list[dict[str, Any]] = []

    async def flush() -> None:
        await session.execute(insert(_coupons), batch)
        batch.clear()

    for code in batch_codes(data.count):
        batch.append(
            {
                "program_id": program.id,
                "member_id": None,
                "code": code,
                "reward_id": reward.id,
                "redemption_id": None,
                "campaign": data.campaign,
                "state": "issued",
                "issued_at": now,
                "expires_at": expires,
            }
        )
        made.append((code, expires))
        if len(batch) >= chunk:
            await flush()
    if batch:
        await flush()
    return made


def write_csv(out: TextIO, made: list[tuple[str, datetime | None]]) -> None:
    """CSV export of generated codes: `code,expires_at`."""
    writer = csv.writer(out)
    writer.writerow(["code", "expires_at"])
    for code, expires in made:
        writer.writerow([codes.display(code), expires.isoformat() if expires else ""])


async def expire_due(session: AsyncSession, program: ProgramInfo, *, now: datetime) -> int:
    """Mark issued coupons past their expiry as expired; returns how many."""
    done = await session.execute(
        update(_coupons)
        .where(
            _coupons.c.program_id == program.id,
            _coupons.c.state == "issued",
            _coupons.c.expires_at.is_not(None),
            _coupons.c.expires_at <= now,
        )
        .values(state="expired")
    )
    return affected(done)


async def log_attempt(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    principal: str,
    member: str | None,
    code_tried: str,
    outcome: str,
) -> None:
    """Record a failed or refused coupon lookup."""
    member_id = None
    if member is not None:
        try:
            member_id = (await members_service.resolve(session, program, member_id=member)).id
        except MemberNotFound:
            member_id = None
    await session.execute(
        insert(_attempts).values(
            program_id=program.id,
            member_id=member_id,
            principal=principal[:200],
            code_tried=code_tried[:64],
            outcome=outcome[:32],
            created_at=clock.now(),
        )
    )


async def attempts(session: AsyncSession, program: ProgramInfo) -> int:
    """How many failed lookups were logged for the program (for tests and dashboards)."""
    from sqlalchemy import func

    return int(
        (
            await session.execute(select(func.count()).where(_attempts.c.program_id == program.id))
        ).scalar_one()
    )


async def burn_for_basket(
    session: AsyncSession,
    coupon_id: int,
    *,
    reference: str,
    basket_minor: int,
    discount_minor: int,
    now: datetime,
) -> bool:
    """Burn a coupon for a confirmed basket (`reference` names the purchase); False when
    another till burnt it meanwhile or it expired: the caller refuses the whole basket."""
    won = await session.execute(
        update(_coupons)
        .where(
            _coupons.c.id == coupon_id,
            _coupons.c.state == "issued",
            (_coupons.c.expires_at.is_(None)) | (_coupons.c.expires_at > now),
        )
        .values(
            state="redeemed",
            redeemed_at=now,
            redeemed_by=reference[:200],
            basket_minor=basket_minor,
            discount_minor=discount_minor,
        )
    )
    return affected(won) == 1
