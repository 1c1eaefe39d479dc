"""Message templates: stored per program, code, channel and language; previewed for a member.

A template is checked when saved (see `habitue.messaging.render`), so that what is stored
always renders. The template a member receives is the one in their language, else English,
else the one the program wrote in another language.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.errors import ValidationFailed
from habitue.members import service as members_service
from habitue.messaging import outbox, render
from habitue.messaging.errors import TemplateNotFound
from habitue.messaging.models import MessageTemplate
from habitue.messaging.schemas import PreviewRead, PreviewRequest, TemplateRead, TemplateWrite
from habitue.programs.service import ProgramInfo
from habitue.tiers import service as tiers_service

_templates = table_of(MessageTemplate)


def _affected(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _read(row: Any) -> TemplateRead:
    return TemplateRead(
        code=row["code"],
        channel=row["channel"],
        locale=row["locale"],
        subject=row["subject"],
        body=row["body"],
        created_at=clock.as_utc(row["created_at"]),
        updated_at=clock.as_utc(row["updated_at"]),
    )


def _key(program: ProgramInfo, code: str, channel: str, locale: str) -> Any:
    return (
        (_templates.c.program_id == program.id)
        & (_templates.c.code == code)
        & (_templates.c.channel == channel)
        & (_templates.c.locale == locale)
    )


async def put_template(
    session: AsyncSession,
    program: ProgramInfo,
    code: str,
    channel: str,
    locale: str,
    data: TemplateWrite,
) -> tuple[TemplateRead, bool]:
    """Create or replace a template once it has been checked; True when it was created."""
    subject = data.subject if data.subject and data.subject.strip() else None
    render.check(channel, subject, data.body)
    now = clock.now()
    values = {"subject": subject, "body": data.body, "updated_at": now}
    where = _key(program, code, channel, locale)
    created = False
    done = await session.execute(update(_templates).where(where).values(values))
    if not _affected(done):
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(_templates).values(
                        program_id=program.id,
                        code=code,
                        channel=channel,
                        locale=locale,
                        created_at=now,
                        **values,
                    )
                )
            created = True
        except IntegrityError:  # written by a concurrent request meanwhile: replace it
            await session.execute(update(_templates).where(where).values(values))
    await outbox.emit(
        session,
        program_id=program.id,
        type_="message_template.saved",
        member_id=None,
        payload={"code": code, "channel": channel, "locale": locale},
    )
    return await get_template(session, program, code, channel, locale), created


async def get_template(
    session: AsyncSession, program: ProgramInfo, code: str, channel: str, locale: str
) -> TemplateRead:
    """One template; raises TemplateNotFound."""
    row = (
        (await session.execute(select(_templates).where(_key(program, code, channel, locale))))
        .mappings()
        .first()
    )
    if row is None:
        raise TemplateNotFound(f"no {channel} template {code!r} in {locale!r}")
    return _read(row)


async def list_templates(
    session: AsyncSession, program: ProgramInfo, code: str | None = None
) -> list[TemplateRead]:
    """The program's templates (of one code when given), by code, channel and language."""
    q = select(_templates).where(_templates.c.program_id == program.id)
    if code is not None:
        q = q.where(_templates.c.code == code)
    q = q.order_by(_templates.c.code, _templates.c.channel, _templates.c.locale)
    return [_read(r) for r in (await session.execute(q)).mappings()]


async def written(
    session: AsyncSession, program: ProgramInfo, codes: Collection[str]
) -> dict[str, dict[str, set[str]]]:
    """For each of `codes` the program has templates of: channel → the languages written."""
    found: dict[str, dict[str, set[str]]] = {}
    if not codes:
        return found
    rows = await session.execute(
        select(_templates.c.code, _templates.c.channel, _templates.c.locale).where(
            _templates.c.program_id == program.id, _templates.c.code.in_(sorted(set(codes)))
        )
    )
    for code, channel, locale in rows:
        found.setdefault(code, {}).setdefault(channel, set()).add(locale)
    return found


