"""Backtest: replay past transactions through the same `decide` with a simulated ledger.

Transactions come from a CSV in the import format (`member_external_id, external_id,
occurred_at, total` and optionally `sku, category, quantity, unit_price`, one row per line) or
from the store (purchases, refunds and actions of a program, in time order). Each is decided
with the rules given and the program's base earn; an in-memory ledger keeps each member's
points, the caps' tallies and the rules' budgets, and refunds take back the share of the
purchase's points the real refund takes back. The result is points issued, per rule and per
month, expected redemptions and their cost. With a ladder (`load_ladder`, or the store's), a
`tiers.qualify.Qualifier` keeps each member's tier as events are replayed: each event is decided
with the member's tier (and its earn multiplier), then counted toward the ladder's metric, and
`tier_mix` gives the members per tier at the end of each month (see `tiers/qualify.py` for what
the replay simplifies). Without a ladder members are decided without a tier and `tier_mix` is
None.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, select

from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.db import table_of
from habitue.events.models import Event, EventLine
from habitue.members.models import Member
from habitue.money import MoneyFormatError, parse_minor
from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.counters import CounterEvent, CounterState, bump, counters_at
from habitue.rules.decide import decide
from habitue.rules.model import parse_rule
from habitue.rules.types import (
    AddTierCredits,
    Decision,
    EarnPoints,
    EventInput,
    GrantBenefit,
    IssueCoupon,
    LineInput,
    MemberSnapshot,
    ProgramSnapshot,
    RuleTally,
    RuleUsage,
    Tally,
)
from habitue.rules.usage import period_keys
from habitue.tiers import periods as tier_periods
from habitue.tiers.qualify import (
    Qualifier,
    QualifyingLadder,
    QualifyingTier,
    UnsupportedLadder,
    metric_amount,
)

_events = table_of(Event)
_lines = table_of(EventLine)
_members = table_of(Member)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One event to replay: a member key, the event, and for a refund the purchase it refunds."""

    member: str
    event: EventInput
    refers_to: str | None = None
    """For a refund: the key of the purchase it refunds."""
    key: str | None = None
    """The store's event id (a refund refers to it); the external id when None."""


@dataclass
class BacktestResult:
    """Points issued, expected redemptions and cost, per rule and per month."""

    transactions: int = 0
    members: int = 0
    points_issued: int = 0
    points_taken_back: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    by_month: dict[str, dict[str, int]] = field(default_factory=dict)
    """Month (program time zone, YYYY-MM) → rule → points issued."""
    rule_errors: int = 0
    redemption_rate: float = 0.0
    point_value_minor: Decimal = Decimal(0)
    seconds: float = 0.0
    tier_mix: dict[str, dict[str, int]] | None = None
    """Month (program time zone, YYYY-MM) → tier code → members at the month's end (replayed
    months only); None without a ladder."""
    member_points: dict[str, int] = field(default_factory=dict)
    """Member key → net points of the replay (issued less taken back), for members who got
    any; not in `as_dict`."""
    grants_by_rule: dict[str, int] = field(default_factory=dict)
    """Rule → benefits granted and coupons issued."""
    member_grants: dict[str, int] = field(default_factory=dict)
    """Member key → benefits and coupons granted; not in `as_dict`."""

    @property
    def net_points(self) -> int:
        """Points issued minus points taken back by refunds."""
        return self.points_issued - self.points_taken_back

    @property
    def expected_redemptions(self) -> int:
        """Points expected to be redeemed: net points issued times the redemption rate."""
        return int(round(self.net_points * self.redemption_rate))

    @property
    def expected_cost_minor(self) -> int:
        """The expected redemptions valued at the point's value, in minor units."""
        return int((Decimal(self.expected_redemptions) * self.point_value_minor).to_integral())

    @property
    def rate(self) -> float:
        """Transactions replayed per second."""
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "transactions": self.transactions,
            "members": self.members,
            "points_issued": self.points_issued,
            "points_taken_back": self.points_taken_back,
            "net_points": self.net_points,
            "redemption_rate": self.redemption_rate,
            "expected_redemptions": self.expected_redemptions,
            "expected_cost_minor": self.expected_cost_minor,
            "by_rule": dict(sorted(self.by_rule.items())),
            "by_month": {m: dict(sorted(r.items())) for m, r in sorted(self.by_month.items())},
            "grants_by_rule": dict(sorted(self.grants_by_rule.items())),
            "rule_errors": self.rule_errors,
            "tier_mix": (
                None
                if self.tier_mix is None
                else {m: dict(t) for m, t in sorted(self.tier_mix.items())}
            ),
            "seconds": round(self.seconds, 3),
            "transactions_per_second": round(self.rate),
        }


