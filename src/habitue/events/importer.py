"""Bulk import of purchases from CSV: the same `decide`, set-based writes, idempotent re-runs.

Rows of one purchase share its `external_id` and sit next to each other. Each chunk of
purchases is one transaction: events, lines, ledger transactions, postings, lots and outbox
rows are written in bulk (COPY on PostgreSQL, executemany on SQLite) and balances are
updated once per account.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Engine, Table, bindparam, select, text, update

from habitue import clock
from habitue.db import table_of
from habitue.events.models import Event, EventLine
from habitue.ids import new_id
from habitue.ledger.expiry import lot_expiry
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.cards import new_card_number
from habitue.members.models import Card, Member
from habitue.messaging.models import OutboxEvent
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.models import Program
from habitue.programs.service import SYSTEM_ACCOUNTS
from habitue.rules import decide as rules_decide
from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.service import live_rule_versions_sync
from habitue.rules.types import (
    EarnPoints,
    EventInput,
    LineInput,
    MemberSnapshot,
    ProgramSnapshot,
)

REQUIRED = ("member_external_id", "external_id", "occurred_at", "total")
CHUNK = 5000

_programs = table_of(Program)
_members = table_of(Member)
_cards = table_of(Card)
_accounts = table_of(Account)
_events = table_of(Event)
_lines = table_of(EventLine)
_txns = table_of(LedgerTransaction)
_postings = table_of(Posting)
_lots = table_of(Lot)
_outbox = table_of(OutboxEvent)


@dataclass
class ImportReport:
    """What an import did: rows read, purchases imported or already there, rejects."""

    rows: int = 0
    imported: int = 0
    already: int = 0
    rejected: int = 0
    points: int = 0
    enrolled: int = 0
    rejects: list[tuple[dict[str, str], str]] = field(default_factory=list)
    skipped_rules: tuple[str, ...] = ()
    """Rules with caps or budgets, which only the API path applies."""


@dataclass
class _Member:
    id: int
    public_id: str
    status: str
    available: int
    pending: int
    balance: int
    enrolled_at: datetime
    tier: str | None


@dataclass
class _Program:
    id: int
    code: str
    exponent: int
    snapshot: ProgramSnapshot
    expiry_policy: str
    expiry_days: int | None
    timezone: str
    pending_days: int
    card_prefix: str
    system: dict[str, int]
    rules: RuleSet
    skipped_rules: tuple[str, ...]


def _load_program(conn: Connection, code: str) -> _Program:
    from habitue.money import currency_exponent

    row = conn.execute(select(_programs).where(_programs.c.code == code)).mappings().first()
    if row is None:
        raise LookupError(f"no program {code!r}")
    system = dict(
        conn.execute(
            select(_accounts.c.kind, _accounts.c.id).where(
                _accounts.c.program_id == row["id"], _accounts.c.member_id.is_(None)
            )
        ).all()
    )
    exp = currency_exponent(row["currency"])
    # The bulk path keeps no per-member caps, budgets or counters: rules that need them are
    # left to the API path and named in the report.
    versions = live_rule_versions_sync(conn, row["id"])
    usable = [v for v in versions if not v.spec.caps and v.spec.budget is None]
    skipped = tuple(v.spec.code for v in versions if v not in usable)
    return _Program(
        id=row["id"],
        code=code,
        exponent=exp,
        snapshot=ProgramSnapshot(
            id=row["id"],
            code=code,
            currency=row["currency"],
            currency_exponent=exp,
            timezone=row["timezone"],
            earn_rate=Decimal(row["earn_rate"]),
            rounding=row["rounding"],
            pending_days=row["pending_days"],
        ),
        expiry_policy=row["expiry_policy"],
        expiry_days=row["expiry_days"],
        timezone=row["timezone"],
        pending_days=row["pending_days"],
        card_prefix=row["card_prefix"],
        system={k: system[k] for k in SYSTEM_ACCOUNTS},
        rules=compile_rules(usable),
        skipped_rules=skipped,
    )


def _groups(reader: Iterator[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
    group: list[dict[str, str]] = []
    for row in reader:
        if group and row.get("external_id") != group[0].get("external_id"):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("occurred_at must carry a UTC offset")
    return clock.as_utc(dt)


def _parse_group(
    rows: list[dict[str, str]], program: _Program, now: datetime
) -> tuple[EventInput, str]:
    first = rows[0]
    for col in REQUIRED:
        if not (first.get(col) or "").strip():
            raise ValueError(f"{col} is missing")
    try:
        occurred = _parse_time(first["occurred_at"])
    except ValueError as exc:
        raise ValueError(f"occurred_at: {exc}") from exc
    if occurred > now + timedelta(minutes=10):
        raise ValueError("occurred_at is in the future")
    try:
        total = parse_minor(first["total"].strip(), program.exponent)
    except MoneyFormatError as exc:
        raise ValueError(f"total: {exc}") from exc
    lines: list[LineInput] = []
    if any((r.get("unit_price") or "").strip() for r in rows):
        for r in rows:
            if r.get("total") != first["total"]:
                raise ValueError("rows of one purchase disagree on total")
            try:
                qty = Decimal((r.get("quantity") or "1").strip())
                unit = parse_minor((r.get("unit_price") or "").strip(), program.exponent)
            except (InvalidOperation, MoneyFormatError) as exc:
                raise ValueError(f"line: {exc}") from exc
            if qty <= 0:
                raise ValueError("quantity must be positive")
            lines.append(
                LineInput(
                    sku=(r.get("sku") or None),
                    category=(r.get("category") or None),
                    quantity=qty,
                    unit_price_minor=unit,
                    amount_minor=int((qty * unit).to_integral_value()),
                )
            )
        line_sum = sum(ln.amount_minor for ln in lines)
        if abs(line_sum - total) > 1:
            raise ValueError(
                f"lines add up to {format_minor(line_sum, program.exponent)}, "
                f"total is {format_minor(total, program.exponent)}"
            )
    elif len(rows) > 1:
        raise ValueError("duplicate external_id in the file")
    event = EventInput(
        type="purchase",
        external_id=first["external_id"].strip(),
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
    )
    return event, first["member_external_id"].strip()


def _allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """Reserve `n` primary keys (sequence on PostgreSQL; max+1 under SQLite's write lock)."""
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        seq = f"{table.name}_id_seq"
        return list(
            conn.execute(
                text("SELECT nextval(:s) FROM generate_series(1, :n)"), {"s": seq, "n": n}
            ).scalars()
        )
    start = conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}")).scalar_one()  # noqa: S608
    return list(range(int(start) + 1, int(start) + 1 + n))


