"""The import's processes: `python -m habitue.events.import_writer IN_FD OUT_FD [writer|worker]`.

Started by `habitue import purchases` for large files (`importer.partitioning._ProcessWriter`):
a writer reads pickled chunks from IN_FD and reports commits on OUT_FD; a worker of a
partitioned import reads its job, its part of each chunk (CSV rows) and the decisions to
commit, and prepares and writes its parts itself (`importer.partitioning.import_worker`).
The database URL comes in `HABITUE_IMPORT_URL` so that it never shows in the process list.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import connection as mp_connection

from habitue.events.importer import import_worker, write_chunks


def main(argv: list[str]) -> None:
    inbox = mp_connection.Connection(int(argv[1]), writable=False)
    outbox = mp_connection.Connection(int(argv[2]), readable=False)
    # Nothing may print on our standard output: the parent owns it.
    sys.stdout = sys.stderr
    role = argv[3] if len(argv) > 3 else "writer"
    run = import_worker if role == "worker" else write_chunks
    run(os.environ["HABITUE_IMPORT_URL"], inbox, outbox)


if __name__ == "__main__":
    main(sys.argv)
