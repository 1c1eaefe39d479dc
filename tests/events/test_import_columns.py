"""The columnar reader (`events.importer.columns`, the backtest's) gives exactly what the
import's row-by-row reader gives on every file: the same purchases, the same rejects with the
same reasons, in the same order; and it is the one that reads a plain file."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

from habitue.events.importer import columns
from habitue.events.importer.reading import CsvPurchase, _read_rows, read_purchases
from habitue.rules.types import EventInput

HEADER = ["member_external_id", "external_id", "occurred_at", "total",
          "sku", "category", "quantity", "unit_price", "amount"]  # fmt: skip
LATEST = datetime(2026, 12, 1, tzinfo=UTC)

# Fields of every kind the reader meets, the usual ones most often.
TIMES = ["2026-03-01T10:00:00Z", "2024-01-01T00:00:00Z"], [
    "2026-03-01T10:00:00+05:30", "2026-03-01T10:00:00-03:00", "2026-03-01T10:00:00+00:00",
    "2026-03-01T10:00:00", "2026-03-01T10:00:00.5Z", "2024-02-29T23:59:59Z",
    "2023-02-29T10:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T10:60:00Z",
    "2026-13-01T10:00:00Z", "2027-03-01T10:00:00Z", "2026-12-01T00:10:00Z",
    "2026-12-01T00:00:00Z", "2026-12-01T00:00:01Z", "1969-12-31T23:59:59Z",
    "1969-12-31T23:30:00-01:00", "1970-01-01T00:00:00Z", "0000-01-01T00:00:00Z",
    " 2026-03-01T10:00:00Z", "2026-03-01 10:00:00Z", "", "yesterday",
    "2026-03-01T10:00:00+24:00", "2026-03-01T10:00:00+23:59", "9999-12-31T23:59:59-01:00",
]  # fmt: skip
QUANTITIES = ["1", "2", "3", "", "1"], [
    "0.5", "0.250", "1.0", "2.000000", "0.000001", "0.0000001", "0", "-1", "1e2",
    " 1", "1000000", "1000001", "999999.999999", "01", ".5", "5.", "0.0",
]  # fmt: skip
PRICES = ["1.10", "12.50", "0.99", "3", "2.4650", "0.0123"], [
    "1.234567", "1.2345678", "1.23456700", "0", "0.00", "", " ",
    "-1.00", "1e2", "99999999999.00", "999999999999.99", "9999999999999.99", "12.", ".5",
    "00012.50", "12.50 ", "NaN",
]  # fmt: skip
AMOUNTS = ["", "", "", "", "", "auto"], ["1.005", "1.00", "0", " ", "-1.00", "12.", "1e3"]
SKUS = ["s1", "s2", "coffee beans", ""], ["s" * 100, "s" * 101, " s1", "s1 "]
CATEGORIES = ["coffee", "tea", "", "food"], ["c" * 101]
MEMBERS = ["M1", "M2", "M3"], [" M4", "M5 ", "", " ", "M" * 200, "M" * 201]
TOTAL_SHIFTS = [0, 0, 0, 1, -1], [2, 50, -50]
"""The total against the lines' sum, in cents (the tolerance is one cent)."""


def _pick(rng: random.Random, choices: tuple[list[Any], list[Any]], odd: float = 0.01) -> Any:
    """A usual value, or one time in `1 / odd` an odd one."""
    return rng.choice(choices[1] if rng.random() < odd else choices[0])


def _cents(text: str) -> int:
    """A decimal's value in cents, rounded half up (0 when it is not a plain one), for a
    total that adds up."""
    try:
        value = Decimal(text.strip() or "1") * 100
    except InvalidOperation:
        return 0
    return int(value.to_integral_value(ROUND_HALF_UP)) if value.is_finite() else 0


def _purchase(rng: random.Random, ext: str) -> list[list[str]]:
    member = _pick(rng, MEMBERS)
    at = _pick(rng, TIMES, 0.1)
    rows = []
    total = 0
    for _ in range(rng.choice([1, 2, 3, 7, 7, 7, 12])):  # about seven lines
        quantity, price = _pick(rng, QUANTITIES), _pick(rng, PRICES)
        amount = _pick(rng, AMOUNTS)
        line = _cents(str(Decimal(_cents(quantity or "1")) / 100 * Decimal(_cents(price)) / 100))
        if amount == "auto":
            amount = f"{line * 2 // 3 / 100:.2f}"  # a multi-buy
        total += line if not amount.strip() else _cents(amount)
        rows.append([_pick(rng, SKUS), _pick(rng, CATEGORIES), quantity, price, amount])
    total += _pick(rng, TOTAL_SHIFTS, 0.05)
    total_text = f"{max(total, 0) / 100:.2f}"
    if rng.random() < 0.05:
        total_text = rng.choice(["", "-1.00", "1.234", "1e2", " 1.00", "0012.50", "12."])
    out = [[member, ext, at, total_text, *row] for row in rows]
    if rng.random() < 0.03:
        out[-1][3] = total_text + "0"  # rows disagree on the total, or say it otherwise
    if rng.random() < 0.03 and len(out) > 1:
        out[-1][0] = "M2"  # a row of another member
    return out


def _write(path: Path, rng: random.Random, purchases: int, *, crlf: bool = False) -> None:
    lines = [",".join(HEADER)]
    for i in range(purchases):
        ext = _pick(rng, ([f"T{i}"], [f"T{rng.randrange(max(i, 1))}", f" T{i}", f"T{i} "]), 0.1)
        if rng.random() < 0.01:
            ext = "T" * 201
        for row in _purchase(rng, ext):
            lines.append(",".join(row))
        if rng.random() < 0.02:
            lines.append("")  # a blank line
    end = "\r\n" if crlf else "\n"
    path.write_text(end.join(lines) + end, encoding="ascii", newline="")


