"""The console's personal offers: the list with targets, activations and uses, and a new offer.

Through `rewards.offers.list_offers` and `rewards.offers.create`; a dynamic segment may be
targeted (`analytics.segments`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from habitue import clock
from habitue.analytics import segments as segments_service
from habitue.analytics.errors import SegmentNotFound
from habitue.errors import ValidationFailed
from habitue.members.errors import MemberNotFound
from habitue.rewards import offers
from habitue.rewards.errors import OfferExists
from habitue.rewards.schemas import OfferCreate
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import (
    AFTER_START,
    CHECK,
    CHOOSE,
    CODE_RULE,
    FAR_FUTURE,
    FAR_PAST,
    MAX_CODE,
    MONEY,
    ONE_OF_VALUE_OR_PERCENT,
    PERCENT,
    PLACEHOLDERS,
    TEXT_FIELDS,
    WINDOW_STATES,
    FormReader,
    check_order,
    console_for,
    local_input,
    posted,
    window_state,
)
from habitue.web.i18n import _l
from habitue.web.portal_rewards import text_of

router = APIRouter(prefix="/admin", include_in_schema=False)

OFFER_EXISTS = _l("An offer with this code exists already.")
TARGETS = _l("Give member ids, a segment, or both.")
NOT_A_MEMBER = _l("One of these is not the id of a member of this program.")
NO_SEGMENT = _l("This segment does not exist.")
OFFER_FIELDS = {
    "code": CODE_RULE,
    "percent": PERCENT,
    "value": MONEY,
    "cap": MONEY,
    "min_basket": MONEY,
    "starts_at": CHECK,
    "ends_at": CHECK,
    "members": CHECK,
    "segment": CHOOSE,
}
OFFER_RULES = {
    "ends_at must be after": ("ends_at", AFTER_START),
    "exactly one of value or percent": ("value", ONE_OF_VALUE_OR_PERCENT),
}
OFFER_FORM = (
    "code", "value", "percent", "cap", "min_basket", "starts_at", "ends_at", "members",
    "segment", *TEXT_FIELDS,
)  # fmt: skip
MAX_TARGETS = 10_000


@router.get("/{program}/offers")
async def offers_list(request: Request, program: str) -> Response:
    console = await console_for(request, program, "offers")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        items = await offers.list_offers(session, info)
    now = clock.now()
    locale = console.page.locale
    return console.render(
        "admin/offers.html",
        offers=[
            (
                o,
                text_of(o.offer.texts, locale, o.offer.code).name,
                window_state(o.offer.starts_at, o.offer.ends_at, now),
            )
            for o in items
        ],
        states=WINDOW_STATES,
        saved=request.query_params.get("saved", "")[:MAX_CODE],
    )


async def _segments(request: Request, console: Console) -> list[tuple[str, str, int]]:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        found = await segments_service.list_segments(session, info)
    return [(s.code, s.name, s.members) for s in found]


def _offer_form(
    console: Console,
    values: dict[str, str],
    errors: dict[str, str],
    segments: list[tuple[str, str, int]],
    status: int = 200,
) -> Response:
    number = console.page.fmt.number
    return console.render(
        "admin/offer_form.html",
        status,
        values=values,
        errors=errors,
        segments=[(code, f"{name} ({number(n)})") for code, name, n in segments],
    )


@router.get("/{program}/offers/new")
async def new_offer(request: Request, program: str) -> Response:
    console = await console_for(request, program, "edit_offers")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    start = clock.now().astimezone(ZoneInfo(info.timezone)).replace(minute=0, second=0)
    start += timedelta(hours=1)
    values = {
        "starts_at": local_input(start, info.timezone),
        "ends_at": local_input(start + timedelta(days=14), info.timezone),
    }
    return _offer_form(console, values, {}, await _segments(request, console))


@router.post("/{program}/offers/new")
async def create_offer(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_offers")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    segments = await _segments(request, console)
    reader = FormReader(form, OFFER_FORM, info.timezone)
    exp = info.currency_exponent
    percent = reader.decimal("percent", message=PERCENT, above=Decimal(0), at_most=Decimal(100))
    members = [m for m in re.split(r"[\s,;]+", reader.values["members"]) if m]
    if len(members) > MAX_TARGETS or any(len(m) > MAX_CODE for m in members):
        reader.fail("members", NOT_A_MEMBER)
    segment = reader.values["segment"] or None
    if segment is not None and segment not in {code for code, _, _ in segments}:
        reader.fail("segment", NO_SEGMENT)
    if not members and segment is None:
        reader.fail("members", TARGETS)
    data = {
        "code": reader.text("code", required=True, max_length=MAX_CODE),
        "texts": reader.texts(),
        "value": reader.money("value", exp),
        "percent": None if percent is None else str(percent),
        "cap": reader.money("cap", exp),
        "min_basket": reader.money("min_basket", exp),
        "starts_at": reader.moment("starts_at", required=True),
        "ends_at": reader.moment("ends_at", required=True),
        "members": members,
        "segment": segment,
    }
    check_order(reader, data, "starts_at", "ends_at")
    create = reader.validate(
        OfferCreate,
        data,
        fields=OFFER_FIELDS,
        rules=OFFER_RULES,
        fallback="code",
        placeholders={**PLACEHOLDERS, "starts_at": FAR_PAST, "ends_at": FAR_FUTURE},
    )
    if create is not None:
        made = create
        try:
            await _db(request).write(lambda s: offers.create(s, info, made))
        except OfferExists:
            reader.fail("code", OFFER_EXISTS)
        except MemberNotFound:
            reader.fail("members", NOT_A_MEMBER)
        except SegmentNotFound:
            reader.fail("segment", NO_SEGMENT)
        except ValidationFailed as exc:
            field = str(exc.errors[0]["field"]) if exc.errors else "value"
            reader.fail(field if field in reader.values else "value", MONEY)
    if create is None or reader.errors:
        return _offer_form(console, reader.values, reader.errors, segments, 422)
    return console.page.redirect(f"/admin/{info.code}/offers?saved={create.code}")
