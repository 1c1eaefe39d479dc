"""Who is signed in: staff users, member passwords, emailed sign-in links and sessions.

Passwords are argon2 hashes; cookies carry random tokens whose SHA-256 alone is stored.
A sign-in link's token is HMAC(`HABITUE_HMAC_KEY`, a random seed): the table keeps the seed
and the token's SHA-256, the outbox event that asks for the message keeps neither, and the
sender derives the link again with `sign_in_link_url`. Links point at `HABITUE_PUBLIC_URL`.
Every function runs in the caller's transaction and never commits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, Result, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import Conflict, ValidationFailed
from habitue.members import service as members_service
from habitue.members.errors import DuplicateMember, MemberNotFound
from habitue.members.schemas import MemberCreate
from habitue.messaging import outbox
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings
from habitue.web.i18n import _l
from habitue.web.models import MemberCredential, SignInToken, StaffUser, WebSession

ROLES = ("owner", "marketer", "support", "analyst")
ROLE_LABELS = {r: _l(r.capitalize()) for r in ROLES}
_ROLE_NAMES = (_l("Owner"), _l("Marketer"), _l("Support"), _l("Analyst"))  # for extraction
Role = Literal["owner", "marketer", "support", "analyst"]

# What each role may do in the console; `view` is the dashboard. A page's name (`tiers`,
# `rewards`, `offers`, `campaigns`) lets a role read it, `edit_<page>` change what it lists;
# `fulfil` moves redemptions along (shipped, delivered, canceled). `partners` reads partners
# and their statements; `messages` the message templates; `webhooks` the webhook endpoints'
# deliveries (and retrying a parked one); `fraud` the fraud review queue (release, suspend);
# `audit` the audit log (owners only: it names every reader of every member).
PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset(
        {"view", "members", "adjust", "simulate", "rules", "fraud"}
        | {"tiers", "edit_tiers", "rewards", "edit_rewards", "fulfil", "offers", "edit_offers"}
        | {"campaigns", "edit_campaigns"}
        | {"partners", "edit_partners", "messages", "edit_messages", "webhooks"}
        | {"setup", "erase", "audit"}
    ),
    "marketer": frozenset(
        {"view", "simulate", "rules"}
        | {"tiers", "edit_tiers", "rewards", "edit_rewards", "fulfil", "offers", "edit_offers"}
        | {"campaigns", "edit_campaigns"}
        | {"messages", "edit_messages"}
    ),
    "support": frozenset(
        {"view", "members", "adjust", "fraud", "tiers", "rewards", "fulfil", "offers"}
    ),
    "analyst": frozenset({"view", "members", "simulate", "tiers", "campaigns", "partners"}),
}

MEMBER_SESSION = timedelta(days=30)
STAFF_SESSION = timedelta(hours=12)
MIN_PASSWORD = 10

_hasher = PasswordHasher()
_staff = table_of(StaffUser)
_creds = table_of(MemberCredential)
_links = table_of(SignInToken)
_sessions = table_of(WebSession)
# Verified against when the account does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("habitue-no-such-account")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session: whose it is and its CSRF token."""

    kind: str
    program_id: int | None
    member_id: int | None
    staff_id: int | None
    csrf: str


@dataclass(frozen=True, slots=True)
class Staff:
    id: int
    email: str
    role: str
    program_id: int | None

    def may(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())


# --- sessions -------------------------------------------------------------------------------


async def open_session(
    session: AsyncSession,
    *,
    kind: Literal["member", "staff"],
    program_id: int | None,
    member_id: int | None = None,
    staff_id: int | None = None,
) -> tuple[str, SessionInfo]:
    """Start a session; returns the cookie token (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    info = SessionInfo(kind, program_id, member_id, staff_id, secrets.token_urlsafe(24))
    await session.execute(
        insert(_sessions).values(
            token_hash=token_hash(token),
            kind=kind,
            program_id=program_id,
            member_id=member_id,
            staff_id=staff_id,
            csrf=info.csrf,
            created_at=now,
            expires_at=now + (MEMBER_SESSION if kind == "member" else STAFF_SESSION),
        )
    )
    return token, info


async def load_session(session: AsyncSession, token: str | None, kind: str) -> SessionInfo | None:
    """The live session of a cookie, or None when unknown, expired or of another kind."""
    if not token or len(token) > 200:
        return None
    row = (
        await session.execute(select(_sessions).where(_sessions.c.token_hash == token_hash(token)))
    ).first()
    if row is None or row.kind != kind or clock.as_utc(row.expires_at) <= clock.now():
        return None
    return SessionInfo(row.kind, row.program_id, row.member_id, row.staff_id, row.csrf)


async def close_session(session: AsyncSession, token: str | None) -> None:
    if token:
        await session.execute(delete(_sessions).where(_sessions.c.token_hash == token_hash(token)))


async def close_member_sessions(session: AsyncSession, member_id: int) -> None:
    await session.execute(delete(_sessions).where(_sessions.c.member_id == member_id))


# --- members --------------------------------------------------------------------------------


async def set_member_password(
    session: AsyncSession, program: ProgramInfo, member_id: int, password: str
) -> None:
    """Set (or replace) a member's portal password."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed("password", f"use at least {MIN_PASSWORD} characters")
    await _store_password_hash(session, program, member_id, hash_password(password))