def load_rules(path: Path) -> RuleSet:
    """Rules from a JSON file: a list of rule objects, or {"rules": [...]}, as the API takes."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidAnalyticsInput(f"cannot read rules from {path}: {exc}") from exc
    items = data.get("rules", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidAnalyticsInput("the rules file holds a list of rules")
    return compile_rules(parse_rule(item) for item in items)


def ladder_from_dict(data: Any, *, currency_exponent: int) -> QualifyingLadder:
    """A ladder in the API's JSON format (`PUT /tiers/ladder`) as a `QualifyingLadder`."""
    from pydantic import ValidationError

    from habitue.tiers.schemas import LadderWrite

    try:
        spec = LadderWrite.model_validate(data)
        tiers: list[QualifyingTier] = []
        for t in spec.tiers:
            if spec.metric == "qualifying_spend":
                if not isinstance(t.threshold, str):
                    raise ValueError(f"tier {t.code}: spend thresholds are decimal strings")
                threshold = parse_minor(t.threshold, currency_exponent)
            elif isinstance(t.threshold, int):
                threshold = t.threshold
            else:
                raise ValueError(f"tier {t.code}: thresholds of {spec.metric} are integers")
            tiers.append(QualifyingTier(t.code, threshold, t.multiplier))
        months = spec.window.months
        if spec.window.kind == tier_periods.ROLLING and months is None:
            raise ValueError("a rolling window needs its number of months")
        window = tier_periods.Window(spec.window.kind, months or 12)
        return QualifyingLadder(spec.metric, window, tuple(tiers))
    except (ValidationError, ValueError, MoneyFormatError) as exc:
        raise InvalidAnalyticsInput(f"invalid ladder: {exc}") from exc


def load_ladder(path: Path, *, currency_exponent: int) -> QualifyingLadder:
    """A ladder from a JSON file in the API's ladder format."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidAnalyticsInput(f"cannot read the ladder from {path}: {exc}") from exc
    return ladder_from_dict(data, currency_exponent=currency_exponent)


def store_ladder(conn: Connection, program_id: int) -> QualifyingLadder | None:
    """The program's stored ladder, or None when it has none."""
    from habitue.tiers.models import Tier, TierLadder

    ladders, tiers = table_of(TierLadder), table_of(Tier)
    row = conn.execute(select(ladders).where(ladders.c.program_id == program_id)).first()
    if row is None:
        return None
    rungs = conn.execute(
        select(tiers.c.code, tiers.c.threshold, tiers.c.multiplier)
        .where(tiers.c.program_id == program_id)
        .order_by(tiers.c.rank)
    ).all()
    try:
        return QualifyingLadder(
            row.metric,
            tier_periods.Window(row.window, row.window_months or 12),
            tuple(QualifyingTier(t.code, int(t.threshold), t.multiplier) for t in rungs),
        )
    except UnsupportedLadder as exc:
        raise InvalidAnalyticsInput(f"the program's ladder cannot be replayed: {exc}") from exc


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("occurred_at must carry a UTC offset")
    return moment.astimezone(UTC)


def read_csv(path: Path, *, currency_exponent: int) -> Iterator[Transaction]:
    """Purchases from a CSV in the import format; rows of one purchase sit together."""
    with path.open(newline="", encoding="utf-8") as handle:
        group: list[dict[str, str]] = []
        for row in csv.DictReader(handle):
            if group and row.get("external_id") != group[0].get("external_id"):
                yield _csv_purchase(group, currency_exponent)
                group = []
            group.append(row)
        if group:
            yield _csv_purchase(group, currency_exponent)


