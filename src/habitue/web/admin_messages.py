"""The console's message templates: the list, and an editor with a live preview.

Owners and marketers write the templates (`habitue.messaging.templates`); the preview renders
what is being typed, for a member (their name, balance, tier…) or for sample data, in the
language chosen, through the same sandbox as the API (htmx swaps it in while typing).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import HabitueError
from habitue.members import service as members_service
from habitue.members.errors import (
    CardBlocked,
    CardNotFound,
    InvalidCardNumber,
    MemberNotFound,
)
from habitue.messaging import defaults, render
from habitue.messaging import templates as templates_service
from habitue.messaging.errors import InvalidTemplate, TemplateNotFound
from habitue.messaging.schemas import CODE_PATTERN, PreviewRead, PreviewRequest, TemplateWrite
from habitue.programs.service import ProgramInfo
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import CHECK, TOO_LONG, console_for, posted
from habitue.web.i18n import LOCALE_NAMES, _l
from habitue.web.member_messages import CHANNEL_LABELS, CODE_LABELS

router = APIRouter(prefix="/admin", include_in_schema=False)

VARIABLE_LABELS = {
    "first_name": _l("the member's first name"),
    "last_name": _l("the member's last name"),
    "points": _l("available points, written for the message's language"),
    "pending_points": _l("points being confirmed"),
    "points_name": _l("what the program calls its points"),
    "tier": _l("the name of the member's tier (empty without one)"),
    "card_number": _l("the member's card number"),
    "program_name": _l("the program's name"),
    "expiring_points": _l("points of the next lot to expire (0 when none)"),
    "expiring_on": _l("the day they expire"),
}
REASONS = {
    "syntax": _l("This is not a valid template:"),
    "not-allowed": _l("Loops, macros and other templates are not available in messages:"),
    "too-large": _l("Numbers in a message stay at or below 10,000:"),
    "sandbox": _l("The sandbox refused this template:"),
    "render": _l("This template cannot be rendered:"),
}
UNKNOWN_VARIABLE = _l("Unknown variable: %(names)s. Use the variables listed below.")
SUBJECT_REQUIRED = _l("An email needs a subject.")
NO_SUBJECT = _l("A text message has no subject: leave this empty.")
BODY_REQUIRED = _l("Write the message.")
CODE_FORMAT = _l("Use lower-case letters, digits and _ (such as welcome), starting with a letter.")
NO_MEMBER = _l("No member with this card number or id.")
FIELDS = ("code", "channel", "locale", "subject", "body", "member")


def explain(console: Console, exc: InvalidTemplate) -> str:
    """The error of a template in the reader's language (Jinja's own words kept as detail)."""
    t = console.page._
    if exc.reason == "unknown-variable":
        return t(UNKNOWN_VARIABLE) % {"names": ", ".join(exc.names)}
    simple = {
        "subject-required": SUBJECT_REQUIRED,
        "no-subject": NO_SUBJECT,
        "empty": BODY_REQUIRED,
        "too-long": TOO_LONG,
        "channel": CHECK,
    }
    if exc.reason in simple:
        return t(simple[exc.reason])
    return f"{t(REASONS.get(exc.reason, REASONS['render']))} {exc.message}"


@router.get("/{program}/messages")
async def messages(request: Request, program: str) -> Response:
    console = await console_for(request, program, "messages")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        items = await templates_service.list_templates(session, info)
    written = {t.code for t in items}
    saved = {(t.code, t.channel, t.locale) for t in items}
    built_in = [
        (code, channel, [(locale, (code, channel, locale) in saved) for locale in by_locale])
        for code in render.SUGGESTED_CODES
        for channel in render.CHANNELS
        if (by_locale := defaults.starter(code, channel))
    ]
    return console.render(
        "admin/messages.html",
        items=items,
        built_in=built_in,
        off_until_saved={c for c in render.SUGGESTED_CODES if not defaults.built_in(c, "email")},
        missing=[c for c in render.SUGGESTED_CODES if c not in written],
        codes=CODE_LABELS,
        channels=CHANNEL_LABELS,
        languages=LOCALE_NAMES,
        saved=request.query_params.get("saved"),
        deleted=request.query_params.get("deleted"),
    )


def _editor(console: Console, status: int = 200, **context: Any) -> Response:
    return console.render(
        "admin/message.html",
        status,
        channels=list(CHANNEL_LABELS.items()),
        languages=[(code, LOCALE_NAMES[code]) for code in render.LOCALES],
        language_names=LOCALE_NAMES,
        variables=[(name, VARIABLE_LABELS[name]) for name in render.VARIABLES],
        suggested=render.SUGGESTED_CODES,
        **context,
    )


@router.get("/{program}/messages/edit")
async def edit_form(request: Request, program: str) -> Response:
    console = await console_for(request, program, "messages")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    q = request.query_params
    values = {
        "code": q.get("code", "")[:64],
        "channel": q.get("channel", "email") if q.get("channel") in CHANNEL_LABELS else "email",
        "locale": q.get("locale", "en") if q.get("locale") in render.LOCALES else "en",
        "subject": "",
        "body": "",
        "member": q.get("member", "")[:200],
    }
    exists = False
    starting: str | None = None
    preview: PreviewRead | None = None
    if re.fullmatch(CODE_PATTERN, values["code"]):
        try:
            async with _db(request).read() as session:
                found = await templates_service.get_template(
                    session, info, values["code"], values["channel"], values["locale"]
                )
        except TemplateNotFound:
            text = defaults.starter(values["code"], values["channel"]).get(values["locale"])
            if text is not None:  # the built-in text (or the starting text), not saved yet
                sent = defaults.built_in(values["code"], values["channel"])
                starting = "built-in" if sent else "off"
                values["subject"], values["body"] = text[0] or "", text[1]
                preview, _ = await _preview(request, console, values)
        else:
            exists = True
            values["subject"], values["body"] = found.subject or "", found.body
            preview, _ = await _preview(request, console, values)
    return _editor(
        console, values=values, errors={}, exists=exists, preview=preview, starting=starting
    )


async def _member_id(session: AsyncSession, info: ProgramInfo, text: str) -> str:
    """A member's public id from a card number, a QR payload or the id itself."""
    digits = text.replace(" ", "").replace("-", "")
    if digits.isdigit() or text.startswith("habitue:"):
        return (await members_service.resolve(session, info, card_number=text)).public_id
    await members_service.read(session, info, text[:64], with_balance=False)
    return text[:64]


