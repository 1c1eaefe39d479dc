"""Bulk SQL for the import's writes: ids it numbers, column orders, binary COPY on
PostgreSQL and executemany on SQLite, running totals, and one-parameter `IN` lists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
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
    "unit_price_minor", "amount_minor", "tax_minor",
)  # fmt: skip
OUTBOX_COLS = ("program_id", "seq", "type", "member_id", "created_at", "payload")
MEMBER_COLS = (
    "id", "public_id", "program_id", "external_id", "email", "email_hash", "phone",
    "phone_hash", "first_name", "last_name", "birth_date", "locale", "status", "tier",
    "consents", "attributes", "lifetime_earned", "enrolled_at", "updated_at",
)  # fmt: skip
ACCOUNT_COLS = ("id", "program_id", "member_id", "kind", "balance")
COUNTER_COLS = ("member_id", "program_id", "state", "updated_at")
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
                _add_from_sql(table.name, column),
                (_pg_array(ids), _pg_array([deltas[i] for i in ids])),
            )
        return
    cur = raw.cursor()
    cur.executemany(_add_sql(table.name, column), [(deltas[i], i) for i in ids])
    cur.close()


def _add_from_sql(table: str, column: str) -> str:
    """PostgreSQL's `column += delta` for arrays of ids and deltas (`%s` parameters, their
    text by `_pg_array`); the writer sends it with joins by key only (`writing._BY_KEY`)."""
    return (
        f"UPDATE {table} t SET {column} = t.{column} + d.delta "  # noqa: S608
        "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, delta) WHERE t.id = d.id"
    )


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
