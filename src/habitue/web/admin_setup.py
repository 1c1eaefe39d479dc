"""The console's setup wizard, `/admin/new`: a new program step by step, from an empty console.

Six steps (the program, earning, the look, tiers, the welcome message, a review) with Back and
Next. Next checks the step's fields and shows what is wrong on the page; nothing is written
before "Create the program", which checks every step again and writes the whole program in one
transaction through `web.setup.create` (the programs, tiers and messaging services the API
calls). The values of the other steps travel in hidden fields, the logo as a data URL.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from babel.numbers import get_currency_name, list_currencies
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from habitue.bounds import MAX_EARN_RATE
from habitue.messaging import render
from habitue.messaging.errors import InvalidTemplate
from habitue.messaging.schemas import TemplateWrite
from habitue.money import currency_exponent
from habitue.programs.errors import ProgramExists, ProgramNotFound
from habitue.programs.schemas import (
    LOGO_TYPES,
    MAX_LOGO_BYTES,
    Branding,
    ProgramCreate,
    contrast,
)
from habitue.programs.service import get_info
from habitue.tiers.errors import InvalidLadder
from habitue.tiers.schemas import LadderWrite
from habitue.web import setup as setup_service
from habitue.web.admin import Console, _db, _forbidden_form, _load
from habitue.web.admin_forms import FormReader
from habitue.web.i18n import LOCALE_NAMES, LOCALES, _l
from habitue.web.pages import form_of

router = APIRouter(prefix="/admin", include_in_schema=False)

STEPS: tuple[tuple[str, str], ...] = (
    ("program", _l("The program")),
    ("earning", _l("Earning")),
    ("look", _l("Logo and colours")),
    ("tiers", _l("Tiers")),
    ("welcome", _l("Welcome message")),
    ("review", _l("Review")),
)
STEP_NAMES = [name for name, _ in STEPS]
TIER_ROWS = 3
FIELDS: dict[str, tuple[str, ...]] = {
    "program": ("name", "code", "currency", "timezone", "points_name"),
    "earning": ("earn_rate", "earn_on"),
    "look": ("logo", "primary_color", "background_color"),
    "tiers": tuple(
        f"tier{i}_{part}"
        for i in range(1, TIER_ROWS + 1)
        for part in ("name", "threshold", "multiplier")
    ),
    "welcome": ("welcome_locale", "welcome_subject", "welcome_body"),
    "review": (),
}
ALL_FIELDS = tuple(name for step in STEP_NAMES for name in FIELDS[step])

CODE = _l("Use 2 to 64 small letters, digits, - or _, starting with a letter or a digit.")
CODE_TAKEN = _l("A program with this code already exists. Choose another code.")
CURRENCY = _l("Choose a currency from the list.")
TIMEZONE = _l("Choose a time zone from the list.")
TOO_LONG = _l("This is too long.")
EARN_RATE = _l("Enter the points earned per unit of money, from 0 to 10000, such as 1 or 0.5.")
EARN_ON = _l("Choose amounts with tax or amounts without tax.")
EARN_ON_CHOICES = (
    ("tax_included", _l("Amounts with tax, as charged")),
    ("tax_excluded", _l("Amounts without tax")),
)
COLOUR = _l("Choose a colour, written like #1d4e89.")
TOO_LIGHT = _l("This colour is too light: white text on it would be hard to read.")
TOO_DARK = _l("This colour is too dark: dark text on it would be hard to read.")
LOGO = _l("The logo must be a PNG, JPEG or WebP image of at most 64 KB.")
TIER_NAME = _l("Give this tier a name, or empty its row.")
MULTIPLIER = _l("Enter a multiplier from 1 to 100, such as 1.5.")
THRESHOLDS_RISE = _l("Each tier must start above the tier before it.")
SUBJECT_NEEDED = _l("Give the email a subject.")
BODY_NEEDED = _l("Write the message, or empty the subject to keep the built-in welcome.")
PLACEHOLDER = _l(
    "Only these placeholders can be used: {{ first_name }}, {{ program_name }}, "
    "{{ card_number }}, {{ points }}, {{ points_name }}."
)
TEMPLATE_BAD = _l("This message cannot be sent as it is: check its {{ … }} placeholders.")
LADDER_REFUSED = _l("This ladder was refused: check the tiers' amounts.")

DEFAULTS_BY_LOCALE = {
    "en": {"timezone": "Europe/London", "currency": "GBP"},
    "fr": {"timezone": "Europe/Paris", "currency": "EUR"},
    "da": {"timezone": "Europe/Copenhagen", "currency": "DKK"},
}
WELCOME_SUBJECT = _l("Welcome to {{ program_name }}")
WELCOME_BODY = _l(
    "Hello {{ first_name }},\n\nWelcome to {{ program_name }}! Your card number is "
    "{{ card_number }}. Show it at the counter and every purchase earns you {{ points_name }}."
)


@lru_cache(maxsize=1)
def _timezones() -> list[str]:
    return sorted(
        z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
    )


@lru_cache(maxsize=len(LOCALES))
def _currencies(locale: str) -> list[tuple[str, str]]:
    codes = sorted(c for c in list_currencies() if len(c) == 3)
    return [(c, f"{c} · {get_currency_name(c, locale=locale)}") for c in codes]


def may_set_up(console: Console) -> bool:
    """Owners who are not bound to one program set new programs up."""
    return console.staff.program_id is None and console.staff.may("setup")


def slug(text: str) -> str:
    """A code made of a name: `Café du Nord` → `cafe-du-nord`."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:64]


