"""Rules in the database: versioned CRUD, the cached compiled rule set, caps and budget usage,
and members' incremental counters. Services flush, never commit: the caller's unit of work does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Part, dialect_name, table_of
from habitue.programs.service import ProgramInfo
from habitue.rewards.catalogue import COUPON_KINDS
from habitue.rewards.models import Reward
from habitue.rules.compile import (
    CompiledRule,
    RuleSet,
    RuleVersion,
    expected_cost,
    rule_cache,
    rule_set_warnings,
    validate_rule,
)
from habitue.rules.counters import CounterEvent, CounterState, bump, counters_at
from habitue.rules.errors import (
    BudgetExhausted,
    InvalidRule,
    RuleExists,
    RuleNotFound,
    RuleValidationError,
)
from habitue.rules.model import RuleSpec, parse_rule
from habitue.rules.models import MemberCounters, Rule, RuleUsageRow, RuleVersionRow
from habitue.rules.schemas import RulePage, RuleRead, RuleVersionRead
from habitue.rules.types import Decision, Period, RuleTally, RuleUsage, Tally
from habitue.rules.usage import period_keys, usage_increments

_rules = table_of(Rule)
_versions = table_of(RuleVersionRow)
_usage = table_of(RuleUsageRow)
_counters = table_of(MemberCounters)
_rewards = table_of(Reward)

BUDGET_PERIOD = "budget"
_SESSION_KEY = "habitue.rules.rule_sets"


# --- CRUD -------------------------------------------------------------------------------------


def _spec(data: Mapping[str, Any]) -> RuleSpec:
    """Parse and validate a rule body; any error is a 422 naming the field."""
    try:
        spec = parse_rule(data)
        validate_rule(spec)
    except RuleValidationError as exc:
        raise InvalidRule.of(exc) from exc
    return spec


def _dump(spec: RuleSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


async def checked_spec(
    session: AsyncSession, program: ProgramInfo, data: Mapping[str, Any]
) -> RuleSpec:
    """A rule body checked as `create_rule` checks it (shape, CEL, the coupon's reward);
    raises `InvalidRule` naming the field. Saves nothing."""
    spec = _spec(data)
    await _check_reward(session, program, spec)
    return spec


def dump_spec(spec: RuleSpec) -> dict[str, Any]:
    """A spec as stored and answered: every field, its defaults filled in."""
    return _dump(spec)


async def live_version(
    session: AsyncSession, program: ProgramInfo, code: str
) -> tuple[int, int] | None:
    """The live (not deleted) rule `code`'s (id, current version), or None."""
    row = await _row(session, program, code)
    return None if row is None or not row.active else (int(row.id), int(row.current_version))


def _forget(session: AsyncSession, program_id: int) -> None:
    session.info.get(_SESSION_KEY, {}).pop(program_id, None)
    forget_stamp(program_id)


async def _row(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    return (
        await session.execute(
            select(_rules).where(_rules.c.program_id == program.id, _rules.c.code == code)
        )
    ).first()


def _live_specs_query(program_id: int) -> Any:
    return (
        select(_rules, _versions.c.spec)
        .join(
            _versions,
            and_(
                _versions.c.rule_id == _rules.c.id,
                _versions.c.version == _rules.c.current_version,
            ),
        )
        .where(_rules.c.program_id == program_id, _rules.c.active.is_(True))
        .order_by(_rules.c.code)
    )


async def _live_specs(session: AsyncSession, program: ProgramInfo) -> list[tuple[Any, RuleSpec]]:
    rows = (await session.execute(_live_specs_query(program.id))).all()
    return [(r, RuleSpec.model_validate(r.spec)) for r in rows]


async def live_rule_versions(session: AsyncSession, program: ProgramInfo) -> list[RuleVersion]:
    """The program's live rules with their ids and versions (read now, not from the cache)."""
    return [
        RuleVersion(spec, rule_id=row.id, version=row.current_version)
        for row, spec in await _live_specs(session, program)
    ]


def live_rule_versions_sync(conn: Connection, program_id: int) -> list[RuleVersion]:
    """The program's live rules with their ids and versions, for batch paths (sync API)."""
    return [
        RuleVersion(RuleSpec.model_validate(r.spec), rule_id=r.id, version=r.current_version)
        for r in conn.execute(_live_specs_query(program_id)).all()
    ]


async def rules_referencing_tier(
    session: AsyncSession, program: ProgramInfo, code: str
) -> list[str]:
    """Codes of the program's active rules whose `audience.tiers` lists the tier `code`
    (deleted, switched-off and expired rules do not count), sorted."""
    now = clock.now()
    out: list[str] = []
    for row, spec in await _live_specs(session, program):
        if not spec.active or spec.audience is None or code not in spec.audience.tiers:
            continue
        if spec.valid_to is not None and spec.valid_to <= now:
            continue
        out.append(row.code)
    return out


async def rules_naming_reward(session: AsyncSession, program: ProgramInfo, code: str) -> list[str]:
    """Codes of the program's active rules whose `coupon` effect names the reward `code`
    (deleted, switched-off and expired rules do not count), sorted."""
    now = clock.now()
    return [
        row.code
        for row, spec in await _live_specs(session, program)
        if spec.effect.kind == "coupon"
        and spec.effect.reward_code == code
        and spec.active
        and (spec.valid_to is None or spec.valid_to > now)
    ]


async def _check_reward(session: AsyncSession, program: ProgramInfo, spec: RuleSpec) -> None:
    """A `coupon` rule names an active reward of the catalogue that has coupons (422)."""
    if spec.effect.kind != "coupon" or not spec.active:
        return
    row = (
        await session.execute(
            select(_rewards.c.kind, _rewards.c.active).where(
                _rewards.c.program_id == program.id, _rewards.c.code == spec.effect.reward_code
            )
        )
    ).first()
    if row is None:
        problem = "names no reward of the catalogue"
    elif not row.active:
        problem = "names an inactive reward"
    elif row.kind not in COUPON_KINDS:
        problem = f"names a {row.kind} reward, which has no coupons"
    else:
        return
    raise InvalidRule.of(RuleValidationError("effect.reward_code", problem))


async def _warnings_for(session: AsyncSession, program: ProgramInfo, spec: RuleSpec) -> list[str]:
    """Warnings of the rule set that involve this rule (exclusive rules sharing a priority)."""
    others = [s for _, s in await _live_specs(session, program) if s.code != spec.code]
    same = [s for s in others if (s.event_type, s.priority) == (spec.event_type, spec.priority)]
    return rule_set_warnings([spec, *same]) if spec.exclusive else []


def _read(row: Any, spec: RuleSpec, warnings: list[str] | None = None) -> RuleRead:
    cost = expected_cost(spec)
    return RuleRead(
        id=row.id,
        code=row.code,
        name=spec.name,
        event_type=spec.event_type,
        version=row.current_version,
        active=row.active,
        spec=_dump(spec),
        expected_cost_per_event=None if cost is None else str(cost),
        warnings=warnings or [],
        created_at=clock.as_utc(row.created_at),
        updated_at=clock.as_utc(row.updated_at),
        deleted_at=None if row.deleted_at is None else clock.as_utc(row.deleted_at),
    )


async def _add_version(
    session: AsyncSession, rule_id: int, version: int, spec: RuleSpec, actor: str, now: datetime
) -> None:
    await session.execute(
        insert(_versions).values(
            rule_id=rule_id, version=version, spec=_dump(spec), created_at=now, actor=actor
        )
    )
    if spec.budget is not None:
        await _ensure_budget_row(session, rule_id)


async def _ensure_budget_row(session: AsyncSession, rule_id: int) -> None:
    found = (
        await session.execute(
            select(_usage.c.id).where(
                _usage.c.rule_id == rule_id,
                _usage.c.member_id.is_(None),
                _usage.c.period == BUDGET_PERIOD,
            )
        )
    ).first()
    if found is None:
        program_id = (
            await session.execute(select(_rules.c.program_id).where(_rules.c.id == rule_id))
        ).scalar_one()
        await session.execute(
            insert(_usage).values(
                program_id=program_id,
                member_id=None,
                rule_id=rule_id,
                period=BUDGET_PERIOD,
                points=0,
                count=0,
            )
        )


async def create_rule(
    session: AsyncSession, program: ProgramInfo, data: Mapping[str, Any], *, actor: str
) -> RuleRead:
    """Save a new rule (version 1), or revive a deleted code as its next version.

    Raises `InvalidRule` (nothing saved) or `RuleExists`; the response carries warnings.
    """
    spec = _spec(data)
    await _check_reward(session, program, spec)
    now = clock.now()
    existing = await _row(session, program, spec.code)
    if existing is not None and existing.active:
        raise RuleExists(
            f"rule {spec.code!r} exists; PATCH it to make a new version",
            errors=[{"field": "code", "message": "is taken"}],
        )
    if existing is None:
        rule_id = (
            await session.execute(
                insert(_rules)
                .values(
                    program_id=program.id,
                    code=spec.code,
                    current_version=1,
                    active=True,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                    deleted_at=None,
                )
                .returning(_rules.c.id)
            )
        ).scalar_one()
        version = 1
    else:
        rule_id, version = existing.id, existing.current_version + 1
        await session.execute(
            update(_rules)
            .where(_rules.c.id == rule_id)
            .values(
                current_version=version,
                active=True,
                deleted_at=None,
                updated_at=now,
                revision=_rules.c.revision + 1,
            )
        )
    await _add_version(session, rule_id, version, spec, actor, now)
    _forget(session, program.id)
    row = await _row(session, program, spec.code)
    return _read(row, spec, await _warnings_for(session, program, spec))


async def update_rule(
    session: AsyncSession,
    program: ProgramInfo,
    code: str,
    patch: Mapping[str, Any],
    *,
    actor: str,
) -> RuleRead:
    """Change a rule: the given top-level fields replace the current ones in a new version."""
    row = await _row(session, program, code)
    if row is None or not row.active:
        raise RuleNotFound(f"no rule {code!r}")
    if "code" in patch and patch["code"] != code:
        raise InvalidRule.of(RuleValidationError("code", "cannot change; create a new rule"))
    current = (
        await session.execute(
            select(_versions.c.spec).where(
                _versions.c.rule_id == row.id, _versions.c.version == row.current_version
            )
        )
    ).scalar_one()
    spec = _spec({**current, **patch})
    await _check_reward(session, program, spec)
    now = clock.now()
    version = row.current_version + 1
    await session.execute(
        update(_rules)
        .where(_rules.c.id == row.id)
        .values(current_version=version, updated_at=now, revision=_rules.c.revision + 1)
    )
    await _add_version(session, row.id, version, spec, actor, now)
    _forget(session, program.id)
    row = await _row(session, program, code)
    return _read(row, spec, await _warnings_for(session, program, spec))


async def delete_rule(session: AsyncSession, program: ProgramInfo, code: str) -> None:
    """Deactivate a rule (soft): it stops applying; its versions and postings stay."""
    row = await _row(session, program, code)
    if row is None or not row.active:
        raise RuleNotFound(f"no rule {code!r}")
    now = clock.now()
    await session.execute(
        update(_rules)
        .where(_rules.c.id == row.id)
        .values(active=False, deleted_at=now, updated_at=now, revision=_rules.c.revision + 1)
    )
    _forget(session, program.id)


async def get_rule(session: AsyncSession, program: ProgramInfo, code: str) -> RuleRead:
    """A rule with its version history (deleted rules too, with `active` false)."""
    row = await _row(session, program, code)
    if row is None:
        raise RuleNotFound(f"no rule {code!r}")
    history = (
        await session.execute(
            select(_versions).where(_versions.c.rule_id == row.id).order_by(_versions.c.version)
        )
    ).all()
    versions = [
        RuleVersionRead(
            version=v.version, created_at=clock.as_utc(v.created_at), actor=v.actor, spec=v.spec
        )
        for v in history
    ]
    spec = RuleSpec.model_validate(history[-1].spec)
    warnings = await _warnings_for(session, program, spec) if row.active else []
    out = _read(row, spec, warnings)
    out.versions = versions
    return out


async def list_rules(session: AsyncSession, program: ProgramInfo) -> RulePage:
    """The program's live rules by code, with the warnings of the whole set."""
    live = await _live_specs(session, program)
    return RulePage(
        items=[_read(row, spec) for row, spec in live],
        warnings=rule_set_warnings([s for _, s in live]),
    )


# --- The compiled rule set --------------------------------------------------------------------


class _Miss(Exception):
    """The cache has no rule set for this stamp."""


def _raise_miss() -> list[RuleVersion]:
    raise _Miss


# Other processes see a rule change within STAMP_TTL seconds; this one at once.
STAMP_TTL = 2.0
_stamps: dict[int, tuple[float, tuple[int, int]]] = {}


def forget_stamp(program_id: int | None = None) -> None:
    """Drop the cached rules version stamp (after a rule change, and between tests)."""
    if program_id is None:
        _stamps.clear()
    else:
        _stamps.pop(program_id, None)


async def rule_set(session: AsyncSession, program: ProgramInfo) -> RuleSet:
    """The program's compiled rules, from the process cache when its version stamp is current.

    The stamp (count and sum of the rules' revisions) changes with every create, edit and
    delete, so one cheap aggregate per event keeps every process in step.
    """
    hit = _stamps.get(program.id)
    if hit is not None and hit[0] > time.monotonic():
        stamp = hit[1]
    else:
        stamp_row = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(_rules.c.revision), 0)).where(
                    _rules.c.program_id == program.id
                )
            )
        ).one()
        stamp = (int(stamp_row[0]), int(stamp_row[1]))
        _stamps[program.id] = (time.monotonic() + STAMP_TTL, stamp)
    try:
        rules = rule_cache.get(program.id, stamp, _raise_miss)
    except _Miss:
        versions = [
            RuleVersion(spec, rule_id=row.id, version=row.current_version)
            for row, spec in await _live_specs(session, program)
        ]
        rules = rule_cache.get(program.id, stamp, lambda: versions)
    session.info.setdefault(_SESSION_KEY, {})[program.id] = rules
    return rules


