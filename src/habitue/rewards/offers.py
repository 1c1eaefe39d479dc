"""Personal offers: targeted at listed members, clipped by the member, used once at the till."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.members import service as members_service
from habitue.members.errors import MemberNotFound
from habitue.members.service import MemberRef
from habitue.money import format_minor
from habitue.programs.service import ProgramInfo
from habitue.rewards import catalogue
from habitue.rewards.coupons import _basket
from habitue.rewards.errors import (
    CouponNotApplicable,
    OfferAlreadyUsed,
    OfferExists,
    OfferNotActive,
    OfferNotClipped,
    OfferNotFound,
)
from habitue.rewards.models import Offer, OfferTarget
from habitue.rewards.schemas import BasketIn, OfferCreate, OfferRead
from habitue.rewards.sql import affected
from habitue.rewards.till import discount_for

_offers = table_of(Offer)
_targets = table_of(OfferTarget)


def _read(program: ProgramInfo, r: Any, **extra: Any) -> OfferRead:
    exp = program.currency_exponent

    def money(v: int | None) -> str | None:
        return None if v is None else format_minor(v, exp)

    return OfferRead(
        code=r["code"],
        texts=r["texts"],
        value=money(r["value_minor"]),
        percent=r["percent"],
        cap=money(r["cap_minor"]),
        min_basket=money(r["min_basket_minor"]),
        starts_at=clock.as_utc(r["starts_at"]),
        ends_at=clock.as_utc(r["ends_at"]),
        **extra,
    )


async def _member_ids(
    session: AsyncSession, program: ProgramInfo, public_ids: list[str]
) -> list[int]:
    out = []
    for pid in public_ids:
        try:
            out.append((await members_service.resolve(session, program, member_id=pid)).id)
        except MemberNotFound as exc:
            raise MemberNotFound(f"no member {pid} in this program") from exc
    return out


async def _fetch(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        (
            await session.execute(
                select(_offers).where(_offers.c.program_id == program.id, _offers.c.code == code)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise OfferNotFound(f"no offer {code!r} in this program")
    return row


async def _count(session: AsyncSession, offer_id: int) -> int:
    q = select(func.count()).where(_targets.c.offer_id == offer_id)
    return int((await session.execute(q)).scalar_one())


async def create(session: AsyncSession, program: ProgramInfo, data: OfferCreate) -> OfferRead:
    """Create an offer and target the listed members."""
    try:
        async with session.begin_nested():
            offer_id = (
                await session.execute(
                    insert(_offers)
                    .values(
                        program_id=program.id,
                        code=data.code,
                        texts={k: v.model_dump() for k, v in data.texts.items()},
                        starts_at=data.starts_at,
                        ends_at=data.ends_at,
                        created_at=clock.now(),
                        **catalogue.discount_columns(program, data),
                    )
                    .returning(_offers.c.id)
                )
            ).scalar_one()
    except IntegrityError as exc:
        raise OfferExists(f"offer {data.code!r} already exists") from exc
    await _add(session, program, offer_id, data.members, data.segment)
    row = await _fetch(session, program, data.code)
    return _read(program, row, members=await _count(session, offer_id))


async def _add(
    session: AsyncSession,
    program: ProgramInfo,
    offer_id: int,
    members: list[str],
    segment: str | None = None,
) -> None:
    ids = set(await _member_ids(session, program, members))
    if segment is not None:
        from habitue.analytics import segments as segments_service

        # A profiling segment targets only the members consenting to profiling.
        ids |= set(await segments_service.targetable_members(session, program, segment))
    if not ids:
        return
    have = set(
        (
            await session.execute(
                select(_targets.c.member_id).where(
                    _targets.c.offer_id == offer_id, _targets.c.member_id.in_(list(ids))
                )
            )
        ).scalars()
    )
    rows = [
        {"program_id": program.id, "offer_id": offer_id, "member_id": m} for m in sorted(ids - have)
    ]
    if rows:
        await session.execute(insert(_targets), rows)


async def add_targets(
    session: AsyncSession,
    program: ProgramInfo,
    code: str,
    members: list[str],
    segment: str | None = None,
) -> OfferRead:
    """Target more members, listed or a segment's (already targeted ones stay as they are)."""
    row = await _fetch(session, program, code)
    await _add(session, program, row["id"], members, segment)
    return _read(program, row, members=await _count(session, row["id"]))


@dataclass(frozen=True, slots=True)
class OfferStats:
    """An offer with how many members it targets, how many activated it and used it."""

    offer: OfferRead
    targeted: int
    clipped: int
    used: int


