"""The console's partners pages: the coalition's partners, a new partner, monthly statements.

Owners see and add partners; analysts read them and their statements; the figures come from
`habitue.partners.service`, the same as the API's.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.errors import ValidationFailed
from habitue.money import MoneyFormatError, parse_minor
from habitue.partners import service as partners_service
from habitue.partners.errors import PartnerExists, PartnerNotFound
from habitue.partners.schemas import PartnerCreate, PartnerRead, StatementRead
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import console_for, posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

FIELDS = ("code", "name", "funding_rate", "reimbursement_rate")
FIELD_ERRORS = {
    "code": _l("Use 1 to 64 letters, digits or . _ : - (not “default”)."),
    "name": _l("Give the partner's name."),
    "funding_rate": _l("Enter an amount such as 1.00."),
    "reimbursement_rate": _l("Enter an amount such as 1.00."),
}
CODE_TAKEN = _l("Another partner already has this code.")
MONTH_FORMAT = _l("Choose a month such as 2026-03.")


def this_month(console: Console) -> str:
    """The current month in the program's time zone, as `YYYY-MM`."""
    assert console.program is not None
    return clock.now().astimezone(ZoneInfo(console.program.timezone)).strftime("%Y-%m")


def month_bounds(value: str) -> tuple[date, date] | None:
    """The first and last day of a `YYYY-MM` month, or None when it is not one."""
    try:
        first = datetime.strptime(value.strip(), "%Y-%m").date()
    except ValueError:
        return None
    if not 1900 <= first.year <= 9000:
        return None
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def _shift(first: date, months: int) -> str:
    index = first.year * 12 + first.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


async def _list_page(
    request: Request,
    console: Console,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    info = console.program
    assert info is not None
    month = this_month(console)
    bounds = month_bounds(month)
    assert bounds is not None
    rows: list[tuple[PartnerRead, StatementRead]] = []
    async with _db(request).read() as session:
        for partner in await partners_service.list_partners(session, info):
            figures = await partners_service.statement(session, info, partner.code, *bounds)
            rows.append((partner, figures))
    return console.render(
        "admin/partners.html",
        status,
        rows=rows,
        month=month,
        values=values,
        errors=errors,
        created=request.query_params.get("created"),
    )


@router.get("/{program}/partners")
async def partners(request: Request, program: str) -> Response:
    console = await console_for(request, program, "partners")
    if isinstance(console, Response):
        return console
    return await _list_page(request, console, values={}, errors={})


def _read_form(
    form: dict[str, str], exponent: int
) -> tuple[dict[str, str], dict[str, str], PartnerCreate | None]:
    """What was typed, the errors per field, and the partner when there is none."""
    values = {name: form.get(name, "").strip() for name in FIELDS}
    errors: dict[str, str] = {}
    for name in ("funding_rate", "reimbursement_rate"):
        try:
            parse_minor(values[name], exponent)
        except MoneyFormatError:
            errors[name] = FIELD_ERRORS[name]
    try:
        data = PartnerCreate.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err.get("loc") else "code"
            errors.setdefault(name, FIELD_ERRORS.get(name, FIELD_ERRORS["code"]))
        return values, errors, None
    return values, errors, None if errors else data


@router.post("/{program}/partners")
async def create_partner(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_partners")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    values, errors, data = _read_form(form, info.currency_exponent)
    if data is not None:

        async def work(session: AsyncSession) -> PartnerRead:
            return await partners_service.create_partner(session, info, data)

        try:
            made = await _db(request).write(work)
        except ValidationFailed as exc:
            name = exc.errors[0]["field"] if exc.errors else "code"
            errors[name] = FIELD_ERRORS.get(name, FIELD_ERRORS["code"])
        except PartnerExists:
            errors["code"] = CODE_TAKEN
        else:
            return console.page.redirect(f"/admin/{info.code}/partners?created={made.code}")
    return await _list_page(request, console, values=values, errors=errors, status=422)


@router.get("/{program}/partners/{code}")
async def statement(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "partners")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    typed = request.query_params.get("month", "")[:20]
    month = typed or this_month(console)
    bounds = month_bounds(month)
    errors: dict[str, str] = {}
    context: dict[str, Any] = {"figures": None, "previous": None, "following": None}
    try:
        async with _db(request).read() as session:
            partner = await partners_service.get_partner(session, info, code[:64])
            if bounds is None:
                errors["month"] = MONTH_FORMAT
            else:
                context["figures"] = await partners_service.statement(
                    session, info, partner.code, *bounds
                )
                context["previous"] = _shift(bounds[0], -1)
                context["following"] = _shift(bounds[0], 1)
    except PartnerNotFound:
        return console.not_found()
    return console.render(
        "admin/partner.html",
        422 if errors else 200,
        partner=partner,
        values={"month": month},
        errors=errors,
        period=bounds,
        **context,
    )
