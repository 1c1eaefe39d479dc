"""The API's audit trail and request ids, as one pure ASGI middleware.

Every request gets a request id (the caller's `X-Request-ID` when it is a short token, a new
one otherwise), answered in `X-Request-ID`. A successful request that reads or changes a member,
a rule, a reward, a tier, a key, a webhook or a setting (`classify`) is recorded in the audit
log (`habitue.privacy.audit`) before its answer leaves: the answer is held until the entry is
committed, and answered 503 when it cannot be, so no data is handed out unrecorded.

Not audited: event intake, quotes, till lookups and coupon burns (the ledger and the events are
their own record, and they are the hot path), and failed requests (nothing was read or changed).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from habitue.errors import ServiceUnavailable
from habitue.middleware import send_problem
from habitue.privacy import audit

log = structlog.get_logger()

REQUEST_ID_HEADER = b"x-request-id"
_GOOD_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_MAX_CAPTURE = 256 * 1024

_PROGRAM = re.compile(r"^/v1/programs/(?P<program>[^/]+)(?P<rest>/.*)?$")

RESOURCES = {
    "members": "member",
    "rules": "rule",
    "rewards": "reward",
    "tiers": "tier",
    "api-keys": "api_key",
    "webhooks": "webhook",
    "privacy": "setting",
    "event-types": "setting",
    "fraud": "setting",
    "partners": "partner",
    "audit": "audit",
}
"""The first path segment after `/v1/programs/{program}` → the audited kind of resource."""

_ACTIONS = {
    "GET": audit.Action.READ,
    "POST": audit.Action.CREATE,
    "PUT": audit.Action.UPDATE,
    "PATCH": audit.Action.UPDATE,
    "DELETE": audit.Action.DELETE,
}


@dataclass(frozen=True, slots=True)
class Target:
    """What an audited request touches: the program's code (None: outside any program)."""

    program: str | None
    resource: str
    action: audit.Action
    resource_id: str | None
    sub: str | None
    ids_from_body: bool
    """Take the resource id(s) from the answer (a creation, or a search of members)."""
    session: str | None = None
    """`staff` (the console) or `member` (the portal): the actor is the cookie's session."""


_WEB = re.compile(r"^/(?P<area>admin|app)/(?P<program>[^/]+)(?P<rest>/.*)?$")
_CONSOLE = {
    "members": "member",
    "rewards": "reward",
    "tiers": "tier",
    "offers": "offer",
    "partners": "partner",
    "webhooks": "webhook",
    "messages": "setting",
    "campaigns": "campaign",
    "fraud": "setting",
}
"""Console pages (`/admin/{program}/…`) → the audited kind of resource."""
_PORTAL = {
    "profile": audit.Action.READ,
    "points": audit.Action.READ,
    "card": audit.Action.READ,
    "coupons": audit.Action.READ,
    "export": audit.Action.EXPORT,
    "close": audit.Action.DELETE,
}
"""Portal pages (`/app/{program}/…`) showing or changing the signed-in member's own data."""


def _classify_web(method: str, path: str) -> Target | None:
    m = _WEB.match(path)
    if m is None or method not in ("GET", "POST"):
        return None
    program = m["program"]
    parts = (m["rest"] or "").strip("/").split("/")
    if m["area"] == "app":
        action = _PORTAL.get(parts[0])
        if action is None or len(parts) > 1:
            return None
        if method == "POST" and action is audit.Action.READ:
            action = audit.Action.UPDATE
        if method == "GET" and action is audit.Action.DELETE:
            return None  # the closing form, not the closing
        return Target(program, "member", action, None, parts[0], False, "member")
    if parts[0] in ("audit", "audit.csv") and len(parts) == 1 and method == "GET":
        action = audit.Action.EXPORT if parts[0] == "audit.csv" else audit.Action.READ
        return Target(program, "audit", action, None, None, False, "staff")
    resource = _CONSOLE.get(parts[0])
    if resource is None:
        return None
    resource_id = parts[1] if len(parts) > 1 else None
    sub = "/".join(parts[2:]) or None
    action = audit.Action.READ if method == "GET" else audit.Action.UPDATE
    if resource == "member" and sub == "erase" and method == "POST":
        action = audit.Action.DELETE  # the console's erasure, as DELETE /members/{id}
    if resource != "member" and method == "GET":
        return None  # the console's catalogue pages: no one's personal data
    return Target(program, resource, action, resource_id, sub, False, "staff")


def classify(method: str, path: str) -> Target | None:
    """The audit target of a request, or None when the request is not audited (pure)."""
    if path.startswith(("/admin/", "/app/")):
        return _classify_web(method, path)
    action = _ACTIONS.get(method)
    if action is None:
        return None
    if path == "/v1/programs" and method == "POST":
        return Target(None, "program", action, None, None, True)
    m = _PROGRAM.match(path)
    if m is None:
        return None
    program, rest = m["program"], (m["rest"] or "").rstrip("/")
    if not rest:
        if method == "GET":
            return None  # a program's public settings: no one's data
        return Target(program, "setting", action, program, None, False)
    parts = rest.lstrip("/").split("/")
    resource = RESOURCES.get(parts[0])
    if resource is None:
        return None
    resource_id = parts[1] if len(parts) > 1 else None
    sub = "/".join(parts[2:]) or None
    if sub is not None and method != "GET":
        action = audit.Action.UPDATE  # a movement on a resource changes it
    if resource == "member" and sub == "export":
        action = audit.Action.EXPORT
    if resource == "audit":
        action = audit.Action.EXPORT if resource_id == "export" else audit.Action.READ
        resource_id = None
    ids_from_body = resource_id is None and method in ("GET", "POST") and resource == "member"
    ids_from_body = ids_from_body or (resource_id is None and method == "POST")
    return Target(program, resource, action, resource_id, sub, ids_from_body)