class Wizard:
    """The posted values of every step and the errors of the steps checked."""

    def __init__(self, values: dict[str, str], console: Console) -> None:
        self.values = values
        self.console = console
        self.errors: dict[str, str] = {}

    # --- one check per step: fills `errors` and returns the step's checked value -----------

    async def program(self) -> ProgramCreate | None:
        r = FormReader(self.values, FIELDS["program"], "UTC")
        name = r.text("name", required=True)
        code = r.text("code", max_length=64)
        if code is None and name:
            code = slug(name)
            self.values["code"] = code
        # "new" is this wizard's own address under /admin.
        if code is None or code == "new" or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{1,63}", code):
            if "code" not in r.errors:
                r.fail("code", CODE)
        currency = r.text("currency", required=True, max_length=3)
        if currency is not None and currency not in dict(_currencies("en")):
            r.fail("currency", CURRENCY)
        timezone = r.text("timezone", required=True, max_length=64)
        if timezone is not None and timezone not in _timezones():
            r.fail("timezone", TIMEZONE)
        points_name = r.text("points_name", required=True, max_length=64)
        if code is not None and "code" not in r.errors and await self._taken(code):
            r.fail("code", CODE_TAKEN)
        self.errors.update(r.errors)
        if r.errors:
            return None
        return ProgramCreate(
            code=code or "",
            name=name or "",
            currency=currency or "",
            timezone=timezone or "",
            points_name=points_name or "",
        )

    async def _taken(self, code: str) -> bool:
        try:
            async with _db(self.console.page.request).read() as session:
                await get_info(session, code)
        except ProgramNotFound:
            return False
        return True

    def _earn_rate(self) -> str | None:
        r = FormReader(self.values, FIELDS["earning"], "UTC")
        rate = r.decimal(
            "earn_rate",
            required=True,
            message=EARN_RATE,
            at_least=Decimal(0),
            at_most=MAX_EARN_RATE,
        )
        self.errors.update(r.errors)
        if rate is None:
            return None
        self.values["earn_rate"] = format(rate.normalize(), "f") if rate else "0"
        return self.values["earn_rate"]

    def earning(self) -> str | None:
        rate = self._earn_rate()
        earn_on = self.values.get("earn_on") or "tax_included"
        if earn_on not in dict(EARN_ON_CHOICES):
            self.errors["earn_on"] = EARN_ON
            return None
        self.values["earn_on"] = earn_on
        return rate

    def look(self) -> Branding | None:
        values = self.values
        for name in ("primary_color", "background_color"):
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", values.get(name, "")):
                self.errors[name] = COLOUR
        if (
            "primary_color" not in self.errors
            and contrast(values["primary_color"], "#ffffff") < 4.5
        ):
            self.errors["primary_color"] = TOO_LIGHT
        if (
            "background_color" not in self.errors
            and contrast(values["background_color"], "#1a1a1a") < 4.5
        ):
            self.errors["background_color"] = TOO_DARK
        if any(n in self.errors for n in FIELDS["look"]):
            return None
        try:
            return Branding(
                logo=values.get("logo") or None,
                primary_color=values["primary_color"].lower(),
                background_color=values["background_color"].lower(),
            )
        except ValidationError:
            self.errors["logo"] = LOGO
            return None

    def tiers(self, exponent: int) -> LadderWrite | None:
        """The first ladder (qualifying spend in a calendar year); None when no row is filled."""
        r = FormReader(self.values, FIELDS["tiers"], "UTC")
        rows: list[dict[str, Any]] = []
        last: Decimal | None = None
        used: set[str] = set()
        for i in range(1, TIER_ROWS + 1):
            parts = [
                self.values.get(f"tier{i}_{p}", "").strip()
                for p in ("name", "threshold", "multiplier")
            ]
            if not any(parts):
                continue
            name = r.text(f"tier{i}_name", max_length=200)
            if name is None and f"tier{i}_name" not in r.errors:
                r.fail(f"tier{i}_name", TIER_NAME)
            threshold = r.money(f"tier{i}_threshold", exponent, required=True)
            multiplier = (
                r.decimal(
                    f"tier{i}_multiplier",
                    message=MULTIPLIER,
                    at_least=Decimal(1),
                    at_most=Decimal(100),
                )
                if parts[2]
                else Decimal(1)
            )
            if threshold is not None:
                self.values[f"tier{i}_threshold"] = threshold
                if last is not None and Decimal(threshold) <= last:
                    r.fail(f"tier{i}_threshold", THRESHOLDS_RISE)
                last = Decimal(threshold)
            if multiplier is not None and parts[2]:
                self.values[f"tier{i}_multiplier"] = format(multiplier.normalize(), "f")
            if name is None or threshold is None or multiplier is None:
                continue
            code = slug(name) or f"tier-{i}"
            while code in used:
                code = f"{code}-{i}"[:64]
            used.add(code)
            rows.append(
                {
                    "code": code,
                    "name": name,
                    "threshold": threshold,
                    "multiplier": format(multiplier.normalize(), "f"),
                }
            )
        self.errors.update(r.errors)
        if r.errors or not rows:
            return None
        try:
            return LadderWrite.model_validate(
                {"metric": "qualifying_spend", "window": {"kind": "calendar_year"}, "tiers": rows}
            )
        except ValidationError:
            self.errors["tier1_name"] = LADDER_REFUSED
            return None

    def welcome(self) -> setup_service.Welcome | None:
        r = FormReader(self.values, FIELDS["welcome"], "UTC")
        locale = self.values.get("welcome_locale", "")
        if locale not in LOCALES:
            locale = self.console.page.locale
            self.values["welcome_locale"] = locale
        subject = r.text("welcome_subject", max_length=200)
        body = r.text("welcome_body", max_length=10_000)
        if subject is None and body is None:
            self.errors.update(r.errors)
            return None
        if subject is None and "welcome_subject" not in r.errors:
            r.fail("welcome_subject", SUBJECT_NEEDED)
        if body is None and "welcome_body" not in r.errors:
            r.fail("welcome_body", BODY_NEEDED)
        self.errors.update(r.errors)
        if r.errors or subject is None or body is None:
            return None
        template = TemplateWrite(subject=subject, body=setup_service.welcome_html(body))
        try:
            render.check("email", template.subject, template.body)
        except InvalidTemplate as exc:
            where = "welcome_subject" if exc.field == "subject" else "welcome_body"
            self.errors[where] = PLACEHOLDER if exc.reason == "unknown-variable" else TEMPLATE_BAD
            return None
        return setup_service.Welcome(locale=locale, template=template)

    async def check(self, step: str) -> bool:
        """Check one step; True when it has no error."""
        before = len(self.errors)
        if step == "program":
            await self.program()
        elif step == "earning":
            self.earning()
        elif step == "look":
            self.look()
        elif step == "tiers":
            self.tiers(self._exponent())
        elif step == "welcome":
            self.welcome()
        return len(self.errors) == before

    def _exponent(self) -> int:
        currency = self.values.get("currency", "")
        if currency not in dict(_currencies("en")):
            return 2  # an unknown currency is the program step's error, not this one's
        return currency_exponent(currency)

    async def everything(self) -> tuple[setup_service.ProgramSetup | None, str | None]:
        """The whole setup, or None and the first step with an error."""
        program = await self.program()
        if program is None:
            return None, "program"
        rate = self.earning()
        if rate is None:
            return None, "earning"
        program = ProgramCreate.model_validate(
            {**program.model_dump(), "earn_rate": rate, "earn_on": self.values["earn_on"]}
        )
        branding = self.look()
        if branding is None:
            return None, "look"
        ladder = self.tiers(self._exponent())
        if self.errors:
            return None, "tiers"
        welcome = self.welcome()
        if self.errors:
            return None, "welcome"
        return setup_service.ProgramSetup(program, branding, ladder, welcome), None