async def _rules_in_session(session: AsyncSession, program: ProgramInfo) -> RuleSet:
    cached: RuleSet | None = session.info.get(_SESSION_KEY, {}).get(program.id)
    return cached if cached is not None else await rule_set(session, program)


# --- Caps and budgets -------------------------------------------------------------------------


def period_key(period: Period, key: str) -> str:
    """The stored key of a period: `day:2026-11-24`, `week:2026-W48`, …, `lifetime`."""
    return "lifetime" if period == "lifetime" else f"{period}:{key}"


async def load_usage(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    rules: Sequence[CompiledRule],
    at: datetime,
) -> RuleUsage | None:
    """The member's caps usage for the periods containing `at`, and the rules' budgets used."""
    capped = {r.rule_id: r for r in rules if r.spec.caps and r.rule_id is not None}
    budgeted = {r.rule_id: r for r in rules if r.spec.budget is not None and r.rule_id is not None}
    if not capped and not budgeted:
        return None
    keys = period_keys(at, program.timezone)
    by_key = {period_key(p, k): p for p, k in keys.items()}
    rows = (
        await session.execute(
            select(_usage).where(
                or_(
                    and_(
                        _usage.c.member_id == member_id,
                        _usage.c.rule_id.in_(list(capped)),
                        _usage.c.period.in_(list(by_key)),
                    ),
                    and_(
                        _usage.c.member_id.is_(None),
                        _usage.c.rule_id.in_(list(budgeted)),
                        _usage.c.period == BUDGET_PERIOD,
                    ),
                )
            )
        )
    ).all()
    periods: dict[str, dict[Period, Tally]] = {}
    budget: dict[str, int] = {}
    for row in rows:
        rule = capped.get(row.rule_id) or budgeted[row.rule_id]
        if row.member_id is None:
            budget[rule.code] = int(row.points)
        else:
            periods.setdefault(rule.code, {})[by_key[row.period]] = Tally(
                int(row.points), int(row._mapping["count"])
            )
    codes = set(periods) | set(budget)
    return RuleUsage({c: RuleTally(periods.get(c, {}), budget.get(c, 0)) for c in codes})


