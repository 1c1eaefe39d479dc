"""Routes of the rewards room: catalogue, redemptions, coupons, till, offers, referrals."""

from __future__ import annotations

import io

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.bounds import Year
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.partners import access as partner_access
from habitue.partners.access import PartnerAccess
from habitue.programs.service import Principal
from habitue.rewards import catalogue, coupons, guard, offers, redeem, referrals
from habitue.rewards import service as rewards_service
from habitue.rewards.schemas import (
    BasketIn,
    CouponBatchCreate,
    CouponCheck,
    CouponRead,
    DonationStatement,
    FulfilmentUpdate,
    MemberCouponPage,
    OfferCreate,
    OfferPage,
    OfferRead,
    OfferTargets,
    PayQuoteIn,
    PayQuoteRead,
    RedemptionCreate,
    RedemptionPage,
    RedemptionRead,
    ReferralCodeRead,
    ReferralCreate,
    ReferralRead,
    ReferralSettingsIn,
    ReferralSettingsRead,
    RewardCreate,
    RewardPage,
    RewardRead,
    RewardUpdate,
)

router = APIRouter(prefix="/v1/programs/{program}", tags=["rewards"])
MEMBER = "/members/{member_id}"


# --- catalogue ------------------------------------------------------------------------------


@router.post("/rewards", status_code=201, response_model=RewardRead)
async def create_reward(
    program: ProgramDep, body: RewardCreate, db: DbDep, _: Principal = scoped("rewards:write")
) -> RewardRead:
    return await db.write(lambda s: catalogue.create(s, program, body))


