"""Rules in the database: versioned CRUD and the cached compiled rule set (caps and budgets in
`usage_store`, members' counters in `counter_store`, their names re-exported here). Services
flush, never commit: the caller's unit of work does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.programs.service import ProgramInfo
from habitue.rewards.catalogue import COUPON_KINDS
from habitue.rewards.models import Reward
from habitue.rules import usage_store
from habitue.rules.compile import (
    RuleSet,
    RuleVersion,
    expected_cost,
    rule_cache,
    rule_set_warnings,
    validate_rule,
)

# Members' counters, and caps and budgets, live in their own modules; their names stay here.
from habitue.rules.counter_store import count_event as count_event
from habitue.rules.counter_store import counter_state as counter_state
from habitue.rules.counter_store import counters_column as counters_column
from habitue.rules.counter_store import member_counters as member_counters
from habitue.rules.counter_store import new_counters_row as new_counters_row
from habitue.rules.counter_store import open_counters as open_counters
from habitue.rules.counter_store import seed_counter_state as seed_counter_state
from habitue.rules.counter_store import state_from_json as state_from_json
from habitue.rules.counter_store import state_to_json as state_to_json
from habitue.rules.errors import (
    InvalidRule,
    RuleExists,
    RuleNotFound,
    RuleValidationError,
)
from habitue.rules.model import RuleSpec, parse_rule
from habitue.rules.models import Rule, RuleVersionRow
from habitue.rules.schemas import RulePage, RuleRead, RuleVersionRead
from habitue.rules.types import Decision
from habitue.rules.usage import usage_increments
from habitue.rules.usage_store import BUDGET_PERIOD as BUDGET_PERIOD
from habitue.rules.usage_store import load_usage as load_usage
from habitue.rules.usage_store import period_key as period_key

_rules = table_of(Rule)
_versions = table_of(RuleVersionRow)
_rewards = table_of(Reward)

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
        await usage_store.ensure_budget_row(session, rule_id)


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


async def record_usage(
    session: AsyncSession, program: ProgramInfo, member_id: int, decision: Decision, at: datetime
) -> None:
    """`usage_store.record_usage` with the program's compiled rules (read only when the
    decision granted something a cap or a budget may count)."""
    increments = usage_increments(decision)
    if not increments:
        return
    rules = (await _rules_in_session(session, program)).rules
    await usage_store.record_usage(session, program, member_id, increments, at, rules)