async def _bump_period(
    session: AsyncSession, program: ProgramInfo, member_id: int, rule_id: int, key: str, inc: Tally
) -> None:
    values = {
        "program_id": program.id,
        "member_id": member_id,
        "rule_id": rule_id,
        "period": key,
        "points": inc.points,
        "count": inc.count,
    }
    elements = ["member_id", "rule_id", "period"]
    stmt: Any
    if dialect_name(session) == "postgresql":
        pg = postgresql.insert(_usage).values(values)
        stmt = pg.on_conflict_do_update(
            index_elements=elements,
            set_={"points": _usage.c.points + inc.points, "count": _usage.c.count + inc.count},
        )
    else:
        lite = sqlite.insert(_usage).values(values)
        stmt = lite.on_conflict_do_update(
            index_elements=elements,
            set_={"points": _usage.c.points + inc.points, "count": _usage.c.count + inc.count},
        )
    await session.execute(stmt)


async def record_usage(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    decision: Decision,
    at: datetime,
) -> None:
    """Add a decision's grants to the caps and budgets of its rules, in the event transaction.

    Only the periods a rule caps are tracked (from when the cap is set). A budget is taken by
    a conditional update: when a concurrent event used it first, `BudgetExhausted` rolls this
    event back so that a retry decides again with the budget left.
    """
    increments = usage_increments(decision)
    if not increments:
        return
    rules = {r.code: r for r in (await _rules_in_session(session, program)).rules}
    keys = period_keys(at, program.timezone)
    for code, inc in increments.items():
        rule = rules.get(code)
        if rule is None or rule.rule_id is None:
            continue
        for period in {cap.period for cap in rule.spec.caps}:
            await _bump_period(
                session, program, member_id, rule.rule_id, period_key(period, keys[period]), inc
            )
        budget = rule.spec.budget
        if budget is not None and inc.points > 0:
            done = await session.execute(
                update(_usage)
                .where(
                    _usage.c.rule_id == rule.rule_id,
                    _usage.c.member_id.is_(None),
                    _usage.c.period == BUDGET_PERIOD,
                    _usage.c.points + inc.points <= budget,
                )
                .values(points=_usage.c.points + inc.points, count=_usage.c.count + inc.count)
            )
            if getattr(done, "rowcount", 0) != 1:
                raise BudgetExhausted(f"rule {code!r}: its budget was used by another event; retry")


