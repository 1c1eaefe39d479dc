"""Reading an import file in columns, for the backtest: the same purchases and rejects as
the import's row-by-row reader, two to four times faster on a plain file (about 10 µs of CPU
for a purchase of seven lines, whether its prices repeat or not: `docs/benchmarks.md`).

The file is parsed by pyarrow's streaming CSV reader in blocks (every column as text) and the
usual purchase is checked vectorised: its fields present and of the usual shapes (plain
decimals of at most the currency's places, `YYYY-MM-DDTHH:MM:SS` with `Z` or a `±HH:MM`
offset, ids without surrounding spaces), its lines priced by the import's rule in integers
(quantity × unit price rounded half up, a line's `amount` winning over it), the sum of its
lines against its `total` with the cent tolerance. Any purchase a check flags goes through the
import's own row-by-row parsing (`reading._parse_group`), so its reject reason or its
accepted result is exactly the import's. The columnar path is taken only where it reads the
same rows as the CSV module: a plain file (`reading.plain_file`: printable ASCII, line ends,
no quote, no lone carriage return) whose header has every column of a basket line and no tax
column; a row pyarrow cannot read as the header's width (or a field over the CSV module's
size limit) hands the rest of the file, from the purchase being read, to the row-by-row
reader.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from habitue.bounds import MAX_AMOUNT_MINOR
from habitue.events.importer.reading import (
    ID_LENGTH,
    LABEL_LENGTH,
    MAX_QUANTITY,
    QUANTITY_PLACES,
    REQUIRED,
    CsvReject,
    _file_shape,
    _Layout,
    _parse_group,
    _parse_quantity,
    _read_rows,
)
from habitue.events.service import CENT_TOLERANCE
from habitue.frozen import build_many
from habitue.money import UNIT_PRICE_EXTRA_PLACES
from habitue.rules.types import EventInput, LineInput

T = TypeVar("T")
Parsed = tuple[str, EventInput] | CsvReject
"""A purchase as (member external id, event), or what the import would reject."""

BLOCK_SIZE = 1 << 20
"""Bytes pyarrow parses at a time (about 12,000 rows of a 7-line till file)."""
_INT64_MAX = 2**63 - 1
_DIGITS = 18
"""Digits of the decimals read in columns (their scaled values fit an int64)."""
_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:Z|[+-][0-9]{2}:[0-9]{2})$"
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _header(path: Path) -> list[str] | None:
    """The header as the CSV module reads it from a plain file, None if it is not one line."""
    with path.open("rb") as raw:
        first = raw.readline(1 << 16)
    if not first.endswith(b"\n"):
        return None
    text = first.decode("ascii").rstrip("\n")
    if text.endswith("\r"):
        text = text[:-1]
    return [h.strip() for h in text.split(",")] if text else None


def read_runs(
    path: Path,
    *,
    currency_exponent: int,
    latest: datetime,
    make: Callable[[str, EventInput], T],
    block_size: int = BLOCK_SIZE,
) -> Iterator[list[T | CsvReject]]:
    """The purchases of an import file in file order, in runs (about one a block of the
    file), each as `make(member external id, event)`, as `reading.read_purchases` gives them:
    the same events, the same rejects with the same reasons, a repeated `external_id`
    rejected after its first purchase. A missing required column raises `ValueError`."""
    seen: set[str] = set()
    header = _header(path) if _file_shape(path) == (True, True) else None
    layout = _Layout.of(header) if header and all(c in header for c in REQUIRED) else None
    if layout is None or layout.line_key is None or currency_exponent > _DIGITS // 2:
        yield from _runs(_read_rows(path, currency_exponent, latest, seen), make)
        return
    reader = _Columns(layout, currency_exponent, latest, seen, make)
    names = [f"c{i}" for i in range(len(layout.header))]  # the header's own may repeat
    options = (
        pacsv.ReadOptions(
            use_threads=False, block_size=block_size, skip_rows=1, column_names=names
        ),
        pacsv.ParseOptions(quote_char=False, double_quote=False),
        pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    limit = csv.field_size_limit()
    done = 0  # rows of the file read and given out, the carried purchase's excluded
    carry: pa.Table | None = None
    try:
        stream = pacsv.open_csv(path, *options)
    except pa.ArrowException:  # a row of another width in the first block
        stream = None
    while stream is not None:
        try:
            batch = stream.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowException:  # a row of another width, a line over a block
            batch = None
        if batch is None or any(
            _longest(c) > limit for c in batch.columns
        ):  # the rest row by row, from the purchase being read
            stream.close()
            stream = None
            break
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table]).combine_chunks()
        last = _last_run(table.column(layout.index["external_id"]).combine_chunks())
        carry = table.slice(last)
        if last:
            done += last
            yield reader.purchases(table.slice(0, last))
    if stream is None:
        yield from _runs(_read_rows(path, currency_exponent, latest, seen, done), make)
        return
    stream.close()
    if carry is not None and carry.num_rows:
        yield reader.purchases(carry)


def _runs(
    items: Iterator[Parsed], make: Callable[[str, EventInput], T], size: int = 1024
) -> Iterator[list[T | CsvReject]]:
    """The row-by-row reader's purchases in runs of `size`."""
    run: list[T | CsvReject] = []
    for item in items:
        run.append(item if isinstance(item, CsvReject) else make(*item))
        if len(run) >= size:
            yield run
            run = []
    if run:
        yield run


