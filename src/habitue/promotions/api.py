"""Routes: price and confirm baskets at the till; promotions' CRUD."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from habitue.deps import DbDep, PipelineDep, ProgramDep, ReadSession, scoped
from habitue.events.schemas import MemberSelector
from habitue.programs.service import Principal
from habitue.promotions import service as promotions_service
from habitue.promotions import till
from habitue.promotions.errors import BasketRefused
from habitue.promotions.schemas import (
    BasketConfirm,
    BasketIn,
    BasketRead,
    PromotionCreate,
    PromotionPage,
    PromotionRead,
    PromotionUpdate,
)
from habitue.rewards import guard

router = APIRouter(prefix="/v1/programs/{program}", tags=["promotions"])


def _member_key(selector: MemberSelector | None) -> str | None:
    if selector is None:
        return None
    return selector.id or selector.card_number or selector.external_id


@router.post("/baskets/price", response_model=BasketRead)
async def price_basket(
    request: Request,
    program: ProgramDep,
    body: BasketIn,
    session: ReadSession,
    pipeline: PipelineDep,
    principal: Principal = scoped("events:write"),
) -> Response:
    """Every discount that applies to the basket, what is left to pay and what it would earn;
    writes nothing. Codes that name no coupon drain the coupon-guessing buckets (429 once
    empty), as at `POST /coupons/{code}/redeem`. (The answer is a `BasketRead`, written
    straight to JSON: `basket.answer_json`.)"""
    member = _member_key(body.member)
    async with guard.basket_lookups(
        request, program, principal=principal, member=member
    ) as attempt:
        answer, missed = await till.price_basket(session, pipeline, program, body)
        if missed:
            attempt.fail()
    return Response(answer, media_type="application/json")


@router.post("/baskets/confirm", response_model=BasketRead)
async def confirm_basket(
    request: Request,
    program: ProgramDep,
    body: BasketConfirm,
    db: DbDep,
    pipeline: PipelineDep,
    principal: Principal = scoped("events:write"),
) -> BasketRead:
    """Price again and, in one transaction, record the purchase, burn the coupons, use the
    offers and spend the points; a retry with the same `external_id` returns the first answer."""
    member = _member_key(body.member)
    async with guard.basket_lookups(
        request, program, principal=principal, member=member
    ) as attempt:
        try:
            return await till.confirm_basket(db, pipeline, program, body)
        except BasketRefused as exc:
            if exc.missed:
                attempt.fail()
            raise


@router.post("/promotions", status_code=201, response_model=PromotionRead)
async def create_promotion(
    program: ProgramDep, body: PromotionCreate, db: DbDep, _: Principal = scoped("rewards:write")
) -> PromotionRead:
    return await db.write(lambda s: promotions_service.create(s, program, body))


@router.get("/promotions", response_model=PromotionPage)
async def list_promotions(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("members:read")
) -> PromotionPage:
    return await promotions_service.list_promotions(session, program)


@router.get("/promotions/{code}", response_model=PromotionRead)
async def get_promotion(
    program: ProgramDep, code: str, session: ReadSession, _: Principal = scoped("members:read")
) -> PromotionRead:
    return await promotions_service.get(session, program, code)


@router.patch("/promotions/{code}", response_model=PromotionRead)
async def update_promotion(
    program: ProgramDep,
    code: str,
    body: PromotionUpdate,
    db: DbDep,
    _: Principal = scoped("rewards:write"),
) -> PromotionRead:
    return await db.write(lambda s: promotions_service.update_promotion(s, program, code, body))


@router.delete("/promotions/{code}", status_code=204)
async def delete_promotion(
    program: ProgramDep, code: str, db: DbDep, _: Principal = scoped("rewards:write")
) -> Response:
    await db.write(lambda s: promotions_service.delete_promotion(s, program, code))
    return Response(status_code=204)