# --- Counters ---------------------------------------------------------------------------------


def state_to_json(state: CounterState) -> dict[str, Any]:
    """A `CounterState` as JSON (year keys as strings)."""
    return {
        "days": state.days,
        "years": {str(y): v for y, v in state.years.items()},
        "lifetime": state.lifetime,
    }


def state_from_json(data: Mapping[str, Any]) -> CounterState:
    """The `CounterState` of its JSON form."""
    return CounterState(
        days={k: dict(v) for k, v in data.get("days", {}).items()},
        years={int(y): dict(v) for y, v in data.get("years", {}).items()},
        lifetime=dict(data.get("lifetime", {})),
    )


_COUNTERS_KEY = "habitue.rules.counters"
_COUNTERS_READ = select(_counters.c.state).where(_counters.c.member_id == bindparam("cnt_member"))
_COUNTERS_LOCK = _COUNTERS_READ.with_for_update()


def counters_column(member_id: ColumnElement[int]) -> ColumnElement[Any]:
    """The member's counter state as a column of the member's query, locked on PostgreSQL.

    Read with the member on the event path (`rules.hooks.COUNTERS`, a pipeline's `member_reads`),
    and `seed_counter_state` hands it to `counter_state` (saves a statement per event).
    """
    return (
        select(_counters.c.state)
        .where(_counters.c.member_id == member_id)
        .with_for_update()
        .scalar_subquery()
    )


