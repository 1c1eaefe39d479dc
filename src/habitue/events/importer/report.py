"""What an import did, and the rejects file."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from habitue.events.importer.delivering import Deferred


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
    delivered: int = 0
    """Of `imported`, the purchases recorded through the API's path (`delivering`): their
    decision granted a benefit, issued a coupon or counted tier credits, or a rule with caps
    or a budget applied to it."""
    deferred: list[Deferred] = field(default_factory=list)
    """Purchases set aside for the API's path, not recorded yet."""
    deferred_ids: set[str] = field(default_factory=set)
    """Their external ids: a repeat in a later chunk is a repeat, as if they were written."""

    def add(self, worker: ImportReport) -> None:
        """Count a worker's purchases in (its rows were counted here, as they were read)."""
        self.imported += worker.imported
        self.already += worker.already
        self.rejected += worker.rejected
        self.points += worker.points
        self.enrolled += worker.enrolled
        self.rejects.extend(worker.rejects)
        self.delivered += worker.delivered
        self.deferred.extend(worker.deferred)
        self.deferred_ids |= worker.deferred_ids


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
