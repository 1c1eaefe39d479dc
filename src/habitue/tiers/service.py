"""Tier ladders, qualification counters and upgrades on the event path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.members.models import Member
from habitue.members.service import MemberRef
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rules.service import rules_referencing_tier
from habitue.rules.types import Decision, EventInput
from habitue.tiers import periods
from habitue.tiers.errors import InvalidLadder, LadderInUse, NoLadder, TierInUse, UnknownTier
from habitue.tiers.models import (
    Tier,
    TierBucket,
    TierContribution,
    TierHistory,
    TierLadder,
    TierStatus,
)
from habitue.tiers.qualify import metric_amount
from habitue.tiers.schemas import (
    GuaranteeRead,
    GuaranteeWrite,
    HistoryRead,
    LadderRead,
    LadderWrite,
    TierProgress,
    TierRead,
    TierWrite,
    WindowSpec,
)

_ladders = table_of(TierLadder)
_tiers = table_of(Tier)
_status = table_of(TierStatus)
_buckets = table_of(TierBucket)
_contrib = table_of(TierContribution)
_history = table_of(TierHistory)
_members = table_of(Member)

MONEY_METRIC = "qualifying_spend"


@dataclass(frozen=True, slots=True)
class TierDef:
    """One rung of a ladder as plain values."""

    code: str
    name: str
    rank: int
    threshold: int
    multiplier: Decimal
    privileges: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ladder:
    """A program's ladder as plain values (cached briefly per process)."""

    program_id: int
    metric: str
    window: periods.Window
    grace_days: int
    tiers: tuple[TierDef, ...]
    updated_at: datetime

    @property
    def base_rank(self) -> int:
        """The rank every member holds without qualifying (-1: no tier)."""
        return 0 if self.tiers and self.tiers[0].threshold == 0 else -1

    def earned_rank(self, value: int) -> int:
        """The highest rank whose threshold `value` reaches (-1: none)."""
        rank = -1
        for t in self.tiers:
            if value >= t.threshold:
                rank = t.rank
        return rank

    def code(self, rank: int | None) -> str | None:
        if rank is None or rank < 0 or rank >= len(self.tiers):
            return None
        return self.tiers[rank].code

    def rank_of(self, code: str) -> int:
        for t in self.tiers:
            if t.code == code:
                return t.rank
        raise UnknownTier(
            f"no tier {code!r} in the ladder", errors=[{"field": "tier", "message": "unknown"}]
        )


_CACHE_TTL = 5.0
_cache: dict[int, tuple[float, Ladder | None]] = {}


def forget(program_id: int | None = None) -> None:
    """Drop cached ladders (after a change)."""
    if program_id is None:
        _cache.clear()
    else:
        _cache.pop(program_id, None)