async def list_offers(session: AsyncSession, program: ProgramInfo) -> list[OfferStats]:
    """The program's offers, latest start first, with their target, activation and use counts."""
    counts = (
        select(
            _targets.c.offer_id,
            func.count().label("targeted"),
            func.count(_targets.c.clipped_at).label("clipped"),
            func.count(_targets.c.used_at).label("used"),
        )
        .where(_targets.c.program_id == program.id)
        .group_by(_targets.c.offer_id)
        .subquery()
    )
    rows = (
        (
            await session.execute(
                select(_offers, counts.c.targeted, counts.c.clipped, counts.c.used)
                .outerjoin(counts, counts.c.offer_id == _offers.c.id)
                .where(_offers.c.program_id == program.id)
                .order_by(_offers.c.starts_at.desc(), _offers.c.code)
            )
        )
        .mappings()
        .all()
    )
    return [
        OfferStats(
            offer=_read(program, r, members=int(r["targeted"] or 0)),
            targeted=int(r["targeted"] or 0),
            clipped=int(r["clipped"] or 0),
            used=int(r["used"] or 0),
        )
        for r in rows
    ]


def _active(row: Any, now: datetime) -> bool:
    return clock.as_utc(row["starts_at"]) <= now < clock.as_utc(row["ends_at"])


async def for_member(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, *, clipped_only: bool = False
) -> list[OfferRead]:
    """The member's offers valid now and not used, for the app (to clip) and the till (to use)."""
    now = clock.now()
    q = (
        select(_offers, _targets.c.clipped_at, _targets.c.used_at)
        .join(_targets, _targets.c.offer_id == _offers.c.id)
        .where(
            _targets.c.member_id == member.id,
            _targets.c.used_at.is_(None),
            _offers.c.starts_at <= now,
            _offers.c.ends_at > now,
        )
        .order_by(_offers.c.ends_at, _offers.c.code)
    )
    if clipped_only:
        q = q.where(_targets.c.clipped_at.is_not(None))
    rows = (await session.execute(q)).mappings().all()
    return [
        _read(
            program,
            r,
            clipped=r["clipped_at"] is not None,
            clipped_at=clock.as_utc(r["clipped_at"]) if r["clipped_at"] else None,
            used=False,
        )
        for r in rows
    ]


async def _target(session: AsyncSession, program: ProgramInfo, member: MemberRef, code: str) -> Any:
    offer = await _fetch(session, program, code)
    target = (
        (
            await session.execute(
                select(_targets).where(
                    _targets.c.offer_id == offer["id"], _targets.c.member_id == member.id
                )
            )
        )
        .mappings()
        .first()
    )
    if target is None:
        raise OfferNotFound(f"no offer {code!r} for this member")
    return offer, target


async def clip(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, code: str
) -> OfferRead:
    """The member activates an offer within its window; clipping twice is harmless."""
    now = clock.now()
    offer, target = await _target(session, program, member, code)
    if not _active(offer, now):
        raise OfferNotActive(f"offer {code!r} is not open now")
    if target["used_at"] is not None:
        raise OfferAlreadyUsed(f"offer {code!r} has been used")
    clipped_at = target["clipped_at"]
    if clipped_at is None:
        clipped_at = now
        await session.execute(
            update(_targets)
            .where(_targets.c.id == target["id"], _targets.c.clipped_at.is_(None))
            .values(clipped_at=now)
        )
    return _read(program, offer, clipped=True, clipped_at=clock.as_utc(clipped_at), used=False)


async def use(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, code: str, basket: BasketIn
) -> OfferRead:
    """The till uses a clipped offer once and learns what it takes off the basket."""
    now = clock.now()
    offer, target = await _target(session, program, member, code)
    if not _active(offer, now):
        raise OfferNotActive(f"offer {code!r} is not open now")
    if target["clipped_at"] is None:
        raise OfferNotClipped(f"offer {code!r} must be clipped before use")
    total, lines = _basket(program, basket)
    terms = catalogue.terms_of(offer)
    off = discount_for(terms, total or 0, lines)
    if off == 0:
        raise CouponNotApplicable("the offer does not apply to this basket")
    won = await session.execute(
        update(_targets)
        .where(_targets.c.id == target["id"], _targets.c.used_at.is_(None))
        .values(used_at=now)
    )
    if affected(won) != 1:
        raise OfferAlreadyUsed(f"offer {code!r} has been used")
    return _read(
        program,
        offer,
        clipped=True,
        clipped_at=clock.as_utc(target["clipped_at"]),
        used=True,
        discount=format_minor(off, program.currency_exponent),
    )


async def for_till(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, code: str
) -> tuple[Any, Any]:
    """An offer and the member's target row (clipped_at, used_at) for pricing a basket."""
    offer, target = await _target(session, program, member, code)
    return offer, target


def active_at(offer: Any, now: datetime) -> bool:
    """Whether an offer is open at `now`."""
    return _active(offer, now)


async def mark_used(session: AsyncSession, target_id: int, *, now: datetime) -> bool:
    """Use a clipped offer once for a confirmed basket; False when it was used meanwhile."""
    won = await session.execute(
        update(_targets)
        .where(_targets.c.id == target_id, _targets.c.used_at.is_(None))
        .values(used_at=now)
    )
    return affected(won) == 1
