"""The web room's routers: static files, the member portal and the admin console."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, Response

from habitue.web.pages import STATIC

static_router = APIRouter(include_in_schema=False)
_ROOT = STATIC.resolve()
_TYPES = {".js": "text/javascript", ".css": "text/css", ".webmanifest": "application/manifest+json"}


@static_router.get("/static/{path:path}")
async def static(path: str) -> Response:
    """A file under `web/static`, never outside it; vendored files are cached for a year."""
    target = (_ROOT / path).resolve()
    if not target.is_relative_to(_ROOT) or not target.is_file() or target.name == "sw.js":
        return PlainTextResponse("not found", status_code=404)
    media = (
        _TYPES.get(target.suffix)
        or mimetypes.guess_type(target.name)[0]
        or "application/octet-stream"
    )
    cache = (
        "public, max-age=31536000, immutable"
        if "vendor" in target.parts
        else "public, max-age=3600"
    )
    return FileResponse(
        target,
        media_type=media,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )


def routers() -> list[Any]:
    from habitue.web import portal_club, portal_rewards  # noqa: F401  (pages of the portal's router)
    from habitue.web.admin import router as admin_router
    from habitue.web.admin_audit import router as audit_router
    from habitue.web.admin_campaigns import router as campaigns_router
    from habitue.web.admin_club import router as club_router
    from habitue.web.admin_erase import router as erase_router
    from habitue.web.admin_fraud import router as fraud_router
    from habitue.web.admin_member_list import router as member_list_router
    from habitue.web.admin_messages import router as messages_router
    from habitue.web.admin_newsletters import router as newsletters_router
    from habitue.web.admin_offers import router as offers_router
    from habitue.web.admin_partners import router as partners_router
    from habitue.web.admin_rewards import router as rewards_router
    from habitue.web.admin_rule_drafts import router as rule_drafts_router
    from habitue.web.admin_rules import router as rules_router
    from habitue.web.admin_setup import router as setup_router
    from habitue.web.admin_tiers import router as tiers_router
    from habitue.web.admin_webhooks import router as webhooks_router
    from habitue.web.admin_words import router as words_router
    from habitue.web.portal import router as portal_router

    return [
        static_router,
        portal_router,
        setup_router,
        admin_router,
        tiers_router,
        rewards_router,
        offers_router,
        campaigns_router,
        partners_router,
        webhooks_router,
        messages_router,
        newsletters_router,
        words_router,
        member_list_router,
        club_router,
        rule_drafts_router,
        rules_router,
        fraud_router,
        erase_router,
        audit_router,
    ]
