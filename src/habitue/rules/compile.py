"""Validate rules and compile them once into `CompiledRule`s, cached per program."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from habitue.rules.context import build_roots, local_time
from habitue.rules.errors import RuleValidationError
from habitue.rules.expressions import ROOTS, Expression, cel_compile, check_references
from habitue.rules.model import POINT_KINDS, WEEKDAYS, RuleSpec
from habitue.rules.types import (
    EarnPoints,
    EffectKind,
    EventInput,
    LineInput,
    MemberSnapshot,
    Period,
    ProgramSnapshot,
)

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_BENEFIT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A benefit code: a snake_case word (as `tiers.granted.CODE`)."""
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
RESERVED_CODES = frozenset({"base"})

STAGE_MULTIPLIER = 1
STAGE_BONUS = 2

# Which effect fields each kind uses; `probability` is allowed for every kind.
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "fixed": frozenset({"points"}),
    "per_currency_unit": frozenset({"rate"}),
    "per_unit": frozenset({"points"}),
    "per_line": frozenset({"points"}),
    "multiplier": frozenset({"factor"}),
    "tier_credits": frozenset({"points", "rate"}),
    "benefit": frozenset({"benefit", "days"}),
    "coupon": frozenset({"reward_code"}),
}
_EFFECT_FIELDS = ("points", "rate", "factor", "benefit", "days", "reward_code")


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """A saved rule: its spec with the database id and version the ledger will record."""

    spec: RuleSpec
    rule_id: int | None = None
    version: int = 1


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A validated rule ready for `decide`: CEL compiled, schedule and audience precomputed."""

    spec: RuleSpec
    rule_id: int | None
    version: int
    condition: Expression
    line_condition: Expression | None
    stage: int
    days: frozenset[int]
    start_minute: int
    end_minute: int
    tiers: frozenset[str]
    segments: frozenset[str]
    threshold: int | None
    """For random rewards: the rule wins when the draw is below this (probability × 2**64)."""
    gated: bool = True
    """Whether the rule has a validity window, a schedule or an audience to check (False:
    `decide` goes straight to its condition)."""
    # Read from `spec` once (`__post_init__`): a pydantic model's nested attributes cost about
    # 0.15 µs a read, and `decide` reads these for every event its rule is evaluated on.
    kind: str = field(init=False)
    """The effect's kind (`spec.effect.kind`)."""
    effect_kind: EffectKind = field(init=False)
    """The public kind of the points it credits: `multiplier` or `earn`."""
    points: int = field(init=False)
    """`spec.effect.points`, 0 when unset."""
    caps: tuple[tuple[Period, int | None, int | None], ...] = field(init=False)
    """The caps as (period, points, count), in the spec's order."""
    budget: int | None = field(init=False)
    limited: bool = field(init=False)
    """Whether the rule has caps or a budget."""
    counts_lines: bool = field(init=False)
    """A `per_line` rule whose line condition reads only the line's own fields (`line_key`):
    `decide` counts its matching lines without listing them."""
    exclusive: bool = field(init=False)
    valid_from: datetime | None = field(init=False)
    valid_to: datetime | None = field(init=False)
    scheduled: bool = field(init=False)
    """Whether the rule has a ritual schedule."""
    earned: dict[int, EarnPoints] = field(init=False)
    """`decide`'s memo of this rule's unclipped `EarnPoints`, per number of points."""

    def __post_init__(self) -> None:
        spec = self.spec
        effect = spec.effect
        kind = effect.kind
        caps = tuple((cap.period, cap.points, cap.count) for cap in spec.caps)
        line_condition = self.line_condition
        for name, value in (
            ("kind", kind),
            ("effect_kind", EffectKind.MULTIPLIER if kind == "multiplier" else EffectKind.EARN),
            ("points", effect.points or 0),
            ("caps", caps),
            ("budget", spec.budget),
            ("limited", bool(caps) or spec.budget is not None),
            ("exclusive", spec.exclusive),
            ("valid_from", spec.valid_from),
            ("valid_to", spec.valid_to),
            ("scheduled", spec.schedule is not None),
            (
                "counts_lines",
                kind == "per_line"
                and line_condition is not None
                and line_condition.line_key is not None,
            ),
        ):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "earned", {})

    @property
    def code(self) -> str:
        """The rule's code."""
        return self.spec.code

    @property
    def priority(self) -> int:
        """Higher priorities are evaluated first."""
        return self.spec.priority

    @property
    def expected_cost(self) -> Decimal | None:
        """Expected points per matching event of a random fixed reward (probability × points)."""
        return expected_cost(self.spec)


