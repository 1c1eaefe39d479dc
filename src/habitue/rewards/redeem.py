"""Redemptions: spend points on a reward, cancel and fulfil them, and the donations statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.ids import new_id
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.ledger.service import Leg
from habitue.members import service as members_service
from habitue.members.models import Member
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo
from habitue.rewards import catalogue, codes, coupons
from habitue.rewards.errors import (
    InvalidFulfilment,
    MemberLimitReached,
    OutOfStock,
    PeriodLimitReached,
    RedemptionNotCancelable,
    RedemptionNotFound,
    RewardNotAvailable,
    RewardNotRedeemable,
    TierNotEligible,
)
from habitue.rewards.models import Redemption, Reward
from habitue.rewards.schemas import (
    CauseStatement,
    DonationStatement,
    RedemptionCreate,
    RedemptionRead,
)
from habitue.rewards.sql import affected

_redemptions = table_of(Redemption)
_rewards = table_of(Reward)
_members = table_of(Member)

LIVE = ("ordered", "shipped", "delivered", "issued", "donated")
NEXT_STATUS = {"shipped": "ordered", "delivered": "shipped"}


# PostgreSQL: the debit's transaction and lots, the stock, the redemption, its coupon and its
# domain event in one statement, with the balance's update or after it (SQLite: seven
# statements). The
# stock is taken only if enough is left; the coupon's random code is drawn again, by
# `coupons.issue`, in the rare case it was taken.
_REDEEM_CTES = """, stock AS (
        UPDATE rewards SET stock = stock - :quantity
        WHERE id = :reward_id AND :limited_stock AND stock >= :quantity
        RETURNING id
    ), redemption AS (
        INSERT INTO redemptions (public_id, program_id, member_id, reward_id, quantity, points,
                                 status, created_at, updated_at)
        SELECT :public_id, :program_id, :member_id, :reward_id, :quantity, :points, :status,
               :created_at, :updated_at
        WHERE NOT :limited_stock OR EXISTS (SELECT FROM stock)
        RETURNING id
    ), coupon AS (
        INSERT INTO coupons (program_id, member_id, code, reward_id, redemption_id, state,
                             issued_at, expires_at)
        SELECT :program_id, :member_id, :coupon_code, :reward_id, redemption.id, 'issued',
               :created_at, :coupon_expires
        FROM redemption WHERE :with_coupon
        ON CONFLICT DO NOTHING
        RETURNING id
    ), domain_event AS (
"""
_REDEEM_RESULT = """)
    SELECT {taken}, (SELECT coalesce(sum(took), 0) FROM consumed), EXISTS (SELECT FROM stock),
           (SELECT id FROM redemption), EXISTS (SELECT FROM coupon)
