"""The console's rewards pages: the catalogue, recent redemptions and their fulfilment, and the
forms that create and change a reward.

Reads go through `rewards.catalogue` and `rewards.redeem`; each form writes through one of their
functions in one unit of work (`catalogue.create`, `catalogue.update_reward`, `redeem.fulfil`,
`redeem.cancel`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from habitue import clock
from habitue.errors import ValidationFailed
from habitue.rewards import catalogue, redeem
from habitue.rewards.errors import (
    InvalidFulfilment,
    RedemptionNotCancelable,
    RedemptionNotFound,
    RewardExists,
    RewardInUse,
    RewardNotFound,
)
from habitue.rewards.schemas import RewardCreate, RewardRead, RewardUpdate
from habitue.web import queries
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import (
    AFTER_START,
    CHECK,
    CHOOSE,
    CODE_RULE,
    MAX_CODE,
    MONEY,
    ONE_OF_VALUE_OR_PERCENT,
    PERCENT,
    PLACEHOLDERS,
    TEXT_FIELDS,
    FormReader,
    actor,
    check_order,
    console_for,
    local_input,
    posted,
)
from habitue.web.admin_tiers import ladder_view
from habitue.web.i18n import _l
from habitue.web.portal_rewards import STATES as COUPON_STATES
from habitue.web.portal_rewards import text_of

router = APIRouter(prefix="/admin", include_in_schema=False)

REWARD_KINDS = {
    "product": _l("Product"),
    "voucher": _l("Voucher"),
    "discount": _l("Discount"),
    "free_product": _l("Free product"),
    "experience": _l("Experience"),
    "donation": _l("Donation"),
    "partner": _l("Partner currency"),
}
PERIODS = {
    "day": _l("Per day"),
    "week": _l("Per week"),
    "month": _l("Per month"),
    "year": _l("Per year"),
}
REWARD_STATES = {
    "available": _l("Available"),
    "inactive": _l("Inactive"),
    "upcoming": _l("Not yet open"),
    "ended": _l("Ended"),
    "out_of_stock": _l("Out of stock"),
}
REDEMPTION_STATUSES = {
    "ordered": _l("Ordered"),
    "shipped": _l("Shipped"),
    "delivered": _l("Delivered"),
    "issued": _l("Coupon issued"),
    "donated": _l("Donated"),
    "canceled": _l("Canceled"),
}
DONE = {
    "shipped": _l("The redemption is marked as shipped."),
    "delivered": _l("The redemption is marked as delivered."),
    "canceled": _l("The redemption is canceled; its points went back to the member."),
}
NOT_NEXT_STEP = _l("This step does not follow the redemption's current status.")
NOT_CANCELABLE = _l("This redemption can no longer be canceled.")
REWARD_EXISTS = _l("A reward with this code exists already.")
IN_USE = _l("A rule gives coupons of this reward: change or delete the rule first.")
COST = _l("Enter a whole number of points, at least 1.")
STOCK = _l("Enter a whole number, 0 or more; leave empty for no limit.")
AT_LEAST_ONE = _l("Enter a whole number, at least 1; leave empty for no limit.")
COUPON_DAYS = _l("Enter a number of days from 1 to 3650; leave empty for none.")
RATE = _l("Enter a rate above 0, such as 0.5.")
REWARD_FIELDS = {
    "code": CODE_RULE,
    "kind": CHOOSE,
    "cost_points": COST,
    "percent": PERCENT,
    "stock": STOCK,
    "per_member_limit": AT_LEAST_ONE,
    "period_limit": AT_LEAST_ONE,
    "coupon_days": COUPON_DAYS,
    "sku": CHECK,
    "cause": CHECK,
    "partner_code": CHECK,
    "partner_rate": RATE,
    "value": MONEY,
    "cap": MONEY,
    "min_basket": MONEY,
    "valid_from": CHECK,
    "valid_until": CHECK,
}
REWARD_RULES = {
    "period and period_limit": (
        "period_limit",
        _l("Give both a period and a limit per period, or neither."),
    ),
    "valid_until must be after": ("valid_until", AFTER_START),
    "voucher needs a value": ("value", _l("A voucher needs a value.")),
    "discount needs exactly one": ("value", ONE_OF_VALUE_OR_PERCENT),
    "free product needs a sku": ("sku", _l("A free product needs its SKU.")),
    "donation needs a cause": ("cause", _l("A donation needs a cause.")),
    "partner conversion needs": (
        "partner_rate",
        _l("A conversion to a partner's currency needs a rate."),
    ),
}
CREATE_FIELDS = (
    "code", "kind", "cost_points", "value", "percent", "cap", "min_basket", "sku", "cause",
    "partner_code", "partner_rate", "stock", "per_member_limit", "period", "period_limit",
    "coupon_days", "valid_from", "valid_until", "active", *TEXT_FIELDS,
)  # fmt: skip
EDIT_FIELDS = (
    "cost_points", "stock", "per_member_limit", "coupon_days", "valid_from", "valid_until",
    "active", *TEXT_FIELDS,
)  # fmt: skip


def reward_state(reward: RewardRead, now: datetime) -> str:
    """Where a reward stands for members now: a key of `REWARD_STATES`."""
    if not reward.active:
        return "inactive"
    if reward.valid_from is not None and now < reward.valid_from:
        return "upcoming"
    if reward.valid_until is not None and now >= reward.valid_until:
        return "ended"
    if reward.stock == 0:
        return "out_of_stock"
    return "available"


async def _rewards_page(
    request: Request,
    console: Console,
    *,
    show: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
    done: str = "",
) -> Response:
    info = console.program
    assert info is not None
    shown = show if show in REDEMPTION_STATUSES else ""
    async with _db(request).read() as session:
        items = await catalogue.list_rewards(session, info)
        recent = await redeem.recent(session, info, status=shown or None, limit=50)
        to_ship = [d.member_id for d in recent if d.kind == "product" and d.status == "ordered"]
        addresses = await queries.delivery_addresses(session, info, to_ship)
    now = clock.now()
    locale = console.page.locale
    names = {r.code: text_of(r.texts, locale, r.code).name for r in items}
    return console.render(
        "admin/rewards.html",
        status,
        rewards=[(r, names[r.code], reward_state(r, now)) for r in items],
        redemptions=recent,
        addresses=addresses,
        names=names,
        show=shown,
        kinds=REWARD_KINDS,
        states=REWARD_STATES,
        statuses=REDEMPTION_STATUSES,
        coupon_states=COUPON_STATES,
        errors=errors or {},
        done=DONE.get(done, ""),
        saved=request.query_params.get("saved", "")[:MAX_CODE],
    )


@router.get("/{program}/rewards")
async def rewards(request: Request, program: str, show: str = "", done: str = "") -> Response:
    console = await console_for(request, program, "rewards")
    if isinstance(console, Response):
        return console
    return await _rewards_page(request, console, show=show, done=done)


@router.post("/{program}/redemptions/{redemption_id}/status")
async def redemption_status(request: Request, program: str, redemption_id: str) -> Response:
    found = await posted(request, program, "fulfil")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    wanted = form.get("status", "")
    show = form.get("show", "")
    public_id = redemption_id[:36]
    errors: dict[str, str] = {}
    who = actor(console)
    try:
        if wanted == "canceled":
            await _db(request).write(lambda s: redeem.cancel(s, info, public_id, actor=who))
        elif wanted in ("shipped", "delivered"):
            await _db(request).write(lambda s: redeem.fulfil(s, info, public_id, wanted))
        else:
            errors[public_id] = CHOOSE
    except RedemptionNotFound:
        return console.not_found()
    except InvalidFulfilment:
        errors[public_id] = NOT_NEXT_STEP
    except RedemptionNotCancelable:
        errors[public_id] = NOT_CANCELABLE
    if errors:
        return await _rewards_page(request, console, show=show, errors=errors, status=409)
    target = f"/admin/{info.code}/rewards?done={wanted}"
    if show in REDEMPTION_STATUSES:
        target += f"&show={show}"
    return console.page.redirect(target + "#redemptions")


async def _tier_codes(request: Request, console: Console) -> list[tuple[str, str]]:
    ladder = await ladder_view(request, console)
    return [(t.code, t.name) for t in ladder.tiers] if ladder else []


def _reward_form(
    console: Console,
    *,
    reward: RewardRead | None,
    values: dict[str, str],
    errors: dict[str, str],
    tiers: list[tuple[str, str]],
    status: int = 200,
) -> Response:
    return console.render(
        "admin/reward_form.html",
        status,
        reward=reward,
        values=values,
        errors=errors,
        tiers=tiers,
        kinds=REWARD_KINDS,
        periods=PERIODS,
    )


def _reward_values(reward: RewardRead, timezone: str) -> dict[str, str]:
    values = {
        "cost_points": str(reward.cost_points),
        "stock": "" if reward.stock is None else str(reward.stock),
        "per_member_limit": "" if reward.per_member_limit is None else str(reward.per_member_limit),
        "coupon_days": "" if reward.coupon_days is None else str(reward.coupon_days),
        "valid_from": local_input(reward.valid_from, timezone),
        "valid_until": local_input(reward.valid_until, timezone),
        "active": "on" if reward.active else "",
    }
    for locale, text in reward.texts.items():
        values[f"name_{locale}"] = text.name
        values[f"description_{locale}"] = text.description
    for tier in reward.tiers or []:
        values[f"tier_{tier}"] = "on"
    return values


def _chosen_tiers(reader: FormReader, form: dict[str, str], tiers: list[tuple[str, str]]) -> Any:
    chosen = [code for code, _ in tiers if form.get(f"tier_{code}")]
    for code in chosen:
        reader.values[f"tier_{code}"] = "on"
    return chosen or None


def _limits(reader: FormReader) -> dict[str, Any]:
    """The fields a reward's creation and its edits share."""
    return {
        "cost_points": reader.integer("cost_points", required=True, minimum=1, message=COST),
        "stock": reader.integer("stock", message=STOCK),
        "per_member_limit": reader.integer("per_member_limit", minimum=1, message=AT_LEAST_ONE),
        "coupon_days": reader.integer("coupon_days", minimum=1, maximum=3650, message=COUPON_DAYS),
        "valid_from": reader.moment("valid_from"),
        "valid_until": reader.moment("valid_until"),
        "active": reader.checked("active"),
        "texts": reader.texts(),
    }


