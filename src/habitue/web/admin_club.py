"""The console's club page: the plans, the subscribers (trials, waiting for payment, overdue,
canceled), a payment recorded at the counter and a cancellation — through the clubs room's
services (`clubs.service.record_payment`, `clubs.service.cancel`), one unit of work each."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs import service as clubs_service
from habitue.clubs.models import ClubPlan, ClubSubscription
from habitue.clubs.schemas import CancelRequest, PaymentRecord
from habitue.db import table_of
from habitue.errors import HabitueError
from habitue.members.models import Member
from habitue.programs.service import ProgramInfo
from habitue.web.admin import Console, _db, _load
from habitue.web.admin_forms import posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)
_subs = table_of(ClubSubscription)
_plans = table_of(ClubPlan)
_members = table_of(Member)

SHOWN = ("trialing", "incomplete", "active", "past_due", "canceled", "expired")
DONE = {
    "paid": _l("The payment is recorded: the membership is active."),
    "canceled": _l("The membership is canceled."),
}
PAYMENT_REFUSED = _l("This payment could not be recorded.")
CANCEL_REFUSED = _l("This membership cannot be canceled any more.")
AMOUNT = _l("Enter the amount paid, such as 9.90.")


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    member_id: str
    name: str
    plan: str
    status: str
    trial_end: datetime | None
    period_end: datetime
    cancel_at_period_end: bool


async def _subscribers(
    session: AsyncSession, program: ProgramInfo, status: str | None, limit: int = 200
) -> tuple[list[Subscriber], dict[str, int]]:
    query = (
        select(
            _subs.c.id,
            _subs.c.status,
            _subs.c.trial_end,
            _subs.c.current_period_end,
            _subs.c.cancel_at_period_end,
            _members.c.public_id,
            _members.c.first_name,
            _members.c.last_name,
            _plans.c.name.label("plan"),
        )
        .join(_members, _members.c.id == _subs.c.member_id)
        .join(_plans, _plans.c.id == _subs.c.plan_id)
        .where(_subs.c.program_id == program.id)
    )
    if status:
        query = query.where(_subs.c.status == status)
    rows = (await session.execute(query.order_by(_subs.c.created_at.desc()).limit(limit))).all()
    counts = {
        str(s): int(n)
        for s, n in await session.execute(
            select(_subs.c.status, func.count())
            .where(_subs.c.program_id == program.id)
            .group_by(_subs.c.status)
        )
    }
    return [
        Subscriber(
            id=str(r.id),
            member_id=str(r.public_id),
            name=" ".join(p for p in (r.first_name, r.last_name) if p) or str(r.public_id)[-8:],
            plan=str(r.plan),
            status=str(r.status),
            trial_end=clock.as_utc(r.trial_end) if r.trial_end else None,
            period_end=clock.as_utc(r.current_period_end),
            cancel_at_period_end=bool(r.cancel_at_period_end),
        )
        for r in rows
    ], counts


async def _page(
    request: Request,
    console: Console,
    status: int = 200,
    *,
    errors: dict[str, str] | None = None,
    show: str = "",
) -> Response:
    info = console.program
    assert info is not None
    wanted = show if show in SHOWN else None
    async with _db(request).read() as session:
        plans = await clubs_service.list_plans(session, info)
        subscribers, counts = await _subscribers(session, info, wanted)
    done = request.query_params.get("done", "")
    return console.render(
        "admin/club.html",
        status,
        plans=plans,
        subscribers=subscribers,
        counts=counts,
        shown=SHOWN,
        show=wanted or "",
        errors=errors or {},
        done=DONE.get(done, ""),
    )


@router.get("/{program}/club")
async def club(request: Request, program: str, show: str = "") -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("members"):
        return console.denied()
    return await _page(request, console, show=show)


@router.post("/{program}/club/{sub_id}/payment")
async def counter_payment(request: Request, program: str, sub_id: str) -> Response:
    found = await posted(request, program, "adjust")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    amount = form.get("amount", "").strip().replace(",", ".")[:20]
    key = sub_id[:36]
    try:
        data = PaymentRecord(
            amount=amount or "-",
            reference=f"counter:{form.get('nonce', '')[:40] or secrets.token_hex(8)}",
        )
    except ValueError:
        return await _page(request, console, 422, errors={key: AMOUNT})

    async def work(session: AsyncSession) -> Any:
        return await clubs_service.record_payment(session, info, key, data)

    try:
        await _db(request).write(work)
    except HabitueError as exc:
        message = AMOUNT if exc.status == 422 else PAYMENT_REFUSED
        return await _page(request, console, 409, errors={key: message})
    return console.page.redirect(f"/admin/{info.code}/club?done=paid#sub-{key}")


@router.post("/{program}/club/{sub_id}/cancel")
async def cancel(request: Request, program: str, sub_id: str) -> Response:
    found = await posted(request, program, "adjust")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    key = sub_id[:36]
    data = CancelRequest(at_period_end=form.get("when") != "now")
    try:
        await _db(request).write(lambda s: clubs_service.cancel(s, info, key, data))
    except HabitueError:
        return await _page(request, console, 409, errors={key: CANCEL_REFUSED})
    return console.page.redirect(f"/admin/{info.code}/club?done=canceled#sub-{key}")
