"""Backtest: replay past transactions through the same `decide` with a simulated ledger.

Transactions come from a CSV in the import format, read by the import's own reader so that
what the import rejects is not replayed and basket lines are priced by the same rule
(`backtest_input.read_csv`), or from the store (purchases, refunds and actions of a program,
in time order). Each is decided with the rules given and the program's base earn; an
in-memory ledger keeps each member's points, the caps' tallies and the rules' budgets, and
refunds take back the share of the purchase's points the real refund takes back. The result
is points issued, per rule and per month, expected redemptions and their cost. With a ladder
(`load_ladder`, or the store's), a `tiers.qualify.Qualifier` keeps each member's tier as
events are replayed: each event is decided with the member's tier (and its earn multiplier),
then counted toward the ladder's metric, and `tier_mix` gives the members per tier at the end
of each month (see `tiers/qualify.py` for what the replay simplifies). Without a ladder
members are decided without a tier and `tier_mix` is None.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from habitue.analytics.backtest_input import (
    EPOCH,
    CsvTransactions,
    Transaction,
    ladder_from_dict,
    load_ladder,
    load_rules,
    read_csv,
    read_store,
    store_ladder,
)
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.collect import fewer_collections
from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.context import zone
from habitue.rules.counters import CounterEvent, CounterState, bump, counters_at
from habitue.rules.decide import decide
from habitue.rules.types import (
    AddTierCredits,
    Decision,
    EarnPoints,
    GrantBenefit,
    IssueCoupon,
    MemberSnapshot,
    ProgramSnapshot,
    RuleTally,
    RuleUsage,
)
from habitue.rules.usage import period_keys
from habitue.tiers.qualify import Qualifier, QualifyingLadder, metric_amount

__all__ = [
    "EPOCH",
    "BacktestResult",
    "CsvTransactions",
    "SimulatedLedger",
    "Transaction",
    "ladder_from_dict",
    "load_ladder",
    "load_rules",
    "read_csv",
    "read_store",
    "run_backtest",
    "store_ladder",
]


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
    rejected: int = 0
    """Purchases of a CSV not replayed because the import rejects them (`rejects`)."""
    rejects: list[tuple[str, str]] = field(default_factory=list)
    """The first of them (up to 100): external id and the import's reason."""
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
            "rejected": self.rejected,
            "rejects": [{"external_id": e, "reason": r} for e, r in self.rejects],
            "tier_mix": (
                None
                if self.tier_mix is None
                else {m: dict(t) for m, t in sorted(self.tier_mix.items())}
            ),
            "seconds": round(self.seconds, 3),
            "transactions_per_second": round(self.rate),
        }


@dataclass(slots=True)
class _Purchase:
    """A purchase's refund state, made on its first refund (see `SimulatedLedger.purchases`)."""

    member: str
    total: int
    points: int
    refunded: int = 0
    taken_back: int = 0


_NO_COUNTS = CounterState()
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(seconds: int) -> datetime:
    """A UTC time from whole seconds since 1970 (any year `datetime` holds)."""
    return _UTC_EPOCH + timedelta(seconds=seconds)


class _Count:
    """A rule's points and grants for one member in the period of key `key`: a `Tally` the
    ledger adds to in place (`decide` reads `points` and `count` only)."""

    __slots__ = ("key", "points", "count")

    def __init__(self, key: str, points: int, count: int) -> None:
        self.key = key
        self.points = points
        self.count = count


class _LiveTally:
    """One rule's usage as `decide` reads a `RuleTally` (`periods`, `budget_used`), kept and
    updated in place by the ledger instead of built for each event: for one member, or for a
    rule without caps, for all members (its budget only).

    `held` keeps, per cap period, the count of the period it was last added in (its key);
    `periods` is the part of it current for the period keys `keys` (the event being
    decided), rebuilt when those change."""

    __slots__ = ("periods", "budget_used", "keys", "held")

    def __init__(self, keys: dict[Any, str] | None) -> None:
        self.periods: dict[Any, _Count] = {}
        self.budget_used = 0
        self.keys = keys
        self.held: dict[Any, _Count] = {}

    def current(self, keys: dict[Any, str]) -> None:
        """Make `periods` the counts held for the periods of `keys` (in place: `periods` is
        always a part of `held`)."""
        self.keys = keys
        periods = self.periods
        for period, count in self.held.items():
            if count.key == keys[period]:
                periods[period] = count
            elif period in periods:
                del periods[period]

    def add(self, period: Any, key: str, amount: int) -> None:
        """Count a grant of `amount` in a period (its key `key`, that of `keys`)."""
        count = self.held.get(period)
        if count is None or count.key != key:
            self.held[period] = self.periods[period] = _Count(key, amount, 1)
        else:
            count.points += amount
            count.count += 1