def _copy_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows: COPY on PostgreSQL; on SQLite one prepared executemany with the
    columns' own bind processors applied directly (SQLAlchemy's per-row bookkeeping costs
    more than SQLite's insert)."""
    if not rows:
        return
    cols = list(rows[0].keys())
    json_cols = {c.name for c in table.columns if isinstance(c.type, JSON)}
    if conn.dialect.name != "postgresql":
        dialect = conn.dialect
        procs: list[Any] = []
        for c in cols:
            if c in json_cols:
                procs.append(_json_text)
            else:
                procs.append(table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"  # noqa: S608
        params = [
            tuple(
                r[c] if p is None or r[c] is None else p(r[c])
                for c, p in zip(cols, procs, strict=True)
            )
            for r in rows
        ]
        raw_sqlite = conn.connection.driver_connection
        assert raw_sqlite is not None
        cur = raw_sqlite.cursor()
        cur.executemany(sql, params)
        cur.close()
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as pg_cur:
        stmt = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
        with pg_cur.copy(stmt) as copy:
            for r in rows:
                copy.write_row([_json_text(r[c]) if c in json_cols else r[c] for c in cols])


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _load_members(conn: Connection, program_id: int, external_ids: list[str]) -> dict[str, _Member]:
    out: dict[str, _Member] = {}
    avail = _accounts.alias("a")
    pend = _accounts.alias("p")
    for i in range(0, len(external_ids), 900):
        chunk = external_ids[i : i + 900]
        q = (
            select(
                _members.c.external_id,
                _members.c.id,
                _members.c.public_id,
                _members.c.status,
                _members.c.enrolled_at,
                _members.c.tier,
                avail.c.id.label("available"),
                avail.c.balance,
                pend.c.id.label("pending"),
            )
            .join(avail, (avail.c.member_id == _members.c.id) & (avail.c.kind == "available"))
            .join(pend, (pend.c.member_id == _members.c.id) & (pend.c.kind == "pending"))
            .where(_members.c.program_id == program_id, _members.c.external_id.in_(chunk))
        )
        for r in conn.execute(q):
            out[r.external_id] = _Member(
                r.id,
                r.public_id,
                r.status,
                r.available,
                r.pending,
                int(r.balance),
                clock.as_utc(r.enrolled_at),
                r.tier,
            )
    return out


def _fresh_card_numbers(conn: Connection, prefix: str, n: int) -> list[str]:
    """`n` distinct card numbers under `prefix` that no card has yet."""
    out: set[str] = set()
    while len(out) < n:
        want = n - len(out)
        drawn = {new_card_number(prefix) for _ in range(want)} - out
        for i in range(0, len(drawn), 900):
            chunk = list(drawn)[i : i + 900]
            taken = set(
                conn.execute(select(_cards.c.number).where(_cards.c.number.in_(chunk))).scalars()
            )
            out.update(set(chunk) - taken)
    return list(out)[:n]


def _enrol_missing(
    conn: Connection, program: _Program, external_ids: list[str], now: datetime
) -> dict[str, _Member]:
    ids = _allocate_ids(conn, _members, len(external_ids))
    numbers = _fresh_card_numbers(conn, program.card_prefix, len(external_ids))
    members: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for mid, ext in zip(ids, external_ids, strict=True):
        public = new_id()
        members.append(
            {
                "id": mid,
                "public_id": public,
                "program_id": program.id,
                "external_id": ext,
                "email": None,
                "email_hash": None,
                "phone": None,
                "phone_hash": None,
                "first_name": None,
                "last_name": None,
                "birth_date": None,
                "locale": "en",
                "status": "active",
                "tier": None,
                "consents": {},
                "attributes": {},
                "lifetime_earned": 0,
                "enrolled_at": now,
                "updated_at": now,
            }
        )
        number = numbers.pop()
        cards.append(
            {
                "program_id": program.id,
                "member_id": mid,
                "number": number,
                "kind": "physical",
                "status": "active",
                "replaced_by": None,
                "created_at": now,
                "blocked_at": None,
            }
        )
        outbox.append(
            {
                "program_id": program.id,
                "seq": None,
                "type": "member.enrolled",
                "member_id": public,
                "created_at": now,
                "payload": {
                    "member_id": public,
                    "card_number": number,
                    "external_id": ext,
                    "locale": "en",
                },
            }
        )
    _copy_rows(conn, _members, members)
    acc_ids = _allocate_ids(conn, _accounts, 2 * len(ids))
    accounts = []
    for n, mid in enumerate(ids):
        accounts.append(
            {
                "id": acc_ids[2 * n],
                "program_id": program.id,
                "member_id": mid,
                "kind": "available",
                "balance": 0,
            }
        )
        accounts.append(
            {
                "id": acc_ids[2 * n + 1],
                "program_id": program.id,
                "member_id": mid,
                "kind": "pending",
                "balance": 0,
            }
        )
    _copy_rows(conn, _accounts, accounts)
    _copy_rows(conn, _cards, cards)
    _copy_rows(conn, _outbox, outbox)
    return {
        ext: _Member(
            mid, m["public_id"], "active", acc_ids[2 * n], acc_ids[2 * n + 1], 0, now, None
        )
        for n, (mid, ext, m) in enumerate(zip(ids, external_ids, members, strict=True))
    }


def _existing(conn: Connection, program_id: int, source: str, ext_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ext_ids), 900):
        chunk = ext_ids[i : i + 900]
        found.update(
            conn.execute(
                select(_events.c.external_id).where(
                    _events.c.program_id == program_id,
                    _events.c.source == source,
                    _events.c.external_id.in_(chunk),
                )
            ).scalars()
        )
    return found


