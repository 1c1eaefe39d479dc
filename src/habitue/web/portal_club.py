"""The member portal's paid club page: the plans, my subscription, join and cancel.

It registers on the portal's router (`/app/{program}/club`) and calls the clubs room. A member
joins with the `manual` provider: the first payment is taken at the counter (or by the
program's own billing) and recorded by staff, which activates the subscription; a plan with a
trial starts at once.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.clubs import service as clubs_service
from habitue.clubs.schemas import CancelRequest, PlanRead, SubscriptionCreate, SubscriptionRead
from habitue.errors import HabitueError
from habitue.members import service as members_service
from habitue.web.i18n import _l
from habitue.web.portal import Portal, _db, _load, _load_form, base, router

PERIODS = {"monthly": _l("per month"), "yearly": _l("per year")}
STATUSES = {
    "incomplete": _l("Waiting for your first payment"),
    "trialing": _l("Free trial"),
    "active": _l("Active"),
    "past_due": _l("Payment overdue"),
    "canceled": _l("Canceled"),
    "expired": _l("Ended"),
}
REFUSALS = {
    "club-already-subscribed": _l("You are already a member of the club."),
    "club-plan-not-found": _l("This plan is no longer offered."),
    "club-already-canceled": _l("Your membership is already canceled."),
    "club-subscription-ended": _l("Your membership has already ended."),
    "member-not-active": _l("Your account is not active."),
}
OTHER_REFUSAL = _l("This did not work. Please try again later.")
MAX_CODE = 64


def _live(subs: list[SubscriptionRead]) -> SubscriptionRead | None:
    return next((s for s in subs if s.status in clubs_service.LIVE), None)


async def _club(request: Request, portal: Portal) -> tuple[list[PlanRead], list[SubscriptionRead]]:
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    async with _db(request).read() as session:
        member = await members_service.resolve(session, info, member_id=public_id)
        plans = await clubs_service.list_plans(session, info)
        subs = await clubs_service.member_subscriptions(session, info, member)
    return plans, subs


async def _page(
    request: Request, portal: Portal, status: int = 200, error: str | None = None
) -> Response:
    plans, subs = await _club(request, portal)
    return portal.render(
        "portal/club.html",
        status,
        plans=plans,
        boosted={p.code for p in plans if Decimal(p.multiplier) != 1},
        live=_live(subs),
        past=[s for s in subs if s.status not in clubs_service.LIVE],
        periods=PERIODS,
        statuses=STATUSES,
        error=error,
        done=request.query_params.get("done", "")[:MAX_CODE],
    )


@router.get("/{program}/club")
async def club_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    return await _page(request, portal)


@router.post("/{program}/club/join")
async def join_club(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    data = SubscriptionCreate(plan=form.get("plan", "")[:MAX_CODE] or "-", provider="manual")

    async def work(session: AsyncSession) -> SubscriptionRead:
        member = await members_service.resolve(session, info, member_id=public_id)
        return await clubs_service.subscribe(session, info, member, data)

    try:
        await _db(request).write(work)
    except HabitueError as exc:
        return await _page(request, portal, 409, error=REFUSALS.get(exc.type, OTHER_REFUSAL))
    return portal.page.redirect(f"{base(info)}/club?done=joined")


@router.post("/{program}/club/cancel")
async def cancel_club(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, _form = loaded
    assert portal.member is not None
    info = portal.program
    live = _live((await _club(request, portal))[1])
    if live is None:
        return await _page(request, portal, 409, error=REFUSALS["club-subscription-ended"])
    sub_id = live.id

    async def work(session: AsyncSession) -> SubscriptionRead:
        return await clubs_service.cancel(session, info, sub_id, CancelRequest(at_period_end=True))

    try:
        await _db(request).write(work)
    except HabitueError as exc:
        return await _page(request, portal, 409, error=REFUSALS.get(exc.type, OTHER_REFUSAL))
    return portal.page.redirect(f"{base(info)}/club?done=canceled")
