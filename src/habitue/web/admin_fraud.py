"""The console's fraud queue: members held by the velocity limits, released or suspended.

Owners and support agents. The page lists the open holds (oldest first), or the decided ones
on request; a decision goes through the privacy room's `fraud.decide`, the same as
`POST /v1/programs/{p}/fraud/holds/{id}/release|suspend` (docs/privacy.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import Conflict, NotFound
from habitue.privacy import fraud
from habitue.web.admin import _db
from habitue.web.admin_forms import actor, console_for, posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

RULES = {
    "purchases_per_hour": _l("Too many purchases within an hour"),
    "refunds_per_day": _l("Too many refunds within a day"),
    "max_speed_kmh": _l("Card used at distant places"),
}
"""What each velocity rule (`fraud.Limits`) is called on the page."""
HOLD_STATUSES = {
    fraud.HELD: _l("Held for review"),
    fraud.RELEASED: _l("Released"),
    fraud.SUSPENDED: _l("Suspended"),
}
DONE = {"released": _l("The member was released: they earn and spend again."),
        "suspended": _l("The member was suspended.")}
_MAX_ID = 2**63 - 1


@router.get("/{program}/fraud")
async def fraud_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "fraud")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    status = request.query_params.get("status", fraud.HELD)
    if status not in HOLD_STATUSES:
        status = fraud.HELD
    async with _db(request).read() as session:
        holds = await fraud.queue(session, info, status=status, limit=200)
    done = request.query_params.get("done")
    return console.render(
        "admin/fraud.html",
        holds=holds,
        shown=status,
        statuses=HOLD_STATUSES,
        rules=RULES,
        done=DONE.get(done or ""),
        failed=request.query_params.get("failed") == "1",
    )


async def _decide(request: Request, program: str, hold_id: str, *, release: bool) -> Response:
    found = await posted(request, program, "fraud")
    if isinstance(found, Response):
        return found
    console, _form = found
    info = console.program
    assert info is not None
    if not hold_id.isdigit() or not 0 < int(hold_id) <= _MAX_ID:
        return console.not_found()
    who = actor(console)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await fraud.decide(session, info, int(hold_id), release=release, actor=who)

    try:
        await _db(request).write(work)
    except NotFound:
        return console.not_found()
    except Conflict:  # decided meanwhile (another reviewer, the API)
        return console.page.redirect(f"/admin/{info.code}/fraud?failed=1")
    done = fraud.RELEASED if release else fraud.SUSPENDED
    return console.page.redirect(f"/admin/{info.code}/fraud?done={done}")


@router.post("/{program}/fraud/{hold_id}/release")
async def release_hold(request: Request, program: str, hold_id: str) -> Response:
    return await _decide(request, program, hold_id, release=True)


@router.post("/{program}/fraud/{hold_id}/suspend")
async def suspend_hold(request: Request, program: str, hold_id: str) -> Response:
    return await _decide(request, program, hold_id, release=False)