def _import_chunk(
    conn: Connection,
    program: _Program,
    groups: list[list[dict[str, str]]],
    report: ImportReport,
    *,
    enrol_missing: bool,
    source: str,
    now: datetime,
) -> None:
    parsed: list[tuple[EventInput, str, list[dict[str, str]]]] = []
    for rows in groups:
        try:
            event, member_ext = _parse_group(rows, program, now)
        except ValueError as exc:
            report.rejected += 1
            report.rejects.extend((r, str(exc)) for r in rows)
            continue
        parsed.append((event, member_ext, rows))
    existing = _existing(conn, program.id, source, [e.external_id for e, _, _ in parsed])
    member_exts = sorted({m for _, m, _ in parsed})
    members = _load_members(conn, program.id, member_exts)
    missing = [m for m in member_exts if m not in members]
    if missing and enrol_missing:
        members.update(_enrol_missing(conn, program, missing, now))
        report.enrolled += len(missing)
    todo: list[tuple[EventInput, _Member]] = []
    seen: set[str] = set()
    for event, member_ext, rows in parsed:
        if event.external_id in existing:
            report.already += 1
            continue
        if event.external_id in seen:
            report.rejected += 1
            report.rejects.extend((r, "duplicate external_id in the file") for r in rows)
            continue
        member = members.get(member_ext)
        if member is None:
            report.rejected += 1
            report.rejects.extend((r, "unknown member_external_id") for r in rows)
            continue
        if member.status != "active":
            report.rejected += 1
            report.rejects.extend((r, f"member is {member.status}") for r in rows)
            continue
        seen.add(event.external_id)
        todo.append((event, member))
    if not todo:
        return
    decisions = []
    for event, member in todo:
        snap = MemberSnapshot(
            id=member.public_id,
            status=member.status,
            enrolled_at=member.enrolled_at,
            tier=member.tier,
        )
        decision = rules_decide.decide(event, snap, program.snapshot, program.rules, now)
        decisions.append([e for e in decision.effects if isinstance(e, EarnPoints) and e.amount])
    earning = [i for i, d in enumerate(decisions) if d]
    txn_ids = iter(_allocate_ids(conn, _txns, len(earning)))
    events, lines, txns, postings, lots, outbox = [], [], [], [], [], []
    balance_delta: dict[int, int] = {}
    lifetime: dict[int, int] = {}
    for (event, member), effects in zip(todo, decisions, strict=True):
        event_id = new_id()
        points = sum(e.amount for e in effects)
        pending_until = (
            event.occurred_at + timedelta(days=program.pending_days)
            if program.pending_days
            else None
        )
        pending = pending_until is not None and pending_until > now
        response = {
            "id": event_id,
            "type": "purchase",
            "external_id": event.external_id,
            "member_id": member.public_id,
            "occurred_at": event.occurred_at.isoformat(),
            "total": format_minor(event.total_minor, program.exponent),
            "points": points,
            "points_earned": points,
            "points_spent": 0,
            "discount": None,
            "pending": pending and points > 0,
            "effects": [
                {"kind": e.kind, "rule": e.rule_code, "points": e.amount, "detail": {}}
                for e in effects
            ],
            "errors": [],
            "shortfall": 0,
            "balance": None,
        }
        events.append(
            {
                "id": event_id,
                "program_id": program.id,
                "member_id": member.id,
                "type": "purchase",
                "source": source,
                "external_id": event.external_id,
                "occurred_at": event.occurred_at,
                "total_minor": event.total_minor,
                "points": points,
                "points_spent": 0,
                "refers_to": None,
                "refunded_minor": 0,
                "points_taken_back": 0,
                "spent_returned": 0,
                "attributes": {},
                "response": response,
                "created_at": now,
            }
        )
        for n, ln in enumerate(event.lines):
            lines.append(
                {
                    "program_id": program.id,
                    "member_id": member.id,
                    "event_id": event_id,
                    "line_no": n,
                    "sku": ln.sku,
                    "category": ln.category,
                    "quantity": str(ln.quantity),
                    "unit_price_minor": ln.unit_price_minor,
                    "amount_minor": ln.amount_minor,
                }
            )
        outbox.append(
            {
                "program_id": program.id,
                "seq": None,
                "type": "event.recorded",
                "member_id": member.public_id,
                "created_at": now,
                "payload": {
                    "member_id": member.public_id,
                    "event_id": event_id,
                    "type": "purchase",
                    "external_id": event.external_id,
                    "total": response["total"],
                },
            }
        )
        if not points:
            continue
        txn_id = next(txn_ids)
        target = member.pending if pending else member.available
        txns.append(
            {
                "id": txn_id,
                "program_id": program.id,
                "member_id": member.id,
                "kind": "earn",
                "reference": f"event:{event_id}:earn",
                "event_id": event_id,
                "actor": "import",
                "reason": None,
                "created_at": now,
            }
        )
        for e in effects:
            postings.append(
                {
                    "program_id": program.id,
                    "transaction_id": txn_id,
                    "account_id": target,
                    "member_id": member.id,
                    "amount": e.amount,
                    "rule_code": e.rule_code,
                    "rule_id": e.rule_id,
                    "rule_version": e.rule_version,
                    "created_at": now,
                }
            )
        postings.append(
            {
                "program_id": program.id,
                "transaction_id": txn_id,
                "account_id": program.system["issued"],
                "member_id": member.id,
                "amount": -points,
                "rule_code": None,
                "rule_id": None,
                "rule_version": None,
                "created_at": now,
            }
        )
        if pending:
            open_amount = points
        else:
            # On a negative balance, new points first repay the debt (as in the ledger).
            member.balance += points
            open_amount = max(0, min(points, member.balance))
        balance_delta[target] = balance_delta.get(target, 0) + points
        lifetime[member.id] = lifetime.get(member.id, 0) + points
        if open_amount:
            lots.append(
                {
                    "program_id": program.id,
                    "member_id": member.id,
                    "account_id": target,
                    "transaction_id": txn_id,
                    "event_id": event_id,
                    "amount": points,
                    "remaining": open_amount,
                    "earned_at": event.occurred_at,
                    "expires_at": None
                    if pending
                    else lot_expiry(
                        event.occurred_at,
                        program.expiry_policy,
                        program.expiry_days,
                        program.timezone,
                    ),
                    "pending_until": pending_until if pending else None,
                }
            )
        outbox.append(
            {
                "program_id": program.id,
                "seq": None,
                "type": "points.earned",
                "member_id": member.public_id,
                "created_at": now,
                "payload": {
                    "member_id": member.public_id,
                    "points": points,
                    "event_id": event_id,
                    "event_type": "purchase",
                    "pending": pending,
                },
            }
        )
        report.points += points
    _copy_rows(conn, _events, events)
    _copy_rows(conn, _lines, lines)
    _copy_rows(conn, _txns, txns)
    _copy_rows(conn, _postings, postings)
    _copy_rows(conn, _lots, lots)
    _copy_rows(conn, _outbox, outbox)
    if balance_delta:
        conn.execute(
            update(_accounts)
            .where(_accounts.c.id == bindparam("b_id"))
            .values(balance=_accounts.c.balance + bindparam("b_delta")),
            [{"b_id": k, "b_delta": v} for k, v in balance_delta.items()],
        )
        conn.execute(
            update(_members)
            .where(_members.c.id == bindparam("b_id"))
            .values(lifetime_earned=_members.c.lifetime_earned + bindparam("b_delta")),
            [{"b_id": k, "b_delta": v} for k, v in lifetime.items()],
        )
    report.imported += len(todo)


