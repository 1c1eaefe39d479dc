"""Bulk import of purchases from CSV: the same `decide`, set-based writes, idempotent re-runs.

Rows of one purchase share its `external_id` and sit next to each other. The package reads
top to bottom:

- `reading`: the CSV, its rows grouped by purchase, each checked and parsed (a malformed row
  is rejected with its reason, never an error that stops the import);
- `program`: the program as `decide` sees it, and which members a worker owns;
- `preparing`: a chunk at a time, members looked up (or enrolled), every purchase decided and
  its rows built: event rows and outbox payloads by `events.rows` (as the API builds them),
  credits planned by the ledger's bulk planner (`ledger.bulk`);
- `delivering`: a purchase whose decision delivers more than points (a `benefit`, a `coupon`,
  `tier_credits`), or in which a rule with caps or a budget gives, goes through the API's own
  event path after the bulk chunks, so that its effects are applied by the same appliers
  (`events.apply`) and its caps counted exactly as `POST /events` does;
- `writing`: a prepared chunk written in one transaction (binary COPY on PostgreSQL,
  executemany on SQLite), inline or in a writer process (`habitue.events.import_writer`);
- `partitioning`: large files shared by two worker processes, each for its share of the
  members, a chunk committed by all of them or by none;
- `report`: what the import did, and the rejects file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from habitue import clock
from habitue.db import make_sync_engine
from habitue.events.importer import delivering
from habitue.events.importer.partitioning import (
    WORKERS,
    ImportFailed,
    _import_partitioned,
    _ProcessWriter,
    import_worker,
)
from habitue.events.importer.preparing import _InFlight, _prepare_chunk, _Writes
from habitue.events.importer.program import _load_program, member_share
from habitue.events.importer.reading import CHUNK, _groups, _Layout, _open_csv
from habitue.events.importer.report import ImportReport, write_rejects
from habitue.events.importer.sql import _Ids
from habitue.events.importer.writing import (
    ImportConflict,
    _check_ids,
    _InlineWriter,
    _no_collection,
    _share_top_id_sql,
    write_chunks,
)

__all__ = [
    "CHUNK",
    "PROCESS_WRITER_BYTES",
    "WORKERS",
    "ImportConflict",
    "ImportFailed",
    "ImportReport",
    "_Ids",
    "_Writes",
    "_check_ids",
    "_share_top_id_sql",
    "import_purchases",
    "import_worker",
    "member_share",
    "write_chunks",
    "write_rejects",
]


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
        report = _import_partitioned(
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
        delivering.deliver(engine, program_code, report)
        return report
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
                for group in _groups(reader, layout.index["external_id"], report):
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
    delivering.deliver(engine, program_code, report)
    return report
