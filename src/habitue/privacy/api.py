"""Routes: erasure and export of a member's data (operator)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from habitue.bounds import MAX_ID
from habitue.deps import DbDep, ProgramDep, ReadSession, SettingsDep, scoped
from habitue.privacy import audit, erasure, fraud, release
from habitue.privacy import export as export_service
from habitue.privacy.schemas import (
    AuditEntryRead,
    AuditPage,
    AuditVerifyRead,
    ErasureRead,
    ExportRead,
    FraudHoldRead,
    FraudLimits,
    FraudQueue,
    PrivacySettingsRead,
    PrivacySettingsUpdate,
)
from habitue.programs.service import Principal

router = APIRouter(prefix="/v1/programs/{program}", tags=["privacy"])


@router.delete("/members/{member_id}", response_model=ErasureRead)
async def erase_member(
    program: ProgramDep,
    member_id: str,
    db: DbDep,
    principal: Principal = scoped("members:erase"),
) -> ErasureRead:
    """Erase the member (GDPR Art. 17) in one transaction: pseudonymised, points expired,
    clubs ended, coupons voided, cards blocked, offers withdrawn; a `member.erased` event.
    Erasing again answers 200 with `already_erased`."""
    done = await db.write(
        lambda s: erasure.erase(s, program, member_id, actor=f"erasure:{principal.name}")
    )
    return erasure_read(done)


def erasure_read(done: erasure.Erasure) -> ErasureRead:
    return ErasureRead(
        member_id=done.member_id,
        status=erasure.ERASED,
        points_expired=done.points_expired,
        pending_points_expired=done.pending_points_expired,
        coupons_voided=done.coupons_voided,
        clubs_ended=done.clubs_ended,
        cards_blocked=done.cards_blocked,
        offers_ended=done.offers_ended,
        already_erased=done.already_erased,
    )


@router.get("/members/{member_id}/export", response_model=ExportRead)
async def export_member(
    program: ProgramDep,
    member_id: str,
    session: ReadSession,
    _: Principal = scoped("members:read"),
) -> ExportRead:
    """Everything held on the member (GDPR Art. 15/20), as one JSON document."""
    return await export_service.export(session, program, member_id)


@router.get("/privacy", response_model=PrivacySettingsRead)
async def get_privacy_settings(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> PrivacySettingsRead:
    """The program's privacy settings: `min_group_size` (k, default 10)."""
    return PrivacySettingsRead(min_group_size=await release.min_group_size(session, program))


@router.put("/privacy", response_model=PrivacySettingsRead)
async def put_privacy_settings(
    program: ProgramDep,
    body: PrivacySettingsUpdate,
    db: DbDep,
    _: Principal = scoped("admin"),
) -> PrivacySettingsRead:
    k = await db.write(lambda s: release.set_min_group_size(s, program, body.min_group_size))
    return PrivacySettingsRead(min_group_size=k)


@router.get("/audit", response_model=AuditPage)
async def read_audit(
    program: ProgramDep,
    session: ReadSession,
    _: Principal = scoped("admin"),
    resource: Annotated[str | None, Query(max_length=32)] = None,
    resource_id: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=16)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The program's audit log, oldest first, filtered (the owner's keys only: `admin`)."""
    rows = await audit.query(
        session,
        chain=program.id,
        resource=resource,
        resource_id=resource_id,
        actor=actor,
        action=action,
        after=after,
        limit=limit,
    )
    items = [AuditEntryRead(**r) for r in rows]
    return AuditPage(items=items, next_after=items[-1].seq if len(items) == limit else None)


@router.get("/audit/export", response_class=Response)
async def export_audit(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> Response:
    """The program's whole audit log as JSON lines (one row a line, with its hashes)."""
    lines: list[bytes] = []
    after = 0
    while True:
        rows = await audit.query(session, chain=program.id, after=after, limit=1000)
        lines += [orjson.dumps(r) for r in rows]
        if len(rows) < 1000:
            break
        after = rows[-1]["seq"]
    return Response(
        b"\n".join(lines) + (b"\n" if lines else b""),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="audit-{program.code}.jsonl"'},
    )


@router.get("/audit/verify", response_model=AuditVerifyRead)
async def verify_audit(
    program: ProgramDep,
    session: ReadSession,
    settings: SettingsDep,
    _: Principal = scoped("admin"),
) -> AuditVerifyRead:
    """Recompute the program's audit chain: `ok` false lists where it was broken."""
    breaches = await audit.verify(session, hmac_key=settings.hmac_key, chain=program.id)
    return AuditVerifyRead(
        ok=not breaches,
        breaches=[{"seq": b.seq, "problem": b.problem} for b in breaches],
    )


@router.get("/fraud/settings", response_model=FraudLimits)
async def get_fraud_settings(
    program: ProgramDep, session: ReadSession, _: Principal = scoped("admin")
) -> FraudLimits:
    """The program's velocity limits (all null: nothing is watched)."""
    return FraudLimits(**(await fraud.limits_for(session, program)).as_dict())


@router.put("/fraud/settings", response_model=FraudLimits)
async def put_fraud_settings(
    program: ProgramDep, body: FraudLimits, db: DbDep, _: Principal = scoped("admin")
) -> FraudLimits:
    """Set the velocity limits that hold a member for review."""
    limits = fraud.Limits(**body.model_dump())
    done = await db.write(lambda s: fraud.set_limits(s, program, limits))
    return FraudLimits(**done.as_dict())


@router.get("/fraud/holds", response_model=FraudQueue)
async def fraud_queue(
    program: ProgramDep,
    session: ReadSession,
    _: Principal = scoped("members:write"),
    status: Annotated[str | None, Query(pattern="^(held|released|suspended)$")] = "held",
) -> FraudQueue:
    """The review queue: holds, oldest first (the open ones unless `status` says otherwise)."""
    rows = await fraud.queue(session, program, status=status)
    return FraudQueue(items=[FraudHoldRead(**r) for r in rows])


@router.post("/fraud/holds/{hold_id}/release", response_model=FraudHoldRead)
async def release_hold(
    program: ProgramDep,
    hold_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    db: DbDep,
    principal: Principal = scoped("members:write"),
) -> FraudHoldRead:
    """Release a held member: they earn and spend again."""
    done = await db.write(
        lambda s: fraud.decide(s, program, hold_id, release=True, actor=principal.name)
    )
    return FraudHoldRead(**done)


@router.post("/fraud/holds/{hold_id}/suspend", response_model=FraudHoldRead)
async def suspend_hold(
    program: ProgramDep,
    hold_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    db: DbDep,
    principal: Principal = scoped("members:write"),
) -> FraudHoldRead:
    """Suspend a held member: the account stays closed to earning and spending."""
    done = await db.write(
        lambda s: fraud.decide(s, program, hold_id, release=False, actor=principal.name)
    )
    return FraudHoldRead(**done)
