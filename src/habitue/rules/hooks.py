"""Registers the rules room on the event path (imported once through `habitue.rooms`).

- the rule loader gives `decide` the program's compiled rules (cached by version stamp);
- the usage loader gives it the member's caps usage and the rules' budgets used;
- the enricher gives the member's counters as of just before the event (read, and locked,
  with the member: an entry of `members.service.event_extras`);
- after an event, its grants are added to caps and budgets and the event to the counters;
- after a refund, the refunded amount is taken off the spend counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events import hooks
from habitue.members import service as members_service
from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules import service as rules_service
from habitue.rules.compile import CompiledRule
from habitue.rules.counters import CounterEvent
from habitue.rules.types import MemberSnapshot, RuleUsage

COUNTERS = "rules_counters"


async def load_rules(session: AsyncSession, program: ProgramInfo) -> Sequence[CompiledRule]:
    """The program's active compiled rules."""
    return (await rules_service.rule_set(session, program)).rules


async def load_usage(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    rules: Sequence[Any],
    at: datetime,
) -> RuleUsage | None:
    """Caps and budgets usage of the rules for the periods containing the event."""
    compiled = [r for r in rules if isinstance(r, CompiledRule)]
    return await rules_service.load_usage(session, program, member.id, compiled, at)


async def enrich(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    snap: MemberSnapshot,
    now: datetime,
) -> MemberSnapshot:
    """Give the rules the member's counters (events already counted, as of `now`)."""
    if COUNTERS in member.extras:
        rules_service.seed_counter_state(session, member.id, member.extras[COUNTERS])
    counters = await rules_service.member_counters(session, program, member.id, now)
    return replace(snap, counters={**snap.counters, **counters})


async def after_event(session: AsyncSession, applied: hooks.EventApplied) -> list[dict[str, Any]]:
    """Record the decision's grants against caps and budgets, and count the event."""
    event = applied.event
    await rules_service.record_usage(
        session, applied.program, applied.member.id, applied.decision, event.occurred_at
    )
    categories = tuple(line.category for line in event.lines if line.category)
    await rules_service.count_event(
        session,
        applied.program,
        applied.member.id,
        CounterEvent(event.type, event.occurred_at, event.total_minor, categories),
    )
    return []


async def after_refund(session: AsyncSession, applied: hooks.RefundApplied) -> list[dict[str, Any]]:
    """Take the refunded amount off the member's spend counters (on the refund's day)."""
    await rules_service.count_event(
        session,
        applied.program,
        applied.member.id,
        CounterEvent("refund", applied.now, applied.amount_minor),
    )
    return []


if load_rules not in hooks.rule_loaders:
    hooks.rule_loaders.append(load_rules)
    hooks.usage_loaders.append(load_usage)
    hooks.enrichers.append(enrich)
    hooks.after_event.append(after_event)
    hooks.after_refund.append(after_refund)
members_service.event_extras.setdefault(COUNTERS, rules_service.counters_column)
