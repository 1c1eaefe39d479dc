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
from habitue.analytics.errors import (
    CampaignExists,
    CampaignNotFound,
    InvalidHoldoutShare,
    UnknownCampaignSubject,
)
from habitue.analytics.schemas import CampaignCreate
from habitue.errors import HabitueError
from habitue.messaging import newsletters as newsletters_service
from habitue.rewards import offers as offers_service
from habitue.rules import service as rules_service
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import (
    AFTER_START,
    CHECK,
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
SUBJECT = _l("Choose the rule, offer or newsletter this campaign measures.")
CAMPAIGN_FIELDS = {
    "code": CAMPAIGN_CODE,
    "kind": SUBJECT,
    "subject": SUBJECT,
    "holdout_share": HOLDOUT,
    "starts_at": CHECK,
    "ends_at": CHECK,
}
FORM = ("code", "subject", "holdout_share", "starts_at", "ends_at")


async def subjects(request: Request, console: Console) -> list[tuple[str, list[tuple[str, str]]]]:
    """What a campaign may measure, per kind: (kind, [(value "kind:code", label)])."""
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        offers = [o.offer for o in await offers_service.list_offers(session, info)]
        rules = (await rules_service.list_rules(session, info)).items
        letters = await newsletters_service.list_newsletters(session, info)
    return [
        ("offer", [(f"offer:{o.code}", o.code) for o in offers]),
        ("rule", [(f"rule:{r.code}", f"{r.name} ({r.code})" if r.name else r.code) for r in rules]),
        ("newsletter", [(f"newsletter:{n['code']}", n["code"]) for n in letters]),
    ]


def subject_link(program: str, kind: str, code: str | None) -> str | None:
    """The console page of a campaign's subject."""
    if code is None:
        return None
    if kind == "rule":
        return f"/admin/{program}/rules/{code}/history"
    if kind == "offer":
        return f"/admin/{program}/offers"
    return f"/admin/{program}/newsletters"


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


async def _form(
    request: Request,
    console: Console,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return console.render(
        "admin/campaign_form.html",
        status,
        values=values,
        errors=errors,
        kinds=CAMPAIGN_KINDS,
        subjects=await subjects(request, console),
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
        "subject": request.query_params.get("subject", "")[:80],
        "holdout_share": "10",
        "starts_at": local_input(start, info.timezone),
        "ends_at": local_input(start + timedelta(days=28), info.timezone),
    }
    return await _form(request, console, values, {})


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
    kind, _, subject = reader.values["subject"].partition(":")
    if kind not in CAMPAIGN_KINDS or not subject:
        reader.fail("subject", SUBJECT)
    data = {
        "code": reader.text("code", required=True, max_length=MAX_CODE),
        "kind": kind if kind in CAMPAIGN_KINDS else None,
        "subject": subject or None,
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
                subject=made.subject,
            )

        try:
            await _db(request).write(work)
        except CampaignExists:
            reader.fail("code", CAMPAIGN_EXISTS)
        except UnknownCampaignSubject:
            reader.fail("subject", SUBJECT)
        except InvalidHoldoutShare:
            reader.fail("holdout_share", HOLDOUT)
        except HabitueError:
            reader.fail("ends_at", AFTER_START)
    if body is None or reader.errors:
        return await _form(request, console, reader.values, reader.errors, 422)
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
        subject_url=subject_link(info.code, report["kind"], report.get("subject")),
        states=CAMPAIGN_STATES,
        created=bool(request.query_params.get("created")),
    )
