"""The console's erasure of a member (GDPR Art. 17): owners only, after ticking a confirmation.

The same `privacy.erasure.erase` as `DELETE /v1/programs/{p}/members/{id}` and the portal's
"Close my account", in one transaction (docs/privacy.md); without the confirmation ticked the
member page comes back with the error and nothing is written.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import HabitueError
from habitue.privacy import erasure
from habitue.web.admin import _db, _member_page, _member_view
from habitue.web.admin_forms import posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

CONFIRM = _l("Tick the box to confirm: erasure cannot be undone.")
REFUSED = _l("The erasure was refused; nothing was changed.")


@router.post("/{program}/members/{member_id}/erase")
async def erase_member(request: Request, program: str, member_id: str) -> Response:
    found = await posted(request, program, "erase")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    view = await _member_view(request, console, member_id)
    if view is None:
        return console.not_found()
    error = None if form.get("confirm") == "on" else CONFIRM
    if error is None:
        public_id = view.member.id
        who = f"erasure:staff#{console.staff.id}"

        async def work(session: AsyncSession) -> None:
            await erasure.erase(session, info, public_id, actor=who)

        try:
            await _db(request).write(work)
        except HabitueError:
            error = REFUSED
    if error is not None:
        return _member_page(
            console, view, 422, values={}, errors={}, done=None, erase_error=error
        )
    return console.page.redirect(f"/admin/{info.code}/members/{view.member.id}?erased=1")