async def _preview(
    request: Request, console: Console, values: dict[str, str]
) -> tuple[PreviewRead | None, dict[str, str]]:
    """The draft in `values` rendered for its member or sample data, or the errors."""
    info = console.program
    assert info is not None
    errors: dict[str, str] = {}
    code = values["code"] if re.fullmatch(CODE_PATTERN, values["code"]) else "draft"
    who = values["member"].strip()
    try:
        async with _db(request).read() as session:
            try:
                member_id = await _member_id(session, info, who) if who else None
            except (MemberNotFound, CardNotFound, InvalidCardNumber, CardBlocked):
                errors["member"] = NO_MEMBER
                return None, errors
            result = await templates_service.preview(
                session,
                info,
                code,
                PreviewRequest(
                    channel=values["channel"],
                    locale=values["locale"],
                    member_id=member_id,
                    subject=values["subject"] or None,
                    body=values["body"] or " ",
                ),
            )
    except InvalidTemplate as exc:
        errors[exc.field if exc.field in FIELDS else "body"] = explain(console, exc)
        return None, errors
    return result, errors


def _read(form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    values = {name: form.get(name, "") for name in FIELDS}
    values["code"] = values["code"].strip()
    errors: dict[str, str] = {}
    if not re.fullmatch(CODE_PATTERN, values["code"]):
        errors["code"] = CODE_FORMAT
    if values["channel"] not in CHANNEL_LABELS:
        errors["channel"] = CHECK
    if values["locale"] not in render.LOCALES:
        errors["locale"] = CHECK
    if len(values["subject"]) > render.SUBJECT_LIMIT:
        errors["subject"] = TOO_LONG
    if len(values["body"]) > max(render.BODY_LIMITS.values()):
        errors["body"] = TOO_LONG
    return values, errors


@router.post("/{program}/messages/edit")
async def edit(request: Request, program: str) -> Response:
    """Save the template (`action=save`), delete it (`delete`) or preview the draft."""
    found = await posted(request, program, "edit_messages")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    values, errors = _read(form)
    action = form.get("action", "preview")
    exists = form.get("exists") == "1"
    if action == "delete" and not errors:
        try:
            await _db(request).write(
                lambda s: templates_service.delete_template(
                    s, info, values["code"], values["channel"], values["locale"]
                )
            )
        except TemplateNotFound:
            return console.not_found()
        return console.page.redirect(f"/admin/{info.code}/messages?deleted={values['code']}")
    if action == "save" and not errors:
        data = TemplateWrite(subject=values["subject"] or None, body=values["body"] or " ")

        async def work(session: AsyncSession) -> Any:
            return await templates_service.put_template(
                session, info, values["code"], values["channel"], values["locale"], data
            )

        try:
            await _db(request).write(work)
        except InvalidTemplate as exc:
            errors[exc.field if exc.field in FIELDS else "body"] = explain(console, exc)
        except HabitueError:
            errors["body"] = CHECK
        else:
            saved = f"{values['code']}/{values['channel']}/{values['locale']}"
            return console.page.redirect(f"/admin/{info.code}/messages?saved={saved}")
        return _editor(console, 422, values=values, errors=errors, exists=exists, preview=None)
    preview: PreviewRead | None = None
    if not errors:
        preview, errors = await _preview(request, console, values)
    return _editor(
        console,
        422 if errors else 200,
        values=values,
        errors=errors,
        exists=exists,
        preview=preview,
        previewed=True,
    )