def _csv_purchase(rows: list[dict[str, str]], exponent: int) -> Transaction:
    first = rows[0]
    try:
        total = parse_minor(first["total"].strip(), exponent)
        occurred = _parse_time(first["occurred_at"])
        lines: list[LineInput] = []
        for row in rows:
            if not (row.get("unit_price") or "").strip():
                continue
            quantity = Decimal((row.get("quantity") or "1").strip())
            unit = parse_minor(row["unit_price"].strip(), exponent)
            lines.append(
                LineInput(
                    sku=row.get("sku") or None,
                    category=row.get("category") or None,
                    quantity=quantity,
                    unit_price_minor=unit,
                    amount_minor=int((quantity * unit).to_integral_value()),
                )
            )
    except (KeyError, ValueError, InvalidOperation, MoneyFormatError) as exc:
        raise InvalidAnalyticsInput(f"purchase {first.get('external_id')!r}: {exc}") from exc
    event = EventInput(
        type="purchase",
        external_id=first["external_id"].strip(),
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
    )
    return Transaction(first["member_external_id"].strip(), event)


def read_store(
    conn: Connection,
    program_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Transaction]:
    """The program's events from the store, in time order, with their basket lines; only
    those that occurred in [`since`, `until`) when given."""
    e = _events.c
    window: list[Any] = [e.program_id == program_id]
    if since is not None:
        window.append(e.occurred_at >= since)
    if until is not None:
        window.append(e.occurred_at < until)
    by_event: dict[str, list[LineInput]] = {}
    lines_of = [_lines.c.program_id == program_id]
    if since is not None or until is not None:
        lines_of.append(_lines.c.event_id.in_(select(e.id).where(*window)))
    line_rows = conn.execute(
        select(
            _lines.c.event_id,
            _lines.c.sku,
            _lines.c.category,
            _lines.c.quantity,
            _lines.c.unit_price_minor,
            _lines.c.amount_minor,
        )
        .where(*lines_of)
        .order_by(_lines.c.event_id, _lines.c.line_no)
    )
    for line in line_rows:
        by_event.setdefault(line.event_id, []).append(
            LineInput(
                line.sku,
                line.category,
                Decimal(line.quantity),
                line.unit_price_minor,
                line.amount_minor,
            )
        )
    rows = conn.execute(
        select(
            e.id,
            e.member_id,
            e.type,
            e.external_id,
            e.occurred_at,
            e.total_minor,
            e.refers_to,
            e.attributes,
            e.points_spent,
        )
        .where(*window)
        .order_by(e.occurred_at, e.created_at, e.id),
        execution_options={"yield_per": 10_000},
    )
    for row in rows:
        occurred = row.occurred_at
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        event = EventInput(
            type=row.type,
            external_id=row.external_id,
            occurred_at=occurred,
            total_minor=row.total_minor,
            lines=tuple(by_event.get(row.id, ())),
            attributes=row.attributes or {},
        )
        yield Transaction(str(row.member_id), event, row.refers_to, row.id)


@dataclass(slots=True)
class _Purchase:
    member: str
    total: int
    points: int
    refunded: int = 0
    taken_back: int = 0


_ZERO = Tally()
_NO_COUNTS = CounterState()


class _LazyTallies(dict[str, RuleTally]):
    """The `RuleUsage.rules` mapping, built only for the rules `decide` asks about.

    `decide` reads a rule's tally only once the rule's condition holds, so building every
    limited rule's tally for every event would be wasted work; this mapping answers `get` from
    the simulated ledger for the member and periods of the event being decided.
    """

    def __init__(self, ledger: SimulatedLedger) -> None:
        super().__init__()
        self.ledger = ledger
        self.member = ""
        self.period_keys: dict[Any, str] = {}

    def get(self, code: str, default: Any = None) -> Any:
        """The rule's tally for the current member and periods; default for unlimited rules."""
        limits = self.ledger.limits.get(code)
        if limits is None:
            return default
        cap_periods, has_budget = limits
        mine = self.ledger.tallies.get(self.member)
        periods: dict[Any, Tally] = {}
        if mine is not None:
            keys = self.period_keys
            for period in cap_periods:
                entry = mine.get((code, period))
                if entry is not None and entry[0] == keys[period]:
                    periods[period] = entry[1]
        budget_used = self.ledger.budgets.get(code, 0) if has_budget else 0
        return RuleTally(periods, budget_used)


