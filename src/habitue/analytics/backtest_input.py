"""What a backtest replays and with what: transactions from an import file or the store,
rules and a tier ladder from JSON files or the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, select

from habitue import clock
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.db import table_of
from habitue.events.importer.columns import read_runs
from habitue.events.importer.reading import CsvReject
from habitue.events.models import Event, EventLine
from habitue.frozen import fast_init
from habitue.money import MoneyFormatError, parse_minor
from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.model import parse_rule
from habitue.rules.types import EventInput, LineInput
from habitue.tiers import periods as tier_periods
from habitue.tiers.qualify import QualifyingLadder, QualifyingTier, UnsupportedLadder

_events = table_of(Event)
_lines = table_of(EventLine)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@fast_init
@dataclass(frozen=True, slots=True)
class Transaction:
    """One event to replay: a member key, the event, and for a refund the purchase it refunds."""

    member: str
    event: EventInput
    refers_to: str | None = None
    """For a refund: the key of the purchase it refunds."""
    key: str | None = None
    """The store's event id (a refund refers to it); the external id when None."""


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


READ_AHEAD = 1024
"""Purchases read before they are replayed, in turn: reading a run of purchases and then
replaying it keeps each one's code and data warm in the processor's caches. One purchase at
a time, `bench/backtest.py`'s shelf-price file replayed at 14,000-16,500/s; in runs of 512
to 4,096, at 18,300-20,300/s (best of four, alternated in one process)."""


class CsvTransactions:
    """The purchases of an import file, read as the import reads them, to replay.

    Iterating yields the purchases the import would take, in file order, each with its
    basket lines priced by the same rule (`events.importer.reading`: a line's `amount` wins
    over quantity × unit price, unit prices with up to 4 more decimals, the cent tolerance
    on the sum of the lines); what the import would reject is kept in `rejects`, with the
    import's reason, and never replayed, so a backtest and an import of one file agree."""

    def __init__(self, path: Path, *, currency_exponent: int, now: datetime | None = None):
        self.path = path
        self.currency_exponent = currency_exponent
        self.latest = (now or clock.now()) + timedelta(minutes=10)
        self.rejects: list[CsvReject] = []

    def __iter__(self) -> Iterator[Transaction]:
        self.rejects.clear()
        batch: list[Transaction] = []
        rejects = self.rejects
        try:
            for run in read_runs(
                self.path,
                currency_exponent=self.currency_exponent,
                latest=self.latest,
                make=Transaction,
            ):
                for item in run:
                    if isinstance(item, CsvReject):
                        rejects.append(item)
                    else:
                        batch.append(item)
                if len(batch) >= READ_AHEAD:
                    yield from batch
                    batch.clear()
        except (OSError, ValueError) as exc:
            raise InvalidAnalyticsInput(f"cannot read purchases from {self.path}: {exc}") from exc
        yield from batch


def read_csv(
    path: Path, *, currency_exponent: int, now: datetime | None = None
) -> CsvTransactions:
    """Purchases from a CSV in the import format, as the import reads them; rows of one
    purchase sit together. A file without the import's columns raises
    `InvalidAnalyticsInput` when iterated."""
    return CsvTransactions(path, currency_exponent=currency_exponent, now=now)


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
            _lines.c.tax_minor,
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
                line.tax_minor,
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
