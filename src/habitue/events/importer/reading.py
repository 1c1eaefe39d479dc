"""Reading the CSV: its columns, its rows grouped by purchase, and each purchase checked and
parsed as the API would (a malformed row is rejected with its reason, never an error that
stops the import)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

from habitue import clock
from habitue.bounds import MAX_AMOUNT_MINOR
from habitue.events.importer.report import (
    ImportReport,
)
from habitue.events.service import CENT_TOLERANCE
from habitue.frozen import fast_init
from habitue.money import UNIT_PRICE_EXTRA_PLACES, format_minor, line_tax, round_minor
from habitue.rules.types import (
    EventInput,
    LineInput,
)

REQUIRED = ("member_external_id", "external_id", "occurred_at", "total")
# A row's amounts and a purchase's points are bounded as the API bounds them (habitue.bounds):
# MAX_AMOUNT_MINOR per total, unit price or line amount, MAX_POINTS per purchase.
MAX_QUANTITY = Decimal(1_000_000)
"""A line's largest quantity (the API's bound), given with at most `QUANTITY_PLACES` decimals."""
QUANTITY_PLACES = 6
ID_LENGTH, LABEL_LENGTH = 200, 100
"""Longest external ids (member, purchase) and sku or category, as the tables hold them."""
_DECIMAL = re.compile(r"(\d*)(?:\.(\d*))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\udc80-\udcff]")
CHUNK = 100_000
"""Purchases per transaction. Each chunk rewrites most leaf pages of the member-keyed
indexes whatever its size (a chunk names most members), so larger chunks rewrite them
fewer times; a partitioned import's first batches are smaller (`_import_partitioned`)."""


@dataclass(frozen=True)
class _Layout:
    """The CSV's columns: rows are read as lists and fields looked up by position."""

    header: list[str]
    index: dict[str, int]
    required: tuple[tuple[str, int], ...]
    texts: tuple[tuple[int, int], ...]
    """(position, longest length) of the text columns the import stores."""
    line_columns: tuple[int, ...]
    """Positions of total, sku, category, quantity, unit_price and amount (-1: no column)."""
    tax_columns: tuple[int, int] = (-1, -1)
    """Positions of tax_rate and tax_included (-1: no column)."""
    line_key: Any = None
    """With every column of a basket line and no tax column: a row's (sku, category,
    quantity, unit_price, amount) in one C call, the key of `_LINE_MEMO`
    (`_parse_group_usual`)."""
    order_only: bool = False
    """No basket-line nor tax column: a purchase is one row (`_parse_order_usual`)."""

    def line_fields(self, row: list[str]) -> tuple[str, ...]:
        """A row's total, sku, category, quantity, unit_price and amount ("" without the
        column); the row has the header's fields."""
        return tuple(row[i] if i >= 0 else "" for i in self.line_columns)

    def __post_init__(self) -> None:
        if all(i >= 0 for i in self.line_columns):  # every column there: one C call a row
            object.__setattr__(self, "line_fields", itemgetter(*self.line_columns))
            if self.tax_columns == (-1, -1):  # lines with tax go through `_parse_group`
                object.__setattr__(self, "line_key", itemgetter(*self.line_columns[1:]))
        elif all(i < 0 for i in self.line_columns[1:]) and self.tax_columns == (-1, -1):
            object.__setattr__(self, "order_only", True)

    @classmethod
    def of(cls, header: list[str]) -> _Layout:
        index = {name: i for i, name in enumerate(header)}
        limits = {"member_external_id": ID_LENGTH, "external_id": ID_LENGTH,
                  "sku": LABEL_LENGTH, "category": LABEL_LENGTH}  # fmt: skip
        texts = tuple((index[c], n) for c, n in limits.items() if c in index)
        lines = ("total", "sku", "category", "quantity", "unit_price", "amount")
        return cls(
            header,
            index,
            tuple((col, index[col]) for col in REQUIRED),
            texts,
            tuple(index.get(col, -1) for col in lines),
            (index.get("tax_rate", -1), index.get("tax_included", -1)),
        )

    def get(self, row: list[str], col: str) -> str:
        i = self.index.get(col)
        return row[i] if i is not None and i < len(row) else ""

    def as_dict(self, row: list[str]) -> dict[str, str]:
        """The row by column, for the rejects file: fields beyond the header as `extra 1`,
        `extra 2`…, bytes that were not UTF-8 as U+FFFD."""
        names = self.header + [f"extra {n}" for n in range(1, len(row) - len(self.header) + 1)]
        return {name: _printable(value) for name, value in zip(names, row, strict=False)}


