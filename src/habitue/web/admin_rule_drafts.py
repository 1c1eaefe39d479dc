"""The console's rule builder and drafts: a form for a common rule (`rules.builder`) saved as a
draft — and a rule the form made opened again in it (`rules.builder.recognise`), its changes
saved as a draft of the next version, never live; the draft's page shows the rule it makes
(its CEL, editable as JSON by experts), tests it
on a basket against the live rules, backtests it on the last 30 days of real events, and
publishes or discards it. Every action goes through `rules.drafts`, as the API does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from habitue.errors import HabitueError
from habitue.events.schemas import EventCreate
from habitue.members.errors import MemberNotFound
from habitue.programs.service import ProgramInfo
from habitue.rewards.catalogue import COUPON_KINDS, list_rewards
from habitue.rules import drafts
from habitue.rules import service as rules_service
from habitue.rules.builder import (
    ACTION_TYPES,
    COUNTERS,
    FIELDS,
    KEPT,
    PERIODS,
    BuilderError,
    Problem,
    Template,
    build,
    recognise,
)
from habitue.rules.drafts import DraftNotFound, DraftOutdated
from habitue.rules.errors import InvalidRule
from habitue.rules.model import WEEKDAYS
from habitue.rules.schemas import BacktestCreate, DraftRead
from habitue.web.admin import SAMPLE_LINES, Console, _db, _parse_lines, _pipeline
from habitue.web.admin_forms import CODE_RULE, actor, console_for, posted
from habitue.web.i18n import _l
from habitue.web.portal_rewards import text_of

router = APIRouter(prefix="/admin", include_in_schema=False)

TEMPLATES = {
    Template.CATEGORY_MULTIPLIER: _l("Multiplier on a category"),
    Template.PER_VISIT: _l("Points per visit"),
    Template.RITUAL: _l("Ritual: a day and time window"),
    Template.CAPPED_ACTION: _l("Points for an action, with a cap"),
    Template.RANDOM_REWARD: _l("Random reward"),
    Template.AFTER_N: _l("Privilege after a number of events"),
}
TEMPLATE_HINTS = {
    Template.CATEGORY_MULTIPLIER: _l("Double points on coffee, for example."),
    Template.PER_VISIT: _l("Points each time a member checks in."),
    Template.RITUAL: _l("More points on Wednesdays after 21:00, for example."),
    Template.CAPPED_ACTION: _l("50 points for a review, at most one a week, for example."),
    Template.RANDOM_REWARD: _l("One purchase in 50 wins a free pastry, for example."),
    Template.AFTER_N: _l("The fast lane after 19 visits in 30 days, for example."),
}
PROBLEMS = {
    Problem.REQUIRED: _l("This is required."),
    Problem.CODE: CODE_RULE,
    Problem.WHOLE_NUMBER: _l("Enter a whole number above 0."),
    Problem.FACTOR: _l("Enter a multiplier above 1 and at most 100, such as 2 or 1.5."),
    Problem.PERCENT: _l("Enter a percentage above 0 and at most 100."),
    Problem.TIME: _l("Enter a time such as 21:00."),
    Problem.DAYS: _l("Choose at least one day."),
    Problem.CHOICE: _l("Choose one of the options offered."),
    Problem.NAME: _l("Use lowercase letters, digits and _, such as fast_lane."),
    Problem.TOO_LONG: _l("This is too long."),
}  # fmt: skip
EVENT_TYPES = {
    "purchase": _l("Purchase"),
    "visit": _l("Visit"),
    "review": _l("Review"),
    "social": _l("Share on social media"),
    "referral": _l("Referral"),
    "app_open": _l("App opened"),
}
PERIOD_NAMES = {
    "day": _l("Day"),
    "week": _l("Week"),
    "month": _l("Month"),
    "year": _l("Year"),
    "lifetime": _l("Ever"),
}
WINDOWS = {
    "7d": _l("Last 7 days"),
    "30d": _l("Last 30 days"),
    "year": _l("This calendar year"),
    "lifetime": _l("Ever"),
}
DAY_NAMES = {
    "mon": _l("Monday"),
    "tue": _l("Tuesday"),
    "wed": _l("Wednesday"),
    "thu": _l("Thursday"),
    "fri": _l("Friday"),
    "sat": _l("Saturday"),
    "sun": _l("Sunday"),
}
NOT_JSON = _l("This is not a JSON object.")
NO_MEMBER = _l("No member with this card number or id.")
GIVE_MEMBER = _l("Give a member's card number or id.")
BAD_LINES = _l("Write one line per item: sku,category,quantity,unit price.")
BAD_DATE = _l("Enter a date.")
OUTDATED = _l("The rule changed since this draft was saved. Save the draft again, then publish.")
SPEC_TO_FORM = {
    "effect.reward_code": "reward_code",
    "effect.benefit": "benefit",
    "code": "code",
    "effect.probability": "percent",
    "effect.factor": "factor",
}
"""A rule check's field → the builder's field it is shown under."""


def _invalid(exc: InvalidRule) -> str:
    first = exc.errors[0] if exc.errors else {"field": "", "message": exc.detail}
    where = f" (line {first['line']}, column {first['column']})" if "line" in first else ""
    return f"{first['field']}: {first['message']}{where}"


async def _coupon_rewards(request: Request, console: Console) -> list[tuple[str, str]]:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        found = await list_rewards(session, info)
    locale = console.page.locale
    return [
        (r.code, text_of(r.texts, locale, r.code).name)
        for r in found
        if r.active and r.kind in COUPON_KINDS
    ]


async def _builder(
    request: Request,
    console: Console,
    template: Template,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    *,
    editing: str | None = None,
) -> Response:
    return console.render(
        "admin/rule_builder.html",
        status,
        kind=template,
        editing=editing,
        title=TEMPLATES[template],
        hint=TEMPLATE_HINTS[template],
        values=values,
        errors=errors,
        event_types=[(t, EVENT_TYPES[t]) for t in ACTION_TYPES],
        counted_types=[(t, EVENT_TYPES[t]) for t in COUNTERS],
        periods=[(p, PERIOD_NAMES[p]) for p in PERIODS],
        windows=list(WINDOWS.items()),
        days=[(d, DAY_NAMES[d]) for d in WEEKDAYS],
        rewards=await _coupon_rewards(request, console),
    )


@router.get("/{program}/rules/new")
async def new_rule(request: Request, program: str) -> Response:
    console = await console_for(request, program, "rules")
    if isinstance(console, Response):
        return console
    chosen = request.query_params.get("template", "")
    if chosen not in set(Template):
        return console.render(
            "admin/rule_templates.html",
            templates=[(t, TEMPLATES[t], TEMPLATE_HINTS[t]) for t in Template],
        )
    defaults = {"factor": "2", "start": "21:00", "end": "23:59", "cap_period": "week",
                "cap_count": "1", "percent": "2", "window": "30d", "event_type": ""}  # fmt: skip
    template = Template(chosen)
    if template is Template.AFTER_N:
        defaults["event_type"] = "visit"
    elif template in (Template.CAPPED_ACTION, Template.RANDOM_REWARD):
        defaults["event_type"] = "review" if template is Template.CAPPED_ACTION else "purchase"
    return await _builder(request, console, template, defaults, {})


@router.post("/{program}/rules/new")
async def build_rule(request: Request, program: str) -> Response:
    found = await posted(request, program, "rules")
    if isinstance(found, Response):
        return found
    console, form = found
    try:
        template = Template(form.get("template", ""))
    except ValueError:
        return console.not_found()
    return await _save_built(request, console, form, template)


async def _save_built(
    request: Request,
    console: Console,
    form: dict[str, str],
    template: Template,
    *,
    editing: str | None = None,
    kept: dict[str, Any] | None = None,
) -> Response:
    """Build the rule from the posted form and save it as a draft (never live); the form
    again with its errors (422) when a field or the rule checks refuse it. `editing`: the
    rule's code, fixed by the path; `kept`: keys of the rule the form does not show
    (`rules.builder.KEPT`) carried into the draft."""
    info = console.program
    assert info is not None
    names = ("code", "name", *FIELDS[template])
    values = {n: form.get(n, "") for n in names if n != "days"}
    if editing is not None:
        values["code"] = editing
    days = [d for d in WEEKDAYS if form.get(f"day_{d}")]
    values |= {f"day_{d}": "on" for d in days}
    errors: dict[str, str] = {}
    try:
        spec = build(template, {**values, "days": days}) | (kept or {})
    except BuilderError as exc:
        errors = {k: PROBLEMS[v] for k, v in exc.errors.items()}
        return await _builder(request, console, template, values, errors, 422, editing=editing)
    code, who = spec["code"], actor(console)
    try:
        await _db(request).write(lambda s: drafts.put_draft(s, info, code, spec, actor=who))
    except InvalidRule as exc:
        field = str(exc.errors[0]["field"]) if exc.errors else ""
        errors[SPEC_TO_FORM.get(field, "code")] = _invalid(exc)
        return await _builder(request, console, template, values, errors, 422, editing=editing)
    return console.page.redirect(f"/admin/{info.code}/rules/{code}/draft?saved=1")


async def _current_spec(request: Request, console: Console, code: str) -> dict[str, Any] | None:
    """The rule as it is being worked on: its draft's spec when it has one, else the live
    rule's; None when neither exists."""
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        try:
            return dict((await drafts.get_draft(session, info, code)).spec)
        except DraftNotFound:
            pass
        if await rules_service.live_version(session, info, code) is None:
            return None
        return dict((await rules_service.get_rule(session, info, code)).spec)


