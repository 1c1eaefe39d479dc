"""Bulk import of purchases from CSV: the same `decide`, set-based writes, idempotent re-runs.

Rows of one purchase share its `external_id` and sit next to each other. A chunk at a time
is read, checked and decided and its rows built (`_prepare_chunk`), then written in one
transaction: events, lines, ledger transactions, postings, lots and outbox rows in bulk
(binary COPY on PostgreSQL, executemany on SQLite), balances once per account. Small files
are prepared and written by the calling process; large ones by two worker processes
(`habitue.events.import_writer`), each for its share of the members, a chunk committed by
all of them or by none (`_import_partitioned`). A malformed row is rejected with its reason
(`_check_row`, `_parse_group`), never an error that stops the import.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import pickle
import queue
import re
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.types import NullType

from habitue import clock
from habitue.bounds import MAX_AMOUNT_MINOR, MAX_POINTS
from habitue.db import make_sync_engine, table_of
from habitue.events.models import Event, EventLine
from habitue.events.service import CENT_TOLERANCE
from habitue.ids import new_id
from habitue.ledger.expiry import lot_expiry
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.cards import new_card_numbers
from habitue.members.models import Card, Member
from habitue.messaging.models import OutboxEvent
from habitue.money import format_minor
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
# A row's amounts and a purchase's points are bounded as the API bounds them (habitue.bounds):
# MAX_AMOUNT_MINOR per total, unit price or line amount, MAX_POINTS per purchase.
MAX_QUANTITY = Decimal(1_000_000)
"""A line's largest quantity (the API's bound), given with at most `QUANTITY_PLACES` decimals."""
QUANTITY_PLACES = 6
ID_LENGTH, LABEL_LENGTH = 200, 100
"""Longest external ids (member, purchase) and sku or category, as the tables hold them."""
_DECIMAL = re.compile(r"(\d*)(?:\.(\d*))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\udc80-\udcff]")
CHUNK = 100_000
"""Purchases per transaction. Each chunk rewrites most leaf pages of the member-keyed
indexes whatever its size (a chunk names most members), so larger chunks rewrite them
fewer times; a partitioned import's first batches are smaller (`_import_partitioned`)."""

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

    def add(self, worker: ImportReport) -> None:
        """Count a worker's purchases in (its rows were counted here, as they were read)."""
        self.imported += worker.imported
        self.already += worker.already
        self.rejected += worker.rejected
        self.points += worker.points
        self.enrolled += worker.enrolled
        self.rejects.extend(worker.rejects)
        self.skipped_rules = worker.skipped_rules


@dataclass
class _Member:
    id: int
    public_id: str
    status: str
    available: int
    pending: int
    enrolled_at: datetime
    tier: str | None


@dataclass
class _Program:
    id: int
    snapshot: ProgramSnapshot
    """Code, currency, timezone, earning rate and pending period, as `decide` sees them."""
    expiry_policy: str
    expiry_days: int | None
    card_prefix: str
    system: dict[str, int]
    rules: RuleSet
    skipped_rules: tuple[str, ...]
    share: tuple[int, int] = (0, 1)
    """(k, n): this process imports the members whose external id hashes to k of n
    (`member_share`), and draws the card numbers that are k modulo n, so that the workers
    of a partitioned import never enrol one member or issue one number twice."""

    def owns(self, member_external_id: str) -> bool:
        part, parts = self.share
        return parts == 1 or member_share(member_external_id, parts) == part

    def may_issue(self, number: str) -> bool:
        part, parts = self.share
        return parts == 1 or int(number) % parts == part


def member_share(member_external_id: str, parts: int) -> int:
    """Which of `parts` workers imports a member's purchases (stable across processes)."""
    return zlib.crc32(member_external_id.encode("utf-8", "surrogateescape")) % parts


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
        card_prefix=row["card_prefix"],
        system={k: system[k] for k in SYSTEM_ACCOUNTS},
        rules=compile_rules(usable),
        skipped_rules=skipped,
    )


@dataclass(frozen=True)
class _Layout:
    """The CSV's columns: rows are read as lists and fields looked up by position."""

    header: list[str]
    index: dict[str, int]
    required: tuple[tuple[str, int], ...]
    texts: tuple[tuple[int, int], ...]
    """(position, longest length) of the text columns the import stores."""

    @classmethod
    def of(cls, header: list[str]) -> _Layout:
        index = {name: i for i, name in enumerate(header)}
        limits = {"member_external_id": ID_LENGTH, "external_id": ID_LENGTH,
                  "sku": LABEL_LENGTH, "category": LABEL_LENGTH}  # fmt: skip
        texts = tuple((index[c], n) for c, n in limits.items() if c in index)
        return cls(header, index, tuple((col, index[col]) for col in REQUIRED), texts)

    def get(self, row: list[str], col: str) -> str:
        i = self.index.get(col)
        return row[i] if i is not None and i < len(row) else ""

    def as_dict(self, row: list[str]) -> dict[str, str]:
        """The row by column, for the rejects file: fields beyond the header as `extra 1`,
        `extra 2`…, bytes that were not UTF-8 as U+FFFD."""
        names = self.header + [f"extra {n}" for n in range(1, len(row) - len(self.header) + 1)]
        return {name: _printable(value) for name, value in zip(names, row, strict=False)}


def _printable(value: str) -> str:
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _rows(reader: Any, report: ImportReport) -> Iterator[list[str]]:
    """The CSV's rows after its header; blank lines skipped, and a line the CSV reader
    cannot read (a field over its size limit) counted as a rejected row."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.rows += 1
            report.rejected += 1
            report.rejects.append(({}, f"line {reader.line_num}: not readable as CSV ({exc})"))
            continue
        if row:
            yield row


@contextmanager
def _open_csv(path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A reader of the file and its header. Text is UTF-8 (a byte-order mark is skipped);
    bytes that are not come through as lone surrogates, and their rows are rejected
    (`_check_row`) instead of stopping the import."""
    with path.open("rb") as raw:
        text_in = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text_in)
        try:
            header = [h.strip() for h in next(reader, [])]
        except csv.Error as exc:
            raise ValueError(f"the CSV's header is not readable ({exc})") from exc
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"the CSV lacks columns {missing}")
        yield reader, header


