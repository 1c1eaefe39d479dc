"""The member portal, `/app/{program}/…`: sign-up, sign-in, card, points, profile, export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database
from habitue.errors import HabitueError
from habitue.ledger import service as ledger_service
from habitue.members import service as members_service
from habitue.members.errors import DuplicateMember
from habitue.members.schemas import CHANNELS, MemberCreate, MemberRead, MemberUpdate
from habitue.privacy import erasure
from habitue.privacy import export as privacy_export
from habitue.programs import service as programs_service
from habitue.programs.errors import ProgramNotFound
from habitue.programs.schemas import logo_bytes
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings
from habitue.tiers.benefits import benefits_of, privilege_list
from habitue.web import account, limits, words
from habitue.web import service as web_service
from habitue.web.codes import code128_svg, qr_svg
from habitue.web.i18n import _l, normalise
from habitue.web.pages import (
    LOCALE_COOKIE,
    MEMBER_COOKIE,
    STATIC,
    Page,
    form_of,
    new_page,
    safe_next,
    signin_url,
)
from habitue.web.wallet import wallet_links

router = APIRouter(prefix="/app", include_in_schema=False)
log = structlog.get_logger()

OTHER = _l("Other")
KIND_LABELS = {
    "earn": _l("Points earned"),
    "purchase": _l("Points earned"),
    "refund": _l("Refund"),
    "spend": _l("Points spent"),
    "redeem": _l("Reward"),
    "adjust": _l("Adjustment"),
    "expire": _l("Points expired"),
    "release": _l("Points confirmed"),
    "reverse": _l("Taken back"),
}
FIELD_MESSAGES = {
    "email": _l("Enter a valid email address."),
    "phone": _l("Enter a valid phone number, for example +33 6 12 34 56 78."),
    "birth_date": _l("Enter a real date of birth."),
    "first_name": _l("This is too long."),
    "last_name": _l("This is too long."),
    "locale": _l("Choose one of the languages offered."),
}


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def base(program: ProgramInfo) -> str:
    return f"/app/{program.code}"


@dataclass
class Portal:
    """A portal request: its page, program and (when signed in) member."""

    page: Page
    program: ProgramInfo
    member: MemberRead | None = None
    member_id: int | None = None
    token: str | None = None

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.page.render(
            template,
            status,
            program=self.program,
            member=self.member,
            base=base(self.program),
            area="portal",
            email_links=bool(self.page.settings.smtp_url),
            **context,
        )


async def _program(request: Request, code: str) -> ProgramInfo | None:
    if len(code) > 64:
        return None
    try:
        async with _db(request).read() as session:
            return await programs_service.get_info(session, code)
    except ProgramNotFound:
        return None


def _not_found(request: Request) -> Response:
    page = new_page(request)
    return page.render(
        "error.html",
        404,
        title=page._("Page not found"),
        message=page._("There is no loyalty program at this address."),
        area="portal",
        program=None,
        member=None,
    )


async def _load(request: Request, code: str, *, signed_in: bool = True) -> Portal | Response:
    """The portal context, or the response to send instead (404, or go to sign-in)."""
    program = await _program(request, code)
    if program is None:
        return _not_found(request)
    token = request.cookies.get(MEMBER_COOKIE)
    member: MemberRead | None = None
    member_id: int | None = None
    info = None
    async with _db(request).read() as session:
        own_words = await words.all_words(session, program.id)
        info = await web_service.load_session(session, token, "member")
        if info is not None and info.program_id == program.id and info.member_id is not None:
            public_id = await web_service.public_id_of(session, program, info.member_id)
            if public_id is not None:
                member = await members_service.read(session, program, public_id)
                member_id = info.member_id
    if member is None:
        info = None
    page = new_page(
        request,
        session=info,
        member_locale=member.locale if member else None,
        timezone=program.timezone,
    )
    page.words = own_words
    if signed_in and member is None:
        return page.redirect(signin_url(f"{base(program)}/signin", request.url.path))
    return Portal(page, program, member, member_id, token if member else None)


async def _load_form(
    request: Request, code: str, *, signed_in: bool = True
) -> tuple[Portal, dict[str, str]] | Response:
    """A posted form with its portal context, once its CSRF token checks out."""
    portal = await _load(request, code, signed_in=signed_in)
    if isinstance(portal, Response):
        return portal
    form = await form_of(request)
    if not portal.page.csrf_ok(form):
        return _forbidden_form(portal)
    return portal, form


def _forbidden_form(portal: Portal) -> Response:
    return portal.render(
        "error.html",
        403,
        title=portal.page._("This form has expired"),
        message=portal.page._("Please go back, reload the page and try again."),
    )


# --- installable app ------------------------------------------------------------------------


@router.get("/{program}/manifest.webmanifest")
async def manifest(request: Request, program: str) -> Response:
    info = await _program(request, program)
    if info is None:
        return _not_found(request)
    body = {
        "name": info.name,
        "short_name": info.name[:12],
        "id": f"/app/{info.code}/",
        "start_url": f"/app/{info.code}/card",
        "scope": f"/app/{info.code}/",
        "display": "standalone",
        "background_color": programs_service.branding_of(info).background_color,
        "theme_color": programs_service.branding_of(info).primary_color,
        "icons": [
            {"src": "/static/icons/icon-192.png", "sizes": "192x192", "type": "image/png"},
            {"src": "/static/icons/icon-512.png", "sizes": "512x512", "type": "image/png"},
            {
                "src": "/static/icons/icon-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }
    return Response(json.dumps(body), media_type="application/manifest+json")


@router.get("/{program}/logo")
async def logo(request: Request, program: str) -> Response:
    """The program's logo (set in the setup wizard or `PUT …/branding`), for the portal's
    header and the wallet pass; 404 when it has none."""
    info = await _program(request, program)
    stored = info.branding.get("logo") if info is not None else None
    if not stored:
        return _not_found(request)
    media, raw = logo_bytes(stored)
    return Response(
        raw,
        media_type=media,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/{program}/sw.js")
async def service_worker(request: Request, program: str) -> Response:
    info = await _program(request, program)
    if info is None:
        return _not_found(request)
    script = (STATIC / "sw.js").read_text().replace("__BASE__", f"/app/{info.code}")
    return Response(
        script,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": f"/app/{info.code}/"},
    )


@router.get("/{program}/offline")
async def offline(request: Request, program: str) -> Response:
    """What the service worker shows for a page of the portal opened without a connection."""
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    portal.member = None  # cached for anyone on this device: it names no one
    return portal.render("portal/offline.html")


# --- signing up and in ----------------------------------------------------------------------


@router.get("/{program}")
@router.get("/{program}/")
async def home(request: Request, program: str) -> Response:
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    target = "card" if portal.member else "signin"
    return portal.page.redirect(f"{base(portal.program)}/{target}")


@router.get("/{program}/signup")
async def signup_form(request: Request, program: str) -> Response:
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    if portal.member:
        return portal.page.redirect(f"{base(portal.program)}/card")
    values = {"locale": portal.page.locale}  # no consent is ticked in advance
    ref = (request.query_params.get("ref") or "").strip()[: account.MAX_REFERRAL_CODE]
    if ref:
        values["referral_code"] = ref
    return await _signup_page(request, portal, 200, values, {})


async def _signup_page(
    request: Request, portal: Portal, status: int, values: dict[str, str], errors: dict[str, str]
) -> Response:
    info = portal.program
    async with _db(request).read() as session:
        referrals = await account.referrals_open(session, info)
    return portal.render(
        "portal/signup.html", status, values=values, errors=errors, referrals=referrals
    )


def _signup_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors():
        loc = e.get("loc", ())
        name = str(loc[0]) if loc else "form"
        errors.setdefault(name, FIELD_MESSAGES.get(name, _l("Check this field.")))
    return errors


@router.post("/{program}/signup")
async def signup(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program, signed_in=False)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    values = {k: v for k, v in form.items() if k not in ("password", "csrf_token")}
    errors: dict[str, str] = {}
    email = form.get("email", "").strip()
    password = form.get("password", "")
    if not email:
        errors["email"] = _l("Enter your email address.")
    if len(password) < web_service.MIN_PASSWORD:
        errors["password"] = _l("Use at least 10 characters.")
    birth: date | None = None
    if form.get("birth_date"):
        try:
            birth = date.fromisoformat(form["birth_date"])
        except ValueError:
            errors["birth_date"] = FIELD_MESSAGES["birth_date"]
    locale = normalise(form.get("locale")) or portal.page.locale
    referral = form.get("referral_code", "").strip()
    if referral:
        # checked first, so the answer never depends on whether the email is registered
        async with _db(request).read() as session:
            if not await account.referral_code_known(session, portal.program, referral):
                errors["referral_code"] = _l("This code is not known. Check it with your friend.")
    data: MemberCreate | None = None
    try:
        data = MemberCreate(
            email=email or None,
            phone=form.get("phone") or None,
            first_name=form.get("first_name") or None,
            last_name=form.get("last_name") or None,
            birth_date=birth,
            locale=locale,
            consents={c: form.get(f"consent_{c}") == "on" for c in CHANNELS},
        )
    except ValidationError as exc:
        for name, message in _signup_errors(exc).items():
            errors.setdefault(name, message)
    if errors or data is None:
        portal.page.locale = locale
        return await _signup_page(request, portal, 422, values, errors)
    info = portal.program
    settings = _settings(request)
    joined = data
    if not settings.smtp_url:
        # No email channel: no link could reach the visitor. Sign them in at once, and say
        # when the address is taken (docs/web.md, "Sign-in links").

        async def now(session: AsyncSession) -> str:
            token, opened = await web_service.sign_up_now(session, info, joined, password)
            await _refer(session, info, opened.member_id, referral)
            return token

        try:
            token = await _db(request).write(now)
        except DuplicateMember:
            errors["email"] = _l("An account already uses this address. Sign in instead.")
            portal.page.locale = locale
            return await _signup_page(request, portal, 422, values, errors)
        portal.page.set_cookie(MEMBER_COOKIE, token, path="/app")
        portal.page.set_cookie(LOCALE_COOKIE, locale)
        return portal.page.redirect(f"{base(info)}/card")

    async def later(session: AsyncSession) -> None:
        enrolled = await web_service.sign_up(session, info, joined, password, settings=settings)
        if enrolled and joined.email:
            await _refer(
                session, info, await web_service.member_by_email(session, info, email), referral
            )

    await _db(request).write(later)
    # The same page whether the email was new or a member's: sign-up tells no one which.
    portal.page.locale = locale
    portal.page.set_cookie(LOCALE_COOKIE, locale)
    return portal.render(
        "portal/signin.html",
        values={},
        errors={},
        next="",
        signup_sent=True,
        minutes=settings.signin_link_minutes,
    )


async def _refer(
    session: AsyncSession, info: ProgramInfo, member_id: int | None, code: str
) -> None:
    """The friend's code of a new member, through the rewards room's referral rules."""
    if not code or member_id is None:
        return
    public_id = await web_service.public_id_of(session, info, member_id)
    if public_id is not None:
        await account.refer(session, info, public_id, code)


@router.get("/{program}/signin")
async def signin_form(request: Request, program: str, next: str | None = None) -> Response:  # noqa: A002
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    if portal.member:
        return portal.page.redirect(f"{base(portal.program)}/card")
    return portal.render(
        "portal/signin.html", values={}, errors={}, next=safe_next(next, "/app/", "")
    )


@router.post("/{program}/signin")
async def signin(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program, signed_in=False)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    info = portal.program
    email = form.get("email", "").strip()
    password = form.get("password", "")
    target = safe_next(form.get("next"), f"{base(info)}/", f"{base(info)}/card")

    buckets = limits.password_buckets(request, email and f"member:{info.id}:{email.lower()}")
    wait = await limits.check(request, buckets)
    if wait:
        errors = {"password": limits.TOO_MANY_PASSWORDS}
        page = portal.render(
            "portal/signin.html", 429, values={"email": email}, errors=errors, next=target
        )
        return limits.refused(page, wait)

    async def work(session: AsyncSession) -> tuple[str, web_service.SessionInfo] | None:
        member_id = await web_service.check_member_password(session, info, email, password)
        if member_id is None:
            return None
        return await web_service.open_session(
            session, kind="member", program_id=info.id, member_id=member_id
        )

    opened = await _db(request).write(work) if email and password else None
    if opened is None:
        await limits.hit(request, buckets)
        errors = {"password": _l("The email or the password is not right.")}
        if not email:
            errors = {"email": _l("Enter your email address.")}
        return portal.render(
            "portal/signin.html", 422, values={"email": email}, errors=errors, next=target
        )
    portal.page.set_cookie(MEMBER_COOKIE, opened[0], path="/app")
    return portal.page.redirect(target)


@router.post("/{program}/signin/link")
async def signin_link(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program, signed_in=False)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    email = form.get("link_email", "").strip()
    if "@" not in email or len(email) > 320:
        return portal.render(
            "portal/signin.html",
            422,
            values={"link_email": email},
            errors={"link_email": _l("Enter a valid email address.")},
            next="",
        )
    info = portal.program
    if not _settings(request).smtp_url:  # nothing could carry the link: say so, send none
        return portal.render(
            "portal/signin.html",
            422,
            values={"link_email": email},
            errors={},
            next="",
        )
    wait = await limits.acquire(request, limits.link_buckets(request, info.id, email))
    if wait:
        page = portal.render(
            "portal/signin.html",
            429,
            values={"link_email": email},
            errors={"link_email": limits.TOO_MANY_LINKS},
            next="",
        )
        return limits.refused(page, wait)
    settings = _settings(request)
    await _db(request).write(
        lambda s: web_service.send_sign_in_link(s, info, email, settings=settings)
    )
    return portal.render(
        "portal/signin.html",
        values={},
        errors={},
        next="",
        link_sent=True,
        minutes=settings.signin_link_minutes,
    )


@router.get("/{program}/signin/link/{token}")
async def signin_with_link(request: Request, program: str, token: str) -> Response:
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    info = portal.program

    async def work(session: AsyncSession) -> str | None:
        member_id = await web_service.use_sign_in_link(session, info, token)
        if member_id is None or await web_service.public_id_of(session, info, member_id) is None:
            return None
        cookie, _ = await web_service.open_session(
            session, kind="member", program_id=info.id, member_id=member_id
        )
        return cookie

    cookie = await _db(request).write(work)
    if cookie is None:
        return portal.render(
            "portal/signin.html",
            400,
            values={},
            errors={
                "link_email": _l("This link has expired or was already used. Ask for a new one.")
            },
            next="",
        )
    portal.page.set_cookie(MEMBER_COOKIE, cookie, path="/app")
    return portal.page.redirect(f"{base(info)}/card")


@router.post("/{program}/signout")
async def signout(request: Request, program: str) -> Response:
    portal = await _load(request, program, signed_in=False)
    if isinstance(portal, Response):
        return portal
    form = await form_of(request)
    if portal.member and not portal.page.csrf_ok(form):
        return _forbidden_form(portal)
    token = request.cookies.get(MEMBER_COOKIE)
    await _db(request).write(lambda s: web_service.close_session(s, token))
    portal.page.delete_cookie(MEMBER_COOKIE, path="/app")
    return portal.page.redirect(f"{base(portal.program)}/signin?signed_out=1")


@router.post("/{program}/locale")
async def switch_locale(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program, signed_in=False)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    locale = normalise(form.get("locale")) or portal.page.locale
    target = safe_next(form.get("next"), f"{base(portal.program)}/", f"{base(portal.program)}/")
    portal.page.set_cookie(LOCALE_COOKIE, locale)
    if portal.member is not None and portal.member.locale != locale:
        info, public_id = portal.program, portal.member.id
        await _db(request).write(
            lambda s: members_service.update_member(
                s, info, public_id, MemberUpdate(locale=locale), actor="member"
            )
        )
    return portal.page.redirect(target)


# --- the member's pages ---------------------------------------------------------------------


@router.get("/{program}/card")
async def card(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    member = portal.member
    assert member is not None
    active = next((c for c in member.cards if c.number == member.card_number), None)
    wallets = (
        wallet_links(
            portal.page.settings,
            program=portal.program.code,
            card_number=active.number,
            member_id=member.id,
            branding=programs_service.branding_of(portal.program),
        )
        if active
        else []
    )
    async with _db(request).read() as session:
        ref = await members_service.resolve(session, portal.program, member_id=member.id)
        held = await benefits_of(session, portal.program, ref)
    return portal.render(
        "portal/card.html",
        privileges=privilege_list(held),
        card=active,
        qr=qr_svg(active.qr_payload) if active else "",
        barcode=code128_svg(active.number) if active else "",
        balance=member.balance,
        wallets=wallets,
    )


async def _history(request: Request, portal: Portal, limit: int) -> list[dict[str, Any]]:
    assert portal.member_id is not None
    member_id = portal.member_id
    async with _db(request).read() as session:
        return await ledger_service.history(session, member_id, before=None, limit=limit)


METRIC_LABELS = {
    "tier_credits": _l("tier credits"),
    "qualifying_spend": _l("spent"),
    "visits": _l("visits"),
    "purchases": _l("purchases"),
    "bookings": _l("bookings"),
}


async def _tier_progress(request: Request, portal: Portal) -> Any:
    """The member's tier progress when the program has a ladder (the tiers room), else None."""
    assert portal.member is not None
    info, public_id = portal.program, portal.member.id
    try:
        from habitue.tiers import service as tiers_service

        async with _db(request).read() as session:
            ref = await members_service.resolve(session, info, member_id=public_id)
            return await tiers_service.progress(session, info, ref)
    except HabitueError:
        return None  # no ladder in this program
    except Exception:  # the tiers room must not take the points page down with it
        log.exception("tier progress failed", program=info.code)
        return None