def _defaults(console: Console) -> dict[str, str]:
    locale = console.page.locale
    t = console.page._
    return {
        "currency": DEFAULTS_BY_LOCALE[locale]["currency"],
        "timezone": DEFAULTS_BY_LOCALE[locale]["timezone"],
        "points_name": t("points"),
        "earn_rate": "1",
        "earn_on": "tax_included",
        "primary_color": "#1d4e89",
        "background_color": "#f6f7f9",
        "welcome_locale": locale,
        "welcome_subject": t(WELCOME_SUBJECT),
        "welcome_body": t(WELCOME_BODY),
    }


def _page(
    console: Console, step: str, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    t = console.page._
    index = STEP_NAMES.index(step)
    ladder_rows = [
        (
            i,
            values.get(f"tier{i}_name", ""),
            values.get(f"tier{i}_threshold", ""),
            values.get(f"tier{i}_multiplier", ""),
        )
        for i in range(1, TIER_ROWS + 1)
        if values.get(f"tier{i}_name", "").strip()
    ]
    logo_type = ""
    if values.get("logo", "").startswith("data:"):
        logo_type = values["logo"][5:].partition(";")[0]
    return console.render(
        "admin/setup.html",
        status,
        title=t("Set up a new program"),
        steps=STEPS,
        step=step,
        index=index,
        values=values,
        errors=errors,
        hidden=[(n, values.get(n, "")) for n in ALL_FIELDS if n not in FIELDS[step]],
        currencies=_currencies(console.page.locale),
        earn_on_choices=[(key, t(text)) for key, text in EARN_ON_CHOICES],
        timezones=_timezones(),
        languages=list(LOCALE_NAMES.items()),
        ladder_rows=ladder_rows,
        tier_rows=range(1, TIER_ROWS + 1),
        logo_type=logo_type,
    )


async def _console(request: Request) -> Console | Response:
    console = await _load(request)
    if isinstance(console, Response):
        return console
    if not may_set_up(console):
        return console.denied()
    return console


@router.get("/new")
async def setup_form(request: Request) -> Response:
    console = await _console(request)
    if isinstance(console, Response):
        return console
    return _page(console, "program", _defaults(console), {})


async def _logo_upload(request: Request) -> str | None:
    """The uploaded logo as a data URL; None without a file, ValueError when not a logo."""
    data = await request.form()
    upload = data.get("logo_file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    raw = await upload.read(MAX_LOGO_BYTES + 1)
    if len(raw) > MAX_LOGO_BYTES:
        raise ValueError("too large")
    for media, magic in LOGO_TYPES.items():
        if raw.startswith(magic) and (media != "image/webp" or raw[8:12] == b"WEBP"):
            return f"data:{media};base64," + base64.b64encode(raw).decode()
    raise ValueError("not a PNG, JPEG or WebP image")


@router.post("/new")
async def setup_step(request: Request) -> Response:
    console = await _console(request)
    if isinstance(console, Response):
        return console
    form = await form_of(request)
    if not console.page.csrf_ok(form):
        return _forbidden_form(console)
    step = form.get("step", "program")
    if step not in STEP_NAMES:
        step = "program"
    values = {name: form.get(name, "") for name in ALL_FIELDS}
    wizard = Wizard(values, console)
    if step == "look":
        try:
            uploaded = await _logo_upload(request)
        except ValueError:
            wizard.errors["logo"] = LOGO
        else:
            if uploaded is not None:
                values["logo"] = uploaded
        if form.get("remove_logo"):
            values["logo"] = ""
    go = form.get("go", "next")
    index = STEP_NAMES.index(step)
    if go == "back":
        return _page(console, STEP_NAMES[max(index - 1, 0)], values, {})
    if go.startswith("to:") and go[3:] in STEP_NAMES:
        return _page(console, go[3:], values, {})
    if go == "create":
        return await _create(request, console, wizard)
    if "logo" in wizard.errors:
        return _page(console, step, values, wizard.errors, 422)
    if not await wizard.check(step):
        return _page(console, step, values, wizard.errors, 422)
    return _page(console, STEP_NAMES[min(index + 1, len(STEP_NAMES) - 1)], values, {})


async def _create(request: Request, console: Console, wizard: Wizard) -> Response:
    setup, failed = await wizard.everything()
    if setup is None:
        return _page(console, failed or "program", wizard.values, wizard.errors, 422)
    work: Callable[[Any], Any] = lambda session: setup_service.create(session, setup)  # noqa: E731
    try:
        info = await _db(request).write(work)
    except ProgramExists:
        return _page(console, "program", wizard.values, {"code": CODE_TAKEN}, 409)
    except InvalidLadder:
        return _page(console, "tiers", wizard.values, {"tier1_name": LADDER_REFUSED}, 422)
    except InvalidTemplate:
        return _page(console, "welcome", wizard.values, {"welcome_body": TEMPLATE_BAD}, 422)
    return console.page.redirect(f"/admin/{info.code}?created=1")