@router.get("/{program}/rewards/new")
async def new_reward(request: Request, program: str) -> Response:
    console = await console_for(request, program, "edit_rewards")
    if isinstance(console, Response):
        return console
    tiers = await _tier_codes(request, console)
    values = {"kind": "voucher", "active": "on"}
    return _reward_form(console, reward=None, values=values, errors={}, tiers=tiers)


@router.post("/{program}/rewards/new")
async def create_reward(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_rewards")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    tiers = await _tier_codes(request, console)
    reader = FormReader(form, CREATE_FIELDS, info.timezone)
    exp = info.currency_exponent
    kind = reader.values["kind"]
    if kind not in REWARD_KINDS:
        reader.fail("kind", CHOOSE)
    period = reader.values["period"] or None
    if period is not None and period not in PERIODS:
        reader.fail("period", CHOOSE)
    percent = reader.decimal("percent", message=PERCENT, above=Decimal(0), at_most=Decimal(100))
    rate = reader.decimal("partner_rate", message=RATE, above=Decimal(0))
    data = {
        "code": reader.text("code", required=True, max_length=MAX_CODE),
        "kind": kind,
        "value": reader.money("value", exp),
        "percent": None if percent is None else str(percent),
        "cap": reader.money("cap", exp),
        "min_basket": reader.money("min_basket", exp),
        "sku": reader.text("sku", max_length=100),
        "cause": reader.text("cause"),
        "partner_code": reader.text("partner_code", max_length=MAX_CODE),
        "partner_rate": None if rate is None else str(rate),
        "period": period,
        "period_limit": reader.integer("period_limit", minimum=1, message=AT_LEAST_ONE),
        "tiers": _chosen_tiers(reader, form, tiers),
        **_limits(reader),
    }
    check_order(reader, data, "valid_from", "valid_until")
    create = reader.validate(
        RewardCreate,
        data,
        fields=REWARD_FIELDS,
        rules=REWARD_RULES,
        fallback="kind",
        placeholders=PLACEHOLDERS,
    )
    if create is not None:
        made = create
        try:
            await _db(request).write(lambda s: catalogue.create(s, info, made))
        except RewardExists:
            reader.fail("code", REWARD_EXISTS)
        except ValidationFailed as exc:
            field = str(exc.errors[0]["field"]) if exc.errors else "value"
            reader.fail(field if field in reader.values else "value", MONEY)
    if create is None or reader.errors:
        return _reward_form(
            console,
            reward=None,
            values=reader.values,
            errors=reader.errors,
            tiers=tiers,
            status=422,
        )
    return console.page.redirect(f"/admin/{info.code}/rewards?saved={create.code}")


async def _reward(request: Request, console: Console, code: str) -> RewardRead | None:
    info = console.program
    assert info is not None
    try:
        async with _db(request).read() as session:
            return await catalogue.get(session, info, code[:MAX_CODE])
    except RewardNotFound:
        return None


@router.get("/{program}/rewards/{code}/edit")
async def reward_form(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "edit_rewards")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    reward = await _reward(request, console, code)
    if reward is None:
        return console.not_found()
    tiers = await _tier_codes(request, console)
    values = _reward_values(reward, info.timezone)
    return _reward_form(console, reward=reward, values=values, errors={}, tiers=tiers)


@router.post("/{program}/rewards/{code}/edit")
async def save_reward(request: Request, program: str, code: str) -> Response:
    found = await posted(request, program, "edit_rewards")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    reward = await _reward(request, console, code)
    if reward is None:
        return console.not_found()
    tiers = await _tier_codes(request, console)
    reader = FormReader(form, EDIT_FIELDS, info.timezone)
    data = {**_limits(reader), "tiers": _chosen_tiers(reader, form, tiers)}
    for locale, text in data["texts"].items():  # the form does not show images: keep them
        kept = reward.texts.get(locale)
        if kept is not None and kept.image_url:
            data["texts"][locale] = text.model_copy(update={"image_url": kept.image_url})
    check_order(reader, data, "valid_from", "valid_until")
    update = reader.validate(
        RewardUpdate,
        data,
        fields=REWARD_FIELDS,
        rules=REWARD_RULES,
        fallback="cost_points",
        placeholders=PLACEHOLDERS,
    )
    if update is not None:
        changes = update
        try:
            await _db(request).write(
                lambda s: catalogue.update_reward(s, info, reward.code, changes)
            )
        except RewardNotFound:
            return console.not_found()
        except RewardInUse:
            reader.fail("active", IN_USE)
        except ValidationFailed:
            reader.fail("cost_points", CHECK)
    if reader.errors:
        return _reward_form(
            console,
            reward=reward,
            values=reader.values,
            errors=reader.errors,
            tiers=tiers,
            status=422,
        )
    return console.page.redirect(f"/admin/{info.code}/rewards?saved={reward.code}")
