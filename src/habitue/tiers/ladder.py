"""A program's tier ladder: read (cached), validated, set and changed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.members.models import Member
from habitue.messaging import outbox
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rules.service import rules_referencing_tier
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
from habitue.tiers.schemas import (
    LadderRead,
    LadderWrite,
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
