"""The tills' hot routes served without FastAPI's routing and dependency solving.

`POST /v1/programs/{p}/events`, `/baskets/price` and `/baskets/confirm` are most of a till's
traffic. For them, `LeanRoutes` (the application router's first route) does by hand what the
FastAPI route would: the caller and the program from the process's caches, the body parsed
with orjson and validated once, the route's own endpoint function called with them, and its
answer serialised as FastAPI serialises it. That skips the route matching over every router,
the dependency graph's solving and the answer's re-validation: about a third of the CPU of a
purchase (bench/request_cpu.py).

Only the usual request takes this path: a JSON body that validates, a known key that holds
the scope, a known program the key belongs to. Anything else (a missing or unknown key, a cold
cache, another content type, a body that is not JSON or does not validate, a partner key on a
route closed to them) is handed, body and all, to the FastAPI route, which answers exactly as
it always did: the API contract and its problem+json errors have one source. The lean path runs
inside the application's exception middleware, so the errors the endpoint raises are rendered
by the same handlers.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Message, Receive, Scope, Send

from habitue import deps
from habitue.db import Database
from habitue.events.pipeline import Pipeline
from habitue.middleware import replay_first
from habitue.partners.access import PartnerAccess
from habitue.programs import service as programs_service
from habitue.programs.service import Principal, ProgramInfo
from habitue.settings import Settings

SKIP = "habitue.lean.skip"
"""Scope key set when a request goes back to the FastAPI route (the lean route then declines)."""

JSON_TYPE = b"application/json"


@dataclass(frozen=True, slots=True)
class Call:
    """What an endpoint is called with, resolved as its dependencies would resolve it."""

    request: Request
    program: ProgramInfo
    principal: Principal
    key: str = field(repr=False)  # the bearer key: a secret, never in a repr or a log
    body: Any
    db: Database
    pipeline: Pipeline


class Lean:
    """One hot route: the FastAPI route it stands for, and how its endpoint is called. The
    path, the body's model, the scope the caller needs (and whether a partner key may use
    it) and the answer's serialisation are read off the FastAPI route."""

    def __init__(
        self, route: APIRoute, run: Callable[[Call], Awaitable[Any]], takes: tuple[str, ...]
    ) -> None:
        self.route = route
        self.run = run
        self.tail = route.path.removeprefix(PREFIX)
        parameters = inspect.signature(route.endpoint).parameters
        if tuple(parameters) != takes:
            # An endpoint given another dependency: `run` must resolve it too.
            raise TypeError(f"{route.path}'s endpoint takes {tuple(parameters)}, not {takes}")
        body = route.body_field
        model = body.field_info.annotation if body is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{route.path} takes no model as its body")
        self.model: type[BaseModel] = model
        principal = parameters["principal"].default
        require = getattr(principal, "dependency", None)
        if not isinstance(require, deps.Require):
            raise TypeError(f"{route.path}'s caller is not a `deps.scoped` dependency")
        self.require = require

    def serialise(self, value: BaseModel) -> Response:
        """The answer as FastAPI makes it of the route's response model."""
        route = self.route
        content = value.model_dump_json(
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
        )
        status = route.status_code or 200
        return Response(content, status_code=status, media_type="application/json")


PREFIX = "/v1/programs/{program}/"