def _refresh_statistics(engine: Engine) -> None:
    """ANALYZE the tables a bulk load grows (PostgreSQL), so that lookups keep using indexes.

    Fresh tables have no statistics until autovacuum catches up; the planner then takes
    them for empty and the member lookups of later chunks turn into scans.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.execute(text("ANALYZE members, accounts, cards, events"))


def import_purchases(
    engine: Engine,
    program_code: str,
    path: Path,
    *,
    enrol_missing: bool = False,
    source: str = "default",
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a purchases CSV; re-running it credits nothing twice. One transaction per chunk."""
    from habitue import rooms

    rooms.load()
    report = ImportReport()
    now = clock.now()
    with engine.connect() as conn:
        program = _load_program(conn, program_code)
        conn.rollback()
    report.skipped_rules = program.skipped_rules
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"the CSV lacks columns {missing}")
        batch: list[list[dict[str, str]]] = []

        flushes = 0

        def flush() -> None:
            nonlocal flushes
            with engine.begin() as conn:
                _import_chunk(
                    conn,
                    program,
                    batch,
                    report,
                    enrol_missing=enrol_missing,
                    source=source,
                    now=now,
                )
            if progress is not None:
                n = sum(len(g) for g in batch)
                progress(n)
            flushes += 1
            if flushes & (flushes - 1) == 0:
                _refresh_statistics(engine)
            batch.clear()

        for group in _groups(iter(reader)):
            report.rows += len(group)
            batch.append(group)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    return report


def write_rejects(report: ImportReport, path: Path) -> None:
    """The rejected rows with a `reason` column."""
    if not report.rejects:
        path.write_text("")
        return
    cols = list(report.rejects[0][0].keys()) + ["reason"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for row, reason in report.rejects:
        w.writerow({**row, "reason": reason})
    path.write_text(buf.getvalue(), encoding="utf-8")
