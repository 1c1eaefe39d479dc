"""Writing prepared chunks, one transaction each: inline, or in a writer process through
APSW (SQLite) or its own bulk connection (PostgreSQL)."""

from __future__ import annotations

import gc
import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing import connection as mp_connection
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    select,
    text,
)

from habitue.db import make_sync_engine, table_of
from habitue.events.importer.preparing import (
    _Writes,
)
from habitue.events.importer.sql import (
    _add_sql,
    _add_to,
    _insert_sql,
    _json_text,
    _match,
    _write_rows,
)
from habitue.ledger import bulk
from habitue.ledger.models import Account, Lot

_accounts = table_of(Account)
_lots = table_of(Lot)


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
    """New points first repay negative balances (`ledger.bulk.repay_debts`) in the chunk's
    lots; `debts_of` reads the negative balances among some accounts."""
    lots = next((rows for table, _, rows in chunk.rows if table == _lots.name), None)
    if lots:
        bulk.repay_debts(lots, debts_of)


_BY_KEY = ("SET LOCAL enable_mergejoin = off", "SET LOCAL enable_hashjoin = off")
"""The write transaction's joins are nested loops (PostgreSQL): each statement of a chunk
that joins (the running totals' `UPDATE … FROM unnest(ids, deltas)`) finds its rows one by
one through the primary key, a few index pages each whatever the table's size. Left to
itself the planner, costing a random page at four sequential ones, walked the whole primary
key in a merge join once the chunk's rows were a few percent of the table: at 1,000,000
members 2,000,000 accounts read for 24,000 updated (0.7–0.8 s, twice as long as the lookups,
per table and worker). The chunk's other statements (COPY, the debts by `id = ANY`, the
foreign-key checks when they run) join nothing."""


