"""What an event would earn, step by step, for the console's simulator. Writes nothing.

The decision is the pipeline's own (`Pipeline.decide`, the pure `rules.decide` fed as for a
real event); the explanation only splits what it decided: the base earn is cut into the
program's rate, then each multiplier an enricher put on the member (the tier's, then the
club's), by calling `rules.decide.base_points` with the multipliers added one at a time, so the
parts add up to the base effect exactly; every other effect is one rule's contribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.events.pipeline import Pipeline
from habitue.events.prepare import _member_for, prepare
from habitue.events.schemas import EventCreate
from habitue.programs.service import ProgramInfo
from habitue.rules import decide as rules_decide
from habitue.rules.compile import CompiledRule
from habitue.rules.types import (
    AddTierCredits,
    Capped,
    EarnPoints,
    GrantBenefit,
    IssueCoupon,
    RandomDraw,
    RuleError,
)
from habitue.timestamps import UtcDatetime

MULTIPLYING_ROOMS = {"tiers": "tier", "clubs": "club"}
"""Rooms whose enricher multiplies the member's earn rate, and the step each one makes."""


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the explanation.

    `kind`: `base` (the program's rate × what was paid), `tier` / `club` / `multiplier_other`
    (what the member's multiplier adds to the base), or, for a rule, its effect's kind as
    written in the rule (`multiplier`, `fixed`, `per_unit`, `per_line`, `per_currency_unit`,
    `tier_credits`, `benefit`, `coupon`)."""

    kind: str
    points: int
    rule: str | None = None
    name: str = ""
    factor: Decimal | None = None
    detail: str | None = None
    """The tier, the club plans, the privilege or the reward the step is about."""
    clipped: int = 0
    tier_credits: int = 0


@dataclass(frozen=True, slots=True)
class Explanation:
    occurred_at: UtcDatetime
    points: int
    steps: tuple[Step, ...]
    silent: tuple[str, ...]
    """Rules of this event type that gave nothing to this basket."""
    capped: tuple[Capped, ...]
    draws: tuple[RandomDraw, ...]
    errors: tuple[RuleError, ...]


async def explain(
    session: AsyncSession,
    pipeline: Pipeline,
    program: ProgramInfo,
    body: EventCreate,
    *,
    rules: Sequence[CompiledRule] | None = None,
) -> Explanation:
    """The event's points step by step, as the real path would decide them now; the event
    may be dated in the future (rules then see that date; the member is as they are now).
    `rules` in place of the program's live rules when given (the live rules with a draft
    swapped in, `rules.drafts.rules_with_draft`)."""
    now = clock.now()
    prepared = prepare(program, body, now=now, allow_future=True)
    event = prepared.event
    member = await _member_for(session, pipeline, program, body)
    stages = await pipeline.snapshot_steps(session, program, member, now)
    snap = stages[-1][1]
    if rules is None:
        rules = await pipeline.rules(session, program)
    decision = await pipeline.decide(session, program, member, event, now, snap, rules)
    settings = program.snapshot()
    by_code = {r.spec.code: r for r in rules}

    steps: list[Step] = []
    base = next(
        (e for e in decision.effects if isinstance(e, EarnPoints) and e.rule_code == "base"), None
    )
    if base is not None:
        multiplier = Decimal(1)
        bare = replace(snap, earn_multiplier=multiplier)
        before = rules_decide.base_points(event, bare, settings)
        steps.append(Step("base", before, factor=program.earn_rate))
        previous = stages[0][1]
        for room, after in stages[1:]:
            if after.earn_multiplier == previous.earn_multiplier:
                previous = after
                continue
            factor = after.earn_multiplier / previous.earn_multiplier
            multiplier *= factor
            points = rules_decide.base_points(
                event, replace(snap, earn_multiplier=multiplier), settings
            )
            kind = MULTIPLYING_ROOMS.get(room, "multiplier_other")
            detail = after.tier if kind == "tier" else None
            if kind == "club":
                clubs = sorted(
                    b[5:] for b in after.benefits - previous.benefits if b[:5] == "club:"
                )
                detail = ", ".join(clubs) or None
            steps.append(Step(kind, points - before, factor=factor, detail=detail))
            before = points
            previous = after
        if before != base.amount:  # a multiplier set some other way: shown, never lost
            steps.append(Step("multiplier_other", base.amount - before))
    for effect in decision.effects:
        if effect is base:
            continue
        rule = by_code.get(effect.rule_code)
        spec = rule.spec if rule is not None else None
        kind = spec.effect.kind if spec is not None else str(effect.kind)
        name = spec.name if spec is not None else ""
        if isinstance(effect, EarnPoints):
            rule_factor = spec.effect.factor if spec is not None and kind == "multiplier" else None
            steps.append(
                Step(
                    kind, effect.amount, effect.rule_code, name, rule_factor, clipped=effect.clipped
                )
            )
        elif isinstance(effect, AddTierCredits):
            steps.append(
                Step(
                    kind,
                    0,
                    effect.rule_code,
                    name,
                    clipped=effect.clipped,
                    tier_credits=effect.amount,
                )
            )
        elif isinstance(effect, GrantBenefit):
            steps.append(Step(kind, 0, effect.rule_code, name, detail=effect.benefit))
        elif isinstance(effect, IssueCoupon):
            steps.append(Step(kind, 0, effect.rule_code, name, detail=effect.reward_code))
    given = {e.rule_code for e in decision.effects}
    silent = tuple(
        code for code, r in by_code.items() if r.spec.event_type == event.type and code not in given
    )
    return Explanation(
        occurred_at=event.occurred_at,
        points=decision.points,
        steps=tuple(steps),
        silent=silent,
        capped=decision.capped,
        draws=decision.draws,
        errors=decision.errors,
    )