def _last_run(ext: pa.Array) -> int:
    """Where the last run of one external_id starts."""
    n = len(ext)
    if n < 2:
        return 0
    changes = np.flatnonzero(pc.not_equal(ext[1:], ext[:-1]).to_numpy(zero_copy_only=False))
    return int(changes[-1]) + 1 if len(changes) else 0


def _is_id(column: pa.Array) -> np.ndarray[Any, Any]:
    """Where an id is as the usual purchase has it: 1 to ID_LENGTH characters, no space
    around it (the file is plain: no other white space)."""
    length = pc.binary_length(column)
    spaced = pc.or_(pc.starts_with(column, " "), pc.ends_with(column, " "))
    fits = pc.and_(pc.greater(length, 0), pc.less_equal(length, ID_LENGTH))
    return _numpy(pc.and_not(fits, spaced))


def _longest(column: Any) -> int:
    """The length of a column's longest value (0 without values)."""
    lengths = _numpy(pc.binary_length(column))
    return int(lengths.max()) if len(lengths) else 0


def _numpy(array: Any) -> np.ndarray[Any, Any]:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _scaled(column: pa.Array, places: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A column of plain decimals as integers scaled by 10**places (at most 10**18), and
    where a value is of the usual shape (digits, optionally a point and 1 to `places`
    digits) and so read; other values read as 0, left to the row-by-row reader."""
    whole = _DIGITS - places
    fraction = rf"(?:\.[0-9]{{1,{places}}})?" if places else ""
    pattern = rf"^[0-9]{{1,{whole}}}{fraction}$"
    ok = pc.match_substring_regex(column, pattern)
    usual = _numpy(ok)
    safe = column if usual.all() else pc.if_else(ok, column, "0")
    decimals = pc.cast(safe, pa.decimal128(_DIGITS, places))
    # the unscaled values, below 10**18: the low 64 bits of each 128-bit integer
    unscaled = np.frombuffer(decimals.buffers()[1], dtype=np.int64)
    return usual, unscaled[2 * decimals.offset : 2 * (decimals.offset + len(decimals)) : 2]


def _epoch_seconds(times: pa.Array) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """`occurred_at` values of the usual shape as seconds since 1970 (UTC), and where a value
    is of that shape and a valid time (as `datetime.fromisoformat` reads it)."""
    shaped = pc.match_substring_regex(times, _TIME)
    safe = pc.replace_substring(pc.if_else(shaped, times, "1970-01-01T00:00:00Z"), "Z", "+00:00")
    raw = safe.buffers()
    offsets = np.frombuffer(raw[1], dtype=np.int32, count=len(safe) + 1, offset=safe.offset * 4)
    data = np.frombuffer(raw[2], dtype=np.uint8)
    d = data[offsets[:-1, None] + np.arange(25)].astype(np.int64) - 48

    def number(at: int, width: int) -> np.ndarray[Any, Any]:
        return np.asarray(d[:, at : at + width] @ (10 ** np.arange(width - 1, -1, -1)))

    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    hour, minute, second = number(11, 2), number(14, 2), number(17, 2)
    off_h, off_m = number(20, 2), number(23, 2)
    sign = np.where(d[:, 19] == ord("-") - 48, -1, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days_in = _DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    valid = (
        _numpy(shaped)
        & (year >= 1)
        & (month >= 1) & (month <= 12)
        & (day >= 1) & (day <= days_in)
        & (hour <= 23) & (minute <= 59) & (second <= 59)
        & (off_h <= 23) & (off_m <= 59)
    )  # fmt: skip
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second
    return valid, seconds - sign * (off_h * 3600 + off_m * 60)


class _Columns(Generic[T]):
    """The purchases of blocks of rows, checked in columns."""

    def __init__(
        self,
        layout: _Layout,
        exponent: int,
        latest: datetime,
        seen: set[str],
        make: Callable[[str, EventInput], T],
    ):
        self.make = make
        self.layout = layout
        self.exponent = exponent
        self.latest = latest
        self.latest_second = (latest - datetime(1970, 1, 1, tzinfo=UTC)) // _SECOND
        self.seen = seen
        self.quantities: dict[str, tuple[Decimal, int] | None] = {}

    def _quantities(self, column: pa.Array) -> tuple[list[Decimal | None], np.ndarray[Any, Any]]:
        """Each row's quantity ("" is 1) and its value scaled by 10**QUANTITY_PLACES (0:
        not the usual one), parsed once per distinct text."""
        encoded = pc.dictionary_encode(column)
        known = self.quantities
        if len(known) > 1 << 16:
            known.clear()
        decimals: list[Decimal | None] = []
        scaled: list[int] = []
        for text in encoded.dictionary.to_pylist():
            if text in known:
                parsed = known[text]
            else:
                parsed = known[text] = _quantity(text)
            decimals.append(None if parsed is None else parsed[0])
            scaled.append(0 if parsed is None else parsed[1])
        index = _numpy(encoded.indices)
        return (
            np.array(decimals, dtype=object)[index].tolist(),
            np.array(scaled, dtype=np.int64)[index],
        )

    def purchases(self, table: pa.Table) -> list[T | CsvReject]:
        """The purchases of `table`'s rows (whole purchases), in order."""
        layout, exponent = self.layout, self.exponent
        columns = [c.combine_chunks() for c in table.columns]
        at = layout.index
        ext, member = columns[at["external_id"]], columns[at["member_external_id"]]
        total, sku, category = columns[at["total"]], columns[at["sku"]], columns[at["category"]]
        amount_text = columns[at["amount"]]
        n = table.num_rows
        same = _numpy(pc.equal(ext[1:], ext[:-1]))
        starts = np.concatenate(([0], np.flatnonzero(~same) + 1)).astype(np.int64)
        firsts = pa.array(starts)
        ends = np.append(starts[1:], n)

        # each row: its first row's total, its fields of the usual shapes and lengths
        ok = np.ones(n, dtype=bool)
        ok[1:] &= ~same | _numpy(pc.equal(total[1:], total[:-1]))
        for column, limit in ((member, ID_LENGTH), (sku, LABEL_LENGTH), (category, LABEL_LENGTH)):
            if _longest(column) > limit:
                ok &= _numpy(pc.less_equal(pc.binary_length(column), limit))
        quantities, qty_scaled = self._quantities(columns[at["quantity"]])
        ok &= qty_scaled > 0
        price_ok, price = _scaled(columns[at["unit_price"]], exponent + UNIT_PRICE_EXTRA_PLACES)
        ok &= price_ok & (price <= _PRICE_BOUND)
        # quantity × unit price exactly in int64 (both are at most 10**18)
        small = qty_scaled.astype(np.float64) * price.astype(np.float64) < 9e18
        ok &= small
        unscale = 10 ** (QUANTITY_PLACES + UNIT_PRICE_EXTRA_PLACES)
        product = (np.where(small, qty_scaled * price, 0) + unscale // 2) // unscale
        extra = 10**UNIT_PRICE_EXTRA_PLACES
        unit_minor = (price + extra // 2) // extra
        given = _numpy(pc.not_equal(amount_text, ""))
        line_amount = product
        if given.any():
            where = np.flatnonzero(given)
            amount_ok, amount = _scaled(amount_text.take(pa.array(where)), exponent)
            ok[where] &= amount_ok
            line_amount = product.copy()
            line_amount[where] = amount
        ok &= line_amount <= MAX_AMOUNT_MINOR

        # each purchase: every row good, its first row's ids, total and time, the lines' sum
        firsts_ext, firsts_member = ext.take(firsts), member.take(firsts)
        total_ok, total_minor = _scaled(total.take(firsts), exponent)
        time_ok, seconds = _epoch_seconds(columns[at["occurred_at"]].take(firsts))
        good = np.logical_and.reduceat(ok, starts)
        good &= _is_id(firsts_ext) & _is_id(firsts_member)
        good &= total_ok & (total_minor <= MAX_AMOUNT_MINOR) & (ends - starts <= 1000)
        good &= np.abs(np.add.reduceat(line_amount, starts) - total_minor) <= CENT_TOLERANCE
        good &= time_ok & (seconds >= 0) & (seconds <= self.latest_second)

        # every row's line (a bad row's, never used, may hold None or nonsense)
        lines = build_many(
            LineInput,
            _labels(sku),
            _labels(category),
            quantities,
            unit_minor.tolist(),
            line_amount.tolist(),
            repeat(0, n),
            repeat(None, n),
        )
        ext_ids = _numpy(firsts_ext).tolist()
        events = list(map(
            EventInput,
            repeat("purchase"),
            ext_ids,
            map(datetime.fromtimestamp, np.where(good, seconds, 0).tolist(), repeat(UTC)),
            total_minor.tolist(),
            map(tuple, map(lines.__getitem__, map(slice, starts.tolist(), ends.tolist()))),
        ))  # fmt: skip
        members = _numpy(firsts_member).tolist()
        seen = self.seen
        if good.all() and len(set(ext_ids)) == len(ext_ids) and seen.isdisjoint(ext_ids):
            seen.update(ext_ids)
            return list(map(self.make, members, events))
        out: list[T | CsvReject] = []
        rows = [list(r) for r in zip(*(c.to_pylist() for c in columns), strict=True)]
        for g, is_good in enumerate(good.tolist()):
            if is_good:
                parsed: tuple[str, EventInput] | CsvReject = (members[g], events[g])
            else:
                parsed = _slow(rows[starts[g] : ends[g]], layout, exponent, self.latest)
            if isinstance(parsed, CsvReject):
                out.append(parsed)
            elif parsed[1].external_id in seen:
                out.append(CsvReject(parsed[1].external_id, "duplicate external_id in the file"))
            else:
                seen.add(parsed[1].external_id)
                out.append(self.make(*parsed))
        return out


_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


_PRICE_BOUND = min(MAX_AMOUNT_MINOR * 10**UNIT_PRICE_EXTRA_PLACES, _INT64_MAX)
"""The largest unit price, in minor units scaled by 10**UNIT_PRICE_EXTRA_PLACES."""


def _quantity(text: str) -> tuple[Decimal, int] | None:
    """A quantity of the usual shape and its value scaled by 10**QUANTITY_PLACES; None for
    anything else (left to the row-by-row reader)."""
    if not text:
        text = "1"
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or len(whole) > 7 or (dot and not (frac.isdigit() and len(frac) <= 6)):
        return None
    try:
        value = _parse_quantity(text)
    except ValueError:
        return None
    if value > MAX_QUANTITY:
        return None
    return value, int(whole + frac.ljust(QUANTITY_PLACES, "0"))


def _labels(column: pa.Array) -> list[str | None]:
    """A sku or category column as the lines hold it ("" is None), one string per value."""
    encoded = pc.dictionary_encode(column)
    values = [v or None for v in encoded.dictionary.to_pylist()]
    return np.array(values, dtype=object)[_numpy(encoded.indices)].tolist()  # type: ignore[no-any-return]


def _slow(rows: list[list[str]], layout: _Layout, exponent: int, latest: datetime) -> Parsed:
    """One purchase through the import's row-by-row parsing."""
    try:
        event, member = _parse_group(rows, layout, exponent, latest, True)
    except ValueError as exc:
        return CsvReject(layout.get(rows[0], "external_id").strip(), str(exc))
    return member, event