def _key_lookups(conn: Connection) -> None:
    """`_BY_KEY` for the rest of the open transaction (PostgreSQL; nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        for setting in _BY_KEY:
            conn.execute(text(setting))


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
    _key_lookups(conn)
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


ANALYZED = ("members", "accounts", "cards", "events")
"""The tables whose statistics the import's own lookups (and the API's) depend on."""
ANALYZE_FLOOR = 50
"""Rows inserted below which a table is never analysed (`autovacuum_analyze_threshold`'s
default)."""


class _Statistics:
    """Which of `ANALYZED` a bulk load has grown enough to ANALYZE (PostgreSQL): those into
    which this import inserted, since it last analysed them, more rows than they held when
    last analysed (`pg_class.reltuples`; a table never analysed holds none), and more than
    `ANALYZE_FLOOR`. The running totals it updates change no statistic its lookups use. A
    table an import grows from nothing is then analysed after its first chunk, and again
    each time it has doubled (the schedule was "after chunks 1, 2, 4, 8…" for all four
    tables, whatever their size).

    Fresh tables have no statistics until someone analyses them, and the server may run
    without autovacuum (or it may not have caught up): the planner would take them for
    empty and later chunks' lookups turn into scans. An import that changes a few percent of
    a large table does not analyse it: ANALYZE samples 30,000 rows of each table whatever
    its size, 1.8 s for the four at 1,000,000 members, which every import paid after its
    first chunk (35 µs a row of a 50,000-row import). `parts`: the import's workers, which
    share the members evenly (one of them counts its own rows and analyses for all)."""

    def __init__(self, parts: int = 1) -> None:
        self.parts = parts
        self.changed = dict.fromkeys(ANALYZED, 0)

    def count(self, writes: _Writes) -> None:
        for table, _, rows in writes.rows:
            if table in self.changed:
                self.changed[table] += len(rows)

    def due(self, conn: Connection) -> list[str]:
        """The tables to analyse now."""
        changed = {t: n * self.parts for t, n in self.changed.items() if n > 0}
        if not changed:
            return []
        found = conn.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE oid = ANY(CAST(:t AS regclass[]))"),
            {"t": list(changed)},
        ).all()
        return sorted(
            name
            for name, reltuples in found
            if changed[name] > max(float(reltuples), ANALYZE_FLOOR)
        )

    def refresh(self, conn: Connection) -> list[str]:
        """ANALYZE the tables that are due; which they were."""
        if conn.dialect.name != "postgresql":
            return []
        with conn.begin():
            due = self.due(conn)
            if due:
                conn.execute(text(f"ANALYZE {', '.join(due)}"))
        for table in due:
            self.changed[table] = 0
        return due


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

    def __init__(self, engine: Engine, *, analyze: bool = True, parts: int = 1) -> None:
        self._stack = ExitStack()
        self._conn = self._stack.enter_context(_bulk_session(engine))
        self._done: list[int] = []
        self._txn: Any = None
        self._statistics = _Statistics(parts) if analyze else None
        """Whether to refresh the planner's statistics as the tables grow (one worker of a
        partitioned import does, for the `parts` workers)."""

    def submit(self, writes: _Writes) -> None:
        self.write(writes)
        self.commit()

    def write(self, writes: _Writes) -> None:
        """Write a chunk, or a worker's part of one, in the open transaction (begun here
        if none is), without committing it."""
        if self._txn is None:
            self._txn = self._conn.begin()
        _apply_chunk(self._conn, writes)
        if self._statistics is not None:
            self._statistics.count(writes)
        self._done.append(writes.number)

    def commit(self) -> None:
        assert self._txn is not None
        txn, self._txn = self._txn, None
        txn.commit()
        if self._statistics is not None:
            self._statistics.refresh(self._conn)

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
        self.begin_part(writes)
        for table, cols, rows in writes.rows:
            self.write_table(table, cols, rows)
        self.add_totals(writes)

    def begin_part(self, writes: _Writes) -> None:
        """`write` in steps, for a part that comes table by table (`partitioning`): first
        its ids checked (before any of its rows is in), then `write_table` for each of its
        tables (`writes.rows` may be empty here), then `add_totals`."""
        db = self._db
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        try:
            _check_ids(writes, lambda table, first: self._top_id(table, first, writes.share))
        except BaseException:
            self.rollback()
            raise

    def write_table(self, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert one table's rows of a part; lots first repay negative balances
        (`_repay_debts`: the part's accounts get their totals only after all its rows)."""
        try:
            if table == _lots.name and rows:
                bulk.repay_debts(rows, self._debts_of)
            self._db.executemany(_insert_sql(table, cols), rows)
        except BaseException:
            self.rollback()
            raise

    def add_totals(self, writes: _Writes) -> None:
        try:
            for totals, column, deltas in writes.totals():
                if deltas:
                    self._db.executemany(
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
    return _InlineWriter(engine, analyze=share[0] == 0, parts=share[1])


def _report_failure(
    outbox: mp_connection.Connection, exc: Exception, unread: Iterator[Any]
) -> None:
    """Tell the importing process why this one stopped, then read what it still sends to
    the end mark (it raises once it reads the report)."""
    conflict = isinstance(exc, ImportConflict)
    outbox.send(("conflict" if conflict else "failed", f"{type(exc).__name__}: {exc}"))
    for _ in unread:
        pass


def _is_end(message: bytes) -> bool:
    """Whether a pickled message is the end mark (None, whatever the pickle's protocol)."""
    return len(message) < 8 and pickle.loads(message) is None  # noqa: S301 - ours


def _read_ahead(inbox: mp_connection.Connection, *, unpickle: bool = True) -> Iterator[Any]:
    """The chunks arriving on `inbox` until the end mark, each received and unpickled by a
    thread while the one before is written: the database would otherwise wait for that
    (about 200 ms per 50,000 purchases, 7 % of a chunk's time on PostgreSQL).

    Without `unpickle`, each comes as its pickle (`pickle.loads` it): a worker, which
    prepares rather than waits for its database, then holds the chunk it reads ahead as its
    compact pickle instead of its objects (a chunk of CSV rows as lists is several times its
    pickle), with no more CPU spent."""
    arrived: queue.Queue[Any] = queue.Queue(maxsize=1)

    def receive() -> None:
        try:
            if unpickle:
                while (writes := inbox.recv()) is not None:
                    arrived.put(writes)
            else:
                while not _is_end(message := inbox.recv_bytes()):
                    arrived.put(message)
        except (EOFError, OSError):  # the importing process went away: end here too
            pass
        finally:
            arrived.put(None)

    threading.Thread(target=receive, name="habitue-import-receive", daemon=True).start()
    while True:
        # Yielded from a box, not a local variable: a variable here would keep each
        # message (a chunk's rows) alive until the next one came, after its reader let it go.
        box = [arrived.get()]
        if box[0] is None:
            return
        yield box.pop()


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