async def delete_template(
    session: AsyncSession, program: ProgramInfo, code: str, channel: str, locale: str
) -> None:
    """Remove a template; raises TemplateNotFound when there is none."""
    done = await session.execute(delete(_templates).where(_key(program, code, channel, locale)))
    if not _affected(done):
        raise TemplateNotFound(f"no {channel} template {code!r} in {locale!r}")
    await outbox.emit(
        session,
        program_id=program.id,
        type_="message_template.deleted",
        member_id=None,
        payload={"code": code, "channel": channel, "locale": locale},
    )


async def member_values(
    session: AsyncSession, program: ProgramInfo, public_id: str
) -> tuple[dict[str, object], str]:
    """The variables of a member (raw values, formatted later) and the member's language."""
    member = await members_service.read(session, program, public_id)
    balance = member.balance
    tier = member.tier
    if tier is not None:
        ladder = await tiers_service.load_ladder(session, program.id)
        names = {t.code: t.name for t in ladder.tiers} if ladder is not None else {}
        tier = names.get(tier, tier)
    expiring = balance.expiring[0] if balance and balance.expiring else None
    expires_at = datetime.fromisoformat(expiring["expires_at"]) if expiring else None
    values: dict[str, object] = {
        "first_name": member.first_name,
        "last_name": member.last_name,
        "points": balance.available if balance else 0,
        "pending_points": balance.pending if balance else 0,
        "points_name": program.points_name,
        "tier": tier,
        "card_number": member.card_number,
        "program_name": program.name,
        "expiring_points": int(expiring["points"]) if expiring else 0,
        "expiring_on": expires_at,
    }
    return values, member.locale


def sample_values(program: ProgramInfo, sample: dict[str, str | int] | None) -> dict[str, object]:
    """The sample variables, the program's own names, and what the caller gave."""
    values: dict[str, object] = {
        **render.SAMPLE,
        "points_name": program.points_name,
        "program_name": program.name,
    }
    for name, value in (sample or {}).items():
        if name not in render.VARIABLES:
            raise ValidationFailed(f"sample.{name}", "unknown variable")
        values[name] = value
    return values


async def _locales(session: AsyncSession, program: ProgramInfo, code: str, channel: str) -> Any:
    rows = await session.execute(
        select(_templates.c.locale, _templates.c.subject, _templates.c.body).where(
            _templates.c.program_id == program.id,
            _templates.c.code == code,
            _templates.c.channel == channel,
        )
    )
    return {r.locale: (r.subject, r.body) for r in rows}


async def preview(
    session: AsyncSession, program: ProgramInfo, code: str, req: PreviewRequest
) -> PreviewRead:
    """Render a stored template (or the draft in `req`) for a member or for sample data.

    Without a `locale`, the member's language is chosen, with the fallback members get.
    Writes nothing.
    """
    if req.member_id is not None and req.sample is not None:
        raise ValidationFailed("sample", "give a member_id or sample data, not both")
    wanted: str | None = req.locale
    if req.member_id is not None:
        raw, member_locale = await member_values(session, program, req.member_id)
        wanted = wanted or member_locale
    else:
        raw = sample_values(program, req.sample)
    if req.body is not None:
        locale = wanted or render.FALLBACK_LOCALE
        subject = req.subject if req.subject and req.subject.strip() else None
        render.check(req.channel, subject, req.body)
        body = req.body
    else:
        stored = await _locales(session, program, code, req.channel)
        picked = render.pick_locale(stored, wanted)
        if picked is None:
            raise TemplateNotFound(f"no {req.channel} template {code!r}")
        locale = picked
        subject, body = stored[picked]
    values = render.format_values(raw, locale, program.timezone)
    out = render.render(req.channel, subject, body, values)
    return PreviewRead(
        code=code,
        channel=req.channel,
        locale=locale,
        subject=out.subject,
        body=out.body,
        member_id=req.member_id,
        variables=values,
    )
