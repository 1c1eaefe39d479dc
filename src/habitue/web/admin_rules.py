"""The console's rules list: each live rule with an on/off switch, its draft (new rules and
next versions, `web.admin_rule_drafts`), and its version history (who changed what, when).
Switching writes a new version through `rules.service.update_rule`
(`active` in the spec); the history is read from the rule's stored versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from habitue import clock
from habitue.db import table_of
from habitue.errors import HabitueError
from habitue.rules import drafts
from habitue.rules import service as rules_service
from habitue.rules.models import Rule, RuleVersionRow
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import actor, console_for, posted
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)
_rules = table_of(Rule)
_versions = table_of(RuleVersionRow)
SWITCH_REFUSED = _l("This rule could not be switched.")


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    at: datetime
    actor: str
    changed: list[str]


def _changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    if before is None:
        return ["created"]
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


async def _history(request: Request, console: Console, code: str) -> list[Version] | None:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        rule_id = (
            await session.execute(
                select(_rules.c.id).where(_rules.c.program_id == info.id, _rules.c.code == code)
            )
        ).scalar_one_or_none()
        if rule_id is None:
            return None
        rows = (
            await session.execute(
                select(
                    _versions.c.version, _versions.c.spec, _versions.c.created_at, _versions.c.actor
                )
                .where(_versions.c.rule_id == rule_id)
                .order_by(_versions.c.version)
            )
        ).all()
    out: list[Version] = []
    previous: dict[str, Any] | None = None
    for version, spec, at, who in rows:
        current = dict(spec or {})
        out.append(Version(int(version), clock.as_utc(at), str(who), _changes(previous, current)))
        previous = current
    return out[::-1]


async def _page(request: Request, console: Console, status: int = 200, **extra: Any) -> Response:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        found = await rules_service.list_rules(session, info)
        pending = await drafts.list_drafts(session, info)
    query = request.query_params
    return console.render(
        "admin/rules.html",
        status,
        rules=found.items,
        warnings=found.warnings,
        drafts=pending,
        drafted={d.code for d in pending},
        published=query.get("published", "")[:64],
        discarded=query.get("discarded", "")[:64],
        **extra,
    )


@router.get("/{program}/rules")
async def rules(request: Request, program: str) -> Response:
    console = await console_for(request, program, "simulate")
    if isinstance(console, Response):
        return console
    return await _page(request, console)


@router.post("/{program}/rules/{code}/switch")
async def switch(request: Request, program: str, code: str) -> Response:
    found = await posted(request, program, "rules")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    key = code[:64]
    on = form.get("active") == "on"
    who = actor(console)
    try:
        await _db(request).write(
            lambda s: rules_service.update_rule(s, info, key, {"active": on}, actor=who)
        )
    except HabitueError:
        return await _page(request, console, 409, errors={key: SWITCH_REFUSED})
    return console.page.redirect(f"/admin/{info.code}/rules#rule-{key}")


@router.get("/{program}/rules/{code}/history")
async def history(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "simulate")
    if isinstance(console, Response):
        return console
    versions = await _history(request, console, code[:64])
    if versions is None:
        return console.not_found()
    return console.render("admin/rule_history.html", code=code[:64], versions=versions)
