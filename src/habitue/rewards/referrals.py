"""Referrals: each member's code, the referee's enrolment with it, rewards after the window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.events.pipeline import EventApplied, RefundApplied
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.members.models import Member
from habitue.members.service import MemberColumn, MemberRef
from habitue.messaging import outbox
from habitue.money import format_minor
from habitue.programs.service import ProgramInfo
from habitue.rewards import codes
from habitue.rewards.catalogue import money_field
from habitue.rewards.errors import (
    AlreadyReferred,
    ReferralCapReached,
    ReferralCodeNotFound,
    ReferralsNotConfigured,
    SelfReferral,
)
from habitue.rewards.kinds import ReferralEffectKind
from habitue.rewards.models import Referral, ReferralCode, ReferralSettings
from habitue.rewards.schemas import (
    ReferralCodeRead,
    ReferralCreate,
    ReferralRead,
    ReferralSettingsIn,
    ReferralSettingsRead,
)
from habitue.rewards.sql import affected

_settings = table_of(ReferralSettings)
_codes = table_of(ReferralCode)
_referrals = table_of(Referral)
_members = table_of(Member)

REFERRAL_CODE_LENGTH = 8


async def put_settings(
    session: AsyncSession, program: ProgramInfo, data: ReferralSettingsIn
) -> ReferralSettingsRead:
    """Set the program's referral terms (points for each side, cap, window, minimum)."""
    values = {
        "referrer_points": data.referrer_points,
        "referee_points": data.referee_points,
        "cap_per_referrer": data.cap_per_referrer,
        "window_days": data.window_days,
        "min_purchase_minor": money_field(program, data.min_purchase, "min_purchase") or 0,
    }
    done = await session.execute(
        update(_settings).where(_settings.c.program_id == program.id).values(values)
    )
    if affected(done) == 0:
        await session.execute(insert(_settings).values(program_id=program.id, **values))
    return await get_settings(session, program)


async def _settings_row(session: AsyncSession, program: ProgramInfo) -> Any:
    row = (
        (await session.execute(select(_settings).where(_settings.c.program_id == program.id)))
        .mappings()
        .first()
    )
    if row is None:
        raise ReferralsNotConfigured("set the program's referral terms first")
    return row


async def get_settings(session: AsyncSession, program: ProgramInfo) -> ReferralSettingsRead:
    """The program's referral terms; raises ReferralsNotConfigured."""
    row = await _settings_row(session, program)
    return ReferralSettingsRead(
        referrer_points=row["referrer_points"],
        referee_points=row["referee_points"],
        cap_per_referrer=row["cap_per_referrer"],
        window_days=row["window_days"],
        min_purchase=format_minor(row["min_purchase_minor"], program.currency_exponent),
    )


async def code_for(
    session: AsyncSession, program: ProgramInfo, member: MemberRef
) -> ReferralCodeRead:
    """The member's referral code, made on first request."""
    found = (
        await session.execute(select(_codes.c.code).where(_codes.c.member_id == member.id))
    ).scalar_one_or_none()
    if found is not None:
        return ReferralCodeRead(member_id=member.public_id, code=found)
    for _ in range(10):
        code = codes.new_code(REFERRAL_CODE_LENGTH)
        values = {"program_id": program.id, "member_id": member.id, "code": code}
        try:
            async with session.begin_nested():
                if dialect_name(session) == "postgresql":
                    stmt = (
                        pg_insert(_codes)
                        .values(values)
                        .on_conflict_do_nothing(index_elements=["member_id"])
                    )
                    await session.execute(stmt)
                else:
                    await session.execute(insert(_codes).values(values))
        except IntegrityError:
            continue
        break
    final = (
        await session.execute(select(_codes.c.code).where(_codes.c.member_id == member.id))
    ).scalar_one()
    return ReferralCodeRead(member_id=member.public_id, code=final)


def _read(row: Any, referee: str, referrer: str) -> ReferralRead:
    return ReferralRead(
        id=row["public_id"],
        referee=referee,
        referrer=referrer,
        status=row["status"],
        release_at=clock.as_utc(row["release_at"]) if row["release_at"] else None,
        referrer_points=row["referrer_points"],
        referee_points=row["referee_points"],
        created_at=clock.as_utc(row["created_at"]),
    )


async def create(session: AsyncSession, program: ProgramInfo, data: ReferralCreate) -> ReferralRead:
    """Record that the referee came with a referrer's code.

    No self-referral, one referrer per member, at most `cap_per_referrer` live referrals.
    """
    terms = await _settings_row(session, program)
    referee = await members_service.resolve(session, program, member_id=data.referee)
    referee.require_active()
    q = select(_codes.c.member_id, _codes.c.id).where(
        _codes.c.program_id == program.id, _codes.c.code == codes.normalise(data.code)
    )
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()  # serialises referrals of one referrer, so the cap holds
    found = (await session.execute(q)).first()
    if found is None:
        raise ReferralCodeNotFound("no such referral code in this program")
    referrer_id = int(found.member_id)
    if referrer_id == referee.id:
        raise SelfReferral("a member cannot use their own referral code")
    if (
        await session.execute(select(_referrals.c.id).where(_referrals.c.member_id == referee.id))
    ).first() is not None:
        raise AlreadyReferred("this member already has a referrer")
    cap = terms["cap_per_referrer"]
    if cap is not None:
        live = (
            await session.execute(
                select(func.count()).where(
                    _referrals.c.referrer_id == referrer_id, _referrals.c.status != "canceled"
                )
            )
        ).scalar_one()
        if live >= cap:
            raise ReferralCapReached(f"this referrer has reached the cap of {cap} referrals")
    now = clock.now()
    values = {
        "public_id": new_id(),
        "program_id": program.id,
        "member_id": referee.id,
        "referrer_id": referrer_id,
        "status": "pending",
        "purchase_event_id": None,
        "release_at": None,
        "referrer_points": terms["referrer_points"],
        "referee_points": terms["referee_points"],
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(_referrals).values(values))
    except IntegrityError as exc:
        raise AlreadyReferred("this member already has a referrer") from exc
    referrer_public = (
        await session.execute(select(_members.c.public_id).where(_members.c.id == referrer_id))
    ).scalar_one()
    return _read(values, referee.public_id, referrer_public)