class LeanRoutes(BaseRoute):
    """The router's first route: takes the hot routes' usual requests (module docstring) and
    declines everything else in one string comparison."""

    def __init__(self, app: FastAPI, routes: list[Lean]) -> None:
        self.app = app
        self.by_tail = {route.tail: route for route in routes}
        self.include_in_schema = False

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or SKIP in scope:
            return Match.NONE, {}
        if scope.get("root_path"):  # mounted under a prefix: FastAPI's matching knows it
            return Match.NONE, {}
        path: str = scope["path"]
        if not path.startswith("/v1/programs/"):
            return Match.NONE, {}
        code, _, tail = path[13:].partition("/")
        route = self.by_tail.get(tail)
        if route is None or not code:
            return Match.NONE, {}
        return Match.FULL, {"habitue.lean": (route, code)}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, code = scope.pop("habitue.lean")
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self._decline(scope, replay_first(message, receive), send)
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = self._resolve(scope, receive, route, code, body)
        if call is None:
            await self._decline(scope, replay_first(_request(body), receive), send)
            return
        principal = call.principal
        if principal.key_id is not None and programs_service.last_use_due(principal.key_id):
            await deps._record_use(call.db, principal.key_id)
        # The key and the program read again before their cached entries expire, by one
        # request: the requests in flight at an expiry would all leave this route.
        await programs_service.refresh_ahead(call.db.read, call.key, code)
        scope.setdefault("state", {})["principal"] = principal
        # As the router sets them (the Idempotency-Key record reads the route).
        scope.update(
            route=route.route, endpoint=route.route.endpoint, path_params={"program": code}
        )
        answer = await route.run(call)
        if not isinstance(answer, Response):
            answer = route.serialise(answer)
        await answer(scope, receive, send)

    def _resolve(
        self, scope: Scope, receive: Receive, route: Lean, code: str, body: bytes
    ) -> Call | None:
        """The endpoint's arguments when the request is a usual one; None otherwise."""
        auth = b""
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-type":
                content_type = value
        if content_type.partition(b";")[0].strip().lower() != JSON_TYPE:
            return None
        if self.app.dependency_overrides:  # a test replacing a dependency: FastAPI applies it
            return None
        scheme, _, key = auth.decode("latin-1").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        settings: Settings = self.app.state.settings
        _, principal = programs_service.cached_principal(key, settings.admin_key)
        if principal is None:
            return None
        require = route.require
        if principal.partner is not None:
            if require.partner is PartnerAccess.NONE:
                return None
            if not principal.allows(require.partner_scope or require.scope):
                return None
        elif not principal.allows(require.scope):
            return None
        program = programs_service.cached_info(code)
        if program is None:
            return None
        if principal.program_id is not None and principal.program_id != program.id:
            return None
        try:
            parsed = route.model.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None
        state = self.app.state
        return Call(
            Request(scope, receive), program, principal, key, parsed, state.db, state.pipeline
        )

    async def _decline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the FastAPI route, which answers it as it always has."""
        scope[SKIP] = True
        await self.app.router(scope, receive, send)


def _request(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


def install(app: FastAPI) -> None:
    """Put the lean routes first in `app`'s router."""
    from habitue.events import api as events_api
    from habitue.promotions import api as promotions_api

    async def record_event(call: Call) -> Any:
        return await events_api.record_event(
            call.program, call.body, call.db, call.pipeline, call.principal
        )

    async def price_basket(call: Call) -> Any:
        # Pricing writes nothing and its reads need no snapshot in common: no transaction.
        async with call.db.read_statements() as session:
            return await promotions_api.price_basket(
                call.request, call.program, call.body, session, call.pipeline, call.principal
            )

    async def confirm_basket(call: Call) -> Any:
        return await promotions_api.confirm_basket(
            call.request, call.program, call.body, call.db, call.pipeline, call.principal
        )

    routes = [
        Lean(
            _route(events_api.router, events_api.record_event),
            record_event,
            ("program", "body", "db", "pipeline", "principal"),
        ),
        Lean(
            _route(promotions_api.router, promotions_api.price_basket),
            price_basket,
            ("request", "program", "body", "session", "pipeline", "principal"),
        ),
        Lean(
            _route(promotions_api.router, promotions_api.confirm_basket),
            confirm_basket,
            ("request", "program", "body", "db", "pipeline", "principal"),
        ),
    ]
    app.router.routes.insert(0, LeanRoutes(app, routes))


def _route(router: APIRouter, endpoint: Callable[..., Any]) -> APIRoute:
    """The POST route of `endpoint` under `/v1/programs/{program}/`."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            if route.methods != {"POST"} or not route.path.startswith(PREFIX):
                raise RuntimeError(f"{route.path} is not a POST under {PREFIX}")
            return route
    raise RuntimeError(f"no route for {endpoint.__name__}")