def expected_cost(spec: RuleSpec) -> Decimal | None:
    """Probability × points for a random `fixed` reward; for a random benefit or coupon, the
    expected number of grants per matching event; None when it depends on the basket."""
    p = spec.effect.probability
    if p is None:
        return None
    if spec.effect.kind in ("benefit", "coupon"):
        return p
    if spec.effect.kind in ("fixed", "tier_credits") and spec.effect.points is not None:
        return p * spec.effect.points
    return None


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    """A program's active compiled rules, indexed by event type, highest priority first."""

    rules: tuple[CompiledRule, ...]
    by_event_type: dict[str, tuple[CompiledRule, ...]]
    reads: dict[str, frozenset[str]]
    """Per event type, the root variables (event, member, now) its rules read."""

    @classmethod
    def of(cls, rules: Iterable[CompiledRule]) -> RuleSet:
        """Index compiled rules; inactive ones are left out."""
        active = sorted((r for r in rules if r.spec.active), key=lambda r: (-r.priority, r.code))
        index: dict[str, list[CompiledRule]] = {}
        reads: dict[str, set[str]] = {}
        for r in active:
            index.setdefault(r.spec.event_type, []).append(r)
            roots = reads.setdefault(r.spec.event_type, set())
            for expr in (r.condition, r.line_condition):
                if expr is not None:
                    roots.update(p[0] for p in expr.paths)
        return cls(
            tuple(active),
            {k: tuple(v) for k, v in index.items()},
            {k: frozenset(v) for k, v in reads.items()},
        )

    def for_event(self, event_type: str) -> tuple[CompiledRule, ...]:
        """The rules that may apply to an event type, in evaluation order."""
        return self.by_event_type.get(event_type, ())


def _minutes(value: str, field: str) -> int:
    m = _HHMM.match(value)
    if m is None:
        raise RuleValidationError(field, f"'{value}' is not a time HH:MM between 00:00 and 23:59")
    return int(m.group(1)) * 60 + int(m.group(2))


def _sample(event_type: str) -> dict[str, Any]:
    at = datetime(2026, 3, 4, 21, 30, tzinfo=UTC)
    line = LineInput("SKU-1", "coffee", Decimal(2), 250, 500)
    event = EventInput(event_type, "sample", at, 500, (line,))
    member = MemberSnapshot("m", "active", at - timedelta(days=100), tier="gold")
    program = ProgramSnapshot(0, "sample", "EUR", 2, "UTC", Decimal(1), "down", 0)
    roots = build_roots(event, member, program, local_time(at, "UTC"), 5)
    roots["line"] = roots["event"]["lines"][0]
    return roots


def _expression(source: str, field: str, roots: frozenset[str], sample: dict[str, Any]) -> Any:
    program = cel_compile(source, field)
    check_references(source, program, field, roots)
    expr = Expression.build(source, program)
    try:
        result = expr.evaluate(sample, memoise=False)
    except (KeyError, IndexError, ZeroDivisionError):
        return expr  # depends on free-form attributes or on data: checked at run time
    except Exception as exc:  # the CEL library raises several types
        raise RuleValidationError(field, f"does not evaluate: {exc}".split(". ")[0]) from exc
    if not isinstance(result, bool):
        raise RuleValidationError(
            field, f"must return a bool, returns {type(result).__name__} ({result!r})"
        )
    return expr


