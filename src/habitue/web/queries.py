"""Read-only figures for the console: dashboard series and member search by name.

These read the members and ledger tables directly (never write them): aggregates over a whole
program that no service offers yet. Month buckets are computed in SQL on both dialects.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.ledger import service as ledger_service
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.models import Member
from habitue.programs.models import Program
from habitue.programs.service import ProgramInfo

_members = table_of(Member)
_accounts = table_of(Account)
_postings = table_of(Posting)
_txns = table_of(LedgerTransaction)
_lots = table_of(Lot)
_programs = table_of(Program)


def _month(session: AsyncSession, column: Any) -> Any:
    if dialect_name(session) == "postgresql":
        return func.to_char(func.timezone("UTC", column), literal_column("'YYYY-MM'"))
    return func.strftime("%Y-%m", column)


def months_back(n: int, now: datetime | None = None) -> list[str]:
    """The last `n` months as `YYYY-MM`, oldest first, ending with the current one."""
    now = now or clock.now()
    year, month = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return out[::-1]


async def dashboard(
    session: AsyncSession, program: ProgramInfo, *, months: int = 12
) -> dict[str, Any]:
    """Members over time, points issued/redeemed/expired per month, outstanding liability."""
    labels = months_back(months)
    start = datetime.fromisoformat(labels[0] + "-01T00:00:00+00:00")
    month = _month(session, _members.c.enrolled_at)
    before = (
        await session.execute(
            select(func.count()).where(
                _members.c.program_id == program.id, _members.c.enrolled_at < start
            )
        )
    ).scalar_one()
    joined: dict[str, int] = dict(
        (
            await session.execute(
                select(month, func.count())
                .where(_members.c.program_id == program.id, _members.c.enrolled_at >= start)
                .group_by(month)
            )
        ).all()
    )
    total = int(before)
    members_series = []
    for label in labels:
        total += int(joined.get(label, 0))
        members_series.append(total)

    # A movement counts in the month it happened (its transaction's effective time), not the
    # month it was booked: imported history lands in its own months.
    pmonth = _month(session, _txns.c.effective_at)
    rows = (
        await session.execute(
            select(pmonth, _accounts.c.kind, func.sum(_postings.c.amount))
            .join(_accounts, _accounts.c.id == _postings.c.account_id)
            .join(_txns, _txns.c.id == _postings.c.transaction_id)
            .where(
                _accounts.c.program_id == program.id,
                _accounts.c.member_id.is_(None),
                _txns.c.effective_at >= start,
            )
            .group_by(pmonth, _accounts.c.kind)
        )
    ).all()
    # A system account is the other side of the member's posting: `issued` goes down when
    # members are credited, `redeemed` and `expired` go up when points leave members.
    flows: dict[str, dict[str, int]] = {k: {} for k in ("issued", "redeemed", "expired")}
    for label, kind, amount in rows:
        if kind == "issued":
            flows["issued"][label] = -int(amount)
        elif kind in ("redeemed", "expired"):
            flows[kind][label] = int(amount)
    liability = (
        await session.execute(
            select(_accounts.c.kind, func.coalesce(func.sum(_accounts.c.balance), 0))
            .where(_accounts.c.program_id == program.id, _accounts.c.member_id.is_not(None))
            .group_by(_accounts.c.kind)
        )
    ).all()
    owed = {kind: int(v) for kind, v in liability}
    # Lots past their expiry are not owed, whether the expiry job has written them down or not.
    owed["available"] = owed.get("available", 0) - await ledger_service.program_expired_points(
        session, program.id, clock.now()
    )
    active = (
        await session.execute(
            select(func.count()).where(
                _members.c.program_id == program.id, _members.c.status == "active"
            )
        )
    ).scalar_one()
    return {
        "labels": labels,
        "members": members_series,
        "issued": [flows["issued"].get(m, 0) for m in labels],
        "redeemed": [flows["redeemed"].get(m, 0) for m in labels],
        "expired": [flows["expired"].get(m, 0) for m in labels],
        "liability": {
            "available": owed.get("available", 0),
            "pending": owed.get("pending", 0),
            "total": owed.get("available", 0) + owed.get("pending", 0),
        },
        "owed": owed_over_time(
            owed.get("available", 0) + owed.get("pending", 0),
            [
                flows["issued"].get(m, 0) - flows["redeemed"].get(m, 0) - flows["expired"].get(m, 0)
                for m in labels
            ],
        ),
        "active_members": int(active),
        "since": (clock.now() - timedelta(days=30 * months)).isoformat(),
    }


async def search_by_name(
    session: AsyncSession, program: ProgramInfo, text: str, *, limit: int = 50
) -> list[str]:
    """Public ids of members whose first or last name contains `text` (any case)."""
    pattern = "%" + text.lower().replace("%", "").replace("_", "") + "%"
    full = func.lower(
        func.coalesce(_members.c.first_name, "") + " " + func.coalesce(_members.c.last_name, "")
    )
    rows = (
        await session.execute(
            select(_members.c.public_id)
            .where(
                _members.c.program_id == program.id,
                or_(
                    func.lower(_members.c.first_name).like(pattern),
                    func.lower(_members.c.last_name).like(pattern),
                    full.like(pattern),
                ),
            )
            .order_by(_members.c.last_name, _members.c.first_name)
            .limit(limit)
        )
    ).all()
    return [r.public_id for r in rows]


async def program_codes(session: AsyncSession) -> list[tuple[str, str]]:
    rows = (
        await session.execute(select(_programs.c.code, _programs.c.name).order_by(_programs.c.code))
    ).all()
    return [(r.code, r.name) for r in rows]


async def tier_mix(session: AsyncSession, program: ProgramInfo) -> list[tuple[str | None, int]]:
    """Active members per tier (`members.tier`) as (tier name, count), up the ladder, members
    without a tier first (as None); empty when the program has no active member."""
    from habitue.tiers.service import load_ladder

    counts = await tier_counts(session, program)
    ladder = await load_ladder(session, program.id)
    names: dict[str | None, str | None] = {None: None}
    if ladder is not None:
        names.update({t.code: t.name for t in ladder.tiers})
    out = [(name, counts.pop(code)) for code, name in names.items() if code in counts]
    out += sorted(counts.items(), key=lambda item: str(item[0]))
    return out


async def tier_counts(session: AsyncSession, program: ProgramInfo) -> dict[str | None, int]:
    """Active members per tier code (`members.tier`; None: no tier)."""
    rows = (
        await session.execute(
            select(_members.c.tier, func.count())
            .where(_members.c.program_id == program.id, _members.c.status == "active")
            .group_by(_members.c.tier)
        )
    ).all()
    return {tier: int(n) for tier, n in rows}


def owed_over_time(now_owed: int, net_per_month: list[int]) -> list[int]:
    """The points owed to members at the end of each month, back from what is owed now and
    each month's net flow (issued less redeemed and expired)."""
    out: list[int] = []
    owed = now_owed
    for net in reversed(net_per_month):
        out.append(owed)
        owed -= net
    return out[::-1]


