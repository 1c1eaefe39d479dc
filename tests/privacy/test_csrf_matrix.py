"""CSRF on every form: each POST of the console (`/admin/…`, signed in as the owner) and of the
portal (`/app/…`, signed in as a member) sent without the form's token, or with a wrong one,
writes nothing — the whole database is the same afterwards (the audit log aside)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from habitue.db import Database
from habitue.models import Base
from habitue.programs import service as programs_service
from tests.conftest import enrol, fresh_database
from tests.web.conftest import make_staff, signup, staff_signin

IGNORED = {"audit_log", "audit_heads", "web_sessions", "idempotency_records"}
"""Written by the visit itself, not by the form: the audit trail and the session's use."""

NO_SESSION_FORMS = {"/admin/signin", "/admin/locale", "/locale"}
"""Forms before any session (sign-in, language): checked by their own tests."""


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: every form compares a dump of the whole database before
    and after, which on the run's shared database (all the other tests' rows) took minutes."""
    with fresh_database(db_kind, tmp_path) as url:
        yield url


def _routes(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            out += _routes(r.original_router.routes)
    return out


async def _dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with db.read() as s:
        for name, table in sorted(Base.metadata.tables.items()):
            if name in IGNORED:
                continue
            pk = list(table.primary_key.columns) or list(table.columns)[:1]
            out[name] = [tuple(r) for r in (await s.execute(select(table).order_by(*pk))).all()]
    return out


@pytest.mark.slow
async def test_no_form_writes_without_its_csrf_token(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    member = await enrol(client, program, first_name="Kim")
    async with db.read() as s:
        info = await programs_service.get_info(s, program)
    console = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    assert (await staff_signin(console, await make_staff(db, "owner", info.id))).status_code in (
        200,
        303,
    )
    portal = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    assert (await signup(portal, program)).status_code in (200, 303)
    values = {"program": program, "member_id": member["id"]}
    posts = sorted(
        r.path
        for r in _routes(list(app.routes))
        if "POST" in r.methods and r.path.startswith(("/admin/", "/app/"))
    )
    tried = 0
    failures = []
    for path in posts:
        if path in NO_SESSION_FORMS or re.search(r"/signin|/signup|/signout|/locale", path):
            continue
        http = console if path.startswith("/admin/") else portal
        url = re.sub(
            r"\{(\w+)\}", lambda m: values.get(m.group(1), "x" + secrets.token_hex(3)), path
        )
        for form in ({}, {"csrf_token": "forged-" + secrets.token_hex(8)}):
            before = await _dump(db)
            r = await http.post(url, data={**form, "points": "50", "reason": "x", "name": "y"})
            after = await _dump(db)
            tried += 1
            changed = [t for t in before if before[t] != after[t]]
            if changed:
                failures.append(f"POST {path} {form or 'no token'} -> {r.status_code}: {changed}")
    assert tried >= 20
    assert not failures, "\n".join(failures)
    await console.aclose()
    await portal.aclose()