def _check_effect(spec: RuleSpec) -> None:
    eff = spec.effect
    used = _KIND_FIELDS[eff.kind]
    for name in _EFFECT_FIELDS:
        if name not in used and getattr(eff, name) is not None:
            raise RuleValidationError(f"effect.{name}", f"is not used by kind '{eff.kind}'")
    kind = eff.kind
    if kind in ("fixed", "per_unit", "per_line") and (eff.points is None or eff.points <= 0):
        raise RuleValidationError("effect.points", f"kind '{kind}' needs points > 0")
    if kind == "per_currency_unit" and (eff.rate is None or eff.rate <= 0):
        raise RuleValidationError("effect.rate", "kind 'per_currency_unit' needs rate > 0")
    if kind == "multiplier":
        if eff.factor is None or eff.factor <= 1:
            raise RuleValidationError("effect.factor", "kind 'multiplier' needs factor > 1")
        if spec.event_type != "purchase":
            raise RuleValidationError(
                "effect.kind", "a multiplier applies to the base points of purchases only"
            )
    if kind == "tier_credits":
        if (eff.points is None) == (eff.rate is None):
            raise RuleValidationError("effect", "kind 'tier_credits' needs points or rate")
        if (eff.points is not None and eff.points <= 0) or (eff.rate is not None and eff.rate <= 0):
            raise RuleValidationError("effect", "tier credits must be positive")
    if kind == "benefit":
        if not eff.benefit:
            raise RuleValidationError("effect.benefit", "kind 'benefit' needs a benefit name")
        if not _BENEFIT.match(eff.benefit):
            raise RuleValidationError(
                "effect.benefit", "must match ^[a-z][a-z0-9_]{0,63}$ (e.g. fast_lane)"
            )
        if eff.days is not None and eff.days <= 0:
            raise RuleValidationError("effect.days", "must be > 0")
    if kind == "coupon" and not eff.reward_code:
        raise RuleValidationError("effect.reward_code", "kind 'coupon' needs a reward_code")
    if eff.probability is not None and not 0 < eff.probability <= 1:
        raise RuleValidationError("effect.probability", "must be > 0 and ≤ 1")


