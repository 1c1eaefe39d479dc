"""Languages of the pages: Babel catalogues, the locale of a request, formatting for it."""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import NullTranslations, Translations

LOCALES = ("en", "fr", "da")
DEFAULT_LOCALE = "en"
LOCALE_NAMES = {"en": "English", "fr": "Français", "da": "Dansk"}
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
DOMAIN = "messages"


def _l(message: str) -> str:
    """Mark a message for extraction; it is translated when rendered (`{{ _(msg) }}`)."""
    return message


def po_path(locale: str) -> Path:
    return TRANSLATIONS_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=8)
def translations(locale: str) -> NullTranslations:
    """The catalogue of `locale`, compiled from its `.po` file in memory (English is the source)."""
    path = po_path(locale)
    if locale == DEFAULT_LOCALE or not path.exists():
        return NullTranslations()
    with path.open("rb") as fp:
        catalog = read_po(fp, locale=locale, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def normalise(value: str | None) -> str | None:
    """`fr-CA` → `fr`; None when the language is not one of ours."""
    if not value:
        return None
    base = value.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LOCALES else None


def from_accept_language(header: str | None) -> str | None:
    """The best of our languages in an `Accept-Language` header."""
    if not header:
        return None
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        found = normalise(lang)
        if found is not None and q > 0:
            weighted.append((-q, i, found))
    return sorted(weighted)[0][2] if weighted else None


def date_locale(locale: str, timezone: str) -> str:
    """The locale dates are written in: the reader's language, in the program's part of the
    world: English dates are American only for a program in the Americas (6 Dec 2026 and
    06/12/2026 for a café in Paris, not 12/6/26)."""
    if locale == "en" and not timezone.startswith(("America/", "US/", "Pacific/Honolulu")):
        return "en_GB"
    return locale


class Formatter:
    """Dates, numbers and money written the way a reader of `locale` expects."""

    def __init__(self, locale: str, timezone: str = "UTC") -> None:
        self.locale = Locale.parse(locale)
        self.tz = ZoneInfo(timezone)
        self.dates = Locale.parse(date_locale(locale, timezone))

    def date(self, value: date | datetime | str | None, fmt: str = "medium") -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date()
        return format_date(value, format=fmt, locale=self.dates)

    def datetime(self, value: datetime | str | None, fmt: str = "medium") -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return format_datetime(value, format=fmt, tzinfo=self.tz, locale=self.dates)

    def number(self, value: int | Decimal | float) -> str:
        return format_decimal(value, locale=self.locale)

    def money(self, value: Decimal | str, currency: str) -> str:
        return format_currency(Decimal(value), currency, locale=self.locale)

    def percent(self, ratio: float | Decimal, decimals: int = 1) -> str:
        """A ratio as a percentage (0.125 → 12.5 %), to at most `decimals` places."""
        rounded = round(Decimal(str(ratio)), decimals + 2)
        return format_percent(rounded, locale=self.locale, decimal_quantization=False)
