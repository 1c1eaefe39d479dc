"""The console's campaign pages: the campaigns, a new campaign, and each one's uplift report.

The report is `analytics.campaigns.campaign_report`: treatment against hold-out over the
campaign's window, the incremental revenue per member with its 95 % confidence interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import campaigns as campaigns_service
from habitue.analytics.errors import CampaignExists, CampaignNotFound, InvalidHoldoutShare
from habitue.analytics.schemas import CampaignCreate
from habitue.errors import HabitueError
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import (
    AFTER_START,
    CHECK,
    CHOOSE,
    MAX_CODE,
    WINDOW_STATES,
    FormReader,
    console_for,
    local_input,
    posted,
    window_state,
)
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

CAMPAIGN_KINDS = {
    "offer": _l("Offer"),
    "rule": _l("Bonus rule"),
    "newsletter": _l("Newsletter"),
}
CAMPAIGN_STATES = {**WINDOW_STATES, "open": _l("Running")}
CAMPAIGN_CODE = _l("Use letters, digits, '.', '-' and '_' (at most 64).")
CAMPAIGN_EXISTS = _l("A campaign with this code exists already.")
HOLDOUT = _l("Enter a percentage between 0 and 100, such as 10.")
CAMPAIGN_FIELDS = {
    "code": CAMPAIGN_CODE,
    "kind": CHOOSE,
    "holdout_share": HOLDOUT,
    "starts_at": CHECK,
    "ends_at": CHECK,
}
FORM = ("code", "kind", "holdout_share", "starts_at", "ends_at")


@router.get("/{program}/campaigns")
async def campaigns(request: Request, program: str) -> Response:
    console = await console_for(request, program, "campaigns")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        items = await campaigns_service.list_campaigns(session, info)
    now = clock.now()
    return console.render(
        "admin/campaigns.html",
        campaigns=[(c, window_state(c.starts_at, c.ends_at, now)) for c in items],
        kinds=CAMPAIGN_KINDS,
        states=CAMPAIGN_STATES,
    )


def _form(
    console: Console, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    return console.render(
        "admin/campaign_form.html", status, values=values, errors=errors, kinds=CAMPAIGN_KINDS
    )


@router.get("/{program}/campaigns/new")
async def new_campaign(request: Request, program: str) -> Response:
    console = await console_for(request, program, "edit_campaigns")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    start = clock.now().astimezone(ZoneInfo(info.timezone)).replace(minute=0, second=0)
    start += timedelta(hours=1)
    values = {
        "kind": "offer",
        "holdout_share": "10",
        "starts_at": local_input(start, info.timezone),
        "ends_at": local_input(start + timedelta(days=28), info.timezone),
    }
    return _form(console, values, {})


@router.post("/{program}/campaigns/new")
async def create_campaign(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_campaigns")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    reader = FormReader(form, FORM, info.timezone)
    share = reader.decimal(
        "holdout_share", message=HOLDOUT, required=True, above=Decimal(0), at_most=Decimal("99.99")
    )
    kind = reader.values["kind"]
    if kind not in CAMPAIGN_KINDS:
        reader.fail("kind", CHOOSE)
    data = {
        "code": reader.text("code", required=True, max_length=MAX_CODE),
        "kind": kind,
        "holdout_share": float(share / 100) if share is not None else None,
        "starts_at": reader.moment("starts_at", required=True),
        "ends_at": reader.moment("ends_at", required=True),
    }
    start, end = data["starts_at"], data["ends_at"]
    if isinstance(start, datetime) and isinstance(end, datetime) and end <= start:
        reader.fail("ends_at", AFTER_START)
    body = reader.validate(
        CampaignCreate, data, fields=CAMPAIGN_FIELDS, rules={}, fallback="code", placeholders={}
    )
    if body is not None:
        made = body

        async def work(session: AsyncSession) -> None:
            await campaigns_service.create_campaign(
                session,
                info,
                code=made.code,
                kind=made.kind,
                holdout_share=made.holdout_share,
                starts_at=made.starts_at,
                ends_at=made.ends_at,
            )

        try:
            await _db(request).write(work)
        except CampaignExists:
            reader.fail("code", CAMPAIGN_EXISTS)
        except InvalidHoldoutShare:
            reader.fail("holdout_share", HOLDOUT)
        except HabitueError:
            reader.fail("ends_at", AFTER_START)
    if body is None or reader.errors:
        return _form(console, reader.values, reader.errors, 422)
    return console.page.redirect(f"/admin/{info.code}/campaigns/{body.code}/report?created=1")


@router.get("/{program}/campaigns/{code}/report")
async def campaign_report(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "campaigns")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    try:
        async with _db(request).read() as session:
            report = await campaigns_service.campaign_report(session, info, code[:MAX_CODE])
    except CampaignNotFound:
        return console.not_found()
    difference = report["incremental_revenue_per_member"]
    return console.render(
        "admin/campaign.html",
        report=report,
        direction=0 if difference is None else Decimal(difference).compare(Decimal(0)),
        kinds=CAMPAIGN_KINDS,
        state=window_state(report["starts_at"], report["ends_at"], clock.now()),
        states=CAMPAIGN_STATES,
        created=bool(request.query_params.get("created")),
    )
