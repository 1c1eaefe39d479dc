"""What the console's catalogue pages share: role checks, posted forms read field by field.

A `FormReader` turns the strings of a posted form into typed values and keeps, per field, what
was typed (to show it again) and the first error found (to show next to the field).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from habitue import clock
from habitue.bounds import MAX_POINTS
from habitue.money import MoneyFormatError, parse_minor
from habitue.rewards.schemas import RewardText
from habitue.web.admin import Console, _forbidden_form, _load
from habitue.web.i18n import LOCALES, _l
from habitue.web.pages import form_of

REQUIRED = _l("This is required.")
TOO_LONG = _l("This is too long.")
CHECK = _l("Check this field.")
WHOLE_NUMBER = _l("Enter a whole number.")
MONEY = _l("Enter an amount such as 12.50.")
MOMENT = _l("Enter a date and time.")
NAME_NEEDED = _l("Give a name in at least one language.")
NAME_FOR_DESCRIPTION = _l("Give a name in this language too, or leave its description empty.")
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
M = TypeVar("M", bound=BaseModel)


async def console_for(request: Request, program: str, action: str) -> Console | Response:
    """The console of a program page whose role allows `action`, or the page to send instead."""
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may(action):
        return console.denied()
    return console


async def posted(
    request: Request, program: str, action: str
) -> tuple[Console, dict[str, str]] | Response:
    """A posted console form with its console, once the role and the CSRF token check out."""
    console = await console_for(request, program, action)
    if isinstance(console, Response):
        return console
    form = await form_of(request)
    if not console.page.csrf_ok(form):
        return _forbidden_form(console)
    return console, form


def actor(console: Console) -> str:
    return f"staff:{console.staff.email}"


def local_input(value: datetime | None, timezone: str) -> str:
    """A moment as a `datetime-local` field's value in the program's time zone."""
    if value is None:
        return ""
    return clock.as_utc(value).astimezone(ZoneInfo(timezone)).strftime(LOCAL_FORMAT)


_PLAIN_DECIMAL = re.compile(r"-?\d{1,15}(\.\d{1,6})?")


class FormReader:
    """Typed values from a posted form, with what was typed and the errors per field."""

    def __init__(self, form: dict[str, str], names: Iterable[str], timezone: str) -> None:
        self.values: dict[str, str] = {name: form.get(name, "") for name in names}
        self.errors: dict[str, str] = {}
        self.timezone = timezone

    def fail(self, name: str, message: str) -> None:
        """Record an error on a field (the first one found stays)."""
        self.errors.setdefault(name, message)

    def _raw(self, name: str, required: bool) -> str | None:
        value = self.values.get(name, "").strip()
        if not value:
            if required:
                self.fail(name, REQUIRED)
            return None
        return value

    def text(self, name: str, *, required: bool = False, max_length: int = 200) -> str | None:
        value = self._raw(name, required)
        if value is not None and len(value) > max_length:
            self.fail(name, TOO_LONG)
            return None
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int = 0,
        maximum: int = MAX_POINTS,
        message: str = WHOLE_NUMBER,
    ) -> int | None:
        value = self._raw(name, required)
        if value is None:
            return None
        try:
            number = int(value.replace(" ", "").replace("\u00a0", ""))
        except ValueError:
            self.fail(name, message)
            return None
        if not minimum <= number <= maximum:
            self.fail(name, message)
            return None
        return number

    def decimal(
        self,
        name: str,
        *,
        message: str,
        required: bool = False,
        at_least: Decimal | None = None,
        above: Decimal | None = None,
        at_most: Decimal | None = None,
    ) -> Decimal | None:
        """A decimal number within the bounds given (`above` excludes its bound)."""
        value = self._raw(name, required)
        if value is None:
            return None
        plain = _decimal_point(value)
        # Plain decimals only (no exponent): bounded size, at most 6 decimal places.
        if not _PLAIN_DECIMAL.fullmatch(plain):
            self.fail(name, message)
            return None
        try:
            number = Decimal(plain)
        except InvalidOperation:
            self.fail(name, message)
            return None
        if (
            not number.is_finite()
            or (at_least is not None and number < at_least)
            or (above is not None and number <= above)
            or (at_most is not None and number > at_most)
        ):
            self.fail(name, message)
            return None
        return number

    def money(self, name: str, exponent: int, *, required: bool = False) -> str | None:
        """A non-negative amount in the program's currency, as the decimal string services take."""
        value = self._raw(name, required)
        if value is None:
            return None
        value = _decimal_point(value)
        try:
            parse_minor(value, exponent)
        except MoneyFormatError:
            self.fail(name, MONEY)
            return None
        return value

    def moment(self, name: str, *, required: bool = False) -> datetime | None:
        """A `datetime-local` value, read in the program's time zone."""
        value = self._raw(name, required)
        if value is None:
            return None
        try:
            local = datetime.fromisoformat(value)
        except ValueError:
            self.fail(name, MOMENT)
            return None
        if local.tzinfo is None:
            local = local.replace(tzinfo=ZoneInfo(self.timezone))
        return local

    def checked(self, name: str) -> bool:
        return self.values.get(name, "") not in ("", "0", "off", "false")

    def texts(self) -> dict[str, RewardText]:
        """Names and descriptions per language (`name_fr`, `description_fr`…); at least one."""
        out: dict[str, RewardText] = {}
        for locale in LOCALES:
            name = self.text(f"name_{locale}")
            description = self.text(f"description_{locale}", max_length=4000) or ""
            if name is not None:
                out[locale] = RewardText(name=name, description=description)
            elif description:
                self.fail(f"name_{locale}", NAME_FOR_DESCRIPTION)
        if not out and not any(f"name_{locale}" in self.errors for locale in LOCALES):
            self.fail(f"name_{LOCALES[0]}", NAME_NEEDED)
        return out

    def validate(
        self,
        model: type[M],
        data: dict[str, Any],
        *,
        fields: dict[str, str],
        rules: dict[str, tuple[str, str]],
        fallback: str,
        placeholders: dict[str, Any],
    ) -> M | None:
        """The schema built from `data`, or None with its errors on the form's fields.

        `fields` maps a schema field to the message shown under it; `rules` maps a fragment of
        a whole-object error to the field and message; anything else lands on `fallback`. A
        schema checks the whole object only once every field is valid: to show those errors
        at once too, it is checked again with `placeholders` for the missing or wrong fields.
        """
        try:
            built = model.model_validate(data)
        except ValidationError as exc:
            self._put(exc, data, fields, rules, fallback)
            probe = {
                **data,
                **{
                    name: value
                    for name, value in placeholders.items()
                    if name in data and (name in self.errors or data[name] in (None, "", {}, []))
                },
            }
            try:
                model.model_validate(probe)
            except ValidationError as again:
                self._put(again, probe, {}, rules, None)
            return None
        return None if self.errors else built

    def _put(
        self,
        exc: ValidationError,
        data: dict[str, Any],
        fields: dict[str, str],
        rules: dict[str, tuple[str, str]],
        fallback: str | None,
    ) -> None:
        for error in exc.errors():
            location: tuple[Any, ...] = tuple(error.get("loc", ()))
            message = str(error.get("msg", ""))
            if location and data.get(location[0]) in (None, {}) and self.errors:
                continue  # a value left out because its field is already marked
            if location and location[0] in fields:
                self.fail(str(location[0]), fields[str(location[0])])
                continue
            for fragment, (field, text) in rules.items():
                if fragment in message:
                    self.fail(field, text)
                    break
            else:
                if fallback is not None:
                    self.fail(fallback, CHECK)


