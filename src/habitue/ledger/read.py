"""Reading the ledger: a member's balances and history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.ledger.entries import MemberAccounts, _accounts, _lots, _postings, _txns


async def balances(
    session: AsyncSession, accounts: MemberAccounts, *, expiring: int = 3
) -> dict[str, Any]:
    """Available and pending points, and the next lots to expire."""
    rows = dict(
        (
            await session.execute(
                select(_accounts.c.kind, _accounts.c.balance).where(
                    _accounts.c.member_id == accounts.member_id
                )
            )
        ).all()
    )
    exp = (
        await session.execute(
            select(_lots.c.expires_at, func.sum(_lots.c.remaining))
            .where(
                _lots.c.account_id == accounts.available,
                _lots.c.remaining > 0,
                _lots.c.expires_at.is_not(None),
            )
            .group_by(_lots.c.expires_at)
            .order_by(_lots.c.expires_at)
            .limit(expiring)
        )
    ).all()
    return {
        "available": int(rows.get("available", 0)),
        "pending": int(rows.get("pending", 0)),
        "expiring": [
            {"points": int(points), "expires_at": clock.as_utc(at).isoformat()}
            for at, points in exp
        ],
    }


async def history(
    session: AsyncSession, member_id: int, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The member's movements, newest first, one row per transaction."""
    member_accounts = select(_accounts.c.id).where(_accounts.c.member_id == member_id)
    q = (
        select(
            _txns.c.id,
            _txns.c.kind,
            _txns.c.event_id,
            _txns.c.reason,
            _txns.c.actor,
            _txns.c.created_at,
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
            _accounts.c.kind,
        )
        .order_by(_txns.c.id.desc())
    )
    if before is not None:
        q = q.where(_txns.c.id < before)
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
                "available": 0,
                "pending": 0,
            },
        )
        item[r.account] = int(r.amount)
    items = sorted(merged.values(), key=lambda i: -int(i["id"]))[:limit]
    for item in items:
        item["points"] = item["available"] + item["pending"]
    return items