async def for_member(
    session: AsyncSession, program: ProgramInfo, member: MemberRef
) -> list[ReferralRead]:
    """Referrals the member made, and the one that brought them, newest first."""
    referee = _members.alias("referee")
    referrer = _members.alias("referrer")
    rows = (
        (
            await session.execute(
                select(
                    _referrals, referee.c.public_id.label("ee"), referrer.c.public_id.label("er")
                )
                .join(referee, referee.c.id == _referrals.c.member_id)
                .join(referrer, referrer.c.id == _referrals.c.referrer_id)
                .where(
                    _referrals.c.program_id == program.id,
                    (_referrals.c.member_id == member.id) | (_referrals.c.referrer_id == member.id),
                )
                .order_by(_referrals.c.id.desc())
            )
        )
        .mappings()
        .all()
    )
    return [_read(r, r["ee"], r["er"]) for r in rows]


def pending_column(member_id: ColumnElement[int]) -> ColumnElement[Any]:
    """Whether the member is the referee of a pending referral, as a column of its query.

    Read with the member on the event path (`PENDING`, a pipeline's `member_reads`): a
    purchase of a member without one (nearly all of them) needs no referral query.
    """
    return exists().where(_referrals.c.member_id == member_id, _referrals.c.status == "pending")


PENDING = MemberColumn("rewards.referral_pending", pending_column)
"""Whether the member waits, as a referee, for a first qualifying purchase."""


async def on_purchase(session: AsyncSession, applied: EventApplied) -> list[dict[str, Any]]:
    """The referee's first qualifying purchase starts the return window of the referral."""
    event = applied.event
    if event.type != "purchase" or not applied.member.extras.get(PENDING, True):
        return []
    row = (
        (
            await session.execute(
                select(_referrals).where(
                    _referrals.c.member_id == applied.member.id, _referrals.c.status == "pending"
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return []
    terms = await _settings_row(session, applied.program)
    paid = event.total_minor - event.discount_minor
    if paid < terms["min_purchase_minor"]:
        return []
    days = terms["window_days"]
    window = applied.program.pending_days if days is None else days
    release_at = event.occurred_at + timedelta(days=window)
    await session.execute(
        update(_referrals)
        .where(_referrals.c.id == row["id"], _referrals.c.status == "pending")
        .values(
            status="qualified",
            purchase_event_id=applied.event_id,
            release_at=release_at,
            updated_at=applied.now,
        )
    )
    return [
        {
            "kind": ReferralEffectKind.REFERRAL,
            "rule": None,
            "points": 0,
            "detail": {"referral": row["public_id"], "status": "qualified",
                       "release_at": release_at.isoformat()},
        }
    ]  # fmt: skip


async def on_refund(session: AsyncSession, applied: RefundApplied) -> list[dict[str, Any]]:
    """A refund of the qualifying purchase within the window cancels the referral's rewards."""
    row = (
        (
            await session.execute(
                select(_referrals).where(
                    _referrals.c.purchase_event_id == applied.purchase_id,
                    _referrals.c.status == "qualified",
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None or clock.as_utc(row["release_at"]) <= applied.now:
        return []
    await session.execute(
        update(_referrals)
        .where(_referrals.c.id == row["id"], _referrals.c.status == "qualified")
        .values(status="canceled", updated_at=applied.now)
    )
    return [
        {
            "kind": ReferralEffectKind.REFERRAL,
            "rule": None,
            "points": 0,
            "detail": {"referral": row["public_id"], "status": "canceled"},
        }
    ]


async def release_due(
    session: AsyncSession, program: ProgramInfo, *, now: datetime, limit: int = 500
) -> int:
    """Reward both sides of referrals whose window closed unrefunded; returns how many."""
    rows = (
        (
            await session.execute(
                select(_referrals)
                .where(
                    _referrals.c.program_id == program.id,
                    _referrals.c.status == "qualified",
                    _referrals.c.release_at <= now,
                )
                .order_by(_referrals.c.id)
                .limit(limit)
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        return 0
    ids = {r["member_id"] for r in rows} | {r["referrer_id"] for r in rows}
    accounts = await ledger_service.accounts_of(session, list(ids))
    done = 0
    for r in rows:
        won = await session.execute(
            update(_referrals)
            .where(_referrals.c.id == r["id"], _referrals.c.status == "qualified")
            .values(status="rewarded", updated_at=now)
        )
        if affected(won) != 1:
            continue
        for who, points, side in (
            (r["member_id"], r["referee_points"], "referee"),
            (r["referrer_id"], r["referrer_points"], "referrer"),
        ):
            if points > 0:
                await ledger_service.credit(
                    session,
                    program,
                    accounts[who],
                    [Leg(points, f"referral-{side}")],
                    kind=EntryKind.REFERRAL,
                    reference=f"referral:{r['public_id']}:{side}",
                    reason=f"referral reward ({side})",
                    now=now,
                )
        await outbox.emit(
            session,
            program_id=program.id,
            type_="referral.rewarded",
            member_id=None,
            payload={"referral": r["public_id"], "referee_points": r["referee_points"],
                     "referrer_points": r["referrer_points"]},
        )  # fmt: skip
        done += 1
    return done
