"""The member's account in the portal: a friend's code at sign-up, a password change.

Services of the web room, called by `portal.py` and `service.sign_up*` inside their unit of
work; nothing here commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import table_of
from habitue.errors import HabitueError
from habitue.programs.service import ProgramInfo
from habitue.rewards import codes, referrals
from habitue.rewards.models import ReferralCode, ReferralSettings
from habitue.rewards.schemas import ReferralCreate
from habitue.web import service as web_service
from habitue.web.models import MemberCredential

_codes = table_of(ReferralCode)
_terms = table_of(ReferralSettings)
_creds = table_of(MemberCredential)
MAX_REFERRAL_CODE = 32


async def referrals_open(session: AsyncSession, program: ProgramInfo) -> bool:
    """True when the program has referral terms (the sign-up form then asks for a code)."""
    found = await session.execute(
        select(_terms.c.program_id).where(_terms.c.program_id == program.id)
    )
    return found.first() is not None


async def referral_code_known(session: AsyncSession, program: ProgramInfo, code: str) -> bool:
    """True when `code` (as people type it) is a member's referral code in this program.

    Checked before anything else at sign-up, so that the answer about a code never depends
    on whether the email is registered."""
    clean = codes.normalise(code)
    if not clean or len(clean) > MAX_REFERRAL_CODE or not await referrals_open(session, program):
        return False
    found = await session.execute(
        select(_codes.c.id).where(_codes.c.program_id == program.id, _codes.c.code == clean)
    )
    return found.first() is not None


async def refer(
    session: AsyncSession, program: ProgramInfo, public_id: str, code: str | None
) -> bool:
    """Record the new member `public_id` as referred by `code`; True when recorded.

    The referral rules (cap per referrer, no self-referral) are the rewards room's: when one
    refuses, the member still joins, without the referral (its savepoint is undone)."""
    if not code:
        return False
    try:
        async with session.begin_nested():
            data = ReferralCreate(referee=public_id, code=code[:MAX_REFERRAL_CODE])
            await referrals.create(session, program, data)
    except HabitueError:
        return False
    return True


async def change_password(
    session: AsyncSession, program: ProgramInfo, member_id: int, current: str, new: str
) -> bool:
    """Replace the member's password when `current` is theirs; False (nothing changed) when
    it is not. A member who joined by an emailed link and never had one sets it without."""
    query = select(_creds.c.password_hash).where(_creds.c.member_id == member_id)
    stored = (await session.execute(query)).scalar_one_or_none()
    if stored and not web_service.verify_password(stored, current):
        return False
    await web_service.set_member_password(session, program, member_id, new)
    return True