def _groups(reader: Iterator[list[str]], key: int) -> Iterator[list[list[str]]]:
    group: list[list[str]] = []
    for row in reader:
        if group and (row[key] if key < len(row) else "") != group[0][key]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest `occurred_at` taken (earlier ones are rejected: no date arithmetic near the
calendar's start can then overflow)."""


def _parse_time(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if dt.tzinfo is None:
            raise ValueError("occurred_at must carry a UTC offset")
        at = clock.as_utc(dt)
    except OverflowError as exc:  # an offset past the calendar's ends
        raise ValueError("out of range") from exc
    if at < EARLIEST:
        raise ValueError("before 1970")
    return at


def _parse_decimal(value: str, what: str, places: int) -> tuple[int, int]:
    """A plain decimal (digits, optionally a point and more digits) as an integer scaled by
    10**places, and its number of integer digits. Signs, exponents, NaN, infinities and
    thousands separators are refused, as are non-zero digits beyond `places` (never rounded)."""
    text = value.strip()
    if text.startswith("-") and _DECIMAL.fullmatch(text[1:]) and len(text) > 1:
        raise ValueError(f"{what}: must not be negative")
    match = _DECIMAL.fullmatch(text)
    if match is None or not any(c.isdigit() for c in text):
        raise ValueError(f"{what}: not a decimal number (digits and an optional decimal point)")
    whole, frac = match.group(1).lstrip("0"), match.group(2) or ""
    if frac[places:].strip("0"):
        raise ValueError(f"{what}: more than {places} decimal places")
    if len(whole) > 18:
        raise ValueError(f"{what}: too large")
    return int((whole or "0") + frac[:places].ljust(places, "0")), len(whole)


def _parse_amount(value: str, what: str, exponent: int) -> int:
    """An amount in minor units, at most `MAX_AMOUNT_MINOR`."""
    minor, _ = _parse_decimal(value, what, exponent)
    if minor > MAX_AMOUNT_MINOR:
        raise ValueError(f"{what}: too large (at most {format_minor(MAX_AMOUNT_MINOR, exponent)})")
    return minor


def _parse_quantity(value: str) -> Decimal:
    scaled, _ = _parse_decimal(value, "quantity", QUANTITY_PLACES)
    quantity = Decimal(scaled).scaleb(-QUANTITY_PLACES).normalize()
    if not quantity:
        raise ValueError("quantity must be positive")
    if quantity > MAX_QUANTITY:
        raise ValueError(f"quantity: too large (at most {MAX_QUANTITY})")
    # Plain notation, never an exponent (`normalize` gives 1E+1 for 10).
    return quantity.quantize(Decimal(1)) if quantity == quantity.to_integral() else quantity


def _check_row(row: list[str], layout: _Layout) -> None:
    """A row's shape and text: as many fields as the header, valid UTF-8, no control
    characters nor over-long values in what is stored (PostgreSQL refuses NUL in text)."""
    if len(row) != len(layout.header):
        raise ValueError(f"the row has {len(row)} fields, the header {len(layout.header)}")
    joined = "".join(row)
    if not joined.isascii():
        bad = _SURROGATE.search(joined)
        if bad is not None:
            byte = ord(bad.group()) - 0xDC00
            raise ValueError(f"not valid UTF-8 (byte 0x{byte:02X})")
    check_controls = _CONTROL.search(joined) is not None
    for col, limit in layout.texts:
        value = row[col]
        if check_controls and _CONTROL.search(value):
            raise ValueError(f"{layout.header[col]}: control character")
        if len(value) > limit:
            raise ValueError(f"{layout.header[col]}: longer than {limit} characters")


def _parse_group(
    rows: list[list[str]], layout: _Layout, program: _Program, latest: datetime
) -> tuple[EventInput, str]:
    """One purchase from its rows; `latest` is the last acceptable `occurred_at`."""
    get = layout.get
    exponent = program.snapshot.currency_exponent
    for r in rows:
        _check_row(r, layout)
    first = rows[0]
    for col, i in layout.required:
        if not first[i].strip():
            raise ValueError(f"{col} is missing")
    try:
        occurred = _parse_time(get(first, "occurred_at"))
    except ValueError as exc:
        raise ValueError(f"occurred_at: {exc}") from exc
    if occurred > latest:
        raise ValueError("occurred_at is in the future")
    first_total = get(first, "total")
    total = _parse_amount(first_total, "total", exponent)
    lines: list[LineInput] = []
    if "unit_price" in layout.index and any(get(r, "unit_price").strip() for r in rows):
        for r in rows:
            if get(r, "total") != first_total:
                raise ValueError("rows of one purchase disagree on total")
            qty = _parse_quantity(get(r, "quantity") or "1")
            unit = _parse_amount(get(r, "unit_price"), "unit_price", exponent)
            amount = int((qty * unit).to_integral_value())
            if amount > MAX_AMOUNT_MINOR:
                raise ValueError("line amount (quantity × unit_price): too large")
            lines.append(
                LineInput(
                    sku=(get(r, "sku") or None),
                    category=(get(r, "category") or None),
                    quantity=qty,
                    unit_price_minor=unit,
                    amount_minor=amount,
                )
            )
        line_sum = sum(ln.amount_minor for ln in lines)
        if abs(line_sum - total) > CENT_TOLERANCE:
            raise ValueError(
                f"lines add up to {format_minor(line_sum, exponent)}, "
                f"total is {format_minor(total, exponent)}"
            )
    elif len(rows) > 1:
        raise ValueError("duplicate external_id in the file")
    event = EventInput(
        type="purchase",
        external_id=get(first, "external_id").strip(),
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
    )
    return event, get(first, "member_external_id").strip()


class _Ids:
    """Primary keys for the rows the import numbers itself (members, accounts, ledger
    transactions): a sequence on PostgreSQL; on SQLite a counter from the table's largest id,
    which the writer checks under the write lock before each chunk (`_check_ids`). A worker
    of a partitioned SQLite import, share (k, n), numbers only ids that are k modulo n."""

    def __init__(self, conn: Connection, share: tuple[int, int] = (0, 1)) -> None:
        self.conn = conn
        self.share = share
        self.next: dict[str, int] = {}

    def take(self, table: Table, n: int) -> list[int]:
        if n == 0:
            return []
        if self.conn.dialect.name == "postgresql":
            seq = f"{table.name}_id_seq"
            with self.conn.begin():
                return list(
                    self.conn.execute(
                        text("SELECT nextval(:s) FROM generate_series(1, :n)"),
                        {"s": seq, "n": n},
                    ).scalars()
                )
        start = self.next.get(table.name)
        if start is None:
            with self.conn.begin():
                top = self.conn.execute(
                    text(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}")  # noqa: S608
                ).scalar_one()
            part, parts = self.share
            start = int(top) + 1
            start += (part - start) % parts
        step = self.share[1]
        self.next[table.name] = start + n * step
        return list(range(start, start + n * step, step))


# Column orders of the rows the import builds as tuples (the tables' own columns, by name).
EVENT_COLS = (
    "id", "program_id", "member_id", "type", "source", "external_id", "occurred_at",
    "total_minor", "points", "points_spent", "refers_to", "refunded_minor",
    "points_taken_back", "spent_returned", "attributes", "response", "created_at",
)  # fmt: skip
LINE_COLS = (
    "program_id", "member_id", "event_id", "line_no", "sku", "category", "quantity",
    "unit_price_minor", "amount_minor",
)  # fmt: skip
TXN_COLS = (
    "id", "program_id", "member_id", "kind", "reference", "event_id", "actor", "reason",
    "created_at",
)  # fmt: skip
POSTING_COLS = (
    "program_id", "transaction_id", "account_id", "member_id", "amount", "rule_code",
    "rule_id", "rule_version", "created_at",
)  # fmt: skip
LOT_COLS = (
    "program_id", "member_id", "account_id", "transaction_id", "event_id", "amount",
    "remaining", "earned_at", "expires_at", "pending_until",
)  # fmt: skip
OUTBOX_COLS = ("program_id", "seq", "type", "member_id", "created_at", "payload")
MEMBER_COLS = (
    "id", "public_id", "program_id", "external_id", "email", "email_hash", "phone",
    "phone_hash", "first_name", "last_name", "birth_date", "locale", "status", "tier",
    "consents", "attributes", "lifetime_earned", "enrolled_at", "updated_at",
)  # fmt: skip
ACCOUNT_COLS = ("id", "program_id", "member_id", "kind", "balance")
LIFETIME_AT, BALANCE_AT = MEMBER_COLS.index("lifetime_earned"), ACCOUNT_COLS.index("balance")
CARD_COLS = (
    "program_id", "member_id", "number", "kind", "status", "replaced_by", "created_at",
    "blocked_at",
)  # fmt: skip


def _sqlite_time(value: datetime | None) -> str | None:
    """What SQLAlchemy's SQLite DATETIME stores (UTC wall time with microseconds)."""
    if value is None:
        return None
    return value.isoformat(" ", "microseconds")[:26]


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


def _pg_time(value: datetime | None) -> int | None:
    """A timestamp as PostgreSQL's binary format holds it: microseconds since 2000-01-01
    UTC. The rows cross to the writer process pickled, and an int pickles several times
    faster than a datetime (it took a sixth of the preparing process's time)."""
    if value is None:
        return None
    return (value - PG_EPOCH) // ONE_MICROSECOND


def _time_writer(conn: Connection) -> Callable[[datetime | None], Any]:
    """How a datetime goes into a row of `_write_rows`: as `_pg_time` on PostgreSQL (which
    `_column_types` declares as int8 to the binary COPY), as SQLAlchemy's text on SQLite."""
    return _pg_time if conn.dialect.name == "postgresql" else _sqlite_time


def _write_rows(
    conn: Connection, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many prepared rows: COPY on PostgreSQL, one prepared executemany on SQLite.

    Rows hold database-ready values: JSON columns as text and, on SQLite, datetimes as
    `_sqlite_time` strings, so that no per-row conversion runs here.
    """
    if not rows:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        types = _column_types(conn, table, cols)
        with raw.cursor() as pg_cur:
            stmt = f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
            with pg_cur.copy(stmt) as copy:
                copy.set_types(types)
                write = copy.write_row
                for r in rows:
                    write(r)
        return
    raw.executemany(_insert_sql(table, cols), rows)


def _insert_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"  # noqa: S608


TEXT_OID, JSON_OID, INT8_OID = 25, 114, 20
TIMESTAMP_OIDS = (1114, 1184)


def _column_types(conn: Connection, table: str, cols: tuple[str, ...]) -> list[int]:
    """The PostgreSQL type oids of `cols`, which a binary COPY must declare (cached on the
    connection)."""
    cache: dict[tuple[str, tuple[str, ...]], list[int]] = conn.info.setdefault("copy_types", {})
    key = (table, cols)
    if key not in cache:
        found: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT attname, atttypid FROM pg_attribute "
                    "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
                ),
                {"t": table},
            ).all()
        )
        # JSON values come as text already: `json`'s binary form is its text, so they are
        # sent as `text` (declaring `json` would have psycopg encode the string again).
        # Timestamps come as `_pg_time` integers: their binary form is that int8.
        alias = {JSON_OID: TEXT_OID, **dict.fromkeys(TIMESTAMP_OIDS, INT8_OID)}
        cache[key] = [alias.get(int(found[c]), int(found[c])) for c in cols]
    return cache[key]


def _add_to(conn: Connection, table: Table, column: str, deltas: dict[int, int]) -> None:
    """`column += delta` for each row id, in id order (the order the API locks them in)."""
    if not deltas:
        return
    ids = sorted(deltas)
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        with raw.cursor() as pg_cur:
            pg_cur.execute(
                f"UPDATE {table.name} t SET {column} = t.{column} + d.delta "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, delta) WHERE t.id = d.id",
                (_pg_array(ids), _pg_array([deltas[i] for i in ids])),
            )
        return
    cur = raw.cursor()
    cur.executemany(_add_sql(table.name, column), [(deltas[i], i) for i in ids])
    cur.close()


def _add_sql(table: str, column: str) -> str:
    return f"UPDATE {table} SET {column} = {column} + ? WHERE id = ?"  # noqa: S608


def _pg_array(values: list[str] | list[int]) -> str:
    """The text form of a PostgreSQL array of `values` (`{1,2}`, `{"a","b"}`).

    psycopg adapts a list element by element in Python (6 % of an import worker's time);
    joining the text costs a quarter of that, and PostgreSQL reads it as fast (33,000 ids:
    17 ms of the client's CPU and 47 ms in all, against 4 ms and 32 ms).
    Strings are quoted, with backslashes and double quotes escaped, so that any string
    comes back as itself. The query must give the parameter its type by a cast of the
    parameter itself (`CAST(%s AS text[])`): the value is then known when the query is
    planned, as an array parameter's is. Cast from a typed `text` instead, it is not, and
    PostgreSQL plans for a handful of values.
    """
    if values and isinstance(values[0], int):
        return "{" + ",".join(map(str, values)) + "}"
    quoted = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + '","'.join(quoted) + '"}' if values else "{}"


def _match(column: Any, values: list[str] | list[int], dialect: str) -> Any:
    """`column` is one of `values`, as one bound parameter: an array on PostgreSQL (sent as
    its text, `_pg_array`, in an untyped parameter that its cast types), a JSON list read by
    `json_each` on SQLite (so a chunk is one query, whatever its size)."""
    if dialect == "postgresql":
        item = BigInteger() if values and isinstance(values[0], int) else String()
        literal = bindparam("match_values", _pg_array(values), type_=NullType())
        return column == any_(cast(literal, ARRAY(item)))
    each = func.json_each(bindparam("match_values", _json_text(values))).table_valued("value")
    return column.in_(select(each.c.value))


def _load_members(conn: Connection, program_id: int, external_ids: list[str]) -> dict[str, _Member]:
    out: dict[str, _Member] = {}
    avail = _accounts.alias("a")
    pend = _accounts.alias("p")
    dialect = conn.dialect.name

    def query(values: list[str]) -> Any:
        return (
            select(
                _members.c.external_id,
                _members.c.id,
                _members.c.public_id,
                _members.c.status,
                _members.c.enrolled_at,
                _members.c.tier,
                avail.c.id.label("available"),
                pend.c.id.label("pending"),
            )
            .join(avail, (avail.c.member_id == _members.c.id) & (avail.c.kind == "available"))
            .join(pend, (pend.c.member_id == _members.c.id) & (pend.c.kind == "pending"))
            .where(
                _members.c.program_id == program_id,
                _match(_members.c.external_id, values, dialect),
            )
        )

    for r in conn.execute(query(external_ids)) if external_ids else ():
        out[r.external_id] = _Member(
            r.id,
            r.public_id,
            r.status,
            r.available,
            r.pending,
            clock.as_utc(r.enrolled_at),
            r.tier,
        )
    return out


def _fresh_card_numbers(
    conn: Connection, program: _Program, n: int, also_taken: set[str]
) -> list[str]:
    """`n` distinct card numbers under the program's prefix that no card has, nor
    `also_taken` holds, and that this process may issue (`_Program.may_issue`)."""
    out: set[str] = set()
    dialect = conn.dialect.name
    parts = program.share[1]
    while len(out) < n:
        want = (n - len(out)) * parts
        fresh = set(new_card_numbers(program.card_prefix, want)) - out - also_taken
        drawn = [number for number in fresh if program.may_issue(number)]
        taken = set(
            conn.execute(
                select(_cards.c.number).where(_match(_cards.c.number, drawn, dialect))
            ).scalars()
        )
        out.update(set(drawn) - taken)
    return list(out)[:n]


@dataclass
class _Writes:
    """What one chunk writes: rows per table (by name), balance and lifetime deltas. It is
    all the writer needs, and it pickles (the writer may be another process)."""

    number: int
    rows_read: int = 0
    share: tuple[int, int] = (0, 1)
    """The share of the worker that prepared it (`_Program.share`): the ids it numbered."""
    rows: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] = field(default_factory=list)
    balance: dict[int, int] = field(default_factory=dict)
    lifetime: dict[int, int] = field(default_factory=dict)
    first_ids: dict[str, int] = field(default_factory=dict)
    """Per table, the smallest id the chunk numbered itself (checked on SQLite)."""

    def add(self, table: Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.rows.append((table.name, cols, rows))

    def totals(self) -> tuple[tuple[Table, str, dict[int, int]], ...]:
        """The running totals the chunk adds to: (table, column, deltas by row id)."""
        return (_accounts, "balance", self.balance), (_members, "lifetime_earned", self.lifetime)


@dataclass
class _Chunk:
    """A prepared chunk: its writes, and what later chunks must know while it is in flight."""

    writes: _Writes
    external_ids: set[str] = field(default_factory=set)
    enrolled: dict[str, _Member] = field(default_factory=dict)
    cards: set[str] = field(default_factory=set)

    def fold_new_rows(self) -> None:
        """Members and accounts this chunk creates get their lifetime and balance in the
        rows it inserts, rather than in updates of rows it has just written."""
        totals = {
            _members.name: (self.writes.lifetime, LIFETIME_AT),
            _accounts.name: (self.writes.balance, BALANCE_AT),
        }
        for table, _, rows in self.writes.rows:
            if table not in totals:
                continue
            deltas, at = totals[table]
            for n, row in enumerate(rows):
                if row[0] in deltas:
                    rows[n] = (*row[:at], row[at] + deltas.pop(row[0]), *row[at + 1 :])


class _InFlight:
    """Chunks handed to the writer and not committed yet: what the preparing side must
    treat as written although its queries cannot see it yet."""

    def __init__(self) -> None:
        self._chunks: dict[int, _Chunk] = {}

    def add(self, chunk: _Chunk) -> None:
        self._chunks[chunk.writes.number] = chunk

    def committed(self, number: int) -> _Chunk:
        return self._chunks.pop(number)

    def __len__(self) -> int:
        return len(self._chunks)

    def snapshot(self) -> list[_Chunk]:
        """Taken before a query: a chunk either committed before it (the query sees it) or
        is in the snapshot."""
        return list(self._chunks.values())


def _enrol_missing(
    conn: Connection,
    ids: _Ids,
    program: _Program,
    external_ids: list[str],
    now: datetime,
    chunk: _Chunk,
    cards_in_flight: set[str],
) -> dict[str, _Member]:
    member_ids = ids.take(_members, len(external_ids))
    acc_ids = ids.take(_accounts, 2 * len(member_ids))
    with conn.begin():
        numbers = _fresh_card_numbers(conn, program, len(external_ids), cards_in_flight)
    chunk.writes.first_ids.update({_members.name: member_ids[0], _accounts.name: acc_ids[0]})
    chunk.cards.update(numbers)
    ts = _time_writer(conn)(now)
    empty = _json_text({})
    members: list[tuple[Any, ...]] = []
    accounts: list[tuple[Any, ...]] = []
    cards: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    out: dict[str, _Member] = {}
    pid = program.id
    for n, (mid, ext, number) in enumerate(zip(member_ids, external_ids, numbers, strict=True)):
        public = new_id()
        members.append(
            (mid, public, pid, ext, None, None, None, None, None, None, None, "en", "active",
             None, empty, empty, 0, ts, ts)
        )  # fmt: skip
        available, pending = acc_ids[2 * n], acc_ids[2 * n + 1]
        accounts.append((available, pid, mid, "available", 0))
        accounts.append((pending, pid, mid, "pending", 0))
        cards.append((pid, mid, number, "physical", "active", None, ts, None))
        payload = {"member_id": public, "card_number": number, "external_id": ext, "locale": "en"}
        outbox.append((pid, None, "member.enrolled", public, ts, _json_text(payload)))
        out[ext] = _Member(mid, public, "active", available, pending, now, None)
    chunk.writes.add(_members, MEMBER_COLS, members)
    chunk.writes.add(_accounts, ACCOUNT_COLS, accounts)
    chunk.writes.add(_cards, CARD_COLS, cards)
    chunk.writes.add(_outbox, OUTBOX_COLS, outbox)
    chunk.enrolled.update(out)
    return out


def _existing(conn: Connection, program_id: int, source: str, ext_ids: list[str]) -> set[str]:
    """The external ids among `ext_ids` that events of `source` already have.

    The ids' range bounds the lookup as well (a condition every one of them meets: both
    databases compare these columns byte by byte, the order of `min` and `max` on str).
    Files number their receipts in order, so a chunk's ids span a narrow range, and the
    unique index serves the lookup as one range scan. Without it, PostgreSQL matched a
    chunk of 50,000 ids against a million events with a parallel sequential scan (240 ms
    on three processes, against 45 ms for a range holding nothing yet).
    """
    dialect = conn.dialect.name
    if not ext_ids:
        return set()
    ext = _events.c.external_id
    return set(
        conn.execute(
            select(ext).where(
                _events.c.program_id == program_id,
                _events.c.source == source,
                _match(ext, ext_ids, dialect),
                ext.between(min(ext_ids), max(ext_ids)),
            )
        ).scalars()
    )


def _prepare_chunk(
    conn: Connection,
    ids: _Ids,
    in_flight: _InFlight,
    program: _Program,
    number: int,
    groups: list[list[list[str]]],
    layout: _Layout,
    report: ImportReport,
    *,
    enrol_missing: bool,
    source: str,
    now: datetime,
) -> _Chunk:
    """Parse, look up, decide and build the rows of one chunk; write nothing.

    Lots are built as if no balance were negative; the writer corrects the lots of members
    whose balance is (`_repay_debts`), under the transaction that writes them.
    """
    chunk = _Chunk(_Writes(number, rows_read=sum(len(g) for g in groups), share=program.share))
    parsed: list[tuple[EventInput, str, list[list[str]]]] = []

    def reject(rows: list[list[str]], reason: str) -> None:
        report.rejected += 1
        report.rejects.extend((layout.as_dict(r), reason) for r in rows)

    latest = now + timedelta(minutes=10)
    for rows in groups:
        try:
            event, member_ext = _parse_group(rows, layout, program, latest)
        except ValueError as exc:
            reject(rows, str(exc))
            continue
        parsed.append((event, member_ext, rows))
    pending_chunks = in_flight.snapshot()
    member_exts = sorted({m for _, m, _ in parsed if program.owns(m)})
    with conn.begin():
        existing = _existing(conn, program.id, source, [e.external_id for e, _, _ in parsed])
        members = _load_members(conn, program.id, member_exts)
    for earlier in pending_chunks:
        existing |= earlier.external_ids
        for ext, m in earlier.enrolled.items():
            members.setdefault(ext, m)
    missing = [m for m in member_exts if m not in members]
    if missing and enrol_missing:
        cards_in_flight = set().union(*(c.cards for c in pending_chunks))
        members.update(_enrol_missing(conn, ids, program, missing, now, chunk, cards_in_flight))
        report.enrolled += len(missing)
    todo: list[tuple[EventInput, _Member, list[list[str]]]] = []
    seen = chunk.external_ids
    for event, member_ext, rows in parsed:
        if event.external_id in existing:
            report.already += 1
            continue
        if event.external_id in seen or not program.owns(member_ext):
            # A worker of a partitioned import only gets another worker's member as the
            # repeat of an external id whose first row it had (`_import_partitioned`).
            reject(rows, "duplicate external_id in the file")
            continue
        member = members.get(member_ext)
        if member is None:
            reject(rows, "unknown member_external_id")
            continue
        if member.status != "active":
            reject(rows, f"member is {member.status}")
            continue
        seen.add(event.external_id)
        todo.append((event, member, rows))
    if not todo:
        return chunk
    # By member, each member's purchases keeping their order in the file: the ids drawn
    # below then follow the members too, so that nearly every index the chunk writes to
    # (by member, account, transaction, event) is filled in ascending order, one page after
    # the next, instead of at random places.
    todo.sort(key=lambda pair: pair[1].id)
    decisions: list[list[EarnPoints]] = []
    decided: list[tuple[EventInput, _Member]] = []
    snapshots: dict[int, MemberSnapshot] = {}
    decide, rules, program_snap = rules_decide.decide, program.rules, program.snapshot
    for event, member, rows in todo:
        snap = snapshots.get(member.id)
        if snap is None:
            snap = snapshots[member.id] = MemberSnapshot(
                id=member.public_id,
                status=member.status,
                enrolled_at=member.enrolled_at,
                tier=member.tier,
            )
        try:
            decision = decide(event, snap, program_snap, rules, now)
        except ArithmeticError:  # a rate or rule whose points overflow a decimal
            seen.discard(event.external_id)
            reject(rows, "points: too large")
            continue
        earning = [e for e in decision.effects if isinstance(e, EarnPoints) and e.amount]
        if not all(-MAX_POINTS <= e.amount <= MAX_POINTS for e in earning) or not (
            -MAX_POINTS <= sum(e.amount for e in earning) <= MAX_POINTS
        ):
            seen.discard(event.external_id)
            reject(rows, f"points: more than {MAX_POINTS:,} for one purchase")
            continue
        decided.append((event, member))
        decisions.append(earning)
    txn_id_list = ids.take(_txns, sum(1 for d in decisions if d))
    if txn_id_list:
        chunk.writes.first_ids[_txns.name] = txn_id_list[0]
    txn_ids = iter(txn_id_list)
    ts = _time_writer(conn)
    now_ts = ts(now)
    snapshot = program.snapshot
    pid, exponent, issued = program.id, snapshot.currency_exponent, program.system["issued"]
    pending_delta = timedelta(days=snapshot.pending_days) if snapshot.pending_days else None
    policy, expiry_days, tz = program.expiry_policy, program.expiry_days, snapshot.timezone
    empty = _json_text({})
    events: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    txns: list[tuple[Any, ...]] = []
    postings: list[tuple[Any, ...]] = []
    lots: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    balance_delta = chunk.writes.balance
    lifetime = chunk.writes.lifetime
    for (event, member), effects in zip(decided, decisions, strict=True):
        event_id = new_id()
        points = sum(e.amount for e in effects)
        occurred = event.occurred_at
        pending_until = occurred + pending_delta if pending_delta is not None else None
        pending = pending_until is not None and pending_until > now
        total = format_minor(event.total_minor, exponent)
        response = {
            "id": event_id,
            "type": "purchase",
            "external_id": event.external_id,
            "member_id": member.public_id,
            "occurred_at": occurred.isoformat(),
            "total": total,
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
        occurred_ts = ts(occurred)
        events.append(
            (event_id, pid, member.id, "purchase", source, event.external_id, occurred_ts,
             event.total_minor, points, 0, None, 0, 0, 0, empty, _json_text(response), now_ts)
        )  # fmt: skip
        for n, ln in enumerate(event.lines):
            lines.append(
                (pid, member.id, event_id, n, ln.sku, ln.category, str(ln.quantity),
                 ln.unit_price_minor, ln.amount_minor)
            )  # fmt: skip
        recorded = {
            "member_id": member.public_id,
            "event_id": event_id,
            "type": "purchase",
            "external_id": event.external_id,
            "total": total,
        }
        outbox.append((pid, None, "event.recorded", member.public_id, now_ts, _json_text(recorded)))
        if not points:
            continue
        txn_id = next(txn_ids)
        target = member.pending if pending else member.available
        txns.append(
            (txn_id, pid, member.id, "earn", f"event:{event_id}:earn", event_id, "import", None,
             now_ts)
        )  # fmt: skip
        for e in effects:
            postings.append(
                (pid, txn_id, target, member.id, e.amount, e.rule_code, e.rule_id,
                 e.rule_version, now_ts)
            )  # fmt: skip
        postings.append((pid, txn_id, issued, member.id, -points, None, None, None, now_ts))
        balance_delta[target] = balance_delta.get(target, 0) + points
        lifetime[member.id] = lifetime.get(member.id, 0) + points
        expires = None if pending else lot_expiry(occurred, policy, expiry_days, tz)
        lots.append(
            (pid, member.id, target, txn_id, event_id, points, points, occurred_ts,
             ts(expires), ts(pending_until) if pending else None)
        )  # fmt: skip
        earned = {
            "member_id": member.public_id,
            "points": points,
            "event_id": event_id,
            "event_type": "purchase",
            "pending": pending,
        }
        outbox.append((pid, None, "points.earned", member.public_id, now_ts, _json_text(earned)))
        report.points += points
    chunk.writes.add(_events, EVENT_COLS, events)
    chunk.writes.add(_lines, LINE_COLS, lines)
    chunk.writes.add(_txns, TXN_COLS, txns)
    chunk.writes.add(_postings, POSTING_COLS, postings)
    chunk.writes.add(_lots, LOT_COLS, lots)
    chunk.writes.add(_outbox, OUTBOX_COLS, outbox)
    chunk.fold_new_rows()
    report.imported += len(decided)
    return chunk


class ImportConflict(RuntimeError):
    """Another writer numbered rows the import had reserved (SQLite only)."""


def _top_id_sql(table: str) -> str:
    return f"SELECT COALESCE(MAX(id), 0) FROM {table}"  # noqa: S608


def _share_top_id_sql(table: str) -> str:
    """The largest id of a share (`?` k of `?` n) from an id on: a scan of the rowids from
    there, which holds only the rows written since the chunk drew its ids."""
    return f"SELECT COALESCE(MAX(id), 0) FROM {table} WHERE id >= ? AND id % ? = ?"  # noqa: S608


def _check_ids(chunk: _Writes, top_id: Callable[[str, int], int]) -> None:
    """SQLite: no other process numbered rows from the ids this chunk drew (`top_id(table,
    first)` reads, under the write lock, the largest id this process may number, from the
    chunk's first on; the other workers of a partitioned import number other ids)."""
    for table, first in chunk.first_ids.items():
        if top_id(table, first) >= first:
            raise ImportConflict(
                f"another process wrote to {table} during the import; this chunk was not "
                "written. Run the import again: it skips what is already in."
            )


def _repay_debts(chunk: _Writes, debts_of: Callable[[list[int]], dict[int, int]]) -> None:
    """Members whose available balance is negative: new points first repay the debt (as in
    the ledger), so their lots in this chunk stay open only for what exceeds it. `debts_of`
    reads the negative balances among some accounts."""
    lots = next((rows for table, _, rows in chunk.rows if table == _lots.name), None)
    if not lots:
        return
    accounts = sorted({r[2] for r in lots if r[9] is None})
    if not accounts:
        return
    debts = debts_of(accounts)
    if not debts:
        return
    kept: list[tuple[Any, ...]] = []
    for r in lots:
        account = r[2]
        if r[9] is None and account in debts:
            debts[account] += r[5]
            remaining = max(0, min(r[5], debts[account]))
            if not remaining:
                continue
            r = (*r[:6], remaining, *r[7:])
        kept.append(r)
    lots[:] = kept


def _apply_chunk(conn: Connection, chunk: _Writes) -> None:
    """Write a prepared chunk in one transaction.

    Where PostgreSQL lets the role, the chunk is written with `session_replication_role =
    replica` for this transaction only, as `pg_restore --disable-triggers` does: the
    per-row foreign-key triggers then do not run (they are half of the database's work).
    Every reference in the chunk is to a row read or written by this import, under this
    transaction or a committed earlier one; the schema has no other triggers.

    Where it may, the transaction's WAL has its full-page images compressed (lz4): a bulk
    load's first change to each page after a checkpoint logs the whole page, and at a
    million purchases these were 40 % of the WAL (0.27 pages per purchase); compressed,
    the WAL shrinks by a fifth and fewer checkpoints come (7 against 9). Alternated
    1,000,000-row runs: 13,927 and 12,095 rows/s against 12,731 and 10,931 without. Other
    sessions' WAL is not affected.
    """
    if conn.info.get("skip_triggers"):
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    if conn.info.get("compress_wal"):
        conn.execute(text("SET LOCAL wal_compression = lz4"))
    if conn.dialect.name == "sqlite":
        _check_ids(chunk, lambda t, _: int(conn.execute(text(_top_id_sql(t))).scalar_one()))

    def debts_of(accounts: list[int]) -> dict[int, int]:
        cond = _match(_accounts.c.id, accounts, conn.dialect.name)
        query = select(_accounts.c.id, _accounts.c.balance).where(cond, _accounts.c.balance < 0)
        return {int(i): int(b) for i, b in conn.execute(query).all()}

    _repay_debts(chunk, debts_of)
    for table, cols, rows in chunk.rows:
        _write_rows(conn, table, cols, rows)
    for totals, column, deltas in chunk.totals():
        _add_to(conn, totals, column, deltas)


def _refresh_statistics(conn: Connection) -> None:
    """ANALYZE the tables a bulk load grows (PostgreSQL), so that lookups keep using indexes.

    Fresh tables have no statistics until autovacuum catches up; the planner then takes
    them for empty and the member lookups of later chunks turn into scans.
    """
    if conn.dialect.name != "postgresql":
        return
    with conn.begin():
        conn.execute(text("ANALYZE members, accounts, cards, events"))


def _may_set(conn: Connection, parameter: str) -> bool:
    """Whether this PostgreSQL role may set a superuser's `parameter` (superusers, and from
    PostgreSQL 15 roles granted `SET ON PARAMETER`)."""
    with conn.begin():
        if conn.execute(text("SELECT current_setting('is_superuser') = 'on'")).scalar():
            return True
        if (conn.dialect.server_version_info or (0,)) < (15,):
            return False
        return bool(
            conn.execute(
                text("SELECT has_parameter_privilege(:p, 'SET')"), {"p": parameter}
            ).scalar()
        )


def _may_compress_wal(conn: Connection) -> bool:
    """Whether the import may have its WAL's full-page images compressed with lz4: the role
    may set `wal_compression` and the server was built with lz4."""
    if not _may_set(conn, "wal_compression"):
        return False
    with conn.begin():
        return bool(
            conn.execute(
                text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'")
            ).scalar()
        )


@contextmanager
def _no_collection() -> Iterator[None]:
    """The import allocates millions of short-lived tuples: the cyclic collector would walk
    them again and again (an eighth of the time) and finds no cycles among them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def _bulk_session(engine: Engine) -> Iterator[Connection]:
    """One connection for the whole import.

    On SQLite it gets a larger page cache (the indexes of a large import do not fit in the
    default 2 MB) and no per-row foreign-key checks: every reference the import writes is
    to a row it read or wrote in the same transaction, and `habitue ledger verify` checks
    the ledger's links afterwards. Both are restored before the connection goes back to
    the pool.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.driver_connection
        assert raw is not None
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
            raw.execute("PRAGMA cache_size=-262144")
            raw.execute("PRAGMA wal_autocheckpoint=65536")
        else:
            conn.info["skip_triggers"] = _may_set(conn, "session_replication_role")
            conn.info["compress_wal"] = _may_compress_wal(conn)
        try:
            yield conn
        finally:
            conn.info.pop("skip_triggers", None)
            conn.info.pop("compress_wal", None)
            if sqlite:
                conn.rollback()
                raw.execute("PRAGMA foreign_keys=ON")
                raw.execute("PRAGMA cache_size=-2000")
                raw.execute("PRAGMA wal_autocheckpoint=1000")


class _InlineWriter:
    """Writes each chunk in the calling thread, before the next is prepared."""

    def __init__(self, engine: Engine, *, analyze: bool = True) -> None:
        self._stack = ExitStack()
        self._conn = self._stack.enter_context(_bulk_session(engine))
        self._flushes = 0
        self._done: list[int] = []
        self._txn: Any = None
        self._analyze = analyze
        """Whether to refresh the planner's statistics as the tables grow (one worker of a
        partitioned import does)."""

    def submit(self, writes: _Writes) -> None:
        self.write(writes)
        self.commit()

    def write(self, writes: _Writes) -> None:
        """Write a chunk, or a worker's part of one, in the open transaction (begun here
        if none is), without committing it."""
        if self._txn is None:
            self._txn = self._conn.begin()
        _apply_chunk(self._conn, writes)
        self._done.append(writes.number)

    def commit(self) -> None:
        assert self._txn is not None
        txn, self._txn = self._txn, None
        txn.commit()
        self._flushes += 1
        if self._analyze and self._flushes & (self._flushes - 1) == 0:
            _refresh_statistics(self._conn)

    def committed(self, *, wait: bool) -> list[int]:
        """Chunks committed since the last call (all of them: `submit` commits)."""
        del wait
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Roll back what was written and not committed, and let the connection go."""
        try:
            if self._txn is not None:
                txn, self._txn = self._txn, None
                txn.rollback()
        finally:
            self._stack.close()


class _SqliteWriter:
    """Where a writer or worker process writes SQLite chunks: through APSW rather than
    Python's `sqlite3`.

    APSW brings its own SQLite, which this process configures before its first connection:
    no mutex per connection (one thread uses it) and no memory statistics (each allocation
    took a global mutex). With `sqlite3`, locking and unlocking mutexes were 13 % of the
    writer's time, and with one writer process it was the SQLite import's limit (0.89 of a
    core, 0.62 through APSW). Same file, same settings as `_bulk_session`; every chunk in one
    `BEGIN IMMEDIATE` transaction, which waits for another worker's to end.
    """

    def __init__(self, path: str) -> None:
        import apsw

        try:
            apsw.shutdown()
            apsw.config(apsw.SQLITE_CONFIG_MULTITHREAD)
            apsw.config(apsw.SQLITE_CONFIG_MEMSTATUS, 0)
        except apsw.MisuseError:  # SQLite already in use in this process: keep its setup
            pass
        apsw.initialize()
        self._db = apsw.Connection(path)
        for pragma in (
            "PRAGMA busy_timeout=30000",
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=OFF",
            "PRAGMA cache_size=-262144",
            "PRAGMA wal_autocheckpoint=65536",
        ):
            self._db.execute(pragma).fetchall()

    def _top_id(self, table: str, first: int, share: tuple[int, int]) -> int:
        part, parts = share
        top: Any = self._db.execute(_share_top_id_sql(table), (first, parts, part)).fetchall()[0][0]
        return int(top)

    def _debts_of(self, accounts: list[int]) -> dict[int, int]:
        found = self._db.execute(
            "SELECT id, balance FROM accounts "
            "WHERE id IN (SELECT value FROM json_each(?)) AND balance < 0",
            (_json_text(accounts),),
        )
        return {int(i): int(b) for i, b in found}

    def submit(self, writes: _Writes) -> None:
        """Write a chunk in one transaction (committed on return)."""
        self.write(writes)
        self.commit()

    def write(self, writes: _Writes) -> None:
        """Write a chunk, or a worker's part of one, in the open transaction (begun here
        with the write lock if none is), without committing it; on failure the transaction
        is rolled back."""
        db = self._db
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        try:
            _check_ids(writes, lambda table, first: self._top_id(table, first, writes.share))
            _repay_debts(writes, self._debts_of)
            for table, cols, rows in writes.rows:
                db.executemany(_insert_sql(table, cols), rows)
            for totals, column, deltas in writes.totals():
                if deltas:
                    db.executemany(
                        _add_sql(totals.name, column), [(deltas[i], i) for i in sorted(deltas)]
                    )
        except BaseException:
            self.rollback()
            raise

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Roll back what was written and not committed, and close."""
        try:
            self.rollback()
        finally:
            self._db.close()


def _child_writer(engine: Engine, share: tuple[int, int] = (0, 1)) -> _InlineWriter | _SqliteWriter:
    """How a writer or worker process writes its chunks: through APSW on SQLite, on its own
    bulk connection on PostgreSQL, where only the first worker refreshes the statistics."""
    if engine.dialect.name == "sqlite":
        return _SqliteWriter(engine.url.database or "")
    return _InlineWriter(engine, analyze=share[0] == 0)


def write_chunks(
    url: str, inbox: mp_connection.Connection, outbox: mp_connection.Connection
) -> None:
    """The writer process's loop (`python -m habitue.events.import_writer`): applies chunks
    in order, one transaction each, and reports every commit; after a failure it reports it
    and drains its inbox until told to stop."""
    engine = make_sync_engine(url)
    chunks = _read_ahead(inbox)
    try:
        writer = _child_writer(engine)
        try:
            with _no_collection():
                for writes in chunks:
                    writer.submit(writes)
                    outbox.send(("committed", writes.number))
        finally:
            writer.close()
        outbox.send(("finished", 0))
    except Exception as exc:  # reported to the importing process, which raises it
        _report_failure(outbox, exc, chunks)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Job:
    """What every worker of a partitioned import is told before its first rows."""

    program_code: str
    header: list[str]
    enrol_missing: bool
    source: str
    now: datetime
    part: int
    parts: int


def import_worker(
    url: str, inbox: mp_connection.Connection, outbox: mp_connection.Connection
) -> None:
    """A worker process of a partitioned import (`python -m habitue.events.import_writer IN
    OUT worker`): receives a `_Job`, then its part of each chunk (the purchases of its
    members) and the importing process's decisions, in the protocol of
    `_import_partitioned`; reports its report at the end; after a failure it reports it,
    rolls back what it had not committed and drains its inbox."""
    job: _Job = inbox.recv()
    share = (job.part, job.parts)
    engine = make_sync_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    # On SQLite the worker reads without taking the write lock, and writes through APSW;
    # the workers' writes then take turns, while their preparing does not. Two SQLite
    # libraries then have the database open in one process: the POSIX locks of one go when
    # the other closes a file of it ("How To Corrupt An SQLite Database File", 2.2.1), so
    # neither closes one until the work is done, and the reading side, holding no
    # transaction, closes first.
    reading = make_sync_engine(url, immediate=False) if sqlite else engine
    # Whether this worker writes: on PostgreSQL each worker writes its part in its own
    # transaction; on SQLite, which has one writer at a time, the first worker writes the
    # whole chunk (the others' parts come with the decision).
    writes = not sqlite or job.part == 0
    messages = _read_ahead(inbox)
    try:
        report = ImportReport()
        writer = _child_writer(engine, share)
        try:
            with reading.connect() as conn, _no_collection():
                with conn.begin():
                    program = _load_program(conn, job.program_code)
                program.share = share
                report.skipped_rules = program.skipped_rules
                layout = _Layout.of(job.header)
                ids = _Ids(conn, share)
                in_flight = _InFlight()
                waiting: _Chunk | None = None
                """Written (or handed over) and not decided yet."""
                staged: _Chunk | None = None
                """Prepared while `waiting` waits for its decision."""
                decided: int | None = None

                def hand_in(chunk: _Chunk) -> _Chunk:
                    part: bytes | None = None
                    if writes:
                        writer.write(chunk.writes)
                    else:  # pickled here, so that the importing process only passes it on
                        part = pickle.dumps(chunk.writes, pickle.HIGHEST_PROTOCOL)
                    outbox.send(("ready", (chunk.writes.number, part)))
                    chunk.writes.rows = []  # written or sent: only what later chunks need stays
                    return chunk

                for message in messages:
                    kind, value = message
                    if kind == "chunk":
                        number, groups = value
                        prepared = _prepare_chunk(
                            conn,
                            ids,
                            in_flight,
                            program,
                            number,
                            groups,
                            layout,
                            report,
                            enrol_missing=job.enrol_missing,
                            source=job.source,
                            now=job.now,
                        )
                        in_flight.add(prepared)
                        if waiting is None:
                            waiting = hand_in(prepared)
                        else:
                            assert staged is None, "a chunk came before its turn"
                            staged = prepared
                    elif kind == "commit":
                        number, parts = value
                        assert waiting is not None
                        assert waiting.writes.number == number
                        if writes:
                            for part in parts:
                                writer.write(pickle.loads(part))  # noqa: S301 - our own worker's
                            writer.commit()
                            in_flight.committed(number)
                        else:
                            # The writing worker commits this chunk after this message:
                            # it stays in flight here until the next decision, which
                            # comes only once the writer has committed it.
                            if decided is not None:
                                in_flight.committed(decided)
                            decided = number
                        outbox.send(("committed", waiting.writes.rows_read))
                        waiting = None
                        if staged is not None:
                            waiting, staged = hand_in(staged), None
        finally:
            if reading is not engine:
                reading.dispose()
            writer.close()  # rolls back a chunk that was not decided
        outbox.send(("report", report))
        outbox.send(("finished", 0))
    except Exception as exc:  # reported to the importing process, which raises it
        _report_failure(outbox, exc, messages)
    finally:
        engine.dispose()


def _report_failure(
    outbox: mp_connection.Connection, exc: Exception, unread: Iterator[Any]
) -> None:
    """Tell the importing process why this one stopped, then read what it still sends to
    the end mark (it raises once it reads the report)."""
    conflict = isinstance(exc, ImportConflict)
    outbox.send(("conflict" if conflict else "failed", f"{type(exc).__name__}: {exc}"))
    for _ in unread:
        pass


def _read_ahead(inbox: mp_connection.Connection) -> Iterator[Any]:
    """The chunks arriving on `inbox` until the end mark, each received and unpickled by a
    thread while the one before is written: the database would otherwise wait for that
    (about 200 ms per 50,000 purchases, 7 % of a chunk's time on PostgreSQL)."""
    arrived: queue.Queue[Any] = queue.Queue(maxsize=1)

    def receive() -> None:
        try:
            while (writes := inbox.recv()) is not None:
                arrived.put(writes)
        except (EOFError, OSError):  # the importing process went away: end here too
            pass
        finally:
            arrived.put(None)

    threading.Thread(target=receive, name="habitue-import-receive", daemon=True).start()
    while (writes := arrived.get()) is not None:
        yield writes


class ImportFailed(RuntimeError):
    """The writer could not write a chunk; what it committed before stays."""


class _ProcessWriter:
    """Writes chunks in another process while the caller prepares the next ones: Python's
    work there and the database's (in SQLite's case, in that process too) run side by side
    on two cores, which threads under one interpreter lock would not.

    The process is `python -m habitue.events.import_writer`, fed pickled chunks over a pipe
    by a thread of this process (so that preparing never waits for a write unless two chunks
    are already queued), and answering with the numbers of the chunks it committed.
    """

    def __init__(self, engine: Engine, *, role: str = "writer") -> None:
        to_child, child_in = os.pipe()
        child_out, from_child = os.pipe()
        env = {**os.environ, "HABITUE_IMPORT_URL": engine.url.render_as_string(hide_password=False)}
        args = [str(to_child), str(from_child), role]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "habitue.events.import_writer", *args],
            pass_fds=(to_child, from_child),
            env=env,
        )
        os.close(to_child)
        os.close(from_child)
        self._send = mp_connection.Connection(child_in, readable=False)
        self._recv = mp_connection.Connection(child_out, writable=False)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._feeder = threading.Thread(target=self._feed, name="habitue-import-feed", daemon=True)
        self._feeder.start()
        self._finished = False
        self._ended = False
        self._broken: str | None = None
        self.report: ImportReport | None = None
        """A worker's report, once it finished."""
        self._ready: dict[int, Any] = {}
        """A worker's chunks ready to commit, with the part it hands over (or None)."""
        self._early: list[int] = []

    def _feed(self) -> None:
        while True:
            writes = self._queue.get()
            try:
                self._send.send(writes)
            except OSError as exc:
                self._broken = f"the import's writer process stopped ({exc})"
                return
            if writes is None:
                return

    def submit(self, writes: Any) -> None:
        self._put(writes)

    def _put(self, writes: Any) -> None:
        """Queue for the feeder, unless the writer is gone (then nobody would take it)."""
        while True:
            if self._broken is not None:
                raise ImportFailed(self._broken)
            if self._process.poll() is not None:
                raise ImportFailed("the import's writer process stopped")
            try:
                self._queue.put(writes, timeout=1.0)
                return
            except queue.Full:
                continue

    def _take(self, message: tuple[str, Any]) -> int | None:
        kind, value = message
        if kind == "committed":
            return int(value)
        if kind == "finished":
            self._finished = True
            return None
        if kind == "report":
            self.report = value
            return None
        if kind == "ready":
            number, part = value
            self._ready[number] = part
            return None
        if kind == "conflict":
            raise ImportConflict(value)
        raise ImportFailed(value)

    def _next(self) -> tuple[str, Any]:
        """The writer's next message, waiting for it; a writer gone silent is a failure."""
        while not self._recv.poll(1.0):
            if self._process.poll() is not None:
                raise ImportFailed("the import's writer process stopped")
        try:
            message: tuple[str, Any] = self._recv.recv()
        except EOFError:
            raise ImportFailed("the import's writer process stopped") from None
        return message

    def wait_ready(self, number: int) -> Any:
        """Wait until a worker has chunk `number` ready to commit; the part it hands over."""
        while number not in self._ready:
            if self._finished:
                raise ImportFailed("an import worker ended before its chunk was ready")
            done = self._take(self._next())
            if done is not None:
                self._early.append(done)
        return self._ready.pop(number)

    def committed(self, *, wait: bool) -> list[int]:
        """Chunks committed since the last call; with `wait`, at least one (or the end)."""
        done, self._early = self._early, []
        while not self._finished and ((wait and not done) or self._recv.poll()):
            number = self._take(self._next())
            if number is not None:
                done.append(number)
        return done

    def end(self) -> None:
        """Tell the process that nothing more comes after what it was handed."""
        if not self._ended:
            self._ended = True
            self._put(None)

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        """Stop after the chunks already handed over; raise what the writer reported."""
        try:
            self.end()
            self._feeder.join()
            while not self._finished:
                self._take(self._next())
        finally:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._send.close()
            self._recv.close()


WORKERS = 2
"""Worker processes of a large import (`_import_partitioned`)."""


def _import_partitioned(
    engine: Engine,
    program_code: str,
    path: Path,
    *,
    parts: int,
    enrol_missing: bool,
    source: str,
    chunk: int,
    progress: Callable[[int], None] | None,
    now: datetime,
) -> ImportReport:
    """An import shared by `parts` worker processes (`import_worker`), each preparing the
    purchases of its share of the members on its own connection.

    With one preparing process and one writer, the preparing side (Python, a core's worth of
    work per 20,000 purchases on this VM) and the writing side (PostgreSQL's backend, or the
    SQLite writer) each wait for the other part of the time; several workers keep both cores
    busy. This process reads the file, cuts it into chunks and hands each purchase of a
    chunk to the worker of its member (`member_share`); a repeated external id goes where
    its first row went, so that one worker sees both and counts or rejects the repeat as a
    single process would. Workers touch disjoint members, accounts, card numbers and, on
    SQLite, ids (`_Ids`), so on PostgreSQL they never wait for one another's locks.

    A chunk is committed by all its workers or by none. Each worker prepares its part and
    reports it ready: on PostgreSQL written in its own open transaction; on SQLite (one
    writer at a time) the first worker writes its part and the others send theirs. Once
    every worker is ready this process sends the decision, and each commits (on SQLite the
    first worker writes the others' parts in its transaction, then commits). A worker that
    fails stops the import: the chunk's other parts are rolled back, what was committed
    before stays, and a re-run skips it. The decision for a chunk goes out before the chunk
    two after it, so a worker prepares its next part while it waits.
    """
    report = ImportReport()
    with _open_csv(path) as (reader, header):
        ext_at, member_at = header.index("external_id"), header.index("member_external_id")
        workers: list[_ProcessWriter] = []
        try:
            for part in range(parts):
                workers.append(_ProcessWriter(engine, role="worker"))
                workers[-1].submit(
                    _Job(program_code, header, enrol_missing, source, now, part, parts)
                )

            def settle(*, wait: bool) -> None:
                for worker in workers:
                    for rows in worker.committed(wait=wait):
                        if progress is not None:
                            progress(rows)

            decided = 0

            def decide(through: int) -> None:
                """Commit every chunk up to `through`, as soon as all its parts are ready."""
                nonlocal decided
                while decided < through:
                    number = decided + 1
                    handed = [worker.wait_ready(number) for worker in workers]
                    others = [p for p in handed[1:] if p is not None]
                    for k, worker in enumerate(workers):
                        worker.submit(("commit", (number, others if k == 0 else [])))
                    decided = number
                    settle(wait=False)

            first_at: dict[str, int] = {}
            batches: list[list[list[list[str]]]] = [[] for _ in range(parts)]
            number, size = 0, 0
            # The first chunks are smaller (a quarter of `chunk` per worker, then half), so
            # that the workers start soon after the file is opened instead of waiting for
            # whole chunks to be read.
            limit = max(1, chunk // 4)

            def cut() -> None:
                nonlocal number, size, limit, batches
                number += 1
                decide(number - 2)
                for worker, batch in zip(workers, batches, strict=True):
                    worker.submit(("chunk", (number, batch)))
                batches = [[] for _ in range(parts)]
                size, limit = 0, min(chunk, 2 * limit)

            with _no_collection():
                for group in _groups(_rows(reader, report), ext_at):
                    report.rows += len(group)
                    first = group[0]
                    ext = first[ext_at].strip() if ext_at < len(first) else ""
                    to = first_at.get(ext)
                    if to is None:
                        member = first[member_at].strip() if member_at < len(first) else ""
                        to = first_at[ext] = member_share(member, parts)
                    batches[to].append(group)
                    size += 1
                    if size >= limit * parts:
                        cut()
                        settle(wait=False)
                if size:
                    cut()
                decide(number)
            for worker in workers:
                worker.end()
            for worker in workers:
                while not worker.finished:
                    for rows in worker.committed(wait=True):
                        if progress is not None:
                            progress(rows)
        except BaseException:
            # The workers roll back what they had not committed; the first failure is
            # the one raised.
            for worker in workers:
                with suppress(BaseException):
                    worker.close()
            raise
        failure: BaseException | None = None
        for worker in workers:
            try:
                worker.close()
            except BaseException as exc:  # the other workers still get closed
                failure = failure or exc
        if failure is not None:
            raise failure
    for worker in workers:
        assert worker.report is not None
        report.add(worker.report)
    return report


PROCESS_WRITER_BYTES = 2 * 1024 * 1024
"""Files from this size on are written by a separate process (spawning it costs about half
a second, which a small file would notice)."""


def import_purchases(
    engine: Engine,
    program_code: str,
    path: Path,
    *,
    enrol_missing: bool = False,
    source: str = "default",
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    writer_process: bool | None = None,
    workers: int = WORKERS,
) -> ImportReport:
    """Import a purchases CSV; re-running it credits nothing twice. One transaction per chunk.

    Small files are read, checked, decided and written chunk after chunk by the calling
    thread. Large ones (`writer_process`, by default from `PROCESS_WRITER_BYTES`) go to
    `workers` processes that each prepare and write their members' purchases
    (`_import_partitioned`); with `workers=1`, the calling thread prepares and one writer
    process writes each chunk while the next is prepared. A failure stops the import: what
    was committed stays (a re-run skips it), the failing chunk is rolled back.
    """
    from habitue import rooms

    rooms.load()
    report = ImportReport()
    now = clock.now()
    sqlite = engine.dialect.name == "sqlite"
    if writer_process is None:
        writer_process = path.stat().st_size >= PROCESS_WRITER_BYTES
    if writer_process and workers > 1:
        return _import_partitioned(
            engine,
            program_code,
            path,
            parts=workers,
            enrol_missing=enrol_missing,
            source=source,
            chunk=chunk,
            progress=progress,
            now=now,
        )
    reading = (
        make_sync_engine(engine.url.render_as_string(hide_password=False), immediate=False)
        if sqlite
        else engine
    )
    writer: _InlineWriter | _ProcessWriter = (
        _ProcessWriter(engine) if writer_process else _InlineWriter(engine)
    )
    in_flight = _InFlight()

    def settle(*, wait: bool) -> None:
        for number in writer.committed(wait=wait):
            done = in_flight.committed(number)
            if progress is not None:
                progress(done.writes.rows_read)

    try:
        with reading.connect() as conn, _open_csv(path) as (reader, header):
            with conn.begin():
                program = _load_program(conn, program_code)
            report.skipped_rules = program.skipped_rules
            layout = _Layout.of(header)
            ids = _Ids(conn)
            batch: list[list[list[str]]] = []
            number = 0

            def flush() -> None:
                nonlocal number
                number += 1
                prepared = _prepare_chunk(
                    conn,
                    ids,
                    in_flight,
                    program,
                    number,
                    batch,
                    layout,
                    report,
                    enrol_missing=enrol_missing,
                    source=source,
                    now=now,
                )
                settle(wait=len(in_flight) >= 3)
                in_flight.add(prepared)
                try:
                    writer.submit(prepared.writes)
                except (ImportFailed, ImportConflict):
                    raise
                except Exception as exc:  # the database refused the chunk: rolled back
                    raise ImportFailed(f"{type(exc).__name__}: {exc}") from exc
                settle(wait=False)
                batch.clear()

            with _no_collection():
                for group in _groups(_rows(reader, report), layout.index["external_id"]):
                    report.rows += len(group)
                    batch.append(group)
                    if len(batch) >= chunk:
                        flush()
                if batch:
                    flush()
            while in_flight:
                settle(wait=True)
    finally:
        try:
            writer.close()
        finally:
            if reading is not engine:
                reading.dispose()
    return report


def write_rejects(report: ImportReport, path: Path) -> None:
    """The rejected rows with a `reason` column (UTF-8; fields beyond the header as `extra
    1`, `extra 2`…; a line the CSV reader could not read has only its reason)."""
    if not report.rejects:
        path.write_text("")
        return
    cols = list(dict.fromkeys(col for row, _ in report.rejects for col in row))
    cols.append("reason")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for row, reason in report.rejects:
        w.writerow({**row, "reason": reason})
    path.write_text(buf.getvalue(), encoding="utf-8")
