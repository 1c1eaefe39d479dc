"""The event path, as one pipeline built once (`habitue.rooms.build_pipeline`).

A validated event (`events.service.prepare`) goes through these stages, in its own
transaction, in this order:

1. **read**: the member, with the values the rooms read in the member's own query
   (`member_reads`: the rules' counters, whether a benefit or a referral is pending);
2. **snapshot**: each `enrichers` entry adds to what the rules see of the member (tier,
   club, earn multiplier, privileges, segments, counters);
3. **decide** (pure): `rules.decide` over the program's rules (`rule_loaders`), again with the
   caps and budgets used (`usage`) only when a limited rule applies;
4. **plan** (pure): the ledger turns the points into a `CreditPlan` (`ledger.service.plan_credit`);
5. **apply**: every effect goes to its applier (`events.apply`, an exhaustive `match`: a benefit
   is granted, a coupon issued); then each `after_event` stage acts on the decision (tier
   credits and upgrades, counters, referrals) and returns what it adds to the answer
   (`Planned.effects`) and the writes it leaves to the event's statement (`Planned.writes`);
6. **write**: `events.write` turns the credit, the stages' writes, the event, its lines, the
   member's lifetime total and the domain events into one statement on PostgreSQL (each room's
   part under its own parameter namespace, `db.compose`) and its twin statements on SQLite;
7. **after record**: `after_record` stages that need the event's row (partner movements);
8. **after commit**: the domain events written to the outbox are delivered by the worker.

A refund runs `after_refund` (tiers, counters, referrals, partners) and `events.apply`'s
`undo_for_refund` (unused coupons voided) in place of stages 2 to 5.

Rooms are stage objects passed to `Pipeline`, not registrations: what runs is what
`habitue.rooms.build_pipeline` lists, read in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Part
from habitue.events.apply import Appliers
from habitue.events.schemas import EffectRead
from habitue.members.service import MemberColumn, MemberRef
from habitue.programs.service import ProgramInfo
from habitue.rules import decide as rules_decide
from habitue.rules.compile import CompiledRule
from habitue.rules.types import Decision, EventInput, MemberSnapshot, RuleUsage


@dataclass(frozen=True, slots=True)
class EventApplied:
    """What the event path did, handed to the `after_event` and `after_record` stages."""

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
    """A refund, handed to the `after_refund` stages."""

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


@dataclass(frozen=True, slots=True)
class Planned:
    """What a stage adds to the event: entries of its answer, and writes left to its statement
    (each a `db.Part` with a namespace of its own; written last, on PostgreSQL in one
    statement with the event's row)."""

    effects: Sequence[EffectRead] = ()
    writes: Sequence[Part] = ()


NOTHING = Planned()

Enricher = Callable[
    [AsyncSession, ProgramInfo, MemberRef, MemberSnapshot, datetime], Awaitable[MemberSnapshot]
]
"""Add to the member as the rules see it (read only: nothing written)."""
RuleLoader = Callable[[AsyncSession, ProgramInfo], Awaitable[Sequence[CompiledRule]]]
"""The compiled rules `decide` evaluates for a program."""
UsageLoader = Callable[
    [AsyncSession, ProgramInfo, MemberRef, Sequence[CompiledRule], datetime],
    Awaitable[RuleUsage | None],
]
"""Caps and budgets used of the rules, for the periods containing the event."""
AfterEvent = Callable[[AsyncSession, EventApplied], Awaitable[Planned]]
AfterRecord = Callable[[AsyncSession, EventApplied], Awaitable[None]]
AfterRefund = Callable[[AsyncSession, RefundApplied], Awaitable[Planned]]


async def _no_usage(
    session: AsyncSession,
    program: ProgramInfo,
    member: MemberRef,
    rules: Sequence[CompiledRule],
    at: datetime,
) -> RuleUsage | None:
    del session, program, member, rules, at
    return None


def _room_of(stage: Callable[..., Any]) -> str:
    """The room a stage belongs to: `habitue.tiers.hooks.enrich` → "tiers"."""
    parts = getattr(stage, "__module__", "").split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "habitue" else "other"


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages of the event path, in the order they run (see the module's docstring)."""

    member_reads: tuple[MemberColumn, ...] = ()
    enrichers: tuple[Enricher, ...] = ()
    rule_loaders: tuple[RuleLoader, ...] = ()
    usage: UsageLoader = _no_usage
    appliers: Appliers = field(default_factory=Appliers)
    after_event: tuple[AfterEvent, ...] = ()
    after_record: tuple[AfterRecord, ...] = ()
    after_refund: tuple[AfterRefund, ...] = ()

    async def snapshot(
        self, session: AsyncSession, program: ProgramInfo, member: MemberRef, now: datetime
    ) -> MemberSnapshot:
        """The member as the rules see it, with what every enricher adds."""
        snap = member.snapshot()
        for enrich in self.enrichers:
            snap = await enrich(session, program, member, snap, now)
        return snap

    async def snapshot_steps(
        self, session: AsyncSession, program: ProgramInfo, member: MemberRef, now: datetime
    ) -> list[tuple[str, MemberSnapshot]]:
        """What each enricher made of the member, in order: (its room, the snapshot after it),
        the bare snapshot first under "members" (the simulator's explanation reads it)."""
        snap = member.snapshot()
        steps = [("members", snap)]
        for enrich in self.enrichers:
            snap = await enrich(session, program, member, snap, now)
            steps.append((_room_of(enrich), snap))
        return steps

    async def rules(self, session: AsyncSession, program: ProgramInfo) -> list[CompiledRule]:
        """The compiled rules of the program, from every loader."""
        out: list[CompiledRule] = []
        for load in self.rule_loaders:
            out.extend(await load(session, program))
        return out

    async def decide(
        self,
        session: AsyncSession,
        program: ProgramInfo,
        member: MemberRef,
        event: EventInput,
        now: datetime,
        snap: MemberSnapshot | None = None,
        rules: Sequence[CompiledRule] | None = None,
    ) -> Decision:
        """Stages 2 and 3: what the rules decide for the event (a pure `decide`, fed); a
        `snap` already made (`snapshot_steps`) is used as it is; `rules` in place of the
        loaders' (a draft's test: the live rules with the draft swapped in)."""
        if snap is None:
            snap = await self.snapshot(session, program, member, now)
        if rules is None:
            rules = await self.rules(session, program)
        settings = program.snapshot()
        decision = rules_decide.decide(event, snap, settings, rules, now)
        # Caps and budgets usage is read only when a limited rule of this event's type applies.
        own = [r for r in rules if r.spec.event_type == event.type]
        if not rules_decide.limits_apply(decision, own):
            return decision
        usage = await self.usage(session, program, member, own, event.occurred_at)
        return rules_decide.decide(event, snap, settings, rules, now, usage)

    async def after(self, session: AsyncSession, applied: EventApplied) -> Planned:
        """Stage 5's `after_event` stages, their answers' entries and writes in their order."""
        effects: list[EffectRead] = []
        writes: list[Part] = []
        for stage in self.after_event:
            planned = await stage(session, applied)
            effects.extend(planned.effects)
            writes.extend(planned.writes)
        return Planned(effects, writes)

    async def recorded(self, session: AsyncSession, applied: EventApplied) -> None:
        """Stage 7: the stages that need the event's row written (same transaction)."""
        for stage in self.after_record:
            await stage(session, applied)

    async def refunded(self, session: AsyncSession, applied: RefundApplied) -> Planned:
        """The `after_refund` stages, their answers' entries and writes in their order."""
        effects: list[EffectRead] = []
        writes: list[Part] = []
        for stage in self.after_refund:
            planned = await stage(session, applied)
            effects.extend(planned.effects)
            writes.extend(planned.writes)
        return Planned(effects, writes)
