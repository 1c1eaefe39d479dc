"""The console's newsletters page: the newsletters with their send reports, and a form to
send one to a segment now or at a set time, with a hold-out.

Reading needs `messages`, sending `edit_messages`. Sending is `messaging.newsletters.create`,
the same as `POST /v1/programs/{p}/newsletters`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.analytics import segments as segments_service
from habitue.errors import ValidationFailed
from habitue.messaging import newsletters
from habitue.messaging import templates as templates_service
from habitue.messaging.errors import NewsletterExists
from habitue.messaging.schemas import NewsletterCreate
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import CHOOSE, CODE_RULE, FormReader, console_for, posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

FORM = ("code", "segment", "template", "holdout_share", "send_at")
HOLDOUT = _l("Enter a percentage from 0 to 99, such as 10.")
EXISTS = _l("A newsletter or a campaign already has this code.")
STATUSES = {
    "scheduled": _l("Scheduled"),
    "sent": _l("Sent"),
    "canceled": _l("Canceled"),
}


async def _page(
    request: Request,
    console: Console,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        items = await newsletters.list_newsletters(session, info)
        reports = [await newsletters.get(session, info, n["code"]) for n in items]
        segments = [(s.code, s.code) for s in await segments_service.list_segments(session, info)]
        codes = {t.code for t in await templates_service.list_templates(session, info)}
        templates = [(c, c) for c in sorted(codes)]
    return console.render(
        "admin/newsletters.html",
        status,
        newsletters=reports,
        segments=segments,
        templates=templates,
        values=values,
        errors=errors,
        statuses=STATUSES,
        sent=request.query_params.get("sent"),
    )


@router.get("/{program}/newsletters")
async def newsletters_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "messages")
    if isinstance(console, Response):
        return console
    return await _page(request, console, {"holdout_share": "10"}, {})


@router.post("/{program}/newsletters")
async def send_newsletter(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_messages")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    reader = FormReader(form, FORM, info.timezone)
    share = reader.decimal(
        "holdout_share", message=HOLDOUT, at_least=Decimal(0), at_most=Decimal(99)
    )
    data: dict[str, Any] = {
        "code": reader.text("code", required=True, max_length=64),
        "segment": reader.text("segment", required=True, max_length=64),
        "template": reader.text("template", required=True, max_length=64),
        "holdout_share": float(share / 100) if share is not None else 0.0,
        "send_at": reader.moment("send_at"),
    }
    body: NewsletterCreate | None = None
    if not reader.errors:
        try:
            body = NewsletterCreate(**data)
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else "code"
                reader.fail(name, CODE_RULE if name in ("code", "template") else CHOOSE)
    if body is not None:
        made = body

        async def work(session: AsyncSession) -> None:
            await newsletters.create(
                session,
                info,
                code=made.code,
                segment=made.segment,
                template=made.template,
                holdout_share=made.holdout_share,
                send_at=made.send_at,
            )

        try:
            await _db(request).write(work)
        except ValidationFailed as exc:
            field = (exc.errors or [{}])[0].get("field", "code")
            reader.fail(str(field), CHOOSE)
        except NewsletterExists:
            reader.fail("code", EXISTS)
    if body is None or reader.errors:
        return await _page(request, console, reader.values, reader.errors, 422)
    return console.page.redirect(f"/admin/{info.code}/newsletters?sent={body.code}")
