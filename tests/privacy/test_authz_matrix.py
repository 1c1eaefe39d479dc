"""The authorisation matrix: every operation of /openapi.json, tried with every kind of
credential that must not reach it — none, a bad key, another program's key, a partner's key
where the path does not open to partners, each single-scope key without the path's scope,
and a member's portal session — answers 401, 403 or 404 and none of the program's data.
Two rows more: a partner key, on every path that opens a member to partners, for a member
who has not consented to sharing (403 `no-sharing-consent`); and an `analytics:read` key on
every per-member analytics path (403 `aggregate-only`)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from habitue.deps import Require
from habitue.partners.access import PartnerAccess
from habitue.programs.schemas import PARTNER_SCOPES, SCOPES
from tests.conftest import create_program, enrol, purchase
from tests.web.conftest import signup

NO_KEY_NEEDED = {
    # The one-click unsubscribe link of an email: its token is the credential.
    ("POST", "/v1/programs/{program}/unsubscribe/{token}"),
    # The club's payment provider: its signature is the credential.
    ("POST", "/v1/programs/{program}/club/webhooks/manual"),
    # The webhook event catalogue's JSON Schemas: public documentation, no program's data.
    ("GET", "/v1/webhook-events/schemas"),
    ("GET", "/v1/webhook-events/schemas/{event_type}"),
}
"""Operations that take no API key at all, each with its own credential."""

ANY_KEY = {
    ("GET", "/v1/programs/{program}"),
}
"""Operations any key of the program may call (no scope): nothing personal behind them."""


def _requirement(route: APIRoute) -> Require | None:
    """The scope check among the route's dependencies (`habitue.deps.Require`)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = getattr(dep.call, "__self__", dep.call)
        if isinstance(call, Require):
            return call
        stack.extend(dep.dependencies)
    return None


def _routes(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):  # a router included lazily
            out += _routes(r.original_router.routes)
    return out


def _operations(app: Any) -> dict[tuple[str, str], Require | None]:
    out = {}
    for route in _routes(list(app.routes)):
        if route.include_in_schema:
            for method in route.methods:
                out[(method, route.path)] = _requirement(route)
    return out


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x" + secrets.token_hex(3)), path)


