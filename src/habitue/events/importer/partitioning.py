"""Large imports: worker processes that each prepare and write their share of the members,
a chunk committed by all of them or by none."""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
)

from habitue.db import make_sync_engine
from habitue.events.importer.preparing import (
    _Chunk,
    _InFlight,
    _prepare_chunk,
    _Writes,
)
from habitue.events.importer.program import (
    _load_program,
    member_share,
)
from habitue.events.importer.reading import (
    _groups,
    _Layout,
    _open_csv,
)
from habitue.events.importer.report import (
    ImportReport,
)
from habitue.events.importer.sql import (
    _Ids,
)
from habitue.events.importer.writing import (
    ImportConflict,
    _child_writer,
    _no_collection,
    _read_ahead,
    _report_failure,
    _SqliteWriter,
)


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
    messages = _read_ahead(inbox, unpickle=False)
    try:
        report = ImportReport()
        writer = _child_writer(engine, share)
        try:
            with reading.connect() as conn, _no_collection():
                with conn.begin():
                    program = _load_program(conn, job.program_code)
                program.share = share
                layout = _Layout.of(job.header)
                ids = _Ids(conn, share)
                in_flight = _InFlight()
                waiting: _Chunk | None = None
                """Written (or handed over) and not decided yet."""
                staged: _Chunk | None = None
                """Prepared while `waiting` waits for its decision."""
                decided: int | None = None
                heads: list[_Writes] = []
                """(SQLite, the writing worker) the other workers' parts of `waiting`
                written so far, whose totals are added when the chunk is committed."""

                def hand_in(chunk: _Chunk) -> _Chunk:
                    if writes:
                        writer.write(chunk.writes)
                    else:
                        for part in _part_messages(chunk.writes):
                            outbox.send(("part", part))
                    outbox.send(("ready", chunk.writes.number))
                    chunk.writes.rows = []  # written or sent: only what later chunks need stays
                    return chunk

                for pickled in messages:
                    message = pickle.loads(pickled)  # noqa: S301 - from the importing process
                    del pickled
                    kind, value = message
                    # The message's rows go as soon as they are used, not when the next
                    # message comes: they would double what a worker holds while it writes.
                    del message
                    if kind == "chunk":
                        number, groups = value
                        del value
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
                        del groups
                        in_flight.add(prepared)
                        if waiting is None:
                            waiting = hand_in(prepared)
                        else:
                            assert staged is None, "a chunk came before its turn"
                            staged = prepared
                    elif kind == "part":  # (SQLite) another worker's part of `waiting`
                        assert isinstance(writer, _SqliteWriter)
                        assert waiting is not None
                        writer.begin_part(value)
                        heads.append(value)
                    elif kind == "rows":  # (SQLite) one table of that part
                        assert isinstance(writer, _SqliteWriter)
                        assert heads
                        table, cols, rows = value
                        del value
                        writer.write_table(table, cols, rows)
                        del rows
                    elif kind == "commit":
                        number = value
                        assert waiting is not None
                        assert waiting.writes.number == number
                        if writes:
                            for head in heads:
                                assert isinstance(writer, _SqliteWriter)
                                writer.add_totals(head)
                            heads.clear()
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


def _part_messages(writes: _Writes) -> Iterator[bytes]:
    """(SQLite) A worker's part of a chunk as the messages the writing worker receives,
    pickled here so that the importing process only passes them on: first the part
    without its rows (`("part", writes)`: its ids and totals), then each table's rows
    (`("rows", (table, cols, rows))`). Each table's rows go once pickled, and the writing
    worker unpickles and writes one table at a time: a whole part pickled at once held the
    part's rows, their pickle, and in the writing worker both again (over 1 GB there at
    chunks of 100,000)."""
    rows, writes.rows = writes.rows, []
    yield pickle.dumps(("part", writes), pickle.HIGHEST_PROTOCOL)
    while rows:
        table = rows.pop(0)
        message = pickle.dumps(("rows", table), pickle.HIGHEST_PROTOCOL)
        del table
        yield message


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
        self._ready: dict[int, list[bytes]] = {}
        """A worker's chunks ready to commit, with the messages of the part it hands over
        (`_part_messages`; none if it wrote its part itself)."""
        self._parts: list[bytes] = []
        """The messages of the part being handed over, until it is ready."""
        self._early: list[int] = []

    def _feed(self) -> None:
        while True:
            writes = self._queue.get()
            try:
                if isinstance(writes, bytes):  # pickled already (`submit_pickled`)
                    self._send.send_bytes(writes)
                else:
                    self._send.send(writes)
            except OSError as exc:
                self._broken = f"the import's writer process stopped ({exc})"
                return
            if writes is None:
                return

    def submit(self, writes: Any) -> None:
        self._put(writes)

    def submit_bytes(self, message: bytes) -> None:
        """`submit` of a message pickled already (`_part_messages`)."""
        self._put(message)

    def submit_pickled(self, message: Any) -> None:
        """`submit`, pickled now: what waits in the queue is its compact pickle rather than
        its objects (a chunk's CSV rows as Python lists are several times their pickle)."""
        self._put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

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
        if kind == "part":
            self._parts.append(value)
            return None
        if kind == "ready":
            self._ready[int(value)], self._parts = self._parts, []
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

    def wait_ready(self, number: int) -> list[bytes]:
        """Wait until a worker has chunk `number` ready to commit; the messages of the part
        it hands over."""
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

_RECENT = 4
"""Chunks whose external ids `_import_partitioned` remembers (the one being cut included).

Chunk n + 3 is cut only after chunk n + 1 is ready in every worker, and a worker reports a
chunk ready only after it committed the chunk before it (the first SQLite worker writes
every part): so when a worker prepares chunk n + 3, chunk n is committed and its ids are
found by the worker's own lookup (`preparing._existing`), whichever worker that is."""


def _recent_part(recent: list[dict[str, int]], external_id: str) -> int | None:
    """The worker the first row of `external_id` went to, if it came in a recent chunk."""
    for chunk in reversed(recent):
        to = chunk.get(external_id)
        if to is not None:
            return to
    return None


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
                    # (SQLite) the other workers' parts go to the first one, which writes
                    # them in its transaction; each message let go once queued.
                    for messages in handed[1:]:
                        while messages:
                            workers[0].submit_bytes(messages.pop(0))
                    del handed
                    for worker in workers:
                        worker.submit(("commit", number))
                    decided = number
                    settle(wait=False)

            # Where the external ids of the last chunks went (newest last). A repeat of an
            # id goes to the worker of its first row while that row may still be in flight;
            # from the chunk `_RECENT` after it on, every worker sees the first row committed
            # (`_existing`), so the repeat goes to its own member's worker like any purchase.
            # Remembering only the last chunks bounds this process's memory: every id of a
            # 1,000,000-row file kept for the whole import was some 100 MB.
            first_at: list[dict[str, int]] = [{}]
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
                    worker.submit_pickled(("chunk", (number, batch)))
                batches = [[] for _ in range(parts)]
                size, limit = 0, min(chunk, 2 * limit)
                first_at.append({})
                del first_at[:-_RECENT]

            with _no_collection():
                for group in _groups(reader, ext_at, report):
                    report.rows += len(group)
                    first = group[0]
                    ext = first[ext_at].strip() if ext_at < len(first) else ""
                    to = _recent_part(first_at, ext)
                    if to is None:
                        member = first[member_at].strip() if member_at < len(first) else ""
                        to = first_at[-1][ext] = member_share(member, parts)
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
