"""Message templates rendered in a Jinja sandbox, with a fixed set of member variables.

Pure functions, no I/O. A template is checked when it is saved: it must compile, use only
the variables of `VARIABLES`, avoid what a message never needs (loops, macros, includes),
and render with sample data. Rendering runs in Jinja's `SandboxedEnvironment` (no access to
Python internals such as `''.__class__`), with no globals, numbers and widths kept small so
that a template cannot make the server build a huge string. Email bodies are HTML and
autoescaped; subjects, SMS and push texts are plain text, a subject on one line.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from habitue.messaging.errors import InvalidTemplate

CHANNELS = ("email", "sms", "push")
LOCALES = ("en", "fr", "da")
FALLBACK_LOCALE = "en"
SUGGESTED_CODES = (
    "welcome",
    "tier_up",
    "points_earned",
    "points_expiring",
    "birthday",
    "reward_available",
)
"""The messages the program's triggers send; any other code is a message of its own."""

VARIABLES: dict[str, str] = {
    "first_name": "the member's first name",
    "last_name": "the member's last name",
    "points": "available points, written for the member's language (1,250 · 1 250 · 1.250)",
    "pending_points": "points being confirmed",
    "points_name": "what the program calls its points",
    "tier": "the name of the member's tier (empty without one)",
    "card_number": "the member's card number",
    "program_name": "the program's name",
    "expiring_points": "points of the next lot to expire (0 when none)",
    "expiring_on": "the day they expire, written for the member's language (empty when none)",
}

SAMPLE: dict[str, object] = {
    "first_name": "Alex",
    "last_name": "Martin",
    "points": 1250,
    "pending_points": 40,
    "points_name": "points",
    "tier": "Gold",
    "card_number": "7700 0000 0000 0017",
    "program_name": "Habitué",
    "expiring_points": 200,
    "expiring_on": date(2031, 1, 31),
}
"""Values used to check a template when it is saved and to preview it without a member."""

BODY_LIMITS = {"email": 100_000, "sms": 1_600, "push": 2_000}
SUBJECT_LIMIT = 500
MAX_OUTPUT = 200_000
MAX_NUMBER = 10_000
"""Numbers in a template, results of `*` and `**`, and format widths stay at or below this."""

_FORBIDDEN: dict[type[nodes.Node], str] = {
    nodes.For: "loops are not available in messages",
    nodes.Macro: "macros are not available in messages",
    nodes.CallBlock: "call blocks are not available in messages",
    nodes.Extends: "a message cannot extend another template",
    nodes.Include: "a message cannot include another template",
    nodes.Import: "a message cannot import another template",
    nodes.FromImport: "a message cannot import another template",
}
_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?")
_DIGITS = re.compile(r"\d+")


def _check_percent(fmt: str) -> None:
    for width, precision in _PERCENT_WIDTH.findall(fmt):
        for part in (width, precision):
            if part and int(part) > MAX_NUMBER:
                raise SecurityError("a format width is too large")


def _check_braces(fmt: str) -> None:
    for _text, _field, spec, _conv in string.Formatter().parse(fmt):
        for part in _DIGITS.findall(spec or ""):
            if int(part) > MAX_NUMBER:
                raise SecurityError("a format width is too large")