def _form_values(fields: dict[str, Any]) -> dict[str, str]:
    """`rules.builder.recognise`'s fields as the form's values (days as `day_wed` boxes)."""
    values = {k: str(v) for k, v in fields.items() if k != "days"}
    return values | {f"day_{d}": "on" for d in fields.get("days", [])}


@router.get("/{program}/rules/{code}/edit")
async def edit_rule(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "rules")
    if isinstance(console, Response):
        return console
    assert console.program is not None
    key = code[:64]
    spec = await _current_spec(request, console, key)
    if spec is None:
        return console.not_found()
    found = recognise(spec)
    if found is None:  # raw CEL, or changed by hand since: the expert's editor
        return console.page.redirect(f"/admin/{console.program.code}/rules/{key}/draft?raw=1")
    template, fields = found
    return await _builder(request, console, template, _form_values(fields), {}, editing=key)


@router.post("/{program}/rules/{code}/edit")
async def save_edited_rule(request: Request, program: str, code: str) -> Response:
    found = await posted(request, program, "rules")
    if isinstance(found, Response):
        return found
    console, form = found
    key = code[:64]
    spec = await _current_spec(request, console, key)
    if spec is None:
        return console.not_found()
    try:
        template = Template(form.get("template", ""))
    except ValueError:
        return console.not_found()
    kept = {k: spec[k] for k in KEPT if k in spec}
    return await _save_built(request, console, form, template, editing=key, kept=kept)