def actor_of(principal: Any) -> audit.Actor:
    """The audit actor of the API's caller (`habitue.programs.service.Principal`)."""
    if principal is None:
        return audit.Actor(audit.ActorKind.SYSTEM, "anonymous")
    if principal.key_id is None:
        return audit.Actor(audit.ActorKind.OPERATOR, principal.name)
    name = f"{principal.name}#{principal.key_id}"
    if principal.partner is not None:
        name += f"@{principal.partner}"
    return audit.Actor(audit.ActorKind.KEY, name)


def _ids(body: bytes) -> list[str | None]:
    """The ids a creation or a member search answered (the page's ids; at most 200)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [None]
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        found = [str(i.get("id")) for i in data["items"][:200] if isinstance(i, dict)]
        return [*found] or [None]
    if isinstance(data, dict):
        for name in ("id", "code", "public_id"):
            if data.get(name) is not None:
                return [str(data[name])]
    return [None]


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _GOOD_ID.match(value):
            return str(value.decode())
    return secrets.token_hex(16)


class AuditTrail:
    """Request ids for every request; audit entries for the audited ones (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode())
        target = classify(scope["method"], scope["path"])

        if target is None:

            async def tag(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), header]
                await send(message)

            await self.app(scope, receive, tag)
            return

        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        if start is None:
            return
        status = int(start["status"])
        if status < 400:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            try:
                await self._record(scope, target, request_id, status, body)
            except Exception as exc:
                log.error("audit entry not written; answer withheld", request_id=request_id)
                await send_problem(
                    send,
                    ServiceUnavailable(f"the audit log could not be written: {type(exc).__name__}"),
                    [header],
                )
                return
        for message in held:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

    async def _record(
        self, scope: Scope, target: Target, request_id: str, status: int, body: bytes
    ) -> None:
        from habitue.programs import service as programs_service

        app = scope["app"]
        state = scope.get("state", {})
        actor = actor_of(state.get("principal"))
        ids: list[str | None] = [target.resource_id]
        if target.ids_from_body and len(body) <= _MAX_CAPTURE:
            ids = _ids(body)
        detail: dict[str, Any] = {"method": scope["method"], "status": status}
        if target.sub:
            detail["sub"] = target.sub
        query = scope.get("query_string", b"")
        if query:
            # Parameter names only: a search by email must not leave the address here.
            detail["query"] = sorted(
                {p.split(b"=")[0].decode("latin-1") for p in query.split(b"&")}
            )
        entries = [
            audit.Entry(
                actor=actor,
                action=target.action,
                resource=target.resource,
                resource_id=i,
                request_id=request_id,
                detail=detail,
            )
            for i in ids
        ]
        hmac_key = app.state.settings.hmac_key

        cookie = None
        if target.session is not None:
            from starlette.requests import HTTPConnection

            from habitue.web.pages import MEMBER_COOKIE, STAFF_COOKIE

            name = STAFF_COOKIE if target.session == "staff" else MEMBER_COOKIE
            cookie = HTTPConnection(scope).cookies.get(name)
            if cookie is None:
                return  # not signed in: the page showed or changed nothing

        async def work(session: Any) -> None:
            nonlocal entries
            if target.session is not None:
                entries = await _web_entries(session, target, cookie, entries)
                if not entries:
                    return
            chain = 0
            if target.program is not None:
                chain = (await programs_service.get_info(session, target.program)).id
            elif target.resource == "program" and ids[0] is not None:
                chain = (await programs_service.get_info(session, ids[0])).id
            await audit.append(session, chain=chain, entries=entries, hmac_key=hmac_key)

        await app.state.db.write(work)


async def _web_entries(
    session: Any, target: Target, cookie: str | None, entries: list[audit.Entry]
) -> list[audit.Entry]:
    """The entries of a console or portal page, with the session's staff user or member as
    the actor (none when the cookie is no live session: the page showed nothing)."""
    from sqlalchemy import select

    from habitue.db import table_of
    from habitue.members.models import Member
    from habitue.web import service as web_service

    assert target.session is not None
    live = await web_service.load_session(session, cookie, target.session)
    if live is None:
        return []
    if target.session == "staff":
        actor = audit.Actor(audit.ActorKind.STAFF, f"staff#{live.staff_id}")
        return [dataclasses.replace(e, actor=actor) for e in entries]
    members = table_of(Member)
    public_id = (
        await session.execute(select(members.c.public_id).where(members.c.id == live.member_id))
    ).scalar_one_or_none()
    actor = audit.Actor(audit.ActorKind.MEMBER, f"member:{public_id}")
    return [dataclasses.replace(e, actor=actor, resource_id=public_id) for e in entries]
