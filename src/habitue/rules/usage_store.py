"""Rules' caps and budgets in the database: the usage of the periods an event falls in, read
when a limited rule applies, and recorded with the event's grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import dialect_name, table_of
from habitue.programs.service import ProgramInfo
from habitue.rules.compile import (
    CompiledRule,
)
from habitue.rules.errors import (
    BudgetExhausted,
)
from habitue.rules.models import Rule, RuleUsageRow
from habitue.rules.types import Period, RuleTally, RuleUsage, Tally
from habitue.rules.usage import period_keys

_usage = table_of(RuleUsageRow)
_rules = table_of(Rule)

BUDGET_PERIOD = "budget"


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
    increments: Mapping[str, Tally],
    at: datetime,
    compiled: Sequence[CompiledRule],
) -> None:
    """Add a decision's grants (`rules.usage.usage_increments`, by rule code) to the caps and
    budgets of its rules (`compiled`: the program's), in the event transaction.

    Only the periods a rule caps are tracked (from when the cap is set). A budget is taken by
    a conditional update: when a concurrent event used it first, `BudgetExhausted` rolls this
    event back so that a retry decides again with the budget left.
    """
    rules = {r.code: r for r in compiled}
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


async def ensure_budget_row(session: AsyncSession, rule_id: int) -> None:
    """The budget's own usage row of a rule with a budget (made once)."""
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