class SimulatedLedger:
    """Members' balances, purchases' points, caps' tallies and budgets, in memory."""

    def __init__(self, rules: RuleSet, timezone: str) -> None:
        self.timezone = timezone
        self.balances: dict[str, int] = {}
        self.purchases: dict[str, _Purchase] = {}
        self.enrolled: dict[str, datetime] = {}
        self.tallies: dict[str, dict[tuple[str, Any], tuple[str, Tally]]] = {}
        """Per member, per (rule, period): the current period's key and its tally."""
        self.budgets: dict[str, int] = {}
        self.limits: dict[str, tuple[tuple[Any, ...], bool]] = {}
        """Per rule with caps or a budget: the periods of its caps, and whether it has a budget."""
        self.limited_types: set[str] = set()
        for rule in rules.rules:
            if rule.spec.caps or rule.spec.budget is not None:
                periods = tuple(dict.fromkeys(cap.period for cap in rule.spec.caps))
                self.limits[rule.code] = (periods, rule.spec.budget is not None)
                self.limited_types.add(rule.spec.event_type)
        self._lazy = _LazyTallies(self)
        self._usage = RuleUsage(self._lazy)
        self._keys: dict[int, dict[Any, str]] = {}

    def period_keys(self, at: datetime) -> dict[Any, str]:
        """`period_keys` memoised per quarter hour (time zone offsets are whole quarter hours)."""
        slot = int(at.timestamp()) // 900
        keys = self._keys.get(slot)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[slot] = period_keys(at, self.timezone)
        return keys

    def usage(self, member: str, event_type: str, keys: dict[Any, str]) -> RuleUsage | None:
        """The caps and budgets state `decide` needs (None when no rule of the type has one)."""
        if event_type not in self.limited_types:
            return None
        self._lazy.member = member
        self._lazy.period_keys = keys
        return self._usage

    def record_usage(self, member: str, keys: dict[Any, str], decision: Decision) -> None:
        """Add a decision's grants to the tallies and budgets of its limited rules."""
        limits = self.limits
        mine: dict[tuple[str, Any], tuple[str, Tally]] | None = None
        for effect in decision.effects:
            code = effect.rule_code
            found = limits.get(code)
            if found is None:
                continue
            cap_periods, has_budget = found
            amount = effect.amount if isinstance(effect, EarnPoints | AddTierCredits) else 0
            if has_budget:
                self.budgets[code] = self.budgets.get(code, 0) + amount
            if mine is None:
                mine = self.tallies.get(member)
                if mine is None:
                    mine = self.tallies[member] = {}
            for period in cap_periods:
                key = keys[period]
                entry = mine.get((code, period))
                if entry is None or entry[0] != key:
                    mine[(code, period)] = (key, Tally(amount, 1))
                else:
                    prev = entry[1]
                    mine[(code, period)] = (key, Tally(prev.points + amount, prev.count + 1))


