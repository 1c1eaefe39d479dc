"""The pure decision function: (event, member, program, rules, now) → effects. No I/O.

Order of play: the program's base earn (purchases only, rule code "base"), then the rules of
the event's type from the highest priority down. A rule applies when it is inside its
validity window, its ritual schedule and its audience, its condition holds, at least one line
matches its line condition (when it has one), its random draw wins (when it has a
probability), and its caps and budget leave something to grant. Once an `exclusive` rule has
granted something, rules of lower priority are not evaluated. The effects come out in stacking
order: base, then multipliers (over the base points), then bonuses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import compress
from typing import Any

from habitue.money import points_for_amount, round_points
from habitue.rules.compile import STAGE_MULTIPLIER, CompiledRule, RuleSet
from habitue.rules.context import (
    build_roots,
    line_values,
    lines_values,
    now_values,
    zone,
)
from habitue.rules.expressions import Expression
from habitue.rules.types import (
    TAX_EXCLUDED,
    AddTierCredits,
    Capped,
    Decision,
    EarnPoints,
    Effect,
    EventInput,
    GrantBenefit,
    IssueCoupon,
    LineInput,
    MemberSnapshot,
    ProgramSnapshot,
    RandomDraw,
    RuleError,
    RuleTally,
    RuleUsage,
    Tally,
)

BASE_RULE = "base"
_NO_TALLY = RuleTally()
_ZERO = Tally()
_ONE = Decimal(1)


def base_points(event: EventInput, member: MemberSnapshot, program: ProgramSnapshot) -> int:
    """The program's base earn: rate × what the customer paid, times the member's multiplier."""
    eligible = paid_minor(event, program)
    rate = program.earn_rate * member.earn_multiplier
    return points_for_amount(eligible, program.currency_exponent, rate, program.rounding)


def random_draw(rule_code: str, rule_version: int, external_id: str) -> int:
    """The reproducible draw of a random rule for an event: 64 bits of a sha256."""
    digest = hashlib.sha256(f"{rule_code}:{rule_version}:{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def in_schedule(rule: CompiledRule, local: datetime) -> bool:
    """Whether a local wall-clock time falls inside the rule's ritual schedule."""
    minute = local.hour * 60 + local.minute
    wd = local.weekday()
    if rule.start_minute <= rule.end_minute:
        return wd in rule.days and rule.start_minute <= minute <= rule.end_minute
    return (wd in rule.days and minute >= rule.start_minute) or (
        (wd - 1) % 7 in rule.days and minute <= rule.end_minute
    )


def _eligible_share(event: EventInput, amount_minor: int) -> int:
    """The part of a line amount that was paid for (points and coupons are not eligible)."""
    if event.discount_minor <= 0 or event.total_minor <= 0:
        return amount_minor
    eligible = max(event.total_minor - event.discount_minor, 0)
    return amount_minor * eligible // event.total_minor


def paid_minor(event: EventInput, program: ProgramSnapshot) -> int:
    """What the purchase earns on: its total less what points and coupons paid, without the
    lines' tax when the program earns on amounts without tax."""
    if program.earn_on == TAX_EXCLUDED and event.lines:
        tax = sum(ln.tax_minor for ln in event.lines)
        if tax:
            return max(_eligible_share(event, event.total_minor - tax), 0)
    return max(event.total_minor - event.discount_minor, 0)


def lines_paid_minor(
    event: EventInput, program: ProgramSnapshot, lines: Sequence[LineInput]
) -> int:
    """What some lines earn on: their share of what was paid (`_eligible_share`), each line
    without its tax when the program earns on amounts without tax."""
    if program.earn_on == TAX_EXCLUDED:
        return _eligible_share(event, sum(ln.amount_minor - ln.tax_minor for ln in lines))
    return _eligible_share(event, sum(ln.amount_minor for ln in lines))