def seed_counter_state(session: AsyncSession, member_id: int, raw: Any) -> None:
    """Keep a counter state read with the member (unless this unit of work has a newer one)."""
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id not in cache:
        cache[member_id] = None if raw is None else state_from_json(raw)


# The same write, as a part of the event's statement on PostgreSQL (`db.compose`).
_COUNTERS_WRITE_SQL = """
    UPDATE member_counters SET state = CAST(:state AS json), updated_at = :at
    WHERE member_id = :member
"""
_COUNTERS_WRITE = (
    update(_counters)
    .where(_counters.c.member_id == bindparam("cnt_member"))
    .values(state=bindparam("cnt_state"), updated_at=bindparam("cnt_at"))
)


def new_counters_row(program_id: int, member_id: int, now: datetime) -> dict[str, Any]:
    """A new member's counters row (nothing counted yet), made with the member: the event path
    then always finds a row to lock, and a member's first purchase inserts nothing."""
    return {
        "member_id": member_id,
        "program_id": program_id,
        "state": state_to_json(CounterState()),
        "updated_at": now,
    }


async def open_counters(
    session: AsyncSession, program_id: int, member_id: int, now: datetime
) -> None:
    """Make a new member's counters row (enrolment; the import makes its rows in bulk)."""
    await session.execute(insert(_counters).values(new_counters_row(program_id, member_id, now)))


