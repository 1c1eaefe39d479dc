"""The rules room's stages of the event pipeline (listed in `habitue.rooms`).

- the rule loader gives `decide` the program's compiled rules (cached by version stamp);
- the usage loader gives it the member's caps usage and the rules' budgets used;
- the enricher gives the member's counters as of just before the event (read, and locked,
  with the member: `COUNTERS`, one of the pipeline's `member_reads`);
- after an event, its grants are added to caps and budgets and the event to the counters;
- after a refund, the refunded amount is taken off the spend counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.events.pipeline import NOTHING, EventApplied, Planned, RefundApplied
from habitue.members.service import MemberColumn, MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules import service as rules_service
from habitue.rules.compile import CompiledRule
from habitue.rules.counters import CounterEvent
from habitue.rules.types import MemberSnapshot, RuleUsage

COUNTERS = MemberColumn("rules.counters", rules_service.counters_column)
"""The member's counter state, read (and locked on PostgreSQL) with the member."""


async def load_rules(session: AsyncSession, program: ProgramInfo) -> Sequence[CompiledRule]:
    """The program's active compiled rules."""
    return (await rules_service.rule_set(session, program)).rules


async def load_usage(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    rules: Sequence[CompiledRule],
    at: datetime,
) -> RuleUsage | None:
    """Caps and budgets usage of the rules for the periods containing the event."""
    return await rules_service.load_usage(session, program, member.id, list(rules), at)


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


async def after_event(session: AsyncSession, applied: EventApplied) -> Planned:
    """Record the decision's grants against caps and budgets, and count the event (the
    counters' update is written with the event's row on PostgreSQL)."""
    event = applied.event
    await rules_service.record_usage(
        session, applied.program, applied.member.id, applied.decision, event.occurred_at
    )
    categories = tuple(line.category for line in event.lines if line.category)
    write = await rules_service.count_event(
        session,
        applied.program,
        applied.member.id,
        CounterEvent(event.type, event.occurred_at, event.total_minor, categories),
    )
    return NOTHING if write is None else Planned(writes=(write,))


async def after_refund(session: AsyncSession, applied: RefundApplied) -> Planned:
    """Take the refunded amount off the member's spend counters (on the refund's day)."""
    write = await rules_service.count_event(
        session,
        applied.program,
        applied.member.id,
        CounterEvent("refund", applied.now, applied.amount_minor),
    )
    return NOTHING if write is None else Planned(writes=(write,))


MEMBER_READS = (COUNTERS,)
