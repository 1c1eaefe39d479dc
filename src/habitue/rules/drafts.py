"""Rule drafts: a rule (new, or the next version of a live one) saved without applying.

A draft lives in `rule_drafts`, never in `rules`, so the rule set events read does not see it.
It can be tested on one event (the quote's own `decide`, with the draft swapped in for the live
version), backtested on the program's past events (`analytics.backtest`, replayed with the live
rules and with the draft), and published: it then becomes the rule's next version through
`rules.service` (checked again, with a version-history entry and its actor) and is removed.
Services flush, never commit: the caller's unit of work does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import backtest
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.db import dialect_name, table_of
from habitue.errors import Conflict, NotFound, ValidationFailed
from habitue.events import service as events_service
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import EventCreate
from habitue.programs.service import ProgramInfo
from habitue.rules import service as rules_service
from habitue.rules.compile import CompiledRule, RuleVersion, compile_rule, compile_rules
from habitue.rules.errors import InvalidRule, RuleValidationError
from habitue.rules.model import RuleSpec
from habitue.rules.models import RuleDraft, RuleVersionRow
from habitue.rules.schemas import (
    BacktestCreate,
    BacktestTotals,
    DraftBacktestRead,
    DraftRead,
    DraftTestRead,
    RuleRead,
)

_drafts = table_of(RuleDraft)
_versions = table_of(RuleVersionRow)

BACKTEST_DAYS = 30
"""The default window of a backtest: the 30 days up to now."""
MAX_BACKTEST_DAYS = 366


class DraftNotFound(NotFound):
    """No draft of that rule code in the program."""


class DraftOutdated(Conflict):
    """The live rule changed since the draft was written: save the draft again to publish."""

    type = "draft-outdated"


async def _draft(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        await session.execute(
            select(_drafts).where(_drafts.c.program_id == program.id, _drafts.c.code == code)
        )
    ).first()
    if row is None:
        raise DraftNotFound(f"no draft of rule {code!r}")
    return row


async def _live_spec(session: AsyncSession, rule: tuple[int, int] | None) -> dict[str, Any]:
    if rule is None:
        return {}
    spec = (
        await session.execute(
            select(_versions.c.spec).where(
                _versions.c.rule_id == rule[0], _versions.c.version == rule[1]
            )
        )
    ).scalar_one()
    return dict(spec)


async def _read(session: AsyncSession, program: ProgramInfo, row: Any) -> DraftRead:
    live = await rules_service.live_version(session, program, row.code)
    before = await _live_spec(session, live)
    spec = dict(row.spec)
    changed = sorted(k for k in set(before) | set(spec) if before.get(k) != spec.get(k))
    live_version = None if live is None else live[1]
    return DraftRead(
        code=row.code,
        spec=spec,
        base_version=row.base_version,
        live_version=live_version,
        outdated=row.base_version != live_version,
        changed=changed,
        actor=row.actor,
        created_at=clock.as_utc(row.created_at),
        updated_at=clock.as_utc(row.updated_at),
    )


async def put_draft(
    session: AsyncSession,
    program: ProgramInfo,
    code: str,
    data: Mapping[str, Any],
    *,
    actor: str,
) -> DraftRead:
    """Save the draft of rule `code` (replacing its earlier draft), checked as a rule is on
    save; raises `InvalidRule` (422) and saves nothing when it could not be published."""
    body = dict(data)
    if body.setdefault("code", code) != code:
        raise InvalidRule.of(RuleValidationError("code", "must be the code in the path"))
    spec = await rules_service.checked_spec(session, program, body)
    live = await rules_service.live_version(session, program, code)
    values = {
        "spec": rules_service.dump_spec(spec),
        "base_version": None if live is None else live[1],
        "actor": actor,
        "updated_at": clock.now(),
    }
    row = {"program_id": program.id, "code": code, "created_at": values["updated_at"], **values}
    # One statement either way, so two people saving the same draft at once never collide.
    upsert = (
        postgresql.insert(_drafts)
        if dialect_name(session) == "postgresql"
        else sqlite.insert(_drafts)
    ).values(row)
    await session.execute(
        upsert.on_conflict_do_update(index_elements=["program_id", "code"], set_=values)
    )
    return await _read(session, program, await _draft(session, program, code))


async def get_draft(session: AsyncSession, program: ProgramInfo, code: str) -> DraftRead:
    """The draft of rule `code`, with what it changes in the live rule."""
    return await _read(session, program, await _draft(session, program, code))


async def list_drafts(session: AsyncSession, program: ProgramInfo) -> list[DraftRead]:
    """The program's drafts, by code."""
    rows = (
        await session.execute(
            select(_drafts).where(_drafts.c.program_id == program.id).order_by(_drafts.c.code)
        )
    ).all()
    return [await _read(session, program, row) for row in rows]


async def delete_draft(session: AsyncSession, program: ProgramInfo, code: str) -> None:
    """Discard the draft of rule `code` (the live rule is untouched)."""
    await _draft(session, program, code)
    await session.execute(
        delete(_drafts).where(_drafts.c.program_id == program.id, _drafts.c.code == code)
    )


def _stored_spec(row: Any) -> RuleSpec:
    """The draft's spec, compiled by today's engine (422 when it no longer compiles)."""
    try:
        spec = RuleSpec.model_validate(row.spec)
        compile_rule(spec)
    except RuleValidationError as exc:
        raise InvalidRule.of(exc) from exc
    except ValueError as exc:  # pydantic's ValidationError: a spec of another shape
        raise InvalidRule.of(RuleValidationError("spec", str(exc).splitlines()[0])) from exc
    return spec


