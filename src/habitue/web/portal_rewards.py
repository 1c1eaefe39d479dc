"""The member portal's rewards pages: catalogue and redemption, coupons, offers, referral code.

They register on the portal's router (`/app/{program}/…`) and call the rewards room's services.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import HabitueError
from habitue.members import service as members_service
from habitue.rewards import catalogue, coupons, offers, redeem, referrals
from habitue.rewards.schemas import (
    OfferRead,
    RedemptionCreate,
    RedemptionRead,
    RewardRead,
    RewardText,
)
from habitue.web.codes import qr_svg
from habitue.web.i18n import _l
from habitue.web.portal import Portal, _db, _load, _load_form, base, router

# What the member reads when a redemption or an activation is refused, by problem type.
REFUSALS = {
    "insufficient-points": _l("You do not have enough points for this reward."),
    "out-of-stock": _l("This reward is out of stock."),
    "reward-not-available": _l("This reward is not available now."),
    "member-limit-reached": _l("You have already redeemed this reward as often as allowed."),
    "period-limit-reached": _l("You have reached the limit for this reward for now."),
    "tier-not-eligible": _l("This reward is for other tiers."),
    "reward-not-redeemable": _l("This reward cannot be redeemed here."),
    "reward-not-found": _l("This reward no longer exists."),
    "member-not-active": _l("Your account is not active."),
    "offer-not-found": _l("This offer is not available to you."),
    "offer-not-active": _l("This offer is not open now."),
    "offer-already-used": _l("You have already used this offer."),
}
OTHER_REFUSAL = _l("This did not work. Please try again later.")
STATES = {
    "issued": _l("Ready to use"),
    "redeemed": _l("Used"),
    "expired": _l("Expired"),
    "canceled": _l("Canceled"),
    "voided": _l("Voided"),
}
MAX_CODE = 64


def text_of(texts: dict[str, RewardText], locale: str, default: str) -> RewardText:
    """The reward's or offer's text in the reader's language, else English, else any."""
    found = texts.get(locale) or texts.get("en") or next(iter(texts.values()), None)
    return found or RewardText(name=default)


def _refusal(exc: HabitueError) -> str:
    return REFUSALS.get(exc.type, OTHER_REFUSAL)


async def _rewards(request: Request, portal: Portal) -> list[RewardRead]:
    async with _db(request).read() as session:
        return await catalogue.list_rewards(session, portal.program, available_only=True)


def _catalogue(
    portal: Portal, items: list[RewardRead], status: int = 200, **context: Any
) -> Response:
    assert portal.member is not None
    shown = [
        (r, text_of(r.texts, portal.page.locale, r.code)) for r in items if r.kind != "partner"
    ]
    errors: dict[str, str] = context.pop("errors", {})
    codes = {r.code for r, _ in shown}
    return portal.render(
        "portal/rewards.html",
        status,
        rewards=shown,
        balance=portal.member.balance,
        errors=errors,
        general_error=next((m for c, m in errors.items() if c not in codes), None),
        **context,
    )


@router.get("/{program}/rewards")
async def rewards_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    done = request.query_params.get("redeemed", "")[:MAX_CODE]
    return _catalogue(portal, await _rewards(request, portal), redeemed=done)


@router.post("/{program}/rewards/{code}/redeem")
async def redeem_reward(request: Request, program: str, code: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    data = RedemptionCreate(reward=code[:MAX_CODE] or "-", quantity=1)

    async def work(session: AsyncSession) -> RedemptionRead:
        member = await members_service.resolve(session, info, member_id=public_id)
        return await redeem.redeem(session, info, member, data, actor="member")

    try:
        done = await _db(request).write(work)
    except HabitueError as exc:
        return _catalogue(
            portal, await _rewards(request, portal), 409, errors={code: _refusal(exc)}
        )
    target = "coupons" if done.coupon is not None else "rewards"
    return portal.page.redirect(f"{base(info)}/{target}?redeemed={done.reward}")


@router.get("/{program}/coupons")
async def coupons_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    async with _db(request).read() as session:
        member = await members_service.resolve(session, info, member_id=public_id)
        held = await coupons.for_member(session, info, member.id)
        rewards = await catalogue.list_rewards(session, info)
    names = {r.code: text_of(r.texts, portal.page.locale, r.code).name for r in rewards}
    # Bought with points or won with a purchase (a `coupon` rule): all of the member's.
    items: list[dict[str, Any]] = [
        {
            "coupon": c,
            "name": names.get(c.reward, c.reward),
            "qr": qr_svg(c.code.replace("-", "")),
        }
        for c in held
    ]
    items.sort(key=lambda i: i["coupon"].state != "issued")  # usable ones first
    return portal.render(
        "portal/coupons.html",
        coupons=items,
        states=STATES,
        redeemed=request.query_params.get("redeemed", "")[:MAX_CODE],
    )


async def _offers(request: Request, portal: Portal) -> list[tuple[OfferRead, RewardText]]:
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    async with _db(request).read() as session:
        member = await members_service.resolve(session, info, member_id=public_id)
        found = await offers.for_member(session, info, member)
    return [(o, text_of(o.texts, portal.page.locale, o.code)) for o in found]


@router.get("/{program}/offers")
async def offers_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    return portal.render("portal/offers.html", offers=await _offers(request, portal), errors={})


@router.post("/{program}/offers/{code}/clip")
async def clip_offer(request: Request, program: str, code: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id

    async def work(session: AsyncSession) -> OfferRead:
        member = await members_service.resolve(session, info, member_id=public_id)
        return await offers.clip(session, info, member, code[:MAX_CODE])

    try:
        await _db(request).write(work)
    except HabitueError as exc:
        shown = await _offers(request, portal)
        message = _refusal(exc)
        known = any(o.code == code for o, _ in shown)
        return portal.render(
            "portal/offers.html",
            409,
            offers=shown,
            errors={code: message},
            general_error=None if known else message,
        )
    return portal.page.redirect(f"{base(info)}/offers")


@router.get("/{program}/invite")
async def invite_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id

    async def work(session: AsyncSession) -> str:
        member = await members_service.resolve(session, info, member_id=public_id)
        return (await referrals.code_for(session, info, member)).code

    code = await _db(request).write(work)  # the code is made on first request
    return portal.render("portal/invite.html", code=code)