async def _key(client: httpx.AsyncClient, program: str, scopes: list[str], **extra: Any) -> str:
    body = {"name": f"k{secrets.token_hex(4)}", "scopes": scopes, **extra}
    r = await client.post(f"/v1/programs/{program}/api-keys", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _problem_type(
    failures: list[str], who: str, method: str, path: str, r: httpx.Response, expected: str
) -> None:
    kind = str(r.json().get("type", "")) if r.content else ""
    if not kind.endswith(f"/{expected}"):
        failures.append(f"{who}: {method} {path} -> {kind or r.text[:80]}, not {expected}")


@pytest.mark.slow
async def test_every_path_refuses_every_credential_that_must_not_reach_it(
    client: httpx.AsyncClient, program: str
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    operations = _operations(app)
    documented = {
        (m.upper(), p)
        for p, item in (await client.get("/openapi.json")).json()["paths"].items()
        for m in item
    }
    assert documented == set(operations), "every documented operation is tried"
    unguarded = {op for op, req in operations.items() if req is None}
    assert unguarded <= NO_KEY_NEEDED | ANY_KEY | {("POST", "/v1/programs")}, (
        "an operation without a scope check: give it one (habitue.deps.scoped)",
        unguarded - NO_KEY_NEEDED - ANY_KEY,
    )

    email = f"secret-{secrets.token_hex(4)}@example.com"
    member = await enrol(
        client, program, email=email, first_name="Zelda", phone="+4512345678",
        external_id=f"ext-{secrets.token_hex(4)}",
    )  # fmt: skip
    assert (await purchase(client, program, member["id"], "25.00")).status_code == 201
    r = await client.post(
        f"/v1/programs/{program}/partners",
        json={"code": "air", "name": "Air", "funding_rate": "1", "reimbursement_rate": "1"},
    )
    assert r.status_code == 201, r.text
    other = await create_program(client)
    credentials: dict[str, dict[str, str]] = {
        "none": {},
        "bad key": {"Authorization": "Bearer hab_0000_not-a-key"},
        "not bearer": {"Authorization": f"Basic {secrets.token_hex(8)}"},
        "another program's": {
            "Authorization": f"Bearer {await _key(client, other, ['admin'])}"
        },
    }
    partner_key = await _key(client, program, sorted(PARTNER_SCOPES), partner="air")
    single = {
        scope: await _key(client, program, [scope]) for scope in SCOPES if scope != "admin"
    }
    values = {
        "program": program,
        "member_id": member["id"],
        "card_number": member["card_number"],
        "code": "air",
    }
    secrets_seen = (
        member["id"], email, "Zelda", member["card_number"], "12345678", member["external_id"]
    )  # fmt: skip

    # A member signed in to the portal: the session cookie is no key to the API.
    bare = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    portal = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    signed = await signup(portal, program)
    assert signed.status_code in (200, 303), signed.text
    assert portal.cookies, "the portal gave the member a session"

    async def attempt(
        http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
    ) -> httpx.Response:
        url = _fill(path, values)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        return await http.request(method, url, headers=headers, json=body)

    failures: list[str] = []

    def check(who: str, method: str, path: str, r: httpx.Response, allowed: set[int]) -> None:
        if r.status_code not in allowed:
            failures.append(f"{who}: {method} {path} -> {r.status_code} {r.text[:120]}")
        elif any(s in r.text for s in secrets_seen):
            failures.append(f"{who}: {method} {path} leaked data: {r.text[:120]}")

    for (method, path), req in sorted(operations.items()):
        if (method, path) in NO_KEY_NEEDED:
            continue
        in_program = "{program}" in path
        for who, headers in credentials.items():
            if who == "another program's" and not in_program:
                expected = {403}
            elif who == "another program's":
                expected = {404}
            else:
                expected = {401}
            check(who, method, path, await attempt(bare, method, path, headers), expected)
        r = await attempt(portal, method, path, {})
        check("member session", method, path, r, {401})
        if req is None:
            continue
        if req.partner is PartnerAccess.NONE:
            r = await attempt(bare, method, path, {"Authorization": f"Bearer {partner_key}"})
            check("partner", method, path, r, {403})
        for scope, key in single.items():
            if scope == req.scope:
                continue
            r = await attempt(bare, method, path, {"Authorization": f"Bearer {key}"})
            check(f"only {scope}", method, path, r, {403})
    # A partner key holding every partner scope, on each path that opens a member to
    # partners: the member has not consented to sharing with partners (enrolled without it).
    for (method, path), req in sorted(operations.items()):
        if req is None or req.partner is PartnerAccess.NONE:
            continue
        if "{member_id}" not in path and "{card_number}" not in path:
            continue
        # A valid body where one is needed: the refusal is for the consent, not the body.
        body = {"total": "10.00"} if method == "POST" else None
        headers = {"Authorization": f"Bearer {partner_key}"}
        r = await bare.request(method, _fill(path, values), headers=headers, json=body)
        check("partner, no sharing consent", method, path, r, {403})
        _problem_type(failures, "partner", method, path, r, "no-sharing-consent")
    for query in ("card_number", "external_id"):
        url = f"/v1/programs/{program}/members?{query}={member[query]}"
        r = await bare.get(url, headers={"Authorization": f"Bearer {partner_key}"})
        check("partner, no sharing consent", "GET", url, r, {403})
        _problem_type(failures, "partner", "GET", url, r, "no-sharing-consent")
    # An analytics key receives aggregates only: every per-member analytics path refuses it.
    analytics_key = single["analytics:read"]
    for (method, path), req in sorted(operations.items()):
        if req is None or req.scope != "analytics:read":
            continue
        if "{member_id}" not in path and not path.endswith("/members"):
            continue
        r = await attempt(bare, method, path, {"Authorization": f"Bearer {analytics_key}"})
        check("analytics key", method, path, r, {403})
        _problem_type(failures, "analytics key", method, path, r, "aggregate-only")
    assert not failures, "\n".join(failures[:40])
    await portal.aclose()
    await bare.aclose()
