"""Extension points of the event path, for the rooms built on the foundation.

Rooms register callables at import time (see `habitue.rooms`). All of them run inside the
event's transaction, so what they write commits or rolls back with the event.

- enrichers: add to the member snapshot before `decide` (tier, multiplier, benefits, counters);
- rule loaders: return the compiled rules `decide` evaluates for a program;
- after_event: act on the decision besides its effects' appliers (tier credits and upgrades,
  counters, referrals); benefits and coupons are applied by `events.apply`;
- after_record: act once the event's row is written (partner movements, which need its source);
- after_refund: undo what a refunded purchase caused (tier upgrades, referral rewards).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.members.service import MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules.types import Decision, EventInput, MemberSnapshot


@dataclass(frozen=True, slots=True)
class EventApplied:
    """What the event path did, handed to `after_event` hooks."""

    program: ProgramInfo
    member: MemberRef
    event: EventInput
    event_id: str
    decision: Decision
    points_earned: int
    now: datetime
    source: str = "default"


@dataclass(frozen=True, slots=True)
class RefundApplied:
    """A refund, handed to `after_refund` hooks."""

    program: ProgramInfo
    member: MemberRef
    refund_event_id: str
    purchase_id: str
    purchase_external_id: str
    amount_minor: int
    purchase_total_minor: int
    refunded_total_minor: int
    points_taken_back: int
    now: datetime


Enricher = Callable[
    [AsyncSession, ProgramInfo, MemberRef, MemberSnapshot, datetime], Awaitable[MemberSnapshot]
]
RuleLoader = Callable[[AsyncSession, ProgramInfo], Awaitable[Sequence[Any]]]
AfterEvent = Callable[[AsyncSession, EventApplied], Awaitable[list[dict[str, Any]]]]
AfterRefund = Callable[[AsyncSession, RefundApplied], Awaitable[list[dict[str, Any]]]]
AfterRecord = Callable[[AsyncSession, EventApplied], Awaitable[None]]

enrichers: list[Enricher] = []
rule_loaders: list[RuleLoader] = []
after_event: list[AfterEvent] = []
after_record: list[AfterRecord] = []
after_refund: list[AfterRefund] = []


async def snapshot(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, now: datetime
) -> MemberSnapshot:
    """The member as the rules see it, enriched by every registered room."""
    snap = member.snapshot()
    for enrich in enrichers:
        snap = await enrich(session, program, member, snap, now)
    return snap


async def rules_for(session: AsyncSession, program: ProgramInfo) -> list[Any]:
    """The compiled rules of the program, from every registered loader."""
    out: list[Any] = []
    for load in rule_loaders:
        out.extend(await load(session, program))
    return out


async def run_after_event(session: AsyncSession, applied: EventApplied) -> list[dict[str, Any]]:
    """Run the after-event hooks; each returns extra effect entries for the response."""
    extra: list[dict[str, Any]] = []
    for hook in after_event:
        extra.extend(await hook(session, applied))
    return extra


async def run_after_record(session: AsyncSession, applied: EventApplied) -> None:
    """Run the hooks that need the event's row written (same transaction)."""
    for hook in after_record:
        await hook(session, applied)


async def run_after_refund(session: AsyncSession, applied: RefundApplied) -> list[dict[str, Any]]:
    extra: list[dict[str, Any]] = []
    for hook in after_refund:
        extra.extend(await hook(session, applied))
    return extra


UsageLoader = Callable[
    [AsyncSession, ProgramInfo, MemberRef, Sequence[Any], datetime], Awaitable[Any]
]
usage_loaders: list[UsageLoader] = []


async def usage_for(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    rules: Sequence[Any],
    now: datetime,
) -> Any:
    """Caps and budget usage of the rules for this member (None when nothing tracks it)."""
    if not rules:
        return None
    for load in usage_loaders:
        return await load(session, program, member, rules, now)
    return None