def _printable(value: str) -> str:
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_PLAIN_BYTES = bytes(range(0x20, 0x7F)).replace(b'"', b"")
"""Printable ASCII but the quote (a quoted field may hold a line end)."""


def plain_file(path: Path, block: int = 1 << 20) -> bool:
    """Whether a file holds nothing but printable ASCII, line ends and no quote: then no
    field the CSV reader gives of it can hold a control character or a byte that is not
    ASCII, and the usual-purchase path skips those checks. One pass over the bytes by
    `bytes.translate` (a regular expression took a quarter of the reading's time)."""
    return _file_shape(path, block)[0]


def _file_shape(path: Path, block: int = 1 << 20) -> tuple[bool, bool]:
    """Whether the file is plain (`plain_file`), and whether each of its carriage returns
    ends a line with a line feed after it (no lone one)."""
    lone_cr = False
    ends_with_cr = False
    with path.open("rb") as raw:
        while chunk := raw.read(block):
            if chunk.translate(None, _PLAIN_BYTES).translate(None, b"\r\n"):
                return False, False
            if ends_with_cr and not chunk.startswith(b"\n"):
                lone_cr = True
            crs = chunk.count(b"\r")
            if crs and crs - chunk.endswith(b"\r") != chunk.count(b"\r\n"):
                lone_cr = True
            ends_with_cr = chunk.endswith(b"\r")
    return True, not (lone_cr or ends_with_cr)


