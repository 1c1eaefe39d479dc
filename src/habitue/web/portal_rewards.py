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
from habitue.members.schemas import MemberUpdate
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
ORDER_STATUSES = {
    "ordered": _l("Ordered: we are preparing it"),
    "shipped": _l("Shipped: on its way to you"),
    "delivered": _l("Delivered"),
    "donated": _l("Donated"),
    "issued": _l("Coupon ready"),
    "canceled": _l("Canceled: your points were given back"),
}
ADDRESS = "delivery_address"
"""The member attribute holding the address products are sent to (exported and erased with
the member's other attributes)."""
ADDRESS_FIELDS = {
    "name": (_l("Name on the parcel"), 200),
    "street": (_l("Street and number"), 300),
    "postcode": (_l("Postcode"), 20),
    "city": (_l("City"), 100),
    "country": (_l("Country"), 100),
}
ADDRESS_MISSING = _l("Fill in this part of the delivery address.")
CONFIRM_FIRST = _l("Confirm that you want to spend your points on this reward.")


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
        orders=context.pop("orders", []),
        order_statuses=ORDER_STATUSES,
        **context,
    )


async def _orders(request: Request, portal: Portal, items: list[RewardRead]) -> list[Any]:
    """The member's products and donations, newest first, with the reward's name (coupons
    have their own page)."""
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    async with _db(request).read() as session:
        member = await members_service.resolve(session, info, member_id=public_id)
        done = await redeem.for_member(session, info, member, limit=50)
        every = await catalogue.list_rewards(session, info)
    names = {r.code: text_of(r.texts, portal.page.locale, r.code).name for r in every or items}
    return [(d, names.get(d.reward, d.reward)) for d in done if d.coupon is None]


def _available(portal: Portal) -> int:
    assert portal.member is not None
    return portal.member.balance.available if portal.member.balance else 0


def _address_of(member: Any) -> dict[str, str]:
    stored = (member.attributes or {}).get(ADDRESS) if member is not None else None
    if not isinstance(stored, dict):
        return {}
    return {k: str(stored.get(k) or "") for k in ADDRESS_FIELDS}


def _confirm_page(
    portal: Portal,
    reward: RewardRead,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    assert portal.member is not None
    available = _available(portal)
    return portal.render(
        "portal/redeem.html",
        status,
        reward=reward,
        text=text_of(reward.texts, portal.page.locale, reward.code),
        available=available,
        after=available - reward.cost_points,
        values=values if values is not None else _address_of(portal.member),
        errors=errors or {},
        address_fields=ADDRESS_FIELDS,
    )


@router.get("/{program}/rewards")
async def rewards_page(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    done = request.query_params.get("redeemed", "")[:MAX_CODE]
    items = await _rewards(request, portal)
    return _catalogue(portal, items, redeemed=done, orders=await _orders(request, portal, items))


@router.get("/{program}/rewards/{code}")
async def confirm_reward(request: Request, program: str, code: str) -> Response:
    """The step before spending: what it costs, what is left, and where a product goes."""
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    items = await _rewards(request, portal)
    reward = next((r for r in items if r.code == code and r.kind != "partner"), None)
    if reward is None:
        return _catalogue(portal, items, 404, errors={code: REFUSALS["reward-not-found"]})
    assert portal.member is not None
    if _available(portal) < reward.cost_points:
        return _confirm_page(portal, reward, errors={"reward": REFUSALS["insufficient-points"]})
    return _confirm_page(portal, reward)


def _posted_address(form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    values = {
        k: form.get(f"address_{k}", "").strip()[:size] for k, (_, size) in ADDRESS_FIELDS.items()
    }
    errors = {f"address_{k}": ADDRESS_MISSING for k, v in values.items() if not v}
    return values, errors


@router.post("/{program}/rewards/{code}/redeem")
async def redeem_reward(request: Request, program: str, code: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    data = RedemptionCreate(reward=code[:MAX_CODE] or "-", quantity=1)
    items = await _rewards(request, portal)
    reward = next((r for r in items if r.code == code and r.kind != "partner"), None)
    if reward is None:
        return _catalogue(portal, items, 409, errors={code: REFUSALS["reward-not-found"]})
    if _available(portal) < reward.cost_points:
        # refused where the member is looking: on the page of the reward they chose
        errors = {"reward": REFUSALS["insufficient-points"]}
        return _confirm_page(portal, reward, 409, errors=errors)
    address: dict[str, str] | None = None
    if reward.kind == "product":
        address, missing = _posted_address(form)
        if missing:
            return _confirm_page(portal, reward, 422, values=address, errors=missing)
    if form.get("confirm") != "yes":
        values = address if address is not None else None
        return _confirm_page(portal, reward, 422, values=values, errors={"reward": CONFIRM_FIRST})

    async def work(session: AsyncSession) -> RedemptionRead:
        member = await members_service.resolve(
            session, info, member_id=public_id, reads=(members_service.LOCKED_STATUS,)
        )
        done = await redeem.redeem(session, info, member, data, actor="member")
        if address is not None:  # kept with the member: exported and erased with them
            update = MemberUpdate(attributes={ADDRESS: address})
            await members_service.update_member(session, info, public_id, update, actor="member")
        return done

    try:
        done = await _db(request).write(work)
    except HabitueError as exc:
        return _confirm_page(portal, reward, 409, values=address, errors={"reward": _refusal(exc)})
    target = "coupons" if done.coupon is not None else "rewards"
    anchor = "" if done.coupon is not None else "#orders"
    return portal.page.redirect(f"{base(info)}/{target}?redeemed={done.reward}{anchor}")


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
    link = f"{portal.page.settings.base_url}{base(info)}/signup?ref={code}"
    return portal.render("portal/invite.html", code=code, link=link)