def compile_rule(spec: RuleSpec, *, rule_id: int | None = None, version: int = 1) -> CompiledRule:
    """Validate a rule and compile it; raises `RuleValidationError` naming the bad field."""
    if not _CODE.match(spec.code) or spec.code in RESERVED_CODES:
        raise RuleValidationError(
            "code", "use 1-64 lowercase letters, digits, '_', '-', '.'; 'base' is reserved"
        )
    if not _EVENT_TYPE.match(spec.event_type):
        raise RuleValidationError("event_type", "use lowercase letters, digits and '_'")
    if spec.event_type == "refund":
        raise RuleValidationError(
            "event_type", "refunds take back what their purchase earned; rules cannot earn on them"
        )
    _check_effect(spec)
    sample = _sample(spec.event_type)
    condition = _expression(spec.condition, "condition", ROOTS - {"line"}, sample)
    line_condition = None
    if spec.line_condition is not None:
        line_condition = _expression(spec.line_condition, "line_condition", ROOTS, sample)
    for name in ("valid_from", "valid_to"):
        value: datetime | None = getattr(spec, name)
        if value is not None and value.utcoffset() is None:
            raise RuleValidationError(name, "must carry a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    if spec.valid_from and spec.valid_to and spec.valid_to <= spec.valid_from:
        raise RuleValidationError("valid_to", "must be after valid_from")
    days = frozenset(range(7))
    start = 0
    end = 24 * 60 - 1
    if spec.schedule is not None:
        if not spec.schedule.days:
            raise RuleValidationError("schedule.days", "must name at least one day")
        days = frozenset(WEEKDAYS.index(d) for d in spec.schedule.days)
        start = _minutes(spec.schedule.start, "schedule.start")
        end = _minutes(spec.schedule.end, "schedule.end")
    tiers: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    if spec.audience is not None:
        tiers, segments = frozenset(spec.audience.tiers), frozenset(spec.audience.segments)
        if "" in tiers or "" in segments:
            raise RuleValidationError("audience", "tier and segment names must not be empty")
    is_points = spec.effect.kind in POINT_KINDS or spec.effect.kind == "tier_credits"
    for i, cap in enumerate(spec.caps):
        if cap.points is None and cap.count is None:
            raise RuleValidationError(f"caps[{i}]", "set points or count")
        if cap.points is not None and cap.points <= 0:
            raise RuleValidationError(f"caps[{i}].points", "must be > 0")
        if cap.count is not None and cap.count <= 0:
            raise RuleValidationError(f"caps[{i}].count", "must be > 0")
        if cap.points is not None and not is_points:
            raise RuleValidationError(
                f"caps[{i}].points", f"kind '{spec.effect.kind}' grants no points; cap its count"
            )
    if spec.budget is not None:
        if spec.budget <= 0:
            raise RuleValidationError("budget", "must be > 0")
        if spec.effect.kind not in POINT_KINDS:
            raise RuleValidationError("budget", "a budget applies to rules that credit points")
    p = spec.effect.probability
    return CompiledRule(
        spec=spec,
        rule_id=rule_id,
        version=version,
        condition=condition,
        line_condition=line_condition,
        stage=STAGE_MULTIPLIER if spec.effect.kind == "multiplier" else STAGE_BONUS,
        days=days,
        start_minute=start,
        end_minute=end,
        tiers=tiers,
        segments=segments,
        threshold=None if p is None else int(p * 2**64),
        gated=bool(
            spec.valid_from is not None
            or spec.valid_to is not None
            or spec.schedule is not None
            or tiers
            or segments
        ),
    )


def validate_rule(spec: RuleSpec) -> None:
    """Check a rule before saving it; raises `RuleValidationError` naming the bad field."""
    compile_rule(spec)


def rule_set_warnings(specs: Sequence[RuleSpec]) -> list[str]:
    """Warnings on a whole rule set: exclusive rules that share an event type and priority."""
    seen: dict[tuple[str, int], list[str]] = {}
    for s in specs:
        if s.active and s.exclusive:
            seen.setdefault((s.event_type, s.priority), []).append(s.code)
    return [
        f"exclusive rules {', '.join(sorted(codes))} share event type '{et}' and priority {p}: "
        "they do not exclude each other"
        for (et, p), codes in sorted(seen.items())
        if len(codes) > 1
    ]


def compile_rules(rules: Iterable[RuleSpec | RuleVersion]) -> RuleSet:
    """Compile a program's rules into a `RuleSet`; duplicate codes are refused."""
    compiled: list[CompiledRule] = []
    codes: set[str] = set()
    for item in rules:
        rv = item if isinstance(item, RuleVersion) else RuleVersion(item)
        if rv.spec.code in codes:
            raise RuleValidationError("code", f"duplicate rule code '{rv.spec.code}'")
        codes.add(rv.spec.code)
        compiled.append(compile_rule(rv.spec, rule_id=rv.rule_id, version=rv.version))
    return RuleSet.of(compiled)


class RuleCache:
    """Compiled rule sets per program, keyed by (program id, rules version stamp).

    A new stamp for a program replaces the old entry; at most `maxsize` programs are kept.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[int, tuple[Hashable, RuleSet]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        program_id: int,
        stamp: Hashable,
        load: Callable[[], Iterable[RuleSpec | RuleVersion]],
    ) -> RuleSet:
        """The compiled rules of a program at a version stamp, loading and compiling on a miss."""
        with self._lock:
            entry = self._entries.get(program_id)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(program_id)
                return entry[1]
        rule_set = compile_rules(load())
        with self._lock:
            self._entries[program_id] = (stamp, rule_set)
            self._entries.move_to_end(program_id)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return rule_set

    def invalidate(self, program_id: int) -> None:
        """Forget a program's compiled rules."""
        with self._lock:
            self._entries.pop(program_id, None)


rule_cache = RuleCache()
"""The process-wide cache the events service uses."""
