"""The import reader's usual-row fast paths accept exactly what its row-by-row checks accept,
with the same purchase; anything else falls back to the checks and their reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from habitue.events.importer.reading import _Layout, _parse_group

HEADER = ["member_external_id", "external_id", "occurred_at", "total", "channel"]
LATEST = datetime(2026, 12, 1, tzinfo=UTC)

GROUPS = [
    [["M1", "R1", "2026-03-01T10:00:00Z", "12.50", "shop"]],
    [["M1", " R2 ", "2026-03-01T10:00:00+02:00", "0012.5", ""]],
    [["M1", "R3", "2026-03-01T10:00:00", "12.50", ""]],  # no offset
    [["M1", "R4", "2027-03-01T10:00:00Z", "12.50", ""]],  # in the future
    [["M1", "R5", "2026-03-01T10:00:00Z", "-1", ""]],
    [["M1", "R6", "2026-03-01T10:00:00Z", "1.234", ""]],
    [["", "R7", "2026-03-01T10:00:00Z", "1.00", ""]],
    [["M1", "R8", "2026-03-01T10:00:00Z", "1.00"]],  # a field short
    [["M1", "R9", "2026-03-01T10:00:00Z", "1.00", "caf\u00e9"]],
    [["M1", "R10", "2026-03-01T10:00:00Z", "1.00", "a\x01b"]],
    [["M" * 201, "R11", "2026-03-01T10:00:00Z", "1.00", ""]],
    [["M1", "R12", "2026-03-01T10:00:00Z", "1.00", ""],
     ["M1", "R12", "2026-03-01T10:00:00Z", "1.00", ""]],
]  # fmt: skip


def _outcome(rows: list[list[str]], layout: _Layout) -> object:
    try:
        return _parse_group(rows, layout, 2, LATEST)
    except ValueError as exc:
        return f"rejected: {exc}"


@pytest.mark.parametrize("rows", GROUPS, ids=[g[0][1].strip() for g in GROUPS])
def test_a_file_without_lines_reads_alike_on_both_paths(rows: list[list[str]]) -> None:
    usual = _Layout.of(HEADER)
    assert usual.order_only
    checked = dataclasses.replace(usual)
    object.__setattr__(checked, "order_only", False)  # the row-by-row checks only
    assert _outcome(rows, usual) == _outcome(rows, checked)


def test_a_file_with_line_or_tax_columns_is_not_order_only() -> None:
    assert not _Layout.of([*HEADER, "sku", "unit_price"]).order_only
    assert not _Layout.of([*HEADER, "tax_rate"]).order_only


def test_the_fast_path_is_taken_for_the_usual_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from habitue.events.importer import reading

    taken: list[object] = []
    real = reading._parse_order_usual

    def spy(*args: object) -> object:
        taken.append(result := real(*args))  # type: ignore[arg-type]
        return result

    monkeypatch.setattr(reading, "_parse_order_usual", spy)
    _parse_group(GROUPS[0], _Layout.of(HEADER), 2, LATEST)
    assert len(taken) == 1 and taken[0] is not None