class _LazyTallies(dict[str, RuleTally]):
    """The `RuleUsage.rules` mapping, answering only for the rules `decide` asks about.

    `decide` reads a rule's tally only once the rule's condition holds; this mapping answers
    `get` from the simulated ledger for the member and periods of the event being decided,
    with the ledger's own `_LiveTally` (nothing built per event).
    """

    def __init__(self, ledger: SimulatedLedger) -> None:
        super().__init__()
        self.ledger = ledger
        self.member = ""
        self.period_keys: dict[Any, str] = {}

    def get(self, code: str, default: Any = None) -> Any:
        """The rule's tally for the current member and periods; default for unlimited rules."""
        ledger = self.ledger
        limits = ledger.limits.get(code)
        if limits is None:
            return default
        cap_periods, has_budget = limits
        if not cap_periods:
            return ledger.budget_tallies[code]
        mine = ledger.tallies.get(self.member)  # `ledger.live`, inlined
        if mine is not None:
            tally = mine.get(code)
            if tally is not None:
                keys = self.period_keys
                if tally.keys is not keys:
                    tally.current(keys)
                if has_budget:
                    tally.budget_used = ledger.budgets.get(code, 0)
                return tally
        return ledger.live(self.member, code, self.period_keys, has_budget)


class SimulatedLedger:
    """Members' balances, purchases' points, caps' tallies and budgets, in memory."""

    def __init__(self, rules: RuleSet, timezone: str) -> None:
        self.timezone = timezone
        self.balances: dict[str, int] = {}
        self.purchases: dict[str, tuple[str, int, int] | _Purchase] = {}
        """Per purchase that earned: (member, total, points), its `_Purchase` once refunded."""
        self.enrolled: dict[str, datetime] = {}
        self.tallies: dict[str, dict[str, _LiveTally]] = {}
        """Per member, per rule with caps: its tallies for the periods of the member's last
        event the rule was decided on."""
        self.budgets: dict[str, int] = {}
        self.budget_tallies: dict[str, _LiveTally] = {}
        """Per rule with a budget and no caps: its usage (the budget used)."""
        self.limits: dict[str, tuple[tuple[Any, ...], bool]] = {}
        """Per rule with caps or a budget: the periods of its caps, and whether it has a budget."""
        self.limited_types: set[str] = set()
        for rule in rules.rules:
            if rule.limited:
                periods = tuple(dict.fromkeys(period for period, _, _ in rule.caps))
                code = rule.spec.code
                self.limits[code] = (periods, rule.budget is not None)
                self.limited_types.add(rule.spec.event_type)
                if not periods:
                    self.budget_tallies[code] = _LiveTally(None)
        self._lazy = _LazyTallies(self)
        self._usage = RuleUsage(self._lazy)
        self._day_keys: dict[int, dict[Any, str]] = {}
        """Period keys per local day (days since 1970-01-01)."""
        self._keys: dict[int, dict[Any, str]] = {}
        """Period keys per quarter hour, on the days the zone's offset changes."""
        self._offsets: dict[int, int | None] = {}
        self._last: tuple[datetime, datetime, dict[Any, str]] | None = None
        """The span (UTC, start included, end excluded) of the last keys given, and the keys."""

    def live(
        self, member: str, code: str, keys: dict[Any, str], has_budget: bool
    ) -> _LiveTally:
        """A rule with caps: its tallies for a member in the periods of `keys`."""
        mine = self.tallies.get(member)
        if mine is None:
            mine = self.tallies[member] = {}
        tally = mine.get(code)
        if tally is None:
            tally = mine[code] = _LiveTally(keys)
        elif tally.keys is not keys:
            tally.current(keys)
        if has_budget:
            tally.budget_used = self.budgets.get(code, 0)
        return tally

    def period_keys(self, at: datetime) -> dict[Any, str]:
        """`period_keys` memoised per local day: the keys depend on the local date only, which
        is the UTC time plus the zone's offset, the same all UTC day but on the days the
        offset changes (there per quarter hour: offsets are whole quarter hours). The keys of
        the last span asked are kept with its bounds: a replay in time order mostly asks the
        same span again, answered by two comparisons of times."""
        last = self._last
        if last is not None:
            try:
                if last[0] <= at < last[1]:
                    return last[2]
            except TypeError:  # a naive time: not comparable with the span's
                pass
        seconds = math.floor(at.timestamp())
        day = seconds // 86_400
        offset = self._offsets.get(day)
        if offset is None:
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            offset = self._offsets[day] = self._day_offset(day)
        if offset is None:
            memo, slot = self._keys, seconds // 900
            start, end = slot * 900, slot * 900 + 900
        else:
            memo, slot = self._day_keys, (seconds + offset) // 86_400
            # the local day, within the UTC day whose offset it is
            start = max(day * 86_400, slot * 86_400 - offset)
            end = min(day * 86_400 + 86_400, slot * 86_400 + 86_400 - offset)
        keys = memo.get(slot)
        if keys is None:
            if len(memo) > 100_000:
                memo.clear()
            keys = memo[slot] = period_keys(at, self.timezone)
        try:
            self._last = (_utc(start), _utc(end), keys)
        except OverflowError:  # the last day `datetime` holds
            self._last = None
        return keys

    def _day_offset(self, day: int) -> int | None:
        """The zone's UTC offset in seconds throughout a UTC day, None when it changes."""
        tz = zone(self.timezone)
        first = datetime.fromtimestamp(day * 86_400, UTC).astimezone(tz).utcoffset()
        last = datetime.fromtimestamp(day * 86_400 + 86_399, UTC).astimezone(tz).utcoffset()
        if first is None or first != last:
            return None
        return int(first.total_seconds())

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
        for effect in decision.effects:
            code = effect.rule_code
            found = limits.get(code)
            if found is None:
                continue
            cap_periods, has_budget = found
            amount = effect.amount if isinstance(effect, EarnPoints | AddTierCredits) else 0
            if has_budget:
                used = self.budgets[code] = self.budgets.get(code, 0) + amount
                if not cap_periods:
                    self.budget_tallies[code].budget_used = used
            if cap_periods:
                # `decide` asked for this tally (`_LazyTallies.get`): it is there
                mine = self.tallies.get(member)
                tally = mine.get(code) if mine is not None else None
                if tally is None:
                    tally = self.live(member, code, keys, False)
                elif tally.keys is not keys:
                    tally.current(keys)
                for period in cap_periods:
                    tally.add(period, keys[period], amount)


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
    decide as on the event path; without, rules see only the event decided counted. The
    replay (and the reading of `transactions`, which it drives) runs with fewer cyclic
    collections (`collect.fewer_collections`).
    """
    with fewer_collections():
        return _replay(
            transactions,
            program=program,
            rules=rules,
            redemption_rate=redemption_rate,
            point_value_minor=point_value_minor,
            progress=progress,
            ladder=ladder,
            counters=counters,
        )


def _replay(
    transactions: Iterable[Transaction],
    *,
    program: ProgramSnapshot,
    rules: RuleSet | None,
    redemption_rate: float,
    point_value_minor: Decimal,
    progress: Callable[[int], None] | None,
    ladder: QualifyingLadder | None,
    counters: bool,
) -> BacktestResult:
    if not 0.0 <= redemption_rate <= 1.0:
        raise InvalidAnalyticsInput("redemption_rate must be between 0 and 1")
    if point_value_minor < 0:
        raise InvalidAnalyticsInput("point_value must not be negative")
    rule_set = rules if rules is not None else compile_rules(())
    ledger = SimulatedLedger(rule_set, program.timezone)
    result = BacktestResult(redemption_rate=redemption_rate, point_value_minor=point_value_minor)
    by_month = result.by_month
    limited = bool(ledger.limits)
    limited_types = ledger.limited_types
    lazy = ledger._lazy
    ledger_usage = ledger._usage
    snapshots: dict[str, MemberSnapshot] = {}
    balances = ledger.balances
    purchases = ledger.purchases
    period_keys_of = ledger.period_keys
    span_start = span_end = _UTC_EPOCH
    span_keys: dict[Any, str] = {}
    """The period keys of `ledger.period_keys`'s last span, checked here first (inlined)."""
    month_keys: dict[Any, str] | None = None
    month: dict[str, int] = {}
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
        event_type = event.type
        if event_type == "refund":
            taken_back += _refund(ledger, tx)
            if counters:
                refunded = CounterEvent("refund", event.occurred_at, event.total_minor)
                states[member_key] = bump(states.get(member_key, _NO_COUNTS), refunded, tz)
            continue
        at = event.occurred_at
        try:
            if span_start <= at < span_end:
                keys = span_keys
            else:
                keys = period_keys_of(at)
                if ledger._last is not None:
                    span_start, span_end, span_keys = ledger._last
        except TypeError:  # a naive time: not comparable with the span's
            keys = period_keys_of(at)
        if qualifier is not None and ladder is not None:
            if mix_month != keys["month"]:
                if mix_month is not None:
                    tier_mix[mix_month] = qualifier.mix()
                mix_month = keys["month"]
            qualifier.advance(qualifier.local_day(at))
            rank = qualifier.rank(member_key)
            if ranks.get(member_key) != rank:
                ranks[member_key] = rank
                tier = ladder.tiers[rank] if rank >= 0 else None
                member = snapshots[member_key] = replace(
                    member,
                    tier=tier.code if tier is not None else None,
                    earn_multiplier=Decimal(tier.multiplier) if tier is not None else Decimal(1),
                )
        usage = None
        if limited and event_type in limited_types:  # `ledger.usage`, inlined
            lazy.member = member_key
            lazy.period_keys = keys
            usage = ledger_usage
        decided = member
        if counters:
            state = states.get(member_key, _NO_COUNTS)
            if state.lifetime:
                decided = replace(member, counters=counters_at(state, at, tz))
        decision = decide(event, decided, program, rule_set, at, usage)
        if counters:
            categories = tuple(line.category for line in event.lines if line.category)
            counted = CounterEvent(event_type, at, event.total_minor, categories)
            states[member_key] = bump(states.get(member_key, _NO_COUNTS), counted, tz)
        if decision.errors:
            errors += len(decision.errors)
        if keys is not month_keys:
            month_keys = keys
            month = by_month.setdefault(keys["month"], {})
        points = 0
        for effect in decision.effects:
            if type(effect) is EarnPoints:
                amount = effect.amount
                points += amount
                code = effect.rule_code
                month[code] = month.get(code, 0) + amount
            elif type(effect) is GrantBenefit or type(effect) is IssueCoupon:
                grants[effect.rule_code] = grants.get(effect.rule_code, 0) + 1
                member_grants[member_key] = member_grants.get(member_key, 0) + 1
        if usage is not None:
            ledger.record_usage(member_key, keys, decision)
        if qualifier is not None and ladder is not None:
            amount = metric_amount(ladder.metric, event, decision)
            qualifier.add(member_key, at, amount)
        if points:
            issued += points
            balances[member_key] = balances.get(member_key, 0) + points
            if event_type == "purchase":
                purchases[tx.key or event.external_id] = (member_key, event.total_minor, points)
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
    if isinstance(transactions, CsvTransactions):
        result.rejected = len(transactions.rejects)
        result.rejects = [(r.external_id, r.reason) for r in transactions.rejects[:100]]
    result.member_points = {k: v for k, v in balances.items() if v}
    result.grants_by_rule = dict(sorted(grants.items()))
    result.member_grants = member_grants
    result.seconds = time.perf_counter() - started
    return result


def _refund(ledger: SimulatedLedger, tx: Transaction) -> int:
    """Take back the refunded share of the purchase's points, as the real refund does."""
    key = tx.refers_to or ""
    purchase = ledger.purchases.get(key)
    if purchase is None:
        return 0
    if isinstance(purchase, tuple):
        member, total, points = purchase
        purchase = ledger.purchases[key] = _Purchase(member, total, points)
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