_NOTHING = Decision(())
_BASE_DECISIONS: dict[int, Decision] = {}
"""The decision of the base earn alone, per number of points: `Decision` and `EarnPoints` are
frozen values, so one instance per amount serves every decision (building them costs about
0.8 µs); a decision with rules reuses its `effects`."""
_MEMO_SIZE = 4096


def _base_decision(points: int) -> Decision:
    """The base earn's decision for a number of points, memoised in `_BASE_DECISIONS`."""
    if len(_BASE_DECISIONS) >= _MEMO_SIZE:
        _BASE_DECISIONS.clear()
    decision = _BASE_DECISIONS[points] = Decision((EarnPoints(points, BASE_RULE),))
    return decision


def _earned(rule: CompiledRule, points: int) -> EarnPoints:
    """A rule's unclipped grant of points, memoised in `rule.earned` (as `_base_effects`)."""
    memo = rule.earned
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    earned = memo[points] = EarnPoints(
        points, rule.spec.code, rule.rule_id, rule.version, rule.effect_kind, 0
    )
    return earned


class _Unreadable(Exception):
    """The event or member snapshot could not be turned into CEL variables: `decide` raises
    the original error, as when the variables were built before any rule ran."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Run:
    """The state of one `decide` call. The CEL variables (`roots`) are built on first use:
    rules whose conditions are plain comparisons (`Expression.simple`) and line conditions
    over the line's own fields never need them."""

    __slots__ = (
        "event", "member", "program", "base", "local", "include", "built", "errors",
        "capped", "draws", "lines",
    )  # fmt: skip

    def __init__(
        self,
        event: EventInput,
        member: MemberSnapshot,
        program: ProgramSnapshot,
        base: int,
        local: datetime,
        include: Collection[str],
    ) -> None:
        self.event = event
        self.member = member
        self.program = program
        self.base = base
        self.local = local
        self.include = include
        self.built: dict[str, Any] | None = None
        self.errors: list[RuleError] | None = None
        self.capped: list[Capped] | None = None
        self.draws: list[RandomDraw] | None = None
        self.lines: list[dict[str, Any]] | None = None

    @property
    def roots(self) -> dict[str, Any]:
        """The CEL root variables of the event (`build_roots`), built once."""
        roots = self.built
        if roots is None:
            try:
                roots = self.built = build_roots(
                    self.event,
                    self.member,
                    self.program,
                    self.local,
                    self.base,
                    with_lines=False,
                    include=self.include,
                )
            except Exception as exc:
                raise _Unreadable(exc) from exc
        return roots

    def forget_line(self) -> None:
        """Drop the `line` variable a failed line condition may have left."""
        if self.built is not None:
            self.built.pop("line", None)

    def scalar(self, root: str, name: str) -> Any:
        """One field of the CEL variables, as `build_roots` gives it, without building them
        (the fields of `expressions.SIMPLE_INT_FIELDS` and `SIMPLE_STR_FIELDS`)."""
        if root == "event":
            event = self.event
            if name == "total_minor":
                return event.total_minor
            if name == "discount_minor":
                return event.discount_minor
            if name == "base_points":
                return self.base
            if name == "line_count":
                return len(event.lines)
            if name == "type":
                return event.type
            return event.external_id
        if root == "member":
            member = self.member
            if name == "tenure_days":
                try:
                    return max((self.event.occurred_at - member.enrolled_at).days, 0)
                except Exception as exc:
                    raise _Unreadable(exc) from exc
            if name == "tier":
                return member.tier or ""
            if name == "status":
                return member.status
            return member.id
        return now_values(self.local)[name]

    def line_dicts(self) -> list[dict[str, Any]]:
        """The `line` values of the basket, built on first use."""
        if self.lines is None:
            self.lines = lines_values(self.event, self.program)
        return self.lines

    def evaluate(self, expr: Expression) -> bool:
        """Evaluate an event-level condition to a bool."""
        simple = expr.simple
        if simple is not None:
            holds = simple.holds(self.scalar(simple.root, simple.field))
            if holds is not None:
                return holds
        return self.evaluate_cel(expr)

    def evaluate_cel(self, expr: Expression) -> bool:
        """Evaluate an event-level condition to a bool in CEL (`evaluate` without its plain
        comparison)."""
        roots = self.roots
        if expr.reads_lines and "lines" not in roots["event"]:
            roots["event"]["lines"] = self.line_dicts()
        result = expr.evaluate_fast(roots)
        if type(result) is not bool:
            raise TypeError(f"condition returned {type(result).__name__}, not bool")
        return result

    def count_lines(self, expr: Expression) -> int:
        """How many lines a line condition over the line's own fields (`line_key`) matches:
        the memo's answers summed, `matching_lines` when a line shape is new."""
        key_of = expr.line_key
        assert key_of is not None
        memo = expr.line_memos.get(self.program.currency_exponent)
        if memo is not None:
            try:
                return sum(map(memo.__getitem__, map(key_of, self.event.lines)))
            except KeyError:
                pass
        return len(self.matching(expr))

    def matching_lines(self, rule: CompiledRule) -> list[LineInput] | None:
        """The lines a line rule matches (None: the rule has no line condition)."""
        expr = rule.line_condition
        if expr is None:
            return None
        return self.matching(expr)

    def matching(self, expr: Expression) -> list[LineInput]:
        """The lines a line condition matches."""
        key_of = expr.line_key
        if key_of is not None:  # reads the line's own fields only: memoised per line shape
            exponent = self.program.currency_exponent
            memo = expr.line_memos.get(exponent)
            if memo is None:
                memo = expr.line_memos[exponent] = {}
            lines = self.event.lines
            keys = list(map(key_of, lines))
            results = list(map(memo.get, keys))
            if None in results:
                scale = float(10**exponent)
                for i, result in enumerate(results):
                    if result is None:
                        line_roots = {"line": line_values(lines[i], scale)}
                        result = expr.evaluate(line_roots, memoise=False)
                        if type(result) is not bool:
                            raise TypeError(
                                f"line_condition returned {type(result).__name__}, not bool"
                            )
                        if len(memo) >= 8192:
                            memo.clear()
                        memo[keys[i]] = results[i] = result
            return list(compress(lines, results))
        roots = self.roots
        if expr.reads_lines and "lines" not in roots["event"]:
            roots["event"]["lines"] = self.line_dicts()
        out: list[LineInput] = []
        for line, values in zip(self.event.lines, self.line_dicts(), strict=True):
            roots["line"] = values
            result = expr.evaluate(roots)
            if type(result) is not bool:
                raise TypeError(f"line_condition returned {type(result).__name__}, not bool")
            if result:
                out.append(line)
        roots.pop("line", None)
        return out

    def amount(self, rule: CompiledRule, lines: list[LineInput] | None) -> int:
        """Points (or tier credits) the rule asks for, before caps."""
        kind = rule.kind
        program, event = self.program, self.event
        if kind in ("fixed", "per_line", "per_unit"):
            points = rule.points
            if kind == "fixed":
                return points
            if kind == "per_line":
                return points * len(lines if lines is not None else event.lines)
            qty = sum((ln.quantity for ln in (lines if lines is not None else event.lines)), 0)
            return round_points(Decimal(points) * Decimal(qty), program.rounding)
        eff = rule.spec.effect
        if kind == "multiplier":
            factor = eff.factor or _ONE
            share = self.base
            if lines is not None:
                minor = lines_paid_minor(event, program, lines)
                rate = program.earn_rate * self.member.earn_multiplier
                share = min(
                    points_for_amount(minor, program.currency_exponent, rate, program.rounding),
                    self.base,
                )
            return round_points(Decimal(share) * (factor - 1), program.rounding)
        if kind == "tier_credits" and eff.points is not None:
            return eff.points
        # per_currency_unit and tier_credits by rate
        if lines is not None:
            minor = lines_paid_minor(event, program, lines)
        else:
            minor = paid_minor(event, program)
        rate = eff.rate or _ONE
        return points_for_amount(minor, program.currency_exponent, rate, program.rounding)

    def clip(self, rule: CompiledRule, requested: int, tally: RuleTally) -> int:
        """What caps and budget leave of a request (0: nothing), recording any clipping."""
        granted, reason = requested, ""
        for period, points, count in rule.caps:
            used = tally.periods.get(period, _ZERO)
            if count is not None and used.count >= count:
                granted, reason = 0, f"count cap {count} per {period} reached"
                break
            if points is not None and points - used.points < granted:
                granted = max(points - used.points, 0)
                reason = f"points cap {points} per {period}"
        budget = rule.budget
        if budget is not None and granted > 0 and budget - tally.budget_used < granted:
            granted = max(budget - tally.budget_used, 0)
            reason = f"budget {budget}"
        if granted != requested:
            capped = Capped(rule.spec.code, requested, granted, reason, rule.version)
            if self.capped is None:
                self.capped = [capped]
            else:
                self.capped.append(capped)
        return granted

    def apply(self, rule: CompiledRule, usage: RuleUsage | None) -> Effect | None:
        """The effect of one rule on this event, or None when it does not apply."""
        condition = rule.condition
        constant = condition.constant
        if constant is None:
            simple = condition.simple
            if simple is None:
                if not self.evaluate_cel(condition):
                    return None
            else:  # `evaluate` inlined: most conditions are plain comparisons
                holds = simple.holds(self.scalar(simple.root, simple.field))
                if holds is None:
                    holds = self.evaluate_cel(condition)
                if not holds:
                    return None
        elif not constant:
            return None
        lines = None
        spec = rule.spec
        code = spec.code
        kind = rule.kind
        requested = 0
        if rule.line_condition is not None:
            if rule.counts_lines:  # `per_line` over the line's own fields: a count is enough
                requested = rule.points * self.count_lines(rule.line_condition)
                if not requested:
                    return None
            else:
                lines = self.matching_lines(rule)
                if not lines:
                    return None
        if rule.threshold is not None and spec.effect.probability is not None:
            draw = random_draw(code, rule.version, self.event.external_id)
            won = draw < rule.threshold
            drawn = RandomDraw(code, rule.version, draw, spec.effect.probability, won)
            if self.draws is None:
                self.draws = [drawn]
            else:
                self.draws.append(drawn)
            if not won:
                return None
        limited = rule.limited
        tally = _NO_TALLY
        if limited and usage is not None:
            tally = usage.rules.get(code, _NO_TALLY)
        if kind in ("benefit", "coupon"):
            if limited and not self.clip(rule, 1, tally):
                return None
            if kind == "benefit":
                return GrantBenefit(
                    spec.effect.benefit or "", code, spec.effect.days, rule.rule_id, rule.version
                )
            return IssueCoupon(spec.effect.reward_code or "", code, rule.rule_id, rule.version)
        if not requested:
            requested = self.amount(rule, lines)
            if requested <= 0:
                return None
        granted = self.clip(rule, requested, tally) if limited else requested
        if granted <= 0:
            return None
        if kind == "tier_credits":
            return AddTierCredits(granted, code, rule.rule_id, rule.version, requested - granted)
        if granted == requested:  # the usual grant, unclipped: one shared value per amount
            earned = rule.earned.get(granted)
            if earned is None:
                earned = _earned(rule, granted)
            return earned
        return EarnPoints(
            granted, code, rule.rule_id, rule.version, rule.effect_kind, requested - granted
        )