def _columnar(path: Path, block_size: int = columns.BLOCK_SIZE, exponent: int = 2) -> list[object]:
    def pair(member: str, event: EventInput) -> tuple[str, EventInput]:
        return member, event

    runs = columns.read_runs(
        path, currency_exponent=exponent, latest=LATEST, make=pair, block_size=block_size
    )
    return [item for run in runs for item in run]


def _row_by_row(path: Path, exponent: int = 2) -> list[object]:
    return list(_read_rows(path, exponent, LATEST, set()))


def _same(path: Path, block_size: int = columns.BLOCK_SIZE) -> int:
    """Both readers' results on the file, compared by `repr` (a Decimal's digits, a
    datetime's zone); the number of purchases taken."""
    expected = _row_by_row(path)
    assert repr(_columnar(path, block_size)) == repr(expected)
    return sum(1 for item in expected if isinstance(item, tuple))


@pytest.mark.parametrize("seed", range(12))
def test_varied_files_read_alike(tmp_path: Path, seed: int) -> None:
    """Good and bad baskets, amounts, prices with more places, missing fields, odd ids and
    times, repeated ids, blank lines; in small blocks, a purchase split across blocks."""
    rng = random.Random(seed)
    path = tmp_path / "f.csv"
    _write(path, rng, 300, crlf=seed % 3 == 0)
    taken = _same(path)
    assert taken > 30  # the file has good purchases among the bad
    _same(path, block_size=4096)
    _same(path, block_size=1000)


@pytest.mark.parametrize("exponent", [0, 3])
def test_other_currencies_read_alike(tmp_path: Path, exponent: int) -> None:
    path = tmp_path / "f.csv"
    _write(path, random.Random(exponent), 300)
    expected = _row_by_row(path, exponent)
    assert repr(_columnar(path, 3000, exponent)) == repr(expected)
    assert sum(1 for item in expected if isinstance(item, tuple)) > (10 if exponent == 0 else 30)


@pytest.mark.parametrize(
    "change",
    [
        lambda text: text.replace("T5,", '"T5",', 1),  # a quoted field
        lambda text: text.replace("coffee", "caf\u00e9", 1),  # not ASCII
        lambda text: text.replace("M1", "M\t1", 1),  # a control character
        lambda text: text.replace("\n", "\r", 3),  # lone carriage returns
        lambda text: text + "M1,X1,2026-03-01T10:00:00Z,1.00,s1,tea,1,1.00\n",  # a field short
        lambda text: text.replace("\n", "\nM1,X2\n", 1),  # in the first block
        lambda text: text + "M1,X3,2026-03-01T10:00:00Z,1.00,s1,tea,1,1.00,,extra\n",
        lambda text: text + "   \n",  # a line of spaces
        lambda text: "\n" + text,  # no header on the first line
        lambda text: text.replace("member_external_id", "member", 1),  # a column missing
    ],
)
def test_files_not_read_in_columns_read_alike(tmp_path: Path, change: object) -> None:
    """Files (or their rest) the columnar reader hands to the row-by-row one."""
    path = tmp_path / "f.csv"
    _write(path, random.Random(99), 200)
    path.write_text(change(path.read_text()), encoding="utf-8", newline="")  # type: ignore[operator]
    try:
        expected: object = _row_by_row(path)
    except ValueError as exc:
        expected = str(exc)
    for block_size in (columns.BLOCK_SIZE, 2000):
        try:
            got: object = _columnar(path, block_size)
        except ValueError as exc:
            got = str(exc)
        assert repr(got) == repr(expected)


def test_a_field_over_the_csv_limit_reads_alike(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write(path, random.Random(5), 200)
    text = path.read_text().replace(",coffee,", "," + "c" * 900 + ",", 3)
    path.write_text(text, encoding="ascii", newline="")
    limit = csv.field_size_limit(500)
    try:
        expected = _row_by_row(path)
        assert any("not readable as CSV" in str(item) for item in expected)
        assert repr(_columnar(path, 2000)) == repr(expected)
    finally:
        csv.field_size_limit(limit)


def test_a_plain_file_is_read_in_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's kind of file: every purchase read in columns, none row by row."""
    rng = random.Random(1)
    path = tmp_path / "f.csv"
    rows = [",".join(HEADER)]
    for i in range(3000):
        lines = [(f"sku{rng.randrange(400)}", rng.randrange(1, 4), rng.randrange(50, 2000))
                 for _ in range(7)]  # fmt: skip
        total = sum(q * p for _, q, p in lines)
        for sku, q, p in lines:
            rows.append(f"m{i % 97},t{i},2026-03-01T10:{i % 60:02}:00Z,{total / 100:.2f},"
                        f"{sku},tea,{q},{p / 100:.2f},")  # fmt: skip
    path.write_text("\n".join(rows) + "\n", encoding="ascii")

    def refused(*args: object) -> object:
        raise AssertionError("read row by row")

    monkeypatch.setattr(columns, "_read_rows", refused)
    monkeypatch.setattr(columns, "_slow", refused)
    got = _columnar(path, block_size=20_000)
    monkeypatch.undo()
    assert len(got) == 3000 and all(isinstance(item, tuple) for item in got)
    assert repr(got) == repr(_row_by_row(path))


def test_read_purchases_gives_the_import_readers_purchases(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write(path, random.Random(3), 100)
    items: Iterator[object] = read_purchases(path, currency_exponent=2, latest=LATEST)
    got = [(i.member_external_id, i.event) if isinstance(i, CsvPurchase) else i for i in items]
    assert repr(got) == repr(_row_by_row(path))