def _decimal_point(value: str) -> str:
    """`12,50` as `12.50` (a comma is the decimal point in French and Danish)."""
    if "," in value and "." not in value:
        return value.replace(",", ".")
    return value


# --- what several pages share ---------------------------------------------------------------

MAX_CODE = 64
CHOOSE = _l("Choose one of the options offered.")
AFTER_START = _l("The end must be after the start.")
PERCENT = _l("Enter a percentage above 0 and at most 100.")
CODE_RULE = _l(
    "Use lowercase letters, digits, - and _ (at most 64, starting with a letter or digit)."
)
ONE_OF_VALUE_OR_PERCENT = _l("Give either an amount or a percentage off, not both.")
# What stands for a missing or wrong value when the whole form is checked once more.
PLACEHOLDERS: dict[str, Any] = {
    "code": "x",
    "kind": "product",
    "cost_points": 1,
    "texts": {"en": {"name": "x"}},
    "valid_until": None,
}
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
TEXT_FIELDS = tuple(f"{part}_{locale}" for locale in LOCALES for part in ("name", "description"))
WINDOW_STATES = {"upcoming": _l("Upcoming"), "open": _l("Open"), "ended": _l("Ended")}


def window_state(starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    """Where `now` falls in a window: a key of `WINDOW_STATES`."""
    if now < starts_at:
        return "upcoming"
    return "open" if now < ends_at else "ended"


def check_order(reader: FormReader, data: dict[str, Any], start: str, end: str) -> None:
    """An end that is not after its start is marked on the end's field."""
    first, last = data[start], data[end]
    if isinstance(first, datetime) and isinstance(last, datetime) and last <= first:
        reader.fail(end, AFTER_START)