@contextmanager
def _open_csv(path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A reader of the file and its header. Text is UTF-8 (a byte-order mark is skipped);
    bytes that are not come through as lone surrogates, and their rows are rejected
    (`_check_row`) instead of stopping the import."""
    with path.open("rb") as raw:
        text_in = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text_in)
        try:
            header = [h.strip() for h in next(reader, [])]
        except csv.Error as exc:
            raise ValueError(f"the CSV's header is not readable ({exc})") from exc
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"the CSV lacks columns {missing}")
        yield reader, header


def _groups(reader: Any, key: int, report: ImportReport) -> Iterator[list[list[str]]]:
    """The CSV's rows after its header, in runs of one `external_id` (column `key`); blank
    lines skipped, and a line the CSV reader cannot read (a field over its size limit)
    counted as a rejected row of `report` when the reader meets it."""
    group: list[list[str]] = []
    current = ""
    while True:
        try:
            for row in reader:  # the reader goes on after a line it could not read
                if not row:
                    continue
                this = row[key] if key < len(row) else ""
                if this != current and group:
                    yield group
                    group = [row]
                else:
                    group.append(row)
                current = this
            break
        except csv.Error as exc:
            report.rows += 1
            report.rejected += 1
            report.rejects.append(({}, f"line {reader.line_num}: not readable as CSV ({exc})"))
    if group:
        yield group


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest `occurred_at` taken (earlier ones are rejected: no date arithmetic near the
calendar's start can then overflow)."""


def _parse_time(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if dt.tzinfo is None:
            raise ValueError("occurred_at must carry a UTC offset")
        at = clock.as_utc(dt)
    except OverflowError as exc:  # an offset past the calendar's ends
        raise ValueError("out of range") from exc
    if at < EARLIEST:
        raise ValueError("before 1970")
    return at


def _parse_decimal(value: str, what: str, places: int) -> tuple[int, int]:
    """A plain decimal (digits, optionally a point and more digits) as an integer scaled by
    10**places, and its number of integer digits. Signs, exponents, NaN, infinities and
    thousands separators are refused, as are non-zero digits beyond `places` (never rounded)."""
    whole, dot, frac = value.partition(".")
    if (
        whole.isdigit()
        and len(whole) <= 18
        and len(frac) <= places
        and (frac.isdigit() or not dot)
        and value.isascii()
    ):  # the usual `12.50`: the same result as below, without the regular expression
        digits = whole.lstrip("0")
        return int(whole + frac + "0" * (places - len(frac))), len(digits)
    text = value.strip()
    if text.startswith("-") and _DECIMAL.fullmatch(text[1:]) and len(text) > 1:
        raise ValueError(f"{what}: must not be negative")
    match = _DECIMAL.fullmatch(text)
    if match is None or not any(c.isdigit() for c in text):
        raise ValueError(f"{what}: not a decimal number (digits and an optional decimal point)")
    whole, frac = match.group(1).lstrip("0"), match.group(2) or ""
    if frac[places:].strip("0"):
        raise ValueError(f"{what}: more than {places} decimal places")
    if len(whole) > 18:
        raise ValueError(f"{what}: too large")
    return int((whole or "0") + frac[:places].ljust(places, "0")), len(whole)


def _parse_amount(value: str, what: str, exponent: int) -> int:
    """An amount in minor units, at most `MAX_AMOUNT_MINOR`."""
    minor, _ = _parse_decimal(value, what, exponent)
    if minor > MAX_AMOUNT_MINOR:
        raise ValueError(f"{what}: too large (at most {format_minor(MAX_AMOUNT_MINOR, exponent)})")
    return minor


def _parse_unit_price(value: str, exponent: int) -> Decimal:
    """A unit price in minor units, exactly, with up to `UNIT_PRICE_EXTRA_PLACES` decimals
    beyond the currency's (a price per gram), as the API reads it (`money.parse_unit_price`)."""
    scaled, _ = _parse_decimal(value, "unit_price", exponent + UNIT_PRICE_EXTRA_PLACES)
    if scaled > MAX_AMOUNT_MINOR * 10**UNIT_PRICE_EXTRA_PLACES:
        raise ValueError(
            f"unit_price: too large (at most {format_minor(MAX_AMOUNT_MINOR, exponent)})"
        )
    if scaled % 10**UNIT_PRICE_EXTRA_PLACES == 0:
        return Decimal(scaled // 10**UNIT_PRICE_EXTRA_PLACES)
    return Decimal(scaled).scaleb(-UNIT_PRICE_EXTRA_PLACES)


def line_of(
    sku: str | None,
    category: str | None,
    quantity: Decimal,
    unit_price: Decimal,
    amount: int | None,
    tax_rate: Decimal | None = None,
    tax_included: bool = True,
) -> LineInput:
    """A basket line by the API's rule (`events.prepare`): its `amount` as the till charged
    it when given, otherwise quantity × unit price rounded half up to the minor unit; with a
    tax rate, the tax in it (`money.line_tax`: without `tax_included`, the prices are without
    tax and the line is charged with it)."""
    if amount is None:
        amount = round_minor(quantity * unit_price)
        if amount > MAX_AMOUNT_MINOR:
            raise ValueError("line amount (quantity × unit_price): too large")
    tax = 0
    if tax_rate:
        amount, tax = line_tax(amount, tax_rate, tax_included)
        if not tax_included:
            unit_price = unit_price * (1 + tax_rate)
        if amount > MAX_AMOUNT_MINOR:
            raise ValueError("line amount with tax: too large")
    return LineInput(
        sku=sku,
        category=category,
        quantity=quantity,
        unit_price_minor=round_minor(unit_price),
        amount_minor=amount,
        tax_minor=tax,
        tax_rate=tax_rate or None,
    )


_TRUE, _FALSE = ("true", "1", "yes", "t", "y", ""), ("false", "0", "no", "f", "n")


@lru_cache(maxsize=256)
def _tax(rate: str, included: str) -> tuple[Decimal | None, bool]:
    """A line's `tax_rate` (a fraction, 0 to 1) and `tax_included` (true by default)."""
    flag = included.strip().lower()
    if flag not in _TRUE and flag not in _FALSE:
        raise ValueError("tax_included: not true or false")
    text = rate.strip()
    if not text:
        return None, flag in _TRUE
    scaled, _ = _parse_decimal(text, "tax_rate", 6)
    value = Decimal(scaled).scaleb(-6)
    if value > 1:
        raise ValueError("tax_rate: a fraction at most 1 (0.2 for 20 %)")
    return value, flag in _TRUE


def _new_line(
    sku: str,
    category: str,
    quantity: str,
    unit_price: str,
    amount: str,
    exponent: int,
    tax_rate: str = "",
    tax_included: str = "",
) -> LineInput:
    """A basket line from its fields (`line_of`)."""
    if tax_rate or tax_included:
        qty, unit, _, _ = _priced(quantity or "1", unit_price, exponent)
        rate, included = _tax(tax_rate, tax_included)
        amount_text = amount.strip()
        line_amount = _parse_amount(amount_text, "amount", exponent) if amount_text else None
        return line_of(sku or None, category or None, qty, unit, line_amount, rate, included)
    qty, unit_minor, line_amount = _charged(quantity, unit_price, amount, exponent)
    return LineInput(sku or None, category or None, qty, unit_minor, line_amount)


def _charged(
    quantity: str, unit_price: str, amount: str, exponent: int
) -> tuple[Decimal, int, int]:
    """A line without tax's quantity, unit price in minor units and amount as charged: its
    `amount` when given, otherwise quantity × unit price (`line_of`'s rule)."""
    qty, _, unit_minor, product = _priced(quantity or "1", unit_price, exponent)
    amount_text = amount.strip()
    if amount_text:
        return qty, unit_minor, _parse_amount(amount_text, "amount", exponent)
    if product > MAX_AMOUNT_MINOR:
        raise ValueError("line amount (quantity × unit_price): too large")
    return qty, unit_minor, product


_line = lru_cache(maxsize=1 << 16)(_new_line)
"""`_new_line` memoised: a till's file repeats the same article at the same price, and a
`LineInput` is immutable."""


@lru_cache(maxsize=1 << 16)
def _priced(quantity: str, unit_price: str, exponent: int) -> tuple[Decimal, Decimal, int, int]:
    """A line's quantity and unit price parsed, the unit price rounded to the minor unit and
    quantity × unit price rounded half up (`line_of`'s rule), the Decimal arithmetic done
    once per (quantity, price) pair of a file: prices repeat even where articles do not."""
    qty = _parse_quantity(quantity)
    unit = _parse_unit_price(unit_price, exponent)
    return qty, unit, round_minor(unit), round_minor(qty * unit)


def _parse_quantity(value: str) -> Decimal:
    scaled, _ = _parse_decimal(value, "quantity", QUANTITY_PLACES)
    quantity = Decimal(scaled).scaleb(-QUANTITY_PLACES).normalize()
    if not quantity:
        raise ValueError("quantity must be positive")
    if quantity > MAX_QUANTITY:
        raise ValueError(f"quantity: too large (at most {MAX_QUANTITY})")
    # Plain notation, never an exponent (`normalize` gives 1E+1 for 10).
    return quantity.quantize(Decimal(1)) if quantity == quantity.to_integral() else quantity


def _check_row(row: list[str], layout: _Layout) -> None:
    """A row's shape and text: as many fields as the header, valid UTF-8, no control
    characters nor over-long values in what is stored (PostgreSQL refuses NUL in text)."""
    if len(row) != len(layout.header):
        raise ValueError(f"the row has {len(row)} fields, the header {len(layout.header)}")
    joined = "".join(row)
    if not joined.isascii():
        bad = _SURROGATE.search(joined)
        if bad is not None:
            byte = ord(bad.group()) - 0xDC00
            raise ValueError(f"not valid UTF-8 (byte 0x{byte:02X})")
    check_controls = _CONTROL.search(joined) is not None
    if not check_controls and len(joined) <= LABEL_LENGTH:
        return  # no field can be longer than the shortest limit
    for col, limit in layout.texts:
        value = row[col]
        if check_controls and _CONTROL.search(value):
            raise ValueError(f"{layout.header[col]}: control character")
        if len(value) > limit:
            raise ValueError(f"{layout.header[col]}: longer than {limit} characters")


_LINE_MEMOS: dict[int, dict[tuple[str, ...], LineInput]] = {}
"""Basket lines by currency exponent, then by (sku, category, quantity, unit_price,
amount), for `_parse_group_usual`; a memo is cleared when it passes `_LINE_MEMO_SIZE`
entries."""
_CHARGED_MEMOS: dict[int, dict[tuple[str, str, str], tuple[Decimal, int, int]]] = {}
"""`_charged` by currency exponent, then by (quantity, unit_price, amount): prices repeat
even where articles do not."""
_LINE_MEMO_SIZE = 1 << 17


def _parse_group_usual(
    rows: list[list[str]], layout: _Layout, exponent: int, latest: datetime, plain: bool = False
) -> tuple[EventInput, str] | None:
    """`_parse_group` for the usual purchase (every column of a line, ASCII, every row
    priced and valid), in one pass and with each line looked up whole; None for anything
    else, which `_parse_group` then checks row by row to give the import's reason. Accepts
    exactly what `_parse_group`'s checks accept, with the same result. `plain`: the file is
    known to be printable ASCII (`plain_file`), so its fields need no check of their own."""
    first = rows[0]
    width = len(layout.header)
    if len(first) != width:
        return None
    if not plain:
        joined = "".join(chain.from_iterable(rows))
        if not joined.isascii() or not joined.isprintable():  # ASCII: printable = no _CONTROL
            return None
    for _, i in layout.required:
        if not first[i].strip():
            return None
    index = layout.index
    ext_at, member_at, total_at = index["external_id"], index["member_external_id"], index["total"]
    external_id = first[ext_at]
    if len(external_id) > ID_LENGTH:  # every row of a group has the same external_id
        return None
    first_total = first[total_at]
    try:
        occurred = _parse_time(first[index["occurred_at"]])
        total = _parse_amount(first_total, "total", exponent)
    except ValueError:
        return None
    if occurred > latest:
        return None
    memo = _LINE_MEMOS.get(exponent)
    if memo is None:
        memo = _LINE_MEMOS[exponent] = {}
    prices = _CHARGED_MEMOS.get(exponent)
    if prices is None:
        prices = _CHARGED_MEMOS[exponent] = {}
    lines = list(map(memo.get, map(layout.line_key, rows)))
    line_sum = 0
    for n, (r, line) in enumerate(zip(rows, lines, strict=True)):
        if len(r) != width or r[total_at] != first_total or len(r[member_at]) > ID_LENGTH:
            return None
        if line is None:
            fields = layout.line_key(r)
            sku, category, quantity, unit_price, amount = fields
            if len(sku) > LABEL_LENGTH or len(category) > LABEL_LENGTH or not unit_price.strip():
                return None
            charged = prices.get((quantity, unit_price, amount))
            if charged is None:
                try:
                    charged = _charged(quantity, unit_price, amount, exponent)
                except ValueError:
                    return None
                if len(prices) >= _LINE_MEMO_SIZE:
                    prices.clear()
                prices[quantity, unit_price, amount] = charged
            line = LineInput(sku or None, category or None, *charged)
            if len(memo) >= _LINE_MEMO_SIZE:
                memo.clear()
            memo[fields] = lines[n] = line
        line_sum += line.amount_minor
    if abs(line_sum - total) > CENT_TOLERANCE:
        return None
    priced = cast("list[LineInput]", lines)  # every None was replaced above
    event = EventInput("purchase", external_id.strip(), occurred, total, tuple(priced))
    return event, first[member_at].strip()


def _parse_order_usual(
    rows: list[list[str]], layout: _Layout, exponent: int, latest: datetime
) -> tuple[EventInput, str] | None:
    """`_parse_group` for the usual purchase of a file without basket lines (one row, ASCII,
    every field valid), with no call per check; None for anything else, which `_parse_group`
    then checks for the import's reason. Accepts exactly what `_parse_group` accepts, with
    the same result (`tests/events/test_import_reading.py`)."""
    if len(rows) != 1:
        return None
    row = rows[0]
    if len(row) != len(layout.header):
        return None
    joined = "".join(row)
    if not joined.isascii() or not joined.isprintable():  # ASCII: printable = no _CONTROL
        return None
    for _, i in layout.required:
        if not row[i].strip():
            return None
    for col, limit in layout.texts:
        if len(row[col]) > limit:
            return None
    index = layout.index
    try:
        occurred = _parse_time(row[index["occurred_at"]])
        total = _parse_amount(row[index["total"]], "total", exponent)
    except ValueError:
        return None
    if occurred > latest:
        return None
    event = EventInput("purchase", row[index["external_id"]].strip(), occurred, total, ())
    return event, row[index["member_external_id"]].strip()


def _parse_group(
    rows: list[list[str]],
    layout: _Layout,
    exponent: int,
    latest: datetime,
    plain: bool = False,
) -> tuple[EventInput, str]:
    """One purchase from its rows (amounts in a currency of `exponent` decimals); `latest`
    is the last acceptable `occurred_at`; `plain`: the file is printable ASCII
    (`plain_file`)."""
    if layout.line_key is not None:
        usual = _parse_group_usual(rows, layout, exponent, latest, plain)
        if usual is not None:
            return usual
    elif layout.order_only:
        usual = _parse_order_usual(rows, layout, exponent, latest)
        if usual is not None:
            return usual
    get = layout.get
    for r in rows:
        _check_row(r, layout)
    first = rows[0]
    for col, i in layout.required:
        if not first[i].strip():
            raise ValueError(f"{col} is missing")
    try:
        occurred = _parse_time(get(first, "occurred_at"))
    except ValueError as exc:
        raise ValueError(f"occurred_at: {exc}") from exc
    if occurred > latest:
        raise ValueError("occurred_at is in the future")
    first_total = get(first, "total")
    total = _parse_amount(first_total, "total", exponent)
    lines: list[LineInput] = []
    unit_at = layout.line_columns[4]  # every row has the header's fields (`_check_row`)
    if unit_at >= 0 and any(r[unit_at].strip() for r in rows):
        fields = layout.line_fields
        rate_at, included_at = layout.tax_columns
        for r in rows:
            total_text, sku, category, quantity, unit_price, amount = fields(r)
            if total_text != first_total:
                raise ValueError("rows of one purchase disagree on total")
            if rate_at < 0 and included_at < 0:
                lines.append(_line(sku, category, quantity, unit_price, amount, exponent))
            else:
                rate = r[rate_at] if rate_at >= 0 else ""
                included = r[included_at] if included_at >= 0 else ""
                lines.append(
                    _line(sku, category, quantity, unit_price, amount, exponent, rate, included)
                )
        line_sum = sum(ln.amount_minor for ln in lines)
        if abs(line_sum - total) > CENT_TOLERANCE:
            raise ValueError(
                f"lines add up to {format_minor(line_sum, exponent)}, "
                f"total is {format_minor(total, exponent)}"
            )
    elif len(rows) > 1:
        raise ValueError("duplicate external_id in the file")
    event = EventInput(
        type="purchase",
        external_id=get(first, "external_id").strip(),
        occurred_at=occurred,
        total_minor=total,
        lines=tuple(lines),
    )
    return event, get(first, "member_external_id").strip()


@fast_init
@dataclass(frozen=True, slots=True)
class CsvPurchase:
    """A purchase of an import file, parsed and checked as the import parses it."""

    member_external_id: str
    event: EventInput


@dataclass(frozen=True, slots=True)
class CsvReject:
    """A purchase (or unreadable line) the import would reject, with the import's reason."""

    external_id: str
    reason: str


def read_purchases(
    path: Path, *, currency_exponent: int, latest: datetime
) -> Iterator[CsvPurchase | CsvReject]:
    """The purchases of an import file in file order, each parsed by the import's own rules
    (columns, bounds, the basket rule of line amounts and the cent tolerance); `latest` is
    the last acceptable `occurred_at`. A repeated `external_id` is rejected after its first
    purchase, as the import rejects it. A missing required column raises `ValueError`.
    A plain file is read in columns (`columns.read_runs`), with the same result."""
    from habitue.events.importer.columns import read_runs

    for run in read_runs(
        path, currency_exponent=currency_exponent, latest=latest, make=CsvPurchase
    ):
        yield from run


def _read_rows(
    path: Path, currency_exponent: int, latest: datetime, seen: set[str], skip: int = 0
) -> Iterator[tuple[str, EventInput] | CsvReject]:
    """`read_purchases` row by row, as (member, event) or a reject; `seen`: the external ids
    taken so far; `skip`: rows (blank lines not counted) already read from the start."""
    report = ImportReport()
    plain = plain_file(path)
    with _open_csv(path) as (reader, header):
        layout = _Layout.of(header)
        key = layout.index["external_id"]
        for _ in range(skip):
            while not next(reader):
                pass
        unreadable = 0
        for rows in _groups(reader, key, report):
            while unreadable < len(report.rejects):
                unreadable += 1
                yield CsvReject("", report.rejects[unreadable - 1][1])
            try:
                event, member = _parse_group(rows, layout, currency_exponent, latest, plain)
            except ValueError as exc:
                yield CsvReject(layout.get(rows[0], "external_id").strip(), str(exc))
                continue
            if event.external_id in seen:
                yield CsvReject(event.external_id, "duplicate external_id in the file")
                continue
            seen.add(event.external_id)
            yield member, event
        for _, reason in report.rejects[unreadable:]:
            yield CsvReject("", reason)
