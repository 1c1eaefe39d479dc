"""The import reader's usual-row fast paths accept exactly what its row-by-row checks accept,
with the same purchase; anything else falls back to the checks and their reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

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


def _outcome(rows: list[list[str]], layout: _Layout, plain: bool = False) -> object:
    try:
        return _parse_group(rows, layout, 2, LATEST, plain)
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


LINES_HEADER = ["member_external_id", "external_id", "occurred_at", "total",
                "sku", "category", "quantity", "unit_price", "amount"]  # fmt: skip


def _basket(ext: str, total: str, *lines: list[str], member: str = "M1") -> list[list[str]]:
    return [[member, ext, "2026-03-01T10:00:00Z", total, *line] for line in lines]


LINE_GROUPS = [
    _basket("B1", "3.70", ["s1", "coffee", "2", "1.10", ""], ["s2", "food", "1", "1.50", ""]),
    _basket("B2", "313.00", ["s1", "coffee", "6", "60.00", "313.00"]),  # a multi-buy
    _basket("B3", "0.50", ["s1", "", "", "0.5", ""]),  # quantity 1 by default
    _basket("B4", "1.24", ["s1", "tea", "0.5", "2.4650", ""]),  # a price with more places
    _basket("B5", "3.71", ["s1", "coffee", "2", "1.10", ""], ["s2", "food", "1", "1.50", ""]),
    _basket("B6", "3.72", ["s1", "coffee", "2", "1.10", ""], ["s2", "food", "1", "1.50", ""]),
    _basket("B7", "1.00", ["s1", "coffee", "-1", "1.00", ""]),
    _basket("B8", "1.00", ["s1", "coffee", "1", "", ""]),
    _basket("B9", "1.00", ["s1", "cof\x7ffee", "1", "1.00", ""]),
    _basket("B10", "1.00", ["s1\t", "coffee", "1", "1.00", ""]),
    _basket("B11", "1.00", ["s" * 101, "coffee", "1", "1.00", ""]),
    _basket("B12", "1.00", ["caf\u00e9", "coffee", "1", "1.00", ""]),
    _basket("B13", "1.00", ["s1", "coffee", "1", "1.00"]),  # a field short
    _basket("B14", "1.00", ["s1", "coffee", "1", "1.00", "", "x"]),  # a field more
    _basket("B15", "2.00", ["s1", "coffee", "1", "1.00", ""], ["s2", "tea", "0", "1.00", ""]),
    _basket("B16", "1.00", ["s1", "coffee", "1", "1.001", ""]),
    _basket("B17", "1.00", ["s1", "coffee", "1", "1.00", "1.005"]),
    _basket("B18", "1.00", ["s1", "coffee", "1", "1.00", ""], member="M" * 201),
    _basket("B19", "1e2", ["s1", "coffee", "1", "100", ""]),
    [*_basket("B20", "2.00", ["s1", "coffee", "1", "1.00", ""]),
     *_basket("B20", "2.10", ["s2", "coffee", "1", "1.00", ""])],  # rows disagree on total
    _basket("B21", "99999999999.00", ["s1", "coffee", "1", "99999999999.00", ""]),
    _basket("B22", "1.00", ["s1", "coffee", "1000001", "0.0000", "1.00"]),
]  # fmt: skip


@pytest.mark.parametrize("rows", LINE_GROUPS, ids=[g[0][1] for g in LINE_GROUPS])
def test_a_file_with_lines_reads_alike_on_both_paths(rows: list[list[str]]) -> None:
    """The usual-purchase path (lines looked up whole in a memo) against the row-by-row
    checks, twice over so that the second reading is served from the memo."""
    usual = _Layout.of(LINES_HEADER)
    assert usual.line_key is not None
    checked = dataclasses.replace(usual)
    object.__setattr__(checked, "line_key", None)  # the row-by-row checks only
    for _ in range(2):
        assert _outcome(rows, usual) == _outcome(rows, checked)
    text = "".join(field for row in rows for field in row)
    if text.isascii() and text.isprintable() and '"' not in text:  # as in a plain file
        assert _outcome(rows, usual, plain=True) == _outcome(rows, checked)


def test_the_usual_purchases_with_lines_take_the_fast_path() -> None:
    from habitue.events.importer.reading import _parse_group_usual

    usual = _Layout.of(LINES_HEADER)
    taken = [g[0][1] for g in LINE_GROUPS if _parse_group_usual(g, usual, 2, LATEST) is not None]
    assert taken == ["B1", "B2", "B3", "B4", "B5", "B16", "B21"]  # B8, B12: valid, checked


@pytest.mark.parametrize(
    ("text", "plain"),
    [("a,b\r\n1,2\n", True), ("a,b\n1,\"2\"\n", False), ("a,b\n1,2\t\n", False),
     ("a,b\n1,caf\u00e9\n", False), ("\ufeffa,b\n1,2\n", False), ("a,b\n1,2\x7f\n", False)],
)  # fmt: skip
def test_a_plain_file_is_printable_ascii_without_quotes(
    tmp_path: Path, text: str, plain: bool
) -> None:
    from habitue.events.importer.reading import plain_file

    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8", newline="")
    assert plain_file(path, block=4) is plain
