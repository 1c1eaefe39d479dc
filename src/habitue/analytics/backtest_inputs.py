"""What a backtest replays: transactions read from a CSV in the import format or from the store,
and the rules and tier ladder to replay them with (files in the API's formats, or the store's
ladder). `habitue.analytics.backtest` replays them; its names re-export these.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
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
from habitue.rules.model import parse_rule
from habitue.rules.types import EventInput, LineInput
from habitue.tiers import periods as tier_periods
from habitue.tiers.qualify import QualifyingLadder, QualifyingTier, UnsupportedLadder

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