async def _draft_page(
    request: Request,
    console: Console,
    code: str,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    info = console.program
    assert info is not None
    draft: DraftRead | None = None
    async with _db(request).read() as session:
        try:
            draft = await drafts.get_draft(session, info, code)
        except DraftNotFound:
            draft = None
        live = await rules_service.live_version(session, info, code)
        live_spec = (await rules_service.get_rule(session, info, code)).spec if live else None
    if draft is None and live_spec is None:
        return console.not_found()
    spec = draft.spec if draft is not None else live_spec
    assert spec is not None
    shown = {"spec": json.dumps(spec, indent=2, ensure_ascii=False), "lines": SAMPLE_LINES}
    return console.render(
        "admin/rule_draft.html",
        status,
        code=code,
        draft=draft,
        spec=spec,
        live_spec=live_spec,
        values={**shown, **(values or {})},
        errors=errors or {},
        saved=request.query_params.get("saved") == "1",
        raw=request.query_params.get("raw") == "1",
        in_form=recognise(spec) is not None,
        event_types=list(EVENT_TYPES.items()),
        **extra,
    )


@router.get("/{program}/rules/{code}/draft")
async def draft_page(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "rules")
    if isinstance(console, Response):
        return console
    return await _draft_page(request, console, code[:64])


@dataclass(frozen=True, slots=True)
class _Posted:
    """A posted draft form, checked (CSRF, role): the console, the form, the program and the
    rule's code."""

    console: Console
    form: dict[str, str]
    info: ProgramInfo
    key: str


async def _posted_draft(request: Request, program: str, code: str) -> _Posted | Response:
    found = await posted(request, program, "rules")
    if isinstance(found, Response):
        return found
    console, form = found
    assert console.program is not None
    return _Posted(console, form, console.program, code[:64])


@router.post("/{program}/rules/{code}/draft")
async def save_draft(request: Request, program: str, code: str) -> Response:
    found = await _posted_draft(request, program, code)
    if isinstance(found, Response):
        return found
    console, form, info, key = found.console, found.form, found.info, found.key
    text, who = form.get("spec", ""), actor(console)
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError
    except ValueError:
        return await _draft_page(request, console, key, 422, values={"spec": text},
                                 errors={"spec": NOT_JSON})  # fmt: skip
    try:
        await _db(request).write(lambda s: drafts.put_draft(s, info, key, data, actor=who))
    except InvalidRule as exc:
        return await _draft_page(request, console, key, 422, values={"spec": text},
                                 errors={"spec": _invalid(exc)})  # fmt: skip
    return console.page.redirect(f"/admin/{info.code}/rules/{key}/draft?saved=1")


def _basket(form: dict[str, str], timezone: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The test form as an event body (`events/quote`'s), and its errors per field."""
    errors: dict[str, str] = {}
    try:
        lines = _parse_lines(form.get("lines", ""))
    except (ValueError, InvalidOperation):
        lines = []
        errors["lines"] = BAD_LINES
    total = sum((Decimal(x["quantity"]) * Decimal(x["unit_price"]) for x in lines), Decimal(0))
    kind = form.get("type", "purchase")
    body: dict[str, Any] = {"type": kind if kind in EVENT_TYPES else "purchase",
                            "external_id": "draft-test"}  # fmt: skip
    if body["type"] == "purchase":
        body |= {"total": str(total), "lines": lines}
    who = form.get("member", "").strip()
    if not who:
        errors["member"] = GIVE_MEMBER
    digits = who.replace(" ", "")
    body["member"] = {"card_number": digits} if digits.isdigit() else {"id": who}
    when = form.get("occurred_at", "").strip()
    if when:
        try:
            local = datetime.fromisoformat(when)
            body["occurred_at"] = local.replace(tzinfo=ZoneInfo(timezone)).isoformat()
        except ValueError:
            errors["occurred_at"] = BAD_DATE
    return body, errors


@router.post("/{program}/rules/{code}/draft/test")
async def try_draft(request: Request, program: str, code: str) -> Response:
    found = await _posted_draft(request, program, code)
    if isinstance(found, Response):
        return found
    console, form, info, key = found.console, found.form, found.info, found.key
    values = {k: form.get(k, "") for k in ("member", "type", "lines", "occurred_at")}
    body, errors = _basket(form, info.timezone)
    result = None
    if not errors:
        try:
            event = EventCreate.model_validate(body)
            async with _db(request).read() as session:
                result = await drafts.try_draft(session, _pipeline(request), info, key, event)
        except ValidationError:
            errors["lines"] = BAD_LINES
        except MemberNotFound:
            errors["member"] = NO_MEMBER
        except InvalidRule as exc:
            errors["spec"] = _invalid(exc)
        except DraftNotFound:
            return console.not_found()
        except HabitueError as exc:
            errors["lines"] = exc.detail
    return await _draft_page(request, console, key, 422 if errors else 200, values=values,
                             errors=errors, tried=result)  # fmt: skip


def _day(value: str, timezone: str) -> datetime | None:
    """The start of a local day (`2026-11-01`) as an aware time; None when empty."""
    value = value.strip()
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(0), ZoneInfo(timezone))


@router.post("/{program}/rules/{code}/draft/backtest")
async def backtest_draft(request: Request, program: str, code: str) -> Response:
    found = await _posted_draft(request, program, code)
    if isinstance(found, Response):
        return found
    console, form, info, key = found.console, found.form, found.info, found.key
    values = {k: form.get(k, "") for k in ("since", "until")}
    errors: dict[str, str] = {}
    window: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            window[name] = _day(values[name], info.timezone)
        except ValueError:
            errors[name] = BAD_DATE
    until = window.get("until")
    if until is not None:
        window["until"] = until + timedelta(days=1)  # the last day is included
    result = None
    if not errors:
        try:
            async with _db(request).read() as session:
                result = await drafts.backtest_draft(session, info, key, BacktestCreate(**window))
        except DraftNotFound:
            return console.not_found()
        except InvalidRule as exc:
            errors["spec"] = _invalid(exc)
        except HabitueError as exc:
            errors["since"] = exc.detail
    return await _draft_page(request, console, key, 422 if errors else 200, values=values,
                             errors=errors, backtest=result)  # fmt: skip


@router.post("/{program}/rules/{code}/draft/publish")
async def publish_draft(request: Request, program: str, code: str) -> Response:
    found = await _posted_draft(request, program, code)
    if isinstance(found, Response):
        return found
    console, info, key, who = found.console, found.info, found.key, actor(found.console)
    try:
        await _db(request).write(lambda s: drafts.publish_draft(s, info, key, actor=who))
    except DraftNotFound:
        return console.not_found()
    except DraftOutdated:
        return await _draft_page(request, console, key, 409, errors={"publish": OUTDATED})
    except InvalidRule as exc:
        return await _draft_page(request, console, key, 422, errors={"publish": _invalid(exc)})
    return console.page.redirect(f"/admin/{info.code}/rules?published={key}#rule-{key}")


@router.post("/{program}/rules/{code}/draft/discard")
async def discard_draft(request: Request, program: str, code: str) -> Response:
    found = await _posted_draft(request, program, code)
    if isinstance(found, Response):
        return found
    console, info, key = found.console, found.info, found.key
    try:
        await _db(request).write(lambda s: drafts.delete_draft(s, info, key))
    except DraftNotFound:
        return console.not_found()
    return console.page.redirect(f"/admin/{info.code}/rules?discarded={key}")