"""
_REDEEM_WRITES = _REDEEM_CTES + outbox.INSERT_FROM_ARRAYS + _REDEEM_RESULT
# After `take_balance` (a limited reward), or with the balance taken first.
_REDEEM_PG = text(ledger_service.DEBIT_CTES + _REDEEM_WRITES.format(taken="TRUE"))
_REDEEM_ONE_PG = text(
    ledger_service.STRICT_DEBIT_CTES + _REDEEM_WRITES.format(taken="EXISTS (SELECT FROM taken)")
)


def period_start(period: str, now: datetime, timezone: str) -> datetime:
    """Start of the calendar day/week/month/year holding `now`, in the program's time zone."""
    local = now.astimezone(ZoneInfo(timezone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    elif period == "year":
        day = day.replace(month=1, day=1)
    return day.astimezone(UTC)


def _status_for(kind: str) -> str:
    return {"product": "ordered", "donation": "donated"}.get(kind, "issued")


async def _used(
    session: AsyncSession, member_id: int, reward_id: int, since: datetime | None
) -> int:
    q = select(func.coalesce(func.sum(_redemptions.c.quantity), 0)).where(
        _redemptions.c.member_id == member_id,
        _redemptions.c.reward_id == reward_id,
        _redemptions.c.status != "canceled",
    )
    if since is not None:
        q = q.where(_redemptions.c.created_at >= since)
    return int((await session.execute(q)).scalar_one())


async def _check_limits(
    session: AsyncSession,
    program: ProgramInfo,
    reward: catalogue.RewardRow,
    member: MemberRef,
    quantity: int,
    now: datetime,
) -> None:
    if reward.per_member_limit is not None:
        used = await _used(session, member.id, reward.id, None)
        if used + quantity > reward.per_member_limit:
            raise MemberLimitReached(
                f"at most {reward.per_member_limit} per member; {used} already redeemed"
            )
    if reward.period is not None and reward.period_limit is not None:
        since = period_start(reward.period, now, program.timezone)
        used = await _used(session, member.id, reward.id, since)
        if used + quantity > reward.period_limit:
            raise PeriodLimitReached(
                f"at most {reward.period_limit} per {reward.period}; {used} already redeemed"
            )


async def redeem(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    data: RedemptionCreate,
    *,
    actor: str,
) -> RedemptionRead:
    """Spend the points and take the stock in one transaction, then issue the coupon.

    Points come from the lots closest to expiry; the stock is taken by a conditional update,
    so concurrent redemptions never oversell; any refusal leaves nothing spent. The member's
    status is read under the member's row lock (an erasure in progress is waited for).
    """
    member = await members_service.with_locked_status(session, program, member)
    member.require_active()
    reward = await catalogue.load(session, program, data.reward)
    now = clock.now()
    if not reward.available_at(now):
        raise RewardNotAvailable(f"reward {reward.code!r} is not available now")
    if reward.kind == "partner":
        raise RewardNotRedeemable("partner conversions are made through the partners API")
    if reward.tiers is not None and member.tier not in reward.tiers:
        raise TierNotEligible(f"reward {reward.code!r} is for tiers {reward.tiers}")
    quantity = data.quantity
    limited = reward.per_member_limit is not None or reward.period_limit is not None
    if limited:
        await _check_limits(session, program, reward, member, quantity, now)
    if reward.stock is not None and reward.stock < quantity:
        raise OutOfStock(f"reward {reward.code!r} is out of stock")
    points = reward.cost_points * quantity
    public_id = new_id()
    postgres = dialect_name(session) == "postgresql"
    # On PostgreSQL an unlimited reward's redemption is one statement, the balance taken in
    # it; a limited one counts again once the balance's row is locked, in between.
    one_statement = postgres and not limited
    debit_args: dict[str, Any] = {
        "kind": EntryKind.REDEEM,
        "counter": SystemAccount.REDEEMED,
        "reference": f"redemption:{public_id}",
        "actor": actor,
        "reason": f"reward {reward.code} x{quantity}",
        "now": now,
    }
    debit = (
        ledger_service.plan_strict_debit(program, member.accounts, points, **debit_args)
        if one_statement
        else await ledger_service.take_balance(
            session, program, member.accounts, points, **debit_args
        )
    )
    assert debit is not None  # strict: all of it, or InsufficientPoints
    if limited and postgres:
        # The debit locked the member's account row: a concurrent redemption of the same
        # member has committed by now, so counting again cannot miss it.
        await _check_limits(session, program, reward, member, quantity, now)
    status = _status_for(reward.kind)
    row = {
        "public_id": public_id,
        "program_id": program.id,
        "member_id": member.id,
        "reward_id": reward.id,
        "quantity": quantity,
        "points": points,
        "status": status,
        "created_at": now,
        "updated_at": now,
    }
    event = outbox.outbox_row(
        program.id,
        "reward.redeemed",
        member.public_id,
        {"member_id": member.public_id, "redemption_id": public_id,
         "reward": reward.code, "quantity": quantity, "points": points},
    )  # fmt: skip
    with_coupon = reward.kind in catalogue.COUPON_KINDS
    coupon = None
    if postgres:
        code = codes.new_code()
        expires = coupons.expiry(reward, now)
        taken, consumed, stock_taken, redemption_id, coupon_issued = (
            await session.execute(
                _REDEEM_ONE_PG if one_statement else _REDEEM_PG,
                {
                    **debit.pg_params(),
                    **row,
                    "limited_stock": reward.stock is not None,
                    "with_coupon": with_coupon,
                    "coupon_code": code,
                    "coupon_expires": expires,
                    **outbox.array_params([event]),
                },
            )
        ).one()
        if one_statement:
            await ledger_service.finish_strict_debit(session, debit, taken=taken, consumed=consumed)
        if reward.stock is not None and not stock_taken:
            raise OutOfStock(f"reward {reward.code!r} is out of stock")
        if coupon_issued:
            coupon = coupons.issued(reward, code, now, expires)
        elif with_coupon:  # a code drawn twice: draw again
            coupon = await coupons.issue(
                session, program, reward, member_id=member.id, redemption_id=redemption_id, now=now
            )
    else:
        await ledger_service.apply_debit(session, debit)
        if reward.stock is not None:
            taken = await session.execute(
                update(_rewards)
                .where(_rewards.c.id == reward.id, _rewards.c.stock >= quantity)
                .values(stock=_rewards.c.stock - quantity)
            )
            if affected(taken) != 1:
                raise OutOfStock(f"reward {reward.code!r} is out of stock")
        redemption_id = (
            await session.execute(insert(_redemptions).values(**row).returning(_redemptions.c.id))
        ).scalar_one()
        if with_coupon:
            coupon = await coupons.issue(
                session, program, reward, member_id=member.id, redemption_id=redemption_id, now=now
            )
        await outbox.emit_many(session, [event])
    issued = [coupon] if coupon is not None else []
    for _ in range(quantity - 1 if coupon is not None else 0):
        # One coupon per unit: a till applies each of them to one unit of the basket.
        issued.append(
            await coupons.issue(
                session, program, reward, member_id=member.id, redemption_id=redemption_id, now=now
            )
        )
    return RedemptionRead(
        id=public_id,
        member_id=member.public_id,
        reward=reward.code,
        kind=reward.kind,
        quantity=quantity,
        points=points,
        status=status,
        created_at=now,
        coupon=coupon,
        coupons=issued,
    )


def _query(program: ProgramInfo) -> Any:
    return (
        select(
            _redemptions,
            _rewards.c.code.label("reward_code"),
            _rewards.c.kind,
            _rewards.c.stock,
            _members.c.public_id.label("member_public_id"),
        )
        .join(_rewards, _rewards.c.id == _redemptions.c.reward_id)
        .join(_members, _members.c.id == _redemptions.c.member_id)
        .where(_redemptions.c.program_id == program.id)
    )


async def _fetch(session: AsyncSession, program: ProgramInfo, public_id: str) -> Any:
    row = (
        (await session.execute(_query(program).where(_redemptions.c.public_id == public_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise RedemptionNotFound(f"no redemption {public_id} in this program")
    return row


def _read(row: Any, coupon: Any = None) -> RedemptionRead:
    return RedemptionRead(
        id=row["public_id"],
        member_id=row["member_public_id"],
        reward=row["reward_code"],
        kind=row["kind"],
        quantity=row["quantity"],
        points=row["points"],
        status=row["status"],
        created_at=clock.as_utc(row["created_at"]),
        coupon=coupon,
    )


async def get(session: AsyncSession, program: ProgramInfo, public_id: str) -> RedemptionRead:
    """One redemption with its coupon."""
    row = await _fetch(session, program, public_id)
    found = await coupons.for_redemptions(session, program, [row["id"]])
    return _read(row, found.get(row["id"]))


async def for_member(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, *, limit: int = 100
) -> list[RedemptionRead]:
    """The member's redemptions, newest first, with their coupons."""
    rows = (
        (
            await session.execute(
                _query(program)
                .where(_redemptions.c.member_id == member.id)
                .order_by(_redemptions.c.id.desc())
                .limit(limit)
            )
        )
        .mappings()
        .all()
    )
    found = await coupons.for_redemptions(session, program, [r["id"] for r in rows])
    return [_read(r, found.get(r["id"])) for r in rows]


async def recent(
    session: AsyncSession, program: ProgramInfo, *, status: str | None = None, limit: int = 50
) -> list[RedemptionRead]:
    """The program's latest redemptions, newest first (of one status when given), with coupons."""
    query = _query(program)
    if status is not None:
        query = query.where(_redemptions.c.status == status)
    rows = (
        (await session.execute(query.order_by(_redemptions.c.id.desc()).limit(limit)))
        .mappings()
        .all()
    )
    found = await coupons.for_redemptions(session, program, [r["id"] for r in rows])
    return [_read(r, found.get(r["id"])) for r in rows]


async def cancel(
    session: AsyncSession, program: ProgramInfo, public_id: str, *, actor: str
) -> RedemptionRead:
    """Cancel an unfulfilled redemption: its points and its stock come back, its coupon dies.

    Unfulfilled means a product not yet shipped, or a coupon not yet used; donations are final.
    """
    row = await _fetch(session, program, public_id)
    status = row["status"]
    if status not in ("ordered", "issued"):
        raise RedemptionNotCancelable(f"a redemption that is {status} cannot be canceled")
    if status == "issued" and await coupons.has_coupon(session, row["id"]):
        if not await coupons.cancel_for_redemption(session, row["id"]):
            raise RedemptionNotCancelable("its coupon has been used or has expired")
    now = clock.now()
    won = await session.execute(
        update(_redemptions)
        .where(_redemptions.c.id == row["id"], _redemptions.c.status == status)
        .values(status="canceled", updated_at=now)
    )
    if affected(won) != 1:
        raise RedemptionNotCancelable("the redemption changed meanwhile")
    if row["stock"] is not None:
        await session.execute(
            update(_rewards)
            .where(_rewards.c.id == row["reward_id"])
            .values(stock=_rewards.c.stock + row["quantity"])
        )
    accounts = (await ledger_service.accounts_of(session, [row["member_id"]]))[row["member_id"]]
    await ledger_service.credit(
        session,
        program,
        accounts,
        [Leg(row["points"], "redemption-cancel")],
        kind=EntryKind.RETURN,
        counter=SystemAccount.REDEEMED,
        reference=f"redemption:{public_id}:cancel",
        actor=actor,
        reason=f"canceled redemption of {row['reward_code']}",
        now=now,
    )
    await outbox.emit(
        session,
        program_id=program.id,
        type_="reward.canceled",
        member_id=row["member_public_id"],
        payload={"member_id": row["member_public_id"], "redemption_id": public_id,
                 "points": row["points"]},
    )  # fmt: skip
    return await get(session, program, public_id)


async def fulfil(
    session: AsyncSession, program: ProgramInfo, public_id: str, status: str
) -> RedemptionRead:
    """Move a product redemption along ordered → shipped → delivered."""
    row = await _fetch(session, program, public_id)
    before = NEXT_STATUS[status]
    if row["kind"] != "product" or row["status"] != before:
        raise InvalidFulfilment(f"cannot go from {row['status']} to {status}")
    won = await session.execute(
        update(_redemptions)
        .where(_redemptions.c.id == row["id"], _redemptions.c.status == before)
        .values(status=status, updated_at=clock.now())
    )
    if affected(won) != 1:
        raise InvalidFulfilment("the redemption changed meanwhile")
    return await get(session, program, public_id)


async def donation_statement(
    session: AsyncSession, program: ProgramInfo, year: int, *, cause: str | None = None
) -> DonationStatement:
    """Points given to each cause in a calendar year of the program's time zone."""
    tz = ZoneInfo(program.timezone)
    start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    q = (
        select(
            _rewards.c.cause,
            func.count(_redemptions.c.id),
            func.count(func.distinct(_redemptions.c.member_id)),
            func.coalesce(func.sum(_redemptions.c.points), 0),
        )
        .join(_rewards, _rewards.c.id == _redemptions.c.reward_id)
        .where(
            _redemptions.c.program_id == program.id,
            _rewards.c.kind == "donation",
            _redemptions.c.status == "donated",
            _redemptions.c.created_at >= start,
            _redemptions.c.created_at < end,
        )
        .group_by(_rewards.c.cause)
        .order_by(_rewards.c.cause)
    )
    if cause is not None:
        q = q.where(_rewards.c.cause == cause)
    rows = (await session.execute(q)).all()
    return DonationStatement(
        year=year,
        causes=[
            CauseStatement(cause=c, donations=int(n), donors=int(d), points=int(p))
            for c, n, d, p in rows
        ],
    )