def with_draft(
    live: Sequence[CompiledRule], spec: RuleSpec, rule: tuple[int, int] | None
) -> list[CompiledRule]:
    """The live rules with the draft in place of its rule's live version (or added): compiled
    as its next version, under the live rule's id, so its caps and random draws are those the
    published version will have."""
    rule_id, version = (None, 1) if rule is None else (rule[0], rule[1] + 1)
    draft = compile_rule(spec, rule_id=rule_id, version=version)
    return [r for r in live if r.code != spec.code] + [draft]


async def rules_with_draft(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, code: str
) -> list[CompiledRule]:
    """The program's live rules with the draft of `code` in place (`with_draft`); raises
    `DraftNotFound`, or `InvalidRule` when the draft no longer compiles."""
    spec = _stored_spec(await _draft(session, program, code))
    live_rules = await pipeline.rules(session, program)
    rule = await rules_service.live_version(session, program, code)
    return with_draft(live_rules, spec, rule)


async def try_draft(
    session: AsyncSession, pipeline: Pipeline, program: ProgramInfo, code: str, body: EventCreate
) -> DraftTestRead:
    """What `body` would earn with the live rules and with the draft: the quote's own path
    twice (`events.service.quote`). Writes nothing."""
    rules = await rules_with_draft(session, pipeline, program, code)
    if body.occurred_at is None:  # both answers for one instant
        body = body.model_copy(update={"occurred_at": clock.now()})
    live = await events_service.quote(session, pipeline, program, body)
    draft = await events_service.quote(session, pipeline, program, body, rules=rules)
    return DraftTestRead(
        live=live.model_dump(mode="json"),
        draft=draft.model_dump(mode="json"),
        difference=draft.points - live.points,
    )


def _window(body: BacktestCreate) -> tuple[datetime, datetime]:
    until = (body.until or clock.now()).astimezone(UTC)
    since = (body.since or until - timedelta(days=BACKTEST_DAYS)).astimezone(UTC)
    if since >= until:
        raise ValidationFailed("until", "must be after since")
    if until - since > timedelta(days=MAX_BACKTEST_DAYS):
        raise ValidationFailed("since", f"a window is at most {MAX_BACKTEST_DAYS} days")
    return since, until


def _totals(result: backtest.BacktestResult) -> BacktestTotals:
    return BacktestTotals(
        points_issued=result.points_issued,
        points_taken_back=result.points_taken_back,
        net_points=result.net_points,
        by_rule=dict(sorted(result.by_rule.items())),
        grants_by_rule=result.grants_by_rule,
        rule_errors=result.rule_errors,
    )


async def backtest_draft(
    session: AsyncSession, program: ProgramInfo, code: str, body: BacktestCreate
) -> DraftBacktestRead:
    """The program's events of a window (default: the last 30 days) replayed through
    `decide` with the live rules and with the draft in place; points before and after, and
    the members whose points or grants differ. Members' counters are replayed from zero at the
    window's start. Writes nothing."""
    since, until = _window(body)
    spec = _stored_spec(await _draft(session, program, code))
    live = await rules_service.live_rule_versions(session, program)
    rule = await rules_service.live_version(session, program, code)
    before_rules = compile_rules(live)
    after_rules = compile_rules(
        [rv for rv in live if rv.spec.code != code]
        + [RuleVersion(spec, rule_id=None if rule is None else rule[0],
                       version=1 if rule is None else rule[1] + 1)]
    )  # fmt: skip
    settings = program.snapshot()

    def replay(conn: Connection) -> tuple[Any, Any, bool]:
        try:
            ladder = backtest.store_ladder(conn, program.id)
        except InvalidAnalyticsInput:
            ladder = None  # a ladder the replay cannot follow: members are decided untiered
        txs = list(backtest.read_store(conn, program.id, since=since, until=until))
        before, after = (
            backtest.run_backtest(txs, program=settings, rules=rules, ladder=ladder, counters=True)
            for rules in (before_rules, after_rules)
        )
        return before, after, ladder is not None

    before, after, tiered = await session.run_sync(lambda s: replay(s.connection()))
    members = {*before.member_points, *after.member_points, *before.member_grants,
               *after.member_grants}  # fmt: skip
    affected = sum(
        1
        for m in members
        if before.member_points.get(m, 0) != after.member_points.get(m, 0)
        or before.member_grants.get(m, 0) != after.member_grants.get(m, 0)
    )
    return DraftBacktestRead(
        since=since,
        until=until,
        events=before.transactions,
        members=before.members,
        before=_totals(before),
        after=_totals(after),
        difference=after.net_points - before.net_points,
        members_affected=affected,
        tiers_replayed=tiered,
    )


async def publish_draft(
    session: AsyncSession, program: ProgramInfo, code: str, *, actor: str
) -> RuleRead:
    """Make the draft the rule's live version (a new version, or version 1 of a new rule, in
    the history with `actor`) and remove it. Refused with `InvalidRule` (422) when the draft
    no longer passes the rule checks, and `DraftOutdated` (409) when the live rule changed
    since the draft was saved; nothing is written then."""
    row = await _draft(session, program, code)
    _stored_spec(row)
    live = await rules_service.live_version(session, program, code)
    if row.base_version != (None if live is None else live[1]):
        raise DraftOutdated(
            f"rule {code!r} changed since this draft was saved (now version "
            f"{None if live is None else live[1]}); save the draft again, then publish"
        )
    if live is None:
        out = await rules_service.create_rule(session, program, row.spec, actor=actor)
    else:
        out = await rules_service.update_rule(session, program, code, row.spec, actor=actor)
    await session.execute(delete(_drafts).where(_drafts.c.id == row.id))
    return out