async def counter_state(session: AsyncSession, member_id: int) -> CounterState:
    """A member's counter state (empty when nothing was counted yet).

    Read once per unit of work and kept on the session: the event path reads it before
    `decide` and writes it after. On PostgreSQL the row is locked on that first read, so two
    events of one member never count from the same state.
    """
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id in cache:
        return cache[member_id] or CounterState()
    query = _COUNTERS_LOCK if dialect_name(session) == "postgresql" else _COUNTERS_READ
    raw = (await session.execute(query, {"cnt_member": member_id})).scalar_one_or_none()
    cache[member_id] = None if raw is None else state_from_json(raw)
    return cache[member_id] or CounterState()


async def member_counters(
    session: AsyncSession, program: ProgramInfo, member_id: int, as_of: datetime
) -> dict[str, int]:
    """The member's counters as of a time (O(1): per-day buckets, not the event history)."""
    return counters_at(await counter_state(session, member_id), as_of, program.timezone)


async def count_event(
    session: AsyncSession, program: ProgramInfo, member_id: int, event: CounterEvent
) -> Part | None:
    """Count one event into the member's counters, in the event transaction.

    On PostgreSQL the update of a member's existing counters is returned, not run: the caller
    (the event pipeline) writes it as a part of the event's statement (saves a round trip).
    """
    probe = CounterState()
    if bump(probe, event, program.timezone) is probe:
        return None  # an event type no counter reads
    now = clock.now()
    cache: dict[int, CounterState | None] = session.info.setdefault(_COUNTERS_KEY, {})
    if member_id not in cache:
        await counter_state(session, member_id)
    known = cache[member_id]
    state = bump(CounterState() if known is None else known, event, program.timezone)
    if known is None:
        # The member's first counted event: one statement, no savepoint. When another
        # transaction counted a first event of the member meanwhile, nothing is inserted (once
        # that transaction has ended): start over from its row, now read locked.
        values = {
            "member_id": member_id,
            "program_id": program.id,
            "state": state_to_json(state),
            "updated_at": now,
        }
        dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
        first = (
            dialect.insert(_counters)
            .values(values)
            .on_conflict_do_nothing(index_elements=[_counters.c.member_id])
            .returning(_counters.c.member_id)
        )
        if (await session.execute(first)).scalar_one_or_none() is None:
            cache.pop(member_id, None)
            return await count_event(session, program, member_id, event)
    elif dialect_name(session) == "postgresql":
        # The row was locked with the member, and the unit reads the state from its cache.
        cache[member_id] = state
        params = {"member": member_id, "state": json.dumps(state_to_json(state)), "at": now}
        return Part("counters", _COUNTERS_WRITE_SQL, params, "counters")
    else:
        await session.execute(
            _COUNTERS_WRITE,
            {"cnt_member": member_id, "cnt_state": state_to_json(state), "cnt_at": now},
        )
    cache[member_id] = state
    return None
