"""Routes: club plans, subscriptions, payments, refunds, renewals and the shop's webhook."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.clubs import jobs as clubs_jobs
from habitue.clubs import service as clubs_service
from habitue.clubs.schemas import (
    CancelRequest,
    PaymentRead,
    PaymentRecord,
    PlanCreate,
    PlanRead,
    RenewalRun,
    SubscriptionCreate,
    SubscriptionRead,
    WebhookSecretRead,
)
from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.members import service as members_service
from habitue.programs import service as programs_service
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["club"])


@router.post("/club/plans", status_code=201, response_model=PlanRead)
async def create_plan(
    program: ProgramDep, body: PlanCreate, db: DbDep, _: Principal = scoped("rules:write")
) -> PlanRead:
    async def work(session: AsyncSession) -> PlanRead:
        return await clubs_service.create_plan(session, program, body)

    return await db.write(work)


@router.get("/club/plans", response_model=list[PlanRead])
async def list_plans(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("members:read")
) -> list[PlanRead]:
    return await clubs_service.list_plans(session, program)


@router.post(
    "/members/{member_id}/club/subscriptions", status_code=201, response_model=SubscriptionRead
)
async def subscribe(
    program: ProgramDep,
    member_id: str,
    body: SubscriptionCreate,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> SubscriptionRead:
    async def work(session: AsyncSession) -> SubscriptionRead:
        ref = await members_service.resolve(session, program, member_id=member_id)
        return await clubs_service.subscribe(session, program, ref, body)

    return await db.write(work)


@router.get("/members/{member_id}/club/subscriptions", response_model=list[SubscriptionRead])
async def member_subscriptions(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> list[SubscriptionRead]:
    ref = await members_service.resolve(session, program, member_id=member_id)
    return await clubs_service.member_subscriptions(session, program, ref)


@router.get("/club/subscriptions/{sub_id}", response_model=SubscriptionRead)
async def get_subscription(
    program: ProgramDep, sub_id: str, session: ReadSession, _: Principal = scoped("members:read")
) -> SubscriptionRead:
    return await clubs_service.get_subscription(session, program, sub_id)


@router.post("/club/subscriptions/{sub_id}/cancel", response_model=SubscriptionRead)
async def cancel(
    program: ProgramDep,
    sub_id: str,
    db: DbDep,
    body: CancelRequest | None = None,
    _: Principal = scoped("members:write"),
) -> SubscriptionRead:
    async def work(session: AsyncSession) -> SubscriptionRead:
        return await clubs_service.cancel(session, program, sub_id, body or CancelRequest())

    return await db.write(work)


@router.get("/club/subscriptions/{sub_id}/payments", response_model=list[PaymentRead])
async def payments(
    program: ProgramDep, sub_id: str, session: ReadSession, _: Principal = scoped("members:read")
) -> list[PaymentRead]:
    return await clubs_service.subscription_payments(session, program, sub_id)


@router.post("/club/subscriptions/{sub_id}/payments", status_code=201, response_model=PaymentRead)
async def record_payment(
    program: ProgramDep,
    sub_id: str,
    body: PaymentRecord,
    db: DbDep,
    _: Principal = scoped("members:write"),
) -> PaymentRead:
    async def work(session: AsyncSession) -> PaymentRead:
        return await clubs_service.record_payment(session, program, sub_id, body)

    return await db.write(work)


@router.post("/club/payments/{payment_id}/refund", response_model=PaymentRead)
async def refund_payment(
    program: ProgramDep, payment_id: str, db: DbDep, _: Principal = scoped("members:write")
) -> PaymentRead:
    async def work(session: AsyncSession) -> PaymentRead:
        return await clubs_service.refund_payment(session, program, payment_id)

    return await db.write(work)


@router.post("/club/renewals/run", response_model=RenewalRun)
async def run_renewals(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> RenewalRun:
    return await clubs_jobs.run_renewals(db, program.code)


@router.post("/club/webhook-secret", status_code=201, response_model=WebhookSecretRead)
async def rotate_secret(
    program: ProgramDep, db: DbDep, _: Principal = scoped("admin")
) -> WebhookSecretRead:
    async def work(session: AsyncSession) -> WebhookSecretRead:
        return await clubs_service.rotate_secret(session, program)

    return await db.write(work)


@router.post("/club/webhooks/manual", response_model=PaymentRead)
async def payment_webhook(program: str, request: Request, db: DbDep) -> PaymentRead:
    """A shop's `payment.succeeded`, signed per Standard Webhooks (no API key: the signature
    is the credential)."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    async with db.read() as session:
        info = await programs_service.get_info(session, program)

    async def work(session: AsyncSession) -> PaymentRead:
        return await clubs_service.webhook(session, info, headers, body)

    return await db.write(work)
