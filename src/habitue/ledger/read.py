"""Reading the ledger: a member's balances and history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.ledger.entries import MemberAccounts, _accounts, _lots, _postings, _txns
from habitue.ledger.lots import expired_points


async def _expiring(
    session: AsyncSession, account_id: int, *, after: datetime | None, limit: int
) -> list[tuple[datetime, int]]:
    """The account's open lots with an expiry (after `after`), summed per instant, soonest
    first."""
    q = select(_lots.c.expires_at, func.sum(_lots.c.remaining)).where(
        _lots.c.account_id == account_id,
        _lots.c.remaining > 0,
        _lots.c.expires_at.is_not(None),
    )
    if after is not None:
        q = q.where(_lots.c.expires_at > after)
    rows = await session.execute(
        q.group_by(_lots.c.expires_at).order_by(_lots.c.expires_at).limit(limit)
    )
    return [(clock.as_utc(at), int(points)) for at, points in rows.all()]


async def balances(
    session: AsyncSession,
    accounts: MemberAccounts,
    *,
    expiring: int = 3,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Available and pending points as they truly are at `now`, and the next lots to expire.

    A lot past its expiry is not available, whether or not the expiry job has written it
    down yet: `available` is the stored balance less those lots. The common read costs what
    it did: the expired lots are summed only when the soonest expiry is already past.
    """
    now = now or clock.now()
    rows = dict(
        (
            await session.execute(
                select(_accounts.c.kind, _accounts.c.balance).where(
                    _accounts.c.member_id == accounts.member_id
                )
            )
        ).all()
    )
    soonest = await _expiring(session, accounts.available, after=None, limit=max(expiring, 1))
    expired = 0
    if soonest and soonest[0][0] <= now:
        expired = await expired_points(session, accounts.available, now)
        soonest = await _expiring(session, accounts.available, after=now, limit=expiring)
    return {
        "available": int(rows.get("available", 0)) - expired,
        "pending": int(rows.get("pending", 0)),
        "expiring": [
            {"points": points, "expires_at": at.isoformat()} for at, points in soonest[:expiring]
        ],
    }


async def history(
    session: AsyncSession, member_id: int, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The member's movements, one row per transaction, the most recent in effect first (by
    `effective_at`, then booking order): a backdated purchase takes its place among what
    happened before it. `before` is the id of the last transaction of the previous page."""
    member_accounts = select(_accounts.c.id).where(_accounts.c.member_id == member_id)
    q = (
        select(
            _txns.c.id,
            _txns.c.kind,
            _txns.c.event_id,
            _txns.c.reason,
            _txns.c.actor,
            _txns.c.created_at,
            _txns.c.effective_at,
            _accounts.c.kind.label("account"),
            func.sum(_postings.c.amount).label("amount"),
        )
        .join(_postings, _postings.c.transaction_id == _txns.c.id)
        .join(_accounts, _accounts.c.id == _postings.c.account_id)
        .where(_txns.c.member_id == member_id, _postings.c.account_id.in_(member_accounts))
        .group_by(
            _txns.c.id,
            _txns.c.kind,
            _txns.c.event_id,
            _txns.c.reason,
            _txns.c.actor,
            _txns.c.created_at,
            _txns.c.effective_at,
            _accounts.c.kind,
        )
        .order_by(_txns.c.effective_at.desc(), _txns.c.id.desc())
    )
    if before is not None:
        cursor = select(_txns.c.effective_at).where(
            _txns.c.id == before, _txns.c.member_id == member_id
        )
        at = (await session.execute(cursor)).scalar_one_or_none()
        if at is None:
            return []
        q = q.where(
            or_(
                _txns.c.effective_at < at,
                and_(_txns.c.effective_at == at, _txns.c.id < before),
            )
        )
    rows = (await session.execute(q.limit(limit * 2))).all()
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        item = merged.setdefault(
            r.id,
            {
                "id": r.id,
                "kind": r.kind,
                "event_id": r.event_id,
                "reason": r.reason,
                "actor": r.actor,
                "created_at": clock.as_utc(r.created_at).isoformat(),
                "effective_at": clock.as_utc(r.effective_at).isoformat(),
                "available": 0,
                "pending": 0,
                "_order": (clock.as_utc(r.effective_at), r.id),
            },
        )
        item[r.account] = int(r.amount)
    items = sorted(merged.values(), key=lambda i: i["_order"], reverse=True)[:limit]
    for item in items:
        del item["_order"]
        item["points"] = item["available"] + item["pending"]
    return items