def run_backtest(
    transactions: Iterable[Transaction],
    *,
    program: ProgramSnapshot,
    rules: RuleSet | None = None,
    redemption_rate: float = 0.7,
    point_value_minor: Decimal = Decimal(1),
    progress: Callable[[int], None] | None = None,
    ladder: QualifyingLadder | None = None,
    counters: bool = False,
) -> BacktestResult:
    """Replay transactions in order through `decide` and total what they would have issued.

    With `counters`, each member's counters (`member.counters`, as `rules.counters` keeps
    them) are replayed too, from zero at the first transaction, so "after N visits" rules
    decide as on the event path; without, rules see only the event decided counted.
    """
    if not 0.0 <= redemption_rate <= 1.0:
        raise InvalidAnalyticsInput("redemption_rate must be between 0 and 1")
    if point_value_minor < 0:
        raise InvalidAnalyticsInput("point_value must not be negative")
    rule_set = rules if rules is not None else compile_rules(())
    ledger = SimulatedLedger(rule_set, program.timezone)
    result = BacktestResult(redemption_rate=redemption_rate, point_value_minor=point_value_minor)
    by_month = result.by_month
    limited = bool(ledger.limits)
    snapshots: dict[str, MemberSnapshot] = {}
    balances = ledger.balances
    purchases = ledger.purchases
    period_keys_of = ledger.period_keys
    qualifier = Qualifier(ladder, program.timezone) if ladder is not None else None
    tier_mix: dict[str, dict[str, int]] = {}
    ranks: dict[str, int] = {}
    mix_month: str | None = None
    states: dict[str, CounterState] = {}
    tz = program.timezone
    grants: dict[str, int] = {}
    member_grants: dict[str, int] = {}
    started = time.perf_counter()
    count = issued = taken_back = errors = 0
    for tx in transactions:
        count += 1
        event = tx.event
        member_key = tx.member
        member = snapshots.get(member_key)
        if member is None:
            ledger.enrolled[member_key] = event.occurred_at
            member = snapshots[member_key] = MemberSnapshot(
                id=member_key, status="active", enrolled_at=event.occurred_at
            )
        if event.type == "refund":
            taken_back += _refund(ledger, tx)
            if counters:
                refunded = CounterEvent("refund", event.occurred_at, event.total_minor)
                states[member_key] = bump(states.get(member_key, _NO_COUNTS), refunded, tz)
            continue
        keys = period_keys_of(event.occurred_at)
        if qualifier is not None and ladder is not None:
            if mix_month != keys["month"]:
                if mix_month is not None:
                    tier_mix[mix_month] = qualifier.mix()
                mix_month = keys["month"]
            qualifier.advance(qualifier.local_day(event.occurred_at))
            rank = qualifier.rank(member_key)
            if ranks.get(member_key) != rank:
                ranks[member_key] = rank
                tier = ladder.tiers[rank] if rank >= 0 else None
                member = snapshots[member_key] = replace(
                    member,
                    tier=tier.code if tier is not None else None,
                    earn_multiplier=Decimal(tier.multiplier) if tier is not None else Decimal(1),
                )
        usage = ledger.usage(member_key, event.type, keys) if limited else None
        decided = member
        if counters:
            state = states.get(member_key, _NO_COUNTS)
            if state.lifetime:
                decided = replace(member, counters=counters_at(state, event.occurred_at, tz))
        decision = decide(event, decided, program, rule_set, event.occurred_at, usage)
        if counters:
            categories = tuple(line.category for line in event.lines if line.category)
            counted = CounterEvent(event.type, event.occurred_at, event.total_minor, categories)
            states[member_key] = bump(states.get(member_key, _NO_COUNTS), counted, tz)
        if decision.errors:
            errors += len(decision.errors)
        points = 0
        month = by_month.get(keys["month"])
        if month is None:
            month = by_month[keys["month"]] = {}
        for effect in decision.effects:
            if type(effect) is EarnPoints:
                points += effect.amount
                month[effect.rule_code] = month.get(effect.rule_code, 0) + effect.amount
            elif type(effect) is GrantBenefit or type(effect) is IssueCoupon:
                grants[effect.rule_code] = grants.get(effect.rule_code, 0) + 1
                member_grants[member_key] = member_grants.get(member_key, 0) + 1
        if usage is not None:
            ledger.record_usage(member_key, keys, decision)
        if qualifier is not None and ladder is not None:
            amount = metric_amount(ladder.metric, event, decision)
            qualifier.add(member_key, event.occurred_at, amount)
        if points:
            issued += points
            balances[member_key] = balances.get(member_key, 0) + points
            if event.type == "purchase":
                purchases[tx.key or event.external_id] = _Purchase(
                    member_key, event.total_minor, points
                )
        if progress is not None and count % 10_000 == 0:
            progress(10_000)
    if progress is not None and count % 10_000:
        progress(count % 10_000)
    if qualifier is not None and mix_month is not None:
        tier_mix[mix_month] = qualifier.mix()
    if qualifier is not None:
        result.tier_mix = tier_mix
    for month_rules in by_month.values():
        for code, amount in month_rules.items():
            result.by_rule[code] = result.by_rule.get(code, 0) + amount
    result.transactions = count
    result.points_issued = issued
    result.points_taken_back = taken_back
    result.rule_errors = errors
    result.members = len(ledger.enrolled)
    result.member_points = {k: v for k, v in balances.items() if v}
    result.grants_by_rule = dict(sorted(grants.items()))
    result.member_grants = member_grants
    result.seconds = time.perf_counter() - started
    return result


def _refund(ledger: SimulatedLedger, tx: Transaction) -> int:
    """Take back the refunded share of the purchase's points, as the real refund does."""
    purchase = ledger.purchases.get(tx.refers_to or "")
    if purchase is None:
        return 0
    amount = min(tx.event.total_minor, purchase.total - purchase.refunded)
    if amount <= 0:
        return 0
    purchase.refunded += amount
    target = (
        purchase.points * purchase.refunded // purchase.total if purchase.total else purchase.points
    )
    take = max(target - purchase.taken_back, 0)
    balance = ledger.balances.get(purchase.member, 0)
    take = min(take, max(balance, 0))
    purchase.taken_back += take
    ledger.balances[purchase.member] = balance - take
    return take