_RULE_SETS: dict[tuple[CompiledRule, ...], RuleSet] = {}


def _rule_set_of(rules: Sequence[CompiledRule]) -> RuleSet:
    """`RuleSet.of(rules)`, kept per process for the same rules (compiled rules are frozen and
    compared by identity; the event path hands `decide` the same cached ones event after
    event, as a list: indexing them again cost every event a sort and a dict)."""
    key = tuple(rules)
    found = _RULE_SETS.get(key)
    if found is None:
        if len(_RULE_SETS) >= 64:  # a program's rules changed, or drafts tested: start over
            _RULE_SETS.clear()
        found = _RULE_SETS[key] = RuleSet.of(key)
    return found


def decide(
    event: EventInput,
    member: MemberSnapshot,
    program: ProgramSnapshot,
    rules: RuleSet | Sequence[CompiledRule],
    now: datetime,
    usage: RuleUsage | None = None,
) -> Decision:
    """Decide what an event earns. Deterministic: the same inputs give the same effects.

    Rules see the event's own time (`event.occurred_at` in the program's time zone), so a
    quote, the real event, an import and a backtest of the same event decide alike; `now`
    (the decision time) is kept for callers and not read by rules.
    """
    del now
    event_type = event.type
    base = 0
    if event_type == "purchase":  # `base_points` and `paid_minor`, inlined
        if program.earn_on == TAX_EXCLUDED and event.lines:
            eligible = paid_minor(event, program)
        else:
            eligible = max(event.total_minor - event.discount_minor, 0)
        base = points_for_amount(
            eligible,
            program.currency_exponent,
            program.earn_rate * member.earn_multiplier,
            program.rounding,
        )
    based = _NOTHING
    if base > 0:
        based = _BASE_DECISIONS.get(base) or _base_decision(base)
    rule_set = rules if isinstance(rules, RuleSet) else _rule_set_of(rules)
    candidates = rule_set.by_event_type.get(event_type)
    if not candidates:
        return based
    base_effects = based.effects
    at = event.occurred_at
    local = at.astimezone(zone(program.timezone))  # `local_time`, inlined
    run = _Run(event, member, program, base, local, rule_set.reads.get(event_type, ()))
    multipliers: list[Effect] = []
    bonuses: list[Effect] = []
    stop_below: int | None = None
    for rule in candidates:
        if stop_below is not None and rule.priority < stop_below:
            break
        if rule.gated:
            if (rule.valid_from is not None and at < rule.valid_from) or (
                rule.valid_to is not None and at >= rule.valid_to
            ):
                continue
            if rule.scheduled and not in_schedule(rule, local):
                continue
            if rule.tiers and (member.tier is None or member.tier not in rule.tiers):
                continue
            if rule.segments and rule.segments.isdisjoint(member.segments):
                continue
        try:
            effect = run.apply(rule, usage)
        except _Unreadable as exc:
            raise exc.error from None
        except Exception as exc:  # a failing rule never fails the event
            run.forget_line()
            error = RuleError(rule.spec.code, f"{type(exc).__name__}: {exc}", rule.version)
            if run.errors is None:
                run.errors = [error]
            else:
                run.errors.append(error)
            continue
        if effect is None:
            continue
        (multipliers if rule.stage == STAGE_MULTIPLIER else bonuses).append(effect)
        if rule.exclusive:
            stop_below = rule.priority
    errors, capped, draws = run.errors, run.capped, run.draws
    effects = (*base_effects, *multipliers, *bonuses) if multipliers else (*base_effects, *bonuses)
    if errors is None and capped is None and draws is None:
        return Decision(effects)
    return Decision(
        effects,
        tuple(errors) if errors else (),
        tuple(capped) if capped else (),
        tuple(draws) if draws else (),
    )


def limits_apply(decision: Decision, rules: Sequence[CompiledRule]) -> bool:
    """Whether a rule with caps or a budget gave something, or was clipped, in `decision`.

    `decide` reads the caps and budgets usage only when such a rule reaches its grant; with
    no usage given, tallies count as zero. So when no limited rule appears in a decision made
    without usage, deciding again with the real usage gives the same decision: the caller can
    skip reading it.
    """
    limited = {r.code for r in rules if r.spec.caps or r.spec.budget is not None}
    if not limited:
        return False
    return any(e.rule_code in limited for e in decision.effects) or any(
        c.rule_code in limited for c in decision.capped
    )