@router.get("/rewards", response_model=RewardPage)
async def list_rewards(
    program: ProgramDep,
    session: ReadSession,
    available: bool = False,
    _: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> RewardPage:
    return RewardPage(
        items=await catalogue.list_rewards(session, program, available_only=available)
    )


@router.get("/rewards/{code}", response_model=RewardRead)
async def get_reward(
    program: ProgramDep,
    code: str,
    session: ReadSession,
    _: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> RewardRead:
    return await catalogue.get(session, program, code)


@router.patch("/rewards/{code}", response_model=RewardRead)
async def update_reward(
    program: ProgramDep,
    code: str,
    body: RewardUpdate,
    db: DbDep,
    _: Principal = scoped("rewards:write"),
) -> RewardRead:
    return await db.write(lambda s: catalogue.update_reward(s, program, code, body))


@router.get("/donations/statement", response_model=DonationStatement)
async def donation_statement(
    program: ProgramDep,
    session: ReadSession,
    year: Year,
    cause: str | None = None,
    _: Principal = scoped("members:read"),
) -> DonationStatement:
    return await redeem.donation_statement(session, program, year, cause=cause)


# --- redemptions ----------------------------------------------------------------------------


@router.post(MEMBER + "/redemptions", status_code=201, response_model=RedemptionRead)
async def create_redemption(
    program: ProgramDep,
    member_id: str,
    body: RedemptionCreate,
    db: DbDep,
    principal: Principal = scoped("points:write"),
) -> RedemptionRead:
    # The member's status read under the member's row lock: an erasure is waited for.
    locked = (members_service.LOCKED_STATUS,)

    async def work(session: AsyncSession) -> RedemptionRead:
        member = await members_service.resolve_in_batch(
            session, program, member_id=member_id, reads=locked
        )
        return await redeem.redeem(session, program, member, body, actor=principal.name)

    # Keyed by member: grouped redemptions lock members' rows in one order (no deadlock
    # between server processes) and spread over the commit lanes; a batch reads its members
    # and its rewards in one query each.
    reads = (
        members_service.prefetch(program, member_id, locked),
        catalogue.prefetch(program, body.reward),
    )
    return await db.write(work, key=member_id, prefetch=reads)


@router.get(MEMBER + "/redemptions", response_model=RedemptionPage)
async def member_redemptions(
    program: ProgramDep, member_id: str, session: ReadSession, _: Principal = scoped("members:read")
) -> RedemptionPage:
    member = await members_service.resolve(session, program, member_id=member_id)
    return RedemptionPage(items=await redeem.for_member(session, program, member))


@router.get("/redemptions/{redemption_id}", response_model=RedemptionRead)
async def get_redemption(
    program: ProgramDep,
    redemption_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> RedemptionRead:
    return await redeem.get(session, program, redemption_id)


@router.post("/redemptions/{redemption_id}/cancel", response_model=RedemptionRead)
async def cancel_redemption(
    program: ProgramDep,
    redemption_id: str,
    db: DbDep,
    principal: Principal = scoped("points:write"),
) -> RedemptionRead:
    return await db.write(lambda s: redeem.cancel(s, program, redemption_id, actor=principal.name))


@router.patch("/redemptions/{redemption_id}", response_model=RedemptionRead)
async def fulfil_redemption(
    program: ProgramDep,
    redemption_id: str,
    body: FulfilmentUpdate,
    db: DbDep,
    _: Principal = scoped("rewards:write"),
) -> RedemptionRead:
    return await db.write(lambda s: redeem.fulfil(s, program, redemption_id, body.status))


# --- coupons --------------------------------------------------------------------------------


@router.post(
    "/coupons/batches",
    status_code=201,
    response_class=Response,
    responses={201: {"description": "The codes as CSV", "content": {"text/csv": {}}}},
)
async def generate_coupons(
    program: ProgramDep, body: CouponBatchCreate, db: DbDep, _: Principal = scoped("rewards:write")
) -> Response:
    """Generate a campaign's codes; the answer is the CSV export (`code,expires_at`)."""
    made = await db.write(lambda s: coupons.generate(s, program, body))
    out = io.StringIO()
    coupons.write_csv(out, made)
    return Response(out.getvalue(), status_code=201, media_type="text/csv")


@router.get(MEMBER + "/coupons", response_model=MemberCouponPage)
async def member_coupons(
    program: ProgramDep, member_id: str, session: ReadSession, _: Principal = scoped("members:read")
) -> MemberCouponPage:
    """The member's coupons, newest first: from redemptions and from `coupon` rules (with the
    event that issued each)."""
    member = await members_service.resolve(session, program, member_id=member_id)
    return MemberCouponPage(items=await coupons.for_member(session, program, member.id))


@router.get("/coupons/{code}", response_model=CouponRead)
async def get_coupon(
    request: Request,
    program: ProgramDep,
    code: str,
    db: DbDep,
    principal: Principal = scoped("coupons:redeem", partner=PartnerAccess.TILL),
) -> CouponRead:
    async def run() -> CouponRead:
        async with db.read() as session:
            return await coupons.get(session, program, code)

    return await guard.guarded(
        request, db, program, principal=principal, member=None, code=code, run=run
    )


@router.post("/coupons/{code}/validate", response_model=CouponCheck)
async def validate_coupon(
    request: Request,
    program: ProgramDep,
    code: str,
    body: BasketIn,
    db: DbDep,
    principal: Principal = scoped("coupons:redeem", partner=PartnerAccess.TILL),
) -> CouponCheck:
    async def run() -> CouponCheck:
        async with db.read() as session:
            return await coupons.validate(session, program, code, body)

    return await guard.guarded(
        request, db, program, principal=principal, member=body.member, code=code, run=run
    )


@router.post("/coupons/{code}/redeem", response_model=CouponRead)
async def redeem_coupon(
    request: Request,
    program: ProgramDep,
    code: str,
    body: BasketIn,
    db: DbDep,
    principal: Principal = scoped("coupons:redeem", partner=PartnerAccess.TILL),
) -> CouponRead:
    async def run() -> CouponRead:
        return await db.write(
            lambda s: coupons.redeem(s, program, code, body, actor=principal.name)
        )

    return await guard.guarded(
        request, db, program, principal=principal, member=body.member, code=code, run=run
    )


# --- pay with points ------------------------------------------------------------------------


@router.post(MEMBER + "/pay-with-points/quote", response_model=PayQuoteRead)
async def pay_with_points_quote(
    program: ProgramDep,
    member_id: str,
    body: PayQuoteIn,
    session: ReadSession,
    principal: Principal = scoped("events:write", partner=PartnerAccess.TILL),
) -> PayQuoteRead:
    await partner_access.require_sharing(session, program, principal, member_id)
    member = await members_service.resolve(session, program, member_id=member_id)
    return await rewards_service.pay_quote(session, program, member, body)


# --- personal offers ------------------------------------------------------------------------


@router.post("/offers", status_code=201, response_model=OfferRead)
async def create_offer(
    program: ProgramDep, body: OfferCreate, db: DbDep, _: Principal = scoped("rewards:write")
) -> OfferRead:
    return await db.write(lambda s: offers.create(s, program, body))


@router.post("/offers/{code}/members", response_model=OfferRead)
async def target_offer(
    program: ProgramDep,
    code: str,
    body: OfferTargets,
    db: DbDep,
    _: Principal = scoped("rewards:write"),
) -> OfferRead:
    return await db.write(
        lambda s: offers.add_targets(s, program, code, body.members, body.segment)
    )


@router.get(MEMBER + "/offers", response_model=OfferPage)
async def member_offers(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    clipped: bool = False,
    principal: Principal = scoped("members:read", partner=PartnerAccess.TILL),
) -> OfferPage:
    await partner_access.require_sharing(session, program, principal, member_id)
    member = await members_service.resolve(session, program, member_id=member_id)
    return OfferPage(items=await offers.for_member(session, program, member, clipped_only=clipped))


@router.post(MEMBER + "/offers/{code}/clip", response_model=OfferRead)
async def clip_offer(
    program: ProgramDep,
    member_id: str,
    code: str,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> OfferRead:
    async def work(session: AsyncSession) -> OfferRead:
        member = await members_service.resolve(session, program, member_id=member_id)
        return await offers.clip(session, program, member, code)

    return await db.write(work)


@router.post(MEMBER + "/offers/{code}/use", response_model=OfferRead)
async def use_offer(
    program: ProgramDep,
    member_id: str,
    code: str,
    body: BasketIn,
    db: DbDep,
    principal: Principal = scoped("coupons:redeem", partner=PartnerAccess.TILL),
) -> OfferRead:
    async def work(session: AsyncSession) -> OfferRead:
        await partner_access.require_sharing(session, program, principal, member_id)
        member = await members_service.resolve(session, program, member_id=member_id)
        return await offers.use(session, program, member, code, body)

    return await db.write(work)


# --- referrals ------------------------------------------------------------------------------


@router.put("/referrals/settings", response_model=ReferralSettingsRead)
async def put_referral_settings(
    program: ProgramDep,
    body: ReferralSettingsIn,
    db: DbDep,
    _: Principal = scoped("rewards:write"),
) -> ReferralSettingsRead:
    return await db.write(lambda s: referrals.put_settings(s, program, body))


@router.get("/referrals/settings", response_model=ReferralSettingsRead)
async def get_referral_settings(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("members:read")
) -> ReferralSettingsRead:
    return await referrals.get_settings(session, program)


@router.get(MEMBER + "/referral-code", response_model=ReferralCodeRead)
async def referral_code(
    program: ProgramDep, member_id: str, db: DbDep, _: Principal = scoped("members:read")
) -> ReferralCodeRead:
    """The member's referral code (made on first request)."""

    async def work(session: AsyncSession) -> ReferralCodeRead:
        member = await members_service.resolve(session, program, member_id=member_id)
        return await referrals.code_for(session, program, member)

    return await db.write(work)


@router.post("/referrals", status_code=201, response_model=ReferralRead)
async def create_referral(
    program: ProgramDep, body: ReferralCreate, db: DbDep, _: Principal = scoped("members:write")
) -> ReferralRead:
    return await db.write(lambda s: referrals.create(s, program, body))


@router.get(MEMBER + "/referrals", response_model=list[ReferralRead])
async def member_referrals(
    program: ProgramDep, member_id: str, session: ReadSession, _: Principal = scoped("members:read")
) -> list[ReferralRead]:
    member = await members_service.resolve(session, program, member_id=member_id)
    return await referrals.for_member(session, program, member)