@router.get("/{program}/points")
async def points(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    assert portal.member is not None
    items = await _history(request, portal, 100)
    tier = await _tier_progress(request, portal)
    return portal.render(
        "portal/points.html",
        balance=portal.member.balance,
        history=items,
        kinds=KIND_LABELS,
        tier=tier,
        metrics=METRIC_LABELS,
    )


@router.get("/{program}/profile")
async def profile_form(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    return portal.render(
        "portal/profile.html",
        values=_profile_values(portal.member),
        errors={},
        saved=request.query_params.get("saved") == "1",
        password_saved=request.query_params.get("password") == "1",
    )


@router.post("/{program}/password")
async def change_password(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    assert portal.member_id is not None
    info, member_id = portal.program, portal.member_id
    current, new = form.get("current_password", ""), form.get("new_password", "")
    errors: dict[str, str] = {}
    if len(new) < web_service.MIN_PASSWORD:
        errors["new_password"] = _l("Use at least 10 characters.")
    buckets = limits.password_buckets(request, f"member:{info.id}:change:{member_id}")
    wait = await limits.check(request, buckets)
    if wait:
        errors = {"current_password": limits.TOO_MANY_PASSWORDS}
    elif not errors:
        changed = await _db(request).write(
            lambda s: account.change_password(s, info, member_id, current, new)
        )
        if changed:
            return portal.page.redirect(f"{base(info)}/profile?password=1#password")
        await limits.hit(request, buckets)
        errors["current_password"] = _l("This is not your current password.")
    page = portal.render(
        "portal/profile.html",
        429 if wait else 422,
        values=_profile_values(portal.member),
        errors=errors,
    )
    return limits.refused(page, wait) if wait else page


def _profile_values(member: MemberRead | None) -> dict[str, str]:
    assert member is not None
    values = {
        "first_name": member.first_name or "",
        "last_name": member.last_name or "",
        "email": member.email or "",
        "phone": member.phone or "",
        "birth_date": member.birth_date.isoformat() if member.birth_date else "",
        "locale": member.locale,
    }
    for channel in CHANNELS:
        if (member.consents.get(channel) or {}).get("granted"):
            values[f"consent_{channel}"] = "on"
    return values


@router.post("/{program}/profile")
async def profile(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {
        "first_name": form.get("first_name", "").strip() or None,
        "last_name": form.get("last_name", "").strip() or None,
        "phone": form.get("phone", "").strip() or None,
        "locale": normalise(form.get("locale")) or portal.member.locale,
        "consents": {c: form.get(f"consent_{c}") == "on" for c in CHANNELS},
    }
    email = form.get("email", "").strip()
    if not email:
        errors["email"] = _l("Enter your email address.")
    else:
        changes["email"] = email
    if form.get("birth_date"):
        try:
            changes["birth_date"] = date.fromisoformat(form["birth_date"])
            if changes["birth_date"] > date.today() or changes["birth_date"].year < 1900:
                errors["birth_date"] = FIELD_MESSAGES["birth_date"]
        except ValueError:
            errors["birth_date"] = FIELD_MESSAGES["birth_date"]
    data: MemberUpdate | None = None
    if not errors:
        try:
            data = MemberUpdate(**changes)
        except ValidationError as exc:
            errors.update(_signup_errors(exc))
    if errors or data is None:
        return portal.render("portal/profile.html", 422, values=values, errors=errors)
    info, public_id = portal.program, portal.member.id
    try:
        await _db(request).write(
            lambda s: members_service.update_member(s, info, public_id, data, actor="member")
        )
    except DuplicateMember:
        errors["email"] = _l("This email is already registered.")
        return portal.render("portal/profile.html", 422, values=values, errors=errors)
    portal.page.set_cookie(LOCALE_COOKIE, data.locale or portal.page.locale)
    return portal.page.redirect(f"{base(info)}/profile?saved=1")


@router.get("/{program}/export")
async def export(request: Request, program: str) -> Response:
    portal = await _load(request, program)
    if isinstance(portal, Response):
        return portal
    assert portal.member is not None
    items = await _history(request, portal, 10_000)
    info, public_id = portal.program, portal.member.id
    async with _db(request).read() as session:
        full = await privacy_export.export(session, info, public_id)
    body = {
        "generated_at": clock.now().isoformat(),
        "program": portal.program.code,
        "member": portal.member.model_dump(mode="json"),
        "movements": items,
        "format": full.format,
        "sections": full.sections,
    }
    filename = f"habitue-{portal.program.code}-{portal.member.id}.json"
    return portal.page.finish(
        Response(
            json.dumps(body, indent=2, ensure_ascii=False),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    )


@router.post("/{program}/close")
async def close_account(request: Request, program: str) -> Response:
    loaded = await _load_form(request, program)
    if isinstance(loaded, Response):
        return loaded
    portal, form = loaded
    assert portal.member is not None
    assert portal.member_id is not None
    if form.get("confirm") != "on":
        return portal.render(
            "portal/profile.html",
            422,
            values=_profile_values(portal.member),
            errors={"confirm": _l("Tick the box to confirm that you want to close your account.")},
        )
    info, public_id, member_id = portal.program, portal.member.id, portal.member_id

    async def work(session: AsyncSession) -> erasure.Erasure:
        done = await erasure.erase(session, info, public_id, actor="member")
        await web_service.close_member_sessions(session, member_id)
        return done

    done = await _db(request).write(work)
    portal.page.delete_cookie(MEMBER_COOKIE, path="/app")
    portal.member = None
    return portal.render("portal/closed.html", done=done)