async def _store_password_hash(
    session: AsyncSession, program: ProgramInfo, member_id: int, digest: str
) -> None:
    done = await session.execute(
        update(_creds)
        .where(_creds.c.member_id == member_id)
        .values(password_hash=digest, updated_at=clock.now())
    )
    if _rowcount(done) == 0:
        await session.execute(
            insert(_creds).values(
                program_id=program.id,
                member_id=member_id,
                password_hash=digest,
                updated_at=clock.now(),
            )
        )


async def member_by_email(session: AsyncSession, program: ProgramInfo, email: str) -> int | None:
    """The internal id of the active member with this email, or None."""
    items, _ = await members_service.find(
        session, program, external_id=None, email=email, card_number=None, after=None, limit=1
    )
    if not items or items[0].status != "active":
        return None
    try:
        ref = await members_service.resolve(session, program, member_id=items[0].id)
    except MemberNotFound:
        return None
    return ref.id


async def check_member_password(
    session: AsyncSession, program: ProgramInfo, email: str, password: str
) -> int | None:
    """The member's internal id when the email and password match, else None."""
    member_id = await member_by_email(session, program, email)
    stored = None
    if member_id is not None:
        stored = (
            await session.execute(
                select(_creds.c.password_hash).where(
                    _creds.c.member_id == member_id, _creds.c.program_id == program.id
                )
            )
        ).scalar()
    ok = verify_password(stored or _DUMMY_HASH, password)
    return member_id if ok and stored is not None else None