def _too_big(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return not -MAX_NUMBER <= value <= MAX_NUMBER
    if isinstance(value, str | list | tuple):
        return len(value) > MAX_OUTPUT
    return False


class MessageSandbox(SandboxedEnvironment):
    """Jinja's sandbox, with the results of arithmetic and string formatting kept small."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("the exponent is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_OUTPUT:
                        raise SecurityError("the result would be too long")
        if operator == "%" and isinstance(left, str):
            _check_percent(left)
        result = super().call_binop(context, operator, left, right)
        if _too_big(result):
            raise SecurityError("the result is too large")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_braces(str(value.__self__))  # `'{:>99999}'.format(…)`
        return wrapped


def _format_filter(value: str, *args: Any, **kwargs: Any) -> str:
    """Jinja's `format` filter (printf-style), with widths kept small."""
    _check_percent(str(value))
    if args and kwargs:
        raise SecurityError("give positional or keyword arguments, not both")
    return str(value) % (kwargs or args)


def _environment(*, autoescape: bool) -> MessageSandbox:
    env = MessageSandbox(autoescape=autoescape, undefined=StrictUndefined)
    env.globals.clear()  # no range(), lipsum(), dict(), cycler()…: only the variables
    env.filters["format"] = _format_filter
    return env


_HTML = _environment(autoescape=True)
_TEXT = _environment(autoescape=False)


def is_html(channel: str, field: str) -> bool:
    """Only an email's body is HTML; subjects and other channels are plain text."""
    return channel == "email" and field == "body"


@lru_cache(maxsize=512)
def compile_template(source: str, *, html: bool, field: str) -> Template:
    """Compile a template after checking it; InvalidTemplate names the field and the line."""
    env = _HTML if html else _TEXT
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidTemplate(
            field, f"line {exc.lineno}: {exc.message}", reason="syntax", line=exc.lineno
        ) from exc
    for node in tree.find_all(tuple(_FORBIDDEN)):
        raise InvalidTemplate(
            field,
            f"line {node.lineno}: {_FORBIDDEN[type(node)]}",
            reason="not-allowed",
            line=node.lineno,
        )
    for const in tree.find_all(nodes.Const):
        if _too_big(const.value):
            raise InvalidTemplate(
                field,
                f"line {const.lineno}: numbers above {MAX_NUMBER} are not allowed",
                reason="too-large",
                line=const.lineno,
            )
    unknown = meta.find_undeclared_variables(tree) - VARIABLES.keys()
    if unknown:
        names = ", ".join(sorted(unknown))
        raise InvalidTemplate(
            field,
            f"unknown variable {names}; known: {', '.join(VARIABLES)}",
            reason="unknown-variable",
            names=tuple(sorted(unknown)),
        )
    return env.from_string(tree)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body: str


def _render(template: Template, values: Mapping[str, str], field: str) -> str:
    try:
        out = template.render(dict(values))
    except SecurityError as exc:
        raise InvalidTemplate(field, f"refused by the sandbox: {exc}", reason="sandbox") from exc
    except TemplateError as exc:
        raise InvalidTemplate(
            field, f"cannot be rendered: {exc.message or exc}", reason="render"
        ) from exc
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise InvalidTemplate(field, f"cannot be rendered: {exc}", reason="render") from exc
    if len(out) > MAX_OUTPUT:
        raise InvalidTemplate(
            field, f"renders to more than {MAX_OUTPUT} characters", reason="too-long"
        )
    return out


def render(channel: str, subject: str | None, body: str, values: Mapping[str, str]) -> Rendered:
    """The message for these (already formatted) values; the subject on one line."""
    out_subject = None
    if subject:
        text = _render(
            compile_template(subject, html=is_html(channel, "subject"), field="subject"),
            values,
            "subject",
        )
        out_subject = " ".join(text.split())
    out_body = _render(
        compile_template(body, html=is_html(channel, "body"), field="body"), values, "body"
    )
    return Rendered(out_subject, out_body)


def check(channel: str, subject: str | None, body: str) -> None:
    """Refuse a template that a member could not receive (InvalidTemplate, 422)."""
    if channel not in CHANNELS:
        raise InvalidTemplate("channel", f"one of {', '.join(CHANNELS)}", reason="channel")
    if subject is not None and len(subject) > SUBJECT_LIMIT:
        raise InvalidTemplate("subject", f"at most {SUBJECT_LIMIT} characters", reason="too-long")
    if channel == "email" and not (subject or "").strip():
        raise InvalidTemplate("subject", "an email needs a subject", reason="subject-required")
    if channel == "sms" and subject:
        raise InvalidTemplate("subject", "a text message has no subject", reason="no-subject")
    if not body.strip():
        raise InvalidTemplate("body", "must not be empty", reason="empty")
    if len(body) > BODY_LIMITS[channel]:
        raise InvalidTemplate(
            "body", f"at most {BODY_LIMITS[channel]} characters for {channel}", reason="too-long"
        )
    render(channel, subject, body, format_values(SAMPLE, FALLBACK_LOCALE, "UTC"))


def format_values(raw: Mapping[str, object], locale: str, timezone: str) -> dict[str, str]:
    """Every variable as text for a reader of `locale`: numbers and days through Babel."""
    loc = Locale.parse(locale)
    zone = ZoneInfo(timezone)
    out: dict[str, str] = {}
    for name in VARIABLES:
        value = raw.get(name)
        if value is None:
            out[name] = ""
        elif isinstance(value, bool):
            out[name] = str(value)
        elif isinstance(value, int | Decimal):
            out[name] = format_decimal(value, locale=loc)
        elif isinstance(value, datetime):
            out[name] = format_date(value.astimezone(zone).date(), format="long", locale=loc)
        elif isinstance(value, date):
            out[name] = format_date(value, format="long", locale=loc)
        else:
            out[name] = str(value)
    return out


def pick_locale(available: Collection[str], wanted: str | None) -> str | None:
    """The member's language if the template exists in it, else English, else any other."""
    for locale in (wanted, FALLBACK_LOCALE, *LOCALES):
        if locale in available:
            return locale
    return None
