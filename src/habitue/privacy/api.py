"""Routes: erasure and export of a member's data (operator)."""

from __future__ import annotations

from fastapi import APIRouter

from habitue.deps import DbDep, ProgramDep, ReadSession, scoped
from habitue.privacy import erasure, release
from habitue.privacy import export as export_service
from habitue.privacy.schemas import (
    ErasureRead,
    ExportRead,
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
