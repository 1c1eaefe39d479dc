"""The console's member list: filters (tier, segment, RFM group, consent, status), pages,
the CSV export and an offer given to the members the filters keep.

The list is read by `habitue.web.member_list`; the offer's targets are added through the
rewards room (`offers.add_targets`) in one unit of work.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import HabitueError
from habitue.members.schemas import CHANNELS
from habitue.rewards import offers
from habitue.web import member_list
from habitue.web.admin import Console, _db, _load
from habitue.web.admin_forms import posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

NO_OFFER = _l("Choose an offer.")
OFFER_REFUSED = _l("This offer cannot be given now.")
NOBODY = _l("No member matches these filters.")


async def list_context(request: Request, console: Console) -> dict[str, Any]:
    """What the members page shows below the search: the filters and a page of members."""
    info = console.program
    assert info is not None
    filters = member_list.Filters.of(request.query_params)
    raw = request.query_params.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 19 else None
    async with _db(request).read() as session:
        rows, next_before, total = await member_list.page(session, info, filters, before=before)
        choices = await member_list.choices(session, info)
        offered = (
            await offers.list_offers(session, info) if console.staff.may("edit_offers") else []
        )
    query = filters.query()
    return {
        "filters": filters,
        "rows": rows,
        "total": total,
        "choices": choices,
        "channels": CHANNELS,
        "statuses": member_list.STATUSES,
        "next_url": f"?{urlencode({**query, 'before': next_before})}" if next_before else None,
        "first_url": f"?{urlencode(query)}" if before is not None else None,
        "csv_url": f"/admin/{info.code}/members.csv?{urlencode(query)}",
        "query": query,
        "offers": [o.offer for o in offered],
    }


@router.get("/{program}/members.csv")
async def members_csv(request: Request, program: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("members"):
        return console.denied()
    info = console.program
    assert info is not None
    filters = member_list.Filters.of(request.query_params)
    async with _db(request).read() as session:
        text = await member_list.csv_text(session, info, filters)
    name = f"members-{info.code}.csv"
    return console.page.finish(
        Response(
            "\ufeff" + text,  # a BOM, so spreadsheets read the names' accents
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


@router.post("/{program}/members/offer")
async def offer_to_filtered(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_offers")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    filters = member_list.Filters.of(form)
    code = form.get("offer", "").strip()[:64]
    query = filters.query()
    if not code:
        return await _again(request, console, NO_OFFER)

    async def work(session: AsyncSession) -> int:
        ids = await member_list.public_ids(session, info, filters)
        if ids:
            await offers.add_targets(session, info, code, ids)
        return len(ids)

    try:
        count = await _db(request).write(work)
    except HabitueError:
        return await _again(request, console, OFFER_REFUSED)
    if count == 0:
        return await _again(request, console, NOBODY)
    target = f"/admin/{info.code}/members?{urlencode({**query, 'offered': code, 'count': count})}"
    return console.page.redirect(target)


async def _again(request: Request, console: Console, error: str) -> Response:
    context = await list_context(request, console)
    return console.render("admin/members.html", 409, q="", found=[], offer_error=error, **context)
