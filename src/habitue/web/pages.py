"""Rendering a page: templates per language, cookies, CSRF, security headers."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from habitue.bounds import text_problem
from habitue.errors import ValidationFailed
from habitue.settings import Settings
from habitue.web import labels
from habitue.web.i18n import (
    DEFAULT_LOCALE,
    LOCALE_NAMES,
    LOCALES,
    Formatter,
    from_accept_language,
    normalise,
    translations,
)
from habitue.web.service import SessionInfo

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

LOCALE_COOKIE = "habitue_locale"
CSRF_COOKIE = "habitue_csrf"
MEMBER_COOKIE = "habitue_member"
STAFF_COOKIE = "habitue_staff"
CSRF_FIELD = "csrf_token"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@lru_cache(maxsize=len(LOCALES))
def environment(locale: str) -> Environment:
    """A Jinja environment whose `_`, `gettext` and `ngettext` speak `locale`."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    return env


def gettext(locale: str, message: str) -> str:
    return translations(locale).gettext(message)


@dataclass
class Page:
    """What every page needs to know about its request."""

    request: Request
    settings: Settings
    locale: str
    csrf: str
    timezone: str = "UTC"
    session: SessionInfo | None = None
    set_cookies: dict[str, tuple[str, str]] = field(default_factory=dict)
    delete_cookies: list[tuple[str, str]] = field(default_factory=list)
    words: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """The program's own words, (locale, kind, code) → text (`habitue.web.words`)."""

    def _word(self, kind: str, code: str) -> str | None:
        return self.words.get((self.locale, kind, code))

    def label(self, group: str, code: str) -> str:
        """What the reader sees for a code (`habitue.web.labels`)."""
        own = self._word(group, code)
        return own or labels.label(group, code, self._)

    def points_name(self, default: str) -> str:
        """The program's points name in the page's language."""
        return self._word("points", "") or default

    def tier_name(self, code: str | None, default: str | None) -> str:
        """A tier's name in the page's language."""
        return (self._word("tier", code) if code else None) or default or ""

    @property
    def secure(self) -> bool:
        return self.settings.env == "production"

    @property
    def fmt(self) -> Formatter:
        return Formatter(self.locale, self.timezone)

    def _(self, message: str) -> str:
        return gettext(self.locale, message)

    def set_cookie(self, name: str, value: str, path: str = "/") -> None:
        self.set_cookies[name] = (value, path)

    def delete_cookie(self, name: str, path: str = "/") -> None:
        self.delete_cookies.append((name, path))

    def finish(self, response: Response) -> Response:
        for name, (value, path) in self.set_cookies.items():
            response.set_cookie(
                name,
                value,
                path=path,
                httponly=True,
                samesite="lax",
                secure=self.secure,
                max_age=None if name in (MEMBER_COOKIE, STAFF_COOKIE) else 60 * 60 * 24 * 365,
            )
        for name, path in self.delete_cookies:
            response.delete_cookie(
                name, path=path, httponly=True, samesite="lax", secure=self.secure
            )
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        env = environment(self.locale)
        html = env.get_template(template).render(
            page=self,
            locale=self.locale,
            locales=[(code, LOCALE_NAMES[code]) for code in LOCALES],
            csrf_field=CSRF_FIELD,
            csrf=self.csrf,
            fmt=self.fmt,
            label=self.label,
            points_name=self.points_name,
            tier_name=self.tier_name,
            path=self.request.url.path,
            **context,
        )
        return self.finish(HTMLResponse(html, status_code=status))

    def redirect(self, url: str) -> Response:
        return self.finish(RedirectResponse(url, status_code=303))

    def csrf_ok(self, form: dict[str, str]) -> bool:
        sent = form.get(CSRF_FIELD, "")
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())


def new_page(
    request: Request,
    *,
    session: SessionInfo | None = None,
    member_locale: str | None = None,
    timezone: str = "UTC",
) -> Page:
    """A page for this request: its language and CSRF token (the session's, or a cookie's)."""
    settings: Settings = request.app.state.settings
    locale = (
        normalise(member_locale)
        or normalise(request.cookies.get(LOCALE_COOKIE))
        or from_accept_language(request.headers.get("accept-language"))
        or DEFAULT_LOCALE
    )
    cookie_csrf = request.cookies.get(CSRF_COOKIE, "")
    page = Page(request, settings, locale, cookie_csrf, timezone=timezone, session=session)
    if session is not None:
        page.csrf = session.csrf
    elif len(cookie_csrf) < 20 or len(cookie_csrf) > 100:
        page.csrf = secrets.token_urlsafe(24)
        page.set_cookie(CSRF_COOKIE, page.csrf)
    return page


async def form_of(request: Request) -> dict[str, str]:
    """The posted form as plain strings (files are ignored)."""
    try:
        data = await request.form()
    except Exception:  # a malformed body is treated as an empty form
        return {}
    values = {k: v for k, v in data.items() if isinstance(v, str)}
    for name, value in values.items():
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            raise ValidationFailed(name, problem)
    return values


def safe_next(value: str | None, prefix: str, default: str) -> str:
    """A local redirect target under `prefix`, never another site."""
    if value and value.startswith(prefix) and not value.startswith("//") and "\\" not in value:
        return value
    return default


def signin_url(base: str, next_path: str) -> str:
    return f"{base}?next={quote(next_path)}"
