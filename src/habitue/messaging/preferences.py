"""A program's message settings, kept in `programs.settings`: `message_weekly_cap`,
`quiet_hours`, `points_expiring_days` (each absent: the server's `HABITUE_*` default)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import dialect_name, table_of
from habitue.errors import ValidationFailed
from habitue.messaging import timed
from habitue.messaging.schemas import MessageSettings
from habitue.programs import service as programs_service
from habitue.programs.models import Program
from habitue.programs.service import ProgramInfo

_p = table_of(Program)

KEYS = {
    "weekly_cap": "message_weekly_cap",
    "quiet_hours": "quiet_hours",
    "points_expiring_days": "points_expiring_days",
}
"""API field → key in `programs.settings` (the worker reads these keys)."""


async def read(session: AsyncSession, program: ProgramInfo) -> dict[str, Any]:
    """The program's message settings (null where the server's default applies)."""
    stored = (
        await session.execute(select(_p.c.settings).where(_p.c.id == program.id))
    ).scalar_one() or {}
    return {field: stored.get(key) for field, key in KEYS.items()}


async def write(
    session: AsyncSession, program: ProgramInfo, body: MessageSettings
) -> dict[str, Any]:
    """Replace the program's message settings; bad quiet hours are a 422, nothing written."""
    if body.quiet_hours is not None:
        try:
            timed.parse_quiet_hours(body.quiet_hours)
        except ValueError as exc:
            raise ValidationFailed("quiet_hours", str(exc)) from exc
    q = select(_p.c.settings).where(_p.c.id == program.id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    current = dict((await session.execute(q)).scalar_one() or {})
    for field, key in KEYS.items():
        value = getattr(body, field)
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    await session.execute(update(_p).where(_p.c.id == program.id).values(settings=current))
    programs_service.forget(program.code)
    return await read(session, program)