async def expiry_forecast(
    session: AsyncSession, program: ProgramInfo, *, months: int = 12
) -> list[tuple[str, int]]:
    """The points that will expire in each of the coming months unless spent (`YYYY-MM`,
    points), from the open lots' expiry dates."""
    now = clock.now()
    labels = months_ahead(months, now)
    end_year, end_month = int(labels[-1][:4]), int(labels[-1][5:])
    end = datetime(end_year + end_month // 12, end_month % 12 + 1, 1, tzinfo=now.tzinfo)
    month = _month(session, _lots.c.expires_at)
    rows = (
        await session.execute(
            select(month, func.sum(_lots.c.remaining))
            .where(
                _lots.c.program_id == program.id,
                _lots.c.remaining > 0,
                _lots.c.expires_at.is_not(None),
                _lots.c.expires_at >= now,
                _lots.c.expires_at < end,
            )
            .group_by(month)
        )
    ).all()
    found = {str(m): int(n or 0) for m, n in rows}
    return [(m, found.get(m, 0)) for m in labels]


def months_ahead(n: int, now: datetime | None = None) -> list[str]:
    """The current month and the `n - 1` after it, as `YYYY-MM`."""
    now = now or clock.now()
    year, month = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


async def delivery_addresses(
    session: AsyncSession, program: ProgramInfo, public_ids: list[str]
) -> dict[str, str]:
    """The delivery address members gave with a product (member attribute
    `delivery_address`), one line each, by member public id."""
    if not public_ids:
        return {}
    rows = await session.execute(
        select(_members.c.public_id, _members.c.attributes).where(
            _members.c.program_id == program.id, _members.c.public_id.in_(set(public_ids))
        )
    )
    out: dict[str, str] = {}
    for public_id, attributes in rows:
        found = (attributes or {}).get("delivery_address")
        if isinstance(found, dict):
            parts = (found.get(k) for k in ("name", "street", "postcode", "city", "country"))
            out[str(public_id)] = ", ".join(str(p) for p in parts if p)
    return out