def link_token(hmac_key: str, seed: str) -> str:
    """The token of the sign-in link made from `seed` (URL-safe, 43 characters)."""
    mac = hmac.new(hmac_key.encode(), b"habitue.sign-in-link:" + seed.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


async def _issue_link(
    session: AsyncSession,
    program: ProgramInfo,
    member_id: int,
    *,
    settings: Settings,
    password_hash: str | None = None,
) -> None:
    """Store a new sign-in link and ask for its message (`member.sign_in_link`, no link in it)."""
    seed = secrets.token_urlsafe(32)
    expires = clock.now() + timedelta(minutes=settings.signin_link_minutes)
    link_id = (
        await session.execute(
            insert(_links)
            .values(
                program_id=program.id,
                member_id=member_id,
                token_hash=token_hash(link_token(settings.hmac_key, seed)),
                expires_at=expires,
                seed=seed,
                password_hash=password_hash,
            )
            .returning(_links.c.id)
        )
    ).scalar_one()
    member = await _member_public(session, program, member_id)
    await outbox.emit(
        session,
        program_id=program.id,
        type_="member.sign_in_link",
        member_id=member["id"],
        payload={
            "member_id": member["id"],
            "email": member["email"],
            "locale": member["locale"],
            "link_id": int(link_id),
            "expires_at": expires.isoformat(),
        },
    )


async def send_sign_in_link(
    session: AsyncSession, program: ProgramInfo, email: str, *, settings: Settings
) -> bool:
    """Ask for a `member.sign_in_link` message when the email is an active member's.

    The answer to the visitor is the same either way; the return value is for tests.
    """
    member_id = await member_by_email(session, program, email)
    if member_id is None:
        return False
    await _issue_link(session, program, member_id, settings=settings)
    return True


async def sign_up(
    session: AsyncSession,
    program: ProgramInfo,
    data: MemberCreate,
    password: str,
    *,
    settings: Settings,
) -> bool:
    """Enrol a visitor and send them a link that finishes joining; True when enrolled.

    The password waits with the link and is the member's once the link is used. When the
    email already belongs to a member, nothing of that member changes: they get a sign-in
    link instead (none when the account is closed). The visitor sees the same page either
    way, so sign-up never tells whether an email is registered.
    """
    digest = hash_password(password)  # hashed on both paths, so both take as long
    email = data.email or ""
    existing = await member_by_email(session, program, email) if email else None
    if existing is not None:
        await _issue_link(session, program, existing, settings=settings)
        return False
    try:
        member = await members_service.enrol(
            session, program, data, source="portal", actor="member"
        )
    except DuplicateMember:
        return False  # a closed account's email: nothing to send
    ref = await members_service.resolve(session, program, member_id=member.id)
    await _issue_link(session, program, ref.id, settings=settings, password_hash=digest)
    return True


async def sign_up_now(
    session: AsyncSession, program: ProgramInfo, data: MemberCreate, password: str
) -> tuple[str, SessionInfo]:
    """Enrol a visitor with their password and open their session at once.

    For servers that cannot email a link (no email channel): raises DuplicateMember when the
    email already belongs to an account, which the page says — the trade-off documented in
    docs/web.md ("Sign-in links").
    """
    member = await members_service.enrol(session, program, data, source="portal", actor="member")
    ref = await members_service.resolve(session, program, member_id=member.id)
    await set_member_password(session, program, ref.id, password)
    return await open_session(session, kind="member", program_id=program.id, member_id=ref.id)


async def sign_in_link_url(
    session: AsyncSession, program: ProgramInfo, link_id: int, *, settings: Settings
) -> str | None:
    """The URL of link `link_id` (a `member.sign_in_link` event's `link_id`) for the message
    that delivers it, or None once it is used or expired.

    For the sender of messages only: the URL signs the member in, so it is never stored,
    logged or shown.
    """
    row = (
        await session.execute(
            select(_links).where(_links.c.id == link_id, _links.c.program_id == program.id)
        )
    ).first()
    if row is None or row.seed is None or row.used_at is not None:
        return None
    if clock.as_utc(row.expires_at) <= clock.now():
        return None
    token = link_token(settings.hmac_key, row.seed)
    if not hmac.compare_digest(token_hash(token), row.token_hash):
        return None  # made with another HABITUE_HMAC_KEY
    return f"{settings.base_url}/app/{program.code}/signin/link/{token}"


async def _member_public(
    session: AsyncSession, program: ProgramInfo, member_id: int
) -> dict[str, str]:
    from habitue.members.models import Member

    members = table_of(Member)
    row = (
        await session.execute(
            select(members.c.public_id, members.c.email, members.c.locale).where(
                members.c.id == member_id, members.c.program_id == program.id
            )
        )
    ).one()
    return {"id": row.public_id, "email": row.email or "", "locale": row.locale}


async def use_sign_in_link(session: AsyncSession, program: ProgramInfo, token: str) -> int | None:
    """Spend a sign-in link once; the member's internal id, or None when unknown/used/expired.

    A sign-up's link also gives the member the password chosen when joining.
    """
    if not token or len(token) > 200:
        return None
    now = clock.now()
    row = (
        await session.execute(
            select(_links).where(
                _links.c.token_hash == token_hash(token), _links.c.program_id == program.id
            )
        )
    ).first()
    if row is None or row.used_at is not None or clock.as_utc(row.expires_at) <= now:
        return None
    done = await session.execute(
        update(_links)
        .where(_links.c.id == row.id, _links.c.used_at.is_(None))
        .values(used_at=now, seed=None, password_hash=None)
    )
    if _rowcount(done) != 1:
        return None
    if row.password_hash is not None:
        await _store_password_hash(session, program, int(row.member_id), row.password_hash)
    return int(row.member_id)


async def public_id_of(session: AsyncSession, program: ProgramInfo, member_id: int) -> str | None:
    """The public id of an active member of the program, or None."""
    from habitue.members.models import Member

    members = table_of(Member)
    row = (
        await session.execute(
            select(members.c.public_id, members.c.status).where(
                members.c.id == member_id, members.c.program_id == program.id
            )
        )
    ).first()
    if row is None or row.status != "active":
        return None
    return str(row.public_id)


# --- staff ----------------------------------------------------------------------------------


async def create_staff(
    session: AsyncSession,
    *,
    email: str,
    role: str,
    password: str,
    program_id: int | None = None,
) -> Staff:
    """Create a console user; the email is unique, the password at least 10 characters."""
    if role not in ROLES:
        raise ValidationFailed("role", f"one of {list(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed("password", f"use at least {MIN_PASSWORD} characters")
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationFailed("email", "not an email address")
    found = (await session.execute(select(_staff.c.id).where(_staff.c.email == email))).first()
    if found is not None:
        raise Conflict(f"a staff user {email} exists")
    staff_id = (
        await session.execute(
            insert(_staff)
            .values(
                email=email,
                role=role,
                password_hash=hash_password(password),
                program_id=program_id,
                active=True,
                created_at=clock.now(),
            )
            .returning(_staff.c.id)
        )
    ).scalar_one()
    return Staff(int(staff_id), email, role, program_id)


async def check_staff_password(session: AsyncSession, email: str, password: str) -> Staff | None:
    row = (
        await session.execute(select(_staff).where(_staff.c.email == email.strip().lower()))
    ).first()
    ok = verify_password(row.password_hash if row is not None else _DUMMY_HASH, password)
    if row is None or not ok or not row.active:
        return None
    return Staff(row.id, row.email, row.role, row.program_id)


async def get_staff(session: AsyncSession, staff_id: int) -> Staff | None:
    row = (await session.execute(select(_staff).where(_staff.c.id == staff_id))).first()
    if row is None or not row.active:
        return None
    return Staff(row.id, row.email, row.role, row.program_id)
