"""The import's writer process: `python -m habitue.events.import_writer IN_FD OUT_FD`.

Started by `habitue import purchases` for large files (see `importer._ProcessWriter`); reads
pickled chunks from IN_FD and reports commits on OUT_FD. The database URL comes in
`HABITUE_IMPORT_URL` so that it never shows in the process list.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import connection as mp_connection

from habitue.events.importer import write_chunks


def main(argv: list[str]) -> None:
    inbox = mp_connection.Connection(int(argv[1]), writable=False)
    outbox = mp_connection.Connection(int(argv[2]), readable=False)
    # Nothing may print on our standard output: the parent owns it.
    sys.stdout = sys.stderr
    write_chunks(os.environ["HABITUE_IMPORT_URL"], inbox, outbox)


if __name__ == "__main__":
    main(sys.argv)