async def load_ladder(session: AsyncSession, program_id: int) -> Ladder | None:
    """The program's ladder, or None when it has none."""
    hit = _cache.get(program_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    row = (
        (await session.execute(select(_ladders).where(_ladders.c.program_id == program_id)))
        .mappings()
        .first()
    )
    ladder: Ladder | None = None
    if row is not None:
        tiers = (
            (
                await session.execute(
                    select(_tiers).where(_tiers.c.program_id == program_id).order_by(_tiers.c.rank)
                )
            )
            .mappings()
            .all()
        )
        ladder = Ladder(
            program_id=program_id,
            metric=row["metric"],
            window=periods.Window(row["window"], row["window_months"] or 12),
            grace_days=row["grace_days"],
            tiers=tuple(
                TierDef(
                    code=t["code"],
                    name=t["name"],
                    rank=t["rank"],
                    threshold=int(t["threshold"]),
                    multiplier=Decimal(t["multiplier"]),
                    privileges=tuple(t["privileges"] or ()),
                )
                for t in tiers
            ),
            updated_at=clock.as_utc(row["updated_at"]),
        )
    _cache[program_id] = (time.monotonic() + _CACHE_TTL, ladder)
    return ladder


async def require_ladder(session: AsyncSession, program: ProgramInfo) -> Ladder:
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        raise NoLadder(f"program {program.code} has no tier ladder")
    return ladder


def _value_out(ladder: Ladder, program: ProgramInfo, value: int) -> int | str:
    """A metric value as the API shows it: money as a decimal string, counts as integers."""
    if ladder.metric == MONEY_METRIC:
        return format_minor(value, program.currency_exponent)
    return value


def _threshold_in(metric: str, program: ProgramInfo, value: int | str, field: str) -> int:
    if metric == MONEY_METRIC:
        if not isinstance(value, str):
            raise InvalidLadder(
                f"{field}: spend thresholds are decimal strings",
                errors=[{"field": field, "message": "expected a decimal string such as '500.00'"}],
            )
        try:
            return parse_minor(value, program.currency_exponent)
        except MoneyFormatError as exc:
            raise InvalidLadder(
                f"{field}: {exc}", errors=[{"field": field, "message": str(exc)}]
            ) from exc
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLadder(
            f"{field}: thresholds of {metric} are integers",
            errors=[{"field": field, "message": "expected an integer"}],
        )
    return value


def to_read(ladder: Ladder, program: ProgramInfo) -> LadderRead:
    months = ladder.window.months if ladder.window.kind == periods.ROLLING else None
    return LadderRead(
        metric=ladder.metric,
        window=WindowSpec(kind=ladder.window.kind, months=months),
        grace_days=ladder.grace_days,
        tiers=[
            TierRead(
                code=t.code,
                name=t.name,
                rank=t.rank,
                threshold=_value_out(ladder, program, t.threshold),
                multiplier=str(t.multiplier),
                privileges=list(t.privileges),
            )
            for t in ladder.tiers
        ],
        updated_at=ladder.updated_at,
    )


def _validate(program: ProgramInfo, data: LadderWrite) -> list[int]:
    """Check the ladder and return its thresholds in the metric's units (no I/O)."""
    if data.window.kind == periods.ROLLING and data.window.months is None:
        raise InvalidLadder(
            "window.months: a rolling window needs its number of months",
            errors=[{"field": "window.months", "message": "is required for rolling_months"}],
        )
    if data.window.kind != periods.ROLLING and data.window.months is not None:
        raise InvalidLadder(
            "window.months: only rolling windows have months",
            errors=[{"field": "window.months", "message": "only for rolling_months"}],
        )
    codes = [t.code for t in data.tiers]
    if len(set(codes)) != len(codes):
        raise InvalidLadder(
            "tiers: codes must be unique", errors=[{"field": "tiers", "message": "duplicate code"}]
        )
    out: list[int] = []
    for i, t in enumerate(data.tiers):
        field = f"tiers[{i}].threshold"
        value = _threshold_in(data.metric, program, t.threshold, field)
        if value < 0:
            raise InvalidLadder(
                f"{field}: must not be negative", errors=[{"field": field, "message": "negative"}]
            )
        if out and value <= out[-1]:
            raise InvalidLadder(
                f"{field}: thresholds must increase strictly up the ladder",
                errors=[{"field": field, "message": "not above the tier below"}],
            )
        out.append(value)
    return out


async def _check_removed_tiers(
    session: AsyncSession, program: ProgramInfo, old: Ladder, data: LadderWrite
) -> None:
    """Refuse (409 `tier-in-use`) a ladder that drops a tier an active rule's audience names."""
    kept = {t.code for t in data.tiers}
    errors: list[dict[str, Any]] = []
    for t in old.tiers:
        if t.code in kept:
            continue
        rules = await rules_referencing_tier(session, program, t.code)
        if rules:
            errors.append(
                {
                    "field": "tiers",
                    "tier": t.code,
                    "rules": rules,
                    "message": f"tier {t.code!r} is in the audience of rules {', '.join(rules)}",
                }
            )
    if errors:
        detail = "; ".join(e["message"] for e in errors)
        raise TierInUse(
            f"{detail}: change or delete those rules before removing the tier", errors=errors
        )


async def set_ladder(session: AsyncSession, program: ProgramInfo, data: LadderWrite) -> Ladder:
    """Replace the program's ladder; members keep their rank (clamped to the new top)."""
    thresholds = _validate(program, data)
    now = clock.now()
    forget(program.id)  # decide on what the database holds, not on a cached copy
    old = await load_ladder(session, program.id)
    forget(program.id)
    if old is not None:
        await _check_removed_tiers(session, program, old, data)
    months = data.window.months if data.window.kind == periods.ROLLING else None
    if old is not None and (
        old.metric != data.metric
        or old.window.kind != data.window.kind
        or (months is not None and old.window.months != months)
    ):
        in_use = (
            await session.execute(select(exists().where(_status.c.program_id == program.id)))
        ).scalar()
        if in_use:
            raise LadderInUse(
                "members already qualify under this metric and window; "
                "only tiers, thresholds and benefits may change"
            )
    values: dict[str, Any] = {
        "metric": data.metric,
        "window": data.window.kind,
        "window_months": months,
        "grace_days": data.grace_days,
        "updated_at": now,
    }
    if old is None or old.window != periods.Window(data.window.kind, months or 12):
        # Periods ending before the ladder (or its window) existed are never evaluated.
        values["closed_through"] = periods.local_date(now, program.timezone)
    if old is None:
        await session.execute(insert(_ladders).values(program_id=program.id, **values))
    else:
        await session.execute(
            update(_ladders).where(_ladders.c.program_id == program.id).values(**values)
        )
    await session.execute(delete(_tiers).where(_tiers.c.program_id == program.id))
    await session.execute(
        insert(_tiers),
        [
            {
                "program_id": program.id,
                "code": t.code,
                "name": t.name,
                "rank": rank,
                "threshold": thresholds[rank],
                "multiplier": t.multiplier,
                "privileges": t.privileges,
            }
            for rank, t in enumerate(data.tiers)
        ],
    )
    top = len(data.tiers) - 1
    for col in (_status.c.rank, _status.c.grace_rank, _status.c.guaranteed_rank):
        await session.execute(
            update(_status)
            .where(_status.c.program_id == program.id, col > top)
            .values({col.name: top})
        )
    base_code = data.tiers[0].code if thresholds[0] == 0 else None
    code_of_status = (
        select(_tiers.c.code)
        .select_from(_status.join(_tiers, _tiers.c.rank == _status.c.rank))
        .where(_status.c.member_id == _members.c.id, _tiers.c.program_id == program.id)
        .scalar_subquery()
    )
    await session.execute(
        update(_members)
        .where(_members.c.program_id == program.id)
        .values(tier=func.coalesce(code_of_status, base_code) if base_code else code_of_status)
        .execution_options(synchronize_session=False)
    )
    await outbox.emit(
        session,
        program_id=program.id,
        type_="tiers.ladder_changed",
        member_id=None,
        payload={"tiers": [t.code for t in data.tiers], "metric": data.metric},
    )
    forget(program.id)
    ladder = await load_ladder(session, program.id)
    forget(program.id)
    assert ladder is not None
    return ladder


async def update_tier(
    session: AsyncSession, program: ProgramInfo, code: str, data: TierWrite
) -> Ladder:
    """Change one tier (name, threshold, multiplier, privileges), keeping the rest of the ladder,
    through `set_ladder` and its checks (thresholds still increase up the ladder)."""
    forget(program.id)  # build on what the database holds, not on a cached copy
    current = to_read(await require_ladder(session, program), program)
    forget(program.id)
    if all(t.code != code for t in current.tiers):
        raise UnknownTier(
            f"no tier {code!r} in the ladder", errors=[{"field": "tier", "message": "unknown"}]
        )
    tiers = [
        data.model_copy(update={"code": code})
        if t.code == code
        else TierWrite(
            code=t.code,
            name=t.name,
            threshold=t.threshold,
            multiplier=t.multiplier,
            privileges=t.privileges,
        )
        for t in current.tiers
    ]
    ladder = LadderWrite(
        metric=current.metric,
        window=current.window,
        grace_days=current.grace_days,
        tiers=tiers,
    )
    return await set_ladder(session, program, ladder)


# ----------------------------------------------------------------------------------------
# Counters and status on the event path


async def _add_to_bucket(
    session: AsyncSession, program_id: int, member_id: int, bucket: date, amount: int
) -> None:
    values = {"program_id": program_id, "member_id": member_id, "bucket": bucket, "value": amount}
    if dialect_name(session) == "postgresql":
        pg = postgresql.insert(_buckets).values(values)
        await session.execute(
            pg.on_conflict_do_update(
                index_elements=[_buckets.c.member_id, _buckets.c.bucket],
                set_={"value": _buckets.c.value + pg.excluded.value},
            )
        )
    else:
        lite = sqlite.insert(_buckets).values(values)
        await session.execute(
            lite.on_conflict_do_update(
                index_elements=[_buckets.c.member_id, _buckets.c.bucket],
                set_={"value": _buckets.c.value + lite.excluded.value},
            )
        )


async def _metric(session: AsyncSession, member_id: int, start: date, end: date) -> int:
    value = (
        await session.execute(
            select(func.coalesce(func.sum(_buckets.c.value), 0)).where(
                _buckets.c.member_id == member_id,
                _buckets.c.bucket >= start,
                _buckets.c.bucket < end,
            )
        )
    ).scalar_one()
    return int(value)


async def _status_row(session: AsyncSession, member_id: int, *, lock: bool) -> Any:
    q = select(_status).where(_status.c.member_id == member_id)
    if lock and dialect_name(session) == "postgresql":
        q = q.with_for_update()
    return (await session.execute(q)).mappings().first()


def _enrolled_local(member: MemberRef, program: ProgramInfo) -> date:
    return periods.local_date(member.enrolled_at, program.timezone)


async def _ensure_status(
    session: AsyncSession, program: ProgramInfo, ladder: Ladder, member: MemberRef
) -> Any:
    row = await _status_row(session, member.id, lock=True)
    if row is not None:
        return row
    await session.execute(
        insert(_status).values(
            member_id=member.id,
            program_id=program.id,
            rank=ladder.base_rank,
            anchor_md=periods.anchor_md(_enrolled_local(member, program)),
            since=periods.local_date(clock.now(), program.timezone),
            updated_at=clock.now(),
        )
    )
    return await _status_row(session, member.id, lock=False)


async def _change(
    session: AsyncSession,
    program: ProgramInfo,
    ladder: Ladder,
    *,
    member_id: int,
    public_id: str,
    old: int,
    new: int,
    reason: str,
    metric_value: int | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record one tier change: members.tier, history, and `tier.changed` in the outbox."""
    from_code, to_code = ladder.code(old), ladder.code(new)
    await session.execute(update(_members).where(_members.c.id == member_id).values(tier=to_code))
    await session.execute(
        insert(_history).values(
            program_id=program.id,
            member_id=member_id,
            from_rank=old,
            to_rank=new,
            from_tier=from_code,
            to_tier=to_code,
            reason=reason,
            metric_value=metric_value,
            detail=extra or {},
            created_at=now,
        )
    )
    payload = {
        "member_id": public_id,
        "from": from_code,
        "to": to_code,
        "direction": "up" if new > old else "down",
        "reason": reason,
    }
    await outbox.emit(
        session, program_id=program.id, type_="tier.changed", member_id=public_id, payload=payload
    )
    return payload


async def on_event(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    *,
    event: EventInput,
    event_id: str,
    decision: Decision,
    now: datetime,
) -> list[dict[str, Any]]:
    """Count the event toward the member's metric and upgrade at once when a threshold is met."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return []
    amount = metric_amount(ladder.metric, event, decision)
    if amount <= 0:
        return []
    enrolled = _enrolled_local(member, program)
    bucket = periods.bucket_of(
        ladder.window, enrolled, periods.local_date(event.occurred_at, program.timezone)
    )
    today = periods.local_date(now, program.timezone)
    status = await _ensure_status(session, program, ladder, member)
    await _add_to_bucket(session, program.id, member.id, bucket, amount)
    await session.execute(
        insert(_contrib).values(
            event_id=event_id,
            program_id=program.id,
            member_id=member.id,
            bucket=bucket,
            amount=amount,
            reversed=0,
        )
    )
    start, end = periods.period_of(ladder.window, enrolled, today)
    value = await _metric(session, member.id, start, end)
    earned = ladder.earned_rank(value)
    current = int(status["rank"])
    effects: list[dict[str, Any]] = []
    if earned > current:
        first_this_period = status["upgrade_period_end"] != end
        await session.execute(
            update(_status)
            .where(_status.c.member_id == member.id)
            .values(
                rank=earned,
                grace_until=None,
                grace_rank=None,
                upgrade_event_id=event_id,
                upgrade_from_rank=current if first_this_period else status["upgrade_from_rank"],
                upgrade_period_end=end,
                updated_at=now,
            )
        )
        payload = await _change(
            session,
            program,
            ladder,
            member_id=member.id,
            public_id=member.public_id,
            old=current,
            new=earned,
            reason="qualified",
            metric_value=value,
            now=now,
            extra={"event_id": event_id},
        )
        effects.append(
            {
                "kind": "tier_upgrade",
                "rule": None,
                "points": 0,
                "detail": {**payload, "value": _value_out(ladder, program, value)},
            }
        )
    elif status["grace_until"] is not None and earned >= current:
        # Re-qualified during the grace period: the pending downgrade is cancelled.
        await session.execute(
            update(_status)
            .where(_status.c.member_id == member.id)
            .values(grace_until=None, grace_rank=None, updated_at=now)
        )
    return effects


async def on_refund(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    *,
    purchase_id: str,
    purchase_total_minor: int,
    refunded_total_minor: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Take a refunded purchase's share out of the metric; reverse this period's upgrade
    when the metric falls back below the tier's threshold."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return []
    row = (
        (await session.execute(select(_contrib).where(_contrib.c.event_id == purchase_id)))
        .mappings()
        .first()
    )
    if row is None:
        return []
    amount = int(row["amount"])
    target = amount * refunded_total_minor // purchase_total_minor if purchase_total_minor else 0
    delta = target - int(row["reversed"])
    if delta <= 0:
        return []
    await session.execute(
        update(_contrib).where(_contrib.c.event_id == purchase_id).values(reversed=target)
    )
    await session.execute(
        update(_buckets)
        .where(_buckets.c.member_id == member.id, _buckets.c.bucket == row["bucket"])
        .values(value=_buckets.c.value - delta)
    )
    status = await _status_row(session, member.id, lock=True)
    if status is None:
        return []
    today = periods.local_date(now, program.timezone)
    start, end = periods.period_of(ladder.window, _enrolled_local(member, program), today)
    if status["upgrade_period_end"] != end or status["upgrade_from_rank"] is None:
        return []
    current = int(status["rank"])
    value = await _metric(session, member.id, start, end)
    if current < 0 or value >= ladder.tiers[current].threshold:
        return []
    floor = int(status["upgrade_from_rank"])
    guaranteed = _guarantee_rank(status, today)
    new = max(ladder.earned_rank(value), floor, guaranteed, ladder.base_rank)
    if new >= current:
        return []
    await session.execute(
        update(_status)
        .where(_status.c.member_id == member.id)
        .values(
            rank=new,
            upgrade_event_id=None,
            upgrade_from_rank=None if new == floor else floor,
            upgrade_period_end=None if new == floor else end,
            updated_at=now,
        )
    )
    payload = await _change(
        session,
        program,
        ladder,
        member_id=member.id,
        public_id=member.public_id,
        old=current,
        new=new,
        reason="refund",
        metric_value=value,
        now=now,
        extra={"purchase_id": purchase_id},
    )
    return [
        {
            "kind": "tier_reversal",
            "rule": None,
            "points": 0,
            "detail": {**payload, "value": _value_out(ladder, program, value)},
        }
    ]


def _guarantee_rank(status: Any, today: date) -> int:
    until = status["guaranteed_until"]
    if until is None or status["guaranteed_rank"] is None or until < today:
        return -1
    return int(status["guaranteed_rank"])


async def current_rank(session: AsyncSession, ladder: Ladder, member_id: int) -> int:
    """The member's rank now (the ladder's base rank when they never qualified)."""
    rank = (
        await session.execute(select(_status.c.rank).where(_status.c.member_id == member_id))
    ).scalar()
    return ladder.base_rank if rank is None else int(rank)


async def tier_benefits(
    session: AsyncSession, program: ProgramInfo, member_id: int
) -> TierDef | None:
    """The member's current tier (None without a ladder or a tier)."""
    ladder = await load_ladder(session, program.id)
    if ladder is None:
        return None
    rank = await current_rank(session, ladder, member_id)
    return ladder.tiers[rank] if 0 <= rank < len(ladder.tiers) else None


# ----------------------------------------------------------------------------------------
# Reads and staff actions


def _closes_at(program: ProgramInfo, day: date) -> datetime:
    return datetime.combine(day, dtime(0), tzinfo=ZoneInfo(program.timezone))


async def progress(session: AsyncSession, program: ProgramInfo, member: MemberRef) -> TierProgress:
    """Current tier, metric so far, what remains to the next tier and to keep this one."""
    ladder = await require_ladder(session, program)
    today = periods.local_date(clock.now(), program.timezone)
    status = await _status_row(session, member.id, lock=False)
    enrolled = _enrolled_local(member, program)
    start, end = periods.period_of(ladder.window, enrolled, today)
    value = await _metric(session, member.id, start, end)
    rank = ladder.base_rank if status is None else int(status["rank"])
    tier = ladder.tiers[rank] if rank >= 0 else None
    nxt = ladder.tiers[rank + 1] if rank + 1 < len(ladder.tiers) else None
    guaranteed = None
    if status is not None and status["guaranteed_until"] is not None:
        code = ladder.code(status["guaranteed_rank"])
        if code is not None and status["guaranteed_until"] >= today:
            guaranteed = GuaranteeRead(tier=code, until=status["guaranteed_until"])
    return TierProgress(
        member_id=member.public_id,
        tier=tier.code if tier else None,
        tier_name=tier.name if tier else None,
        rank=rank if rank >= 0 else None,
        metric=ladder.metric,
        value=_value_out(ladder, program, value),
        next_tier=nxt.code if nxt else None,
        to_next=_value_out(ladder, program, max(nxt.threshold - value, 0)) if nxt else None,
        to_keep=_value_out(ladder, program, max(tier.threshold - value, 0)) if tier else None,
        period_start=start,
        period_end=end - timedelta(days=1),
        closes_at=_closes_at(program, end),
        grace_until=status["grace_until"] if status is not None else None,
        guaranteed=guaranteed,
    )


async def history(session: AsyncSession, member: MemberRef) -> list[HistoryRead]:
    """The member's tier changes, newest first."""
    rows = (
        await session.execute(
            select(_history)
            .where(_history.c.member_id == member.id)
            .order_by(_history.c.id.desc())
            .limit(200)
        )
    ).mappings()
    return [
        HistoryRead(
            from_tier=r["from_tier"],
            to_tier=r["to_tier"],
            reason=r["reason"],
            metric_value=r["metric_value"],
            created_at=clock.as_utc(r["created_at"]),
        )
        for r in rows
    ]


async def guarantee(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, data: GuaranteeWrite
) -> TierProgress:
    """Hold the member at least at a tier until a date; raises them to it at once if below."""
    ladder = await require_ladder(session, program)
    rank = ladder.rank_of(data.tier)
    now = clock.now()
    today = periods.local_date(now, program.timezone)
    if data.until < today:
        raise ValidationFailed("until", "is in the past")
    status = await _ensure_status(session, program, ladder, member)
    current = int(status["rank"])
    values: dict[str, Any] = {
        "guaranteed_rank": rank,
        "guaranteed_until": data.until,
        "updated_at": now,
    }
    if rank > current:
        values.update(rank=rank, grace_until=None, grace_rank=None)
    elif status["grace_rank"] is not None and rank >= current:
        values.update(grace_until=None, grace_rank=None)
    await session.execute(update(_status).where(_status.c.member_id == member.id).values(values))
    if rank > current:
        await _change(
            session,
            program,
            ladder,
            member_id=member.id,
            public_id=member.public_id,
            old=current,
            new=rank,
            reason="guarantee",
            metric_value=None,
            now=now,
            extra={"until": data.until.isoformat()},
        )
    return await progress(session, program, member)
